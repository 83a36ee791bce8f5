"""Shape guards for public entry points (kornia-style ``check_shape``)."""

from __future__ import annotations

from typing import Any

from .errors import ShapeError


def check_shape(x: Any, spec: str, *, name: str) -> dict[str, int]:
    """Check that ``x.shape`` matches ``spec`` and return the sizes bound to its letters.

    ``spec`` is a space-separated list of dimensions: an integer fixes the size, a letter binds
    it (the same letter must get the same size everywhere in ``spec``), ``*`` accepts any size.

    Examples:
        >>> import numpy as np
        >>> check_shape(np.zeros((5, 3)), "N 3", name="points")
        {'N': 5}
    """
    dims = spec.split()
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != len(dims):
        raise ShapeError(f"{name} must have shape ({', '.join(dims)}), got {shape}")
    bound: dict[str, int] = {}
    for dim, size in zip(dims, shape):
        if dim == "*":
            continue
        if dim.isdigit():
            if int(dim) != size:
                raise ShapeError(f"{name} must have shape ({', '.join(dims)}), got {shape}")
        elif bound.setdefault(dim, size) != size:
            raise ShapeError(
                f"{name} must have shape ({', '.join(dims)}) with one size for {dim}, got {shape}"
            )
    return bound
