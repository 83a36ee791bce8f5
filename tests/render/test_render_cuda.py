"""CPU and CUDA renderings agree (run on a GPU machine; skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from align3d_ad.render import RenderSettings, back_project, render_batch, smooth_point_scores


@pytest.mark.cuda
def test_render_and_back_project_agree_on_cpu_and_cuda():
    gen = torch.Generator().manual_seed(0)
    pts = [torch.randn(2000, 3, generator=gen), torch.rand(500, 3, generator=gen)]
    colors = [torch.rand(2000, 3, generator=gen), torch.rand(500, 3, generator=gen)]
    settings = RenderSettings(image_size=64)
    cpu = render_batch(pts, "mvtec3d", settings, colors=colors)
    gpu = render_batch(
        [p.cuda() for p in pts], "mvtec3d", settings, colors=[c.cuda() for c in colors]
    )
    assert gpu.images.device.type == "cuda"
    # Projections agree to float32 rounding; the z-buffer is integer-exact given the same inputs.
    torch.testing.assert_close(gpu.pixel_coords.cpu(), cpu.pixel_coords, atol=1e-4, rtol=0)
    agree = (gpu.index_map.cpu() == cpu.index_map).float().mean()
    assert agree > 0.995
    assert (gpu.visible.cpu() == cpu.visible).float().mean() > 0.995
    assert (gpu.images.cpu() - cpu.images).abs().mean() < 1e-3
    maps = torch.rand(2, 9, 2, 16, 16, generator=gen)
    a = torch.cat(back_project(maps, cpu))
    b = torch.cat(back_project(maps.cuda(), gpu)).cpu()
    same = (gpu.visible.cpu() == cpu.visible).all(1)
    torch.testing.assert_close(b[same], a[same], atol=1e-4, rtol=0)


@pytest.mark.cuda
def test_smoothing_and_back_project_gradient_on_cuda():
    gen = torch.Generator().manual_seed(1)
    pts = torch.randn(3000, 3, generator=gen)
    pts = pts / pts.norm(dim=1, keepdim=True)  # a sphere: half of it hidden from each side
    scores = torch.rand(3000, 2, generator=gen)
    cpu = smooth_point_scores(pts, scores)
    gpu = smooth_point_scores(pts.cuda(), scores.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
    rendering = render_batch([pts.cuda()], "mvtec3d", RenderSettings(image_size=64))
    maps = torch.rand(1, 9, 2, 16, 16, device="cuda", requires_grad=True)
    out = back_project(maps, rendering)[0]
    out.sum().backward()
    assert out.shape == (3000, 2) and maps.grad is not None and maps.grad.abs().sum() > 0


@pytest.mark.cuda
def test_reference_style_agrees_on_cpu_and_cuda():
    import numpy as np

    from align3d_ad.render import get_view_preset
    from align3d_ad.render.reference import (
        REFERENCE_STYLES,
        ReferenceRenderSettings,
        render_reference_views,
    )

    gen = torch.Generator().manual_seed(2)
    pts = torch.randn(3000, 3, generator=gen) * torch.tensor([1.0, 0.6, 0.3])
    labels, colors = pts[:, 0] > 0.8, torch.rand(3000, 3, generator=gen)
    normals = torch.nn.functional.normalize(torch.randn(3000, 3, generator=gen), dim=1)
    rot = torch.from_numpy(np.array(get_view_preset("real3d").rotations))
    args = (REFERENCE_STYLES["real3d"], ReferenceRenderSettings())
    cpu = render_reference_views(pts, rot, *args, colors=colors, labels=labels, normals=normals)
    gpu = render_reference_views(pts.cuda(), rot, *args, colors=colors.cuda(), labels=labels.cuda(),
                                 normals=normals.cuda())  # fmt: skip
    assert gpu.images.device.type == "cuda"
    torch.testing.assert_close(gpu.pixel_coords.cpu(), cpu.pixel_coords, atol=1e-4, rtol=0)
    assert (gpu.index_map.cpu() == cpu.index_map).float().mean() > 0.995
    assert (gpu.visible.cpu() == cpu.visible).float().mean() > 0.995
    assert (gpu.images.cpu() - cpu.images).abs().mean() < 2e-3
    assert (gpu.gt_masks.cpu() == cpu.gt_masks).float().mean() > 0.995
