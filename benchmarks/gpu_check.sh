#!/usr/bin/env bash
# GPU check: the CUDA-marked tests and the benchmarks on CUDA, figures into one file.
# Meant for a machine with CUDA (e.g. the device tool); about 5-8 minutes on one H100.
#   bash benchmarks/gpu_check.sh [OUT_FILE]      (default: gpu_check.md)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check.md}
export HF_HUB_OFFLINE=1
py=${PYTHON:-python}
{
  echo "# GPU check $(date -u +%FT%TZ)"
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  echo; echo "## CUDA-marked tests"; echo '```'
  timeout 300 "$py" -m pytest -q -m cuda -p no:cacheprovider 2>&1 | tail -n 15
  echo '```'
  echo; echo "## render (cuda)"
  timeout 180 "$py" benchmarks/render.py --devices cuda --sizes 10000 200000 1000000 2700000 2>&1 | grep '^|'
  echo; echo "## backbone (cuda)"
  timeout 240 "$py" benchmarks/backbone.py --devices cuda --models tiny-clip ViT-B-16-quickgelu ViT-L-14-336-quickgelu \
      --precisions fp32 bf16 fp16 --iters 5 2>&1 | grep '^|'
  echo; echo "## inference (cuda)"
  for m in tiny-clip ViT-B-16-quickgelu ViT-L-14-336-quickgelu; do
    timeout 120 "$py" benchmarks/inference.py --backbone "$m" --device cuda --samples 8 2>&1 | grep '^|'
  done
  echo; echo "## training (cuda)"
  timeout 240 "$py" benchmarks/training.py --backbone ViT-L-14-336-quickgelu --device cuda --samples 8 2>&1 | grep '^|'
} > "$out" 2>&1
echo "wrote $out"
