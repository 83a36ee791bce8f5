#!/usr/bin/env bash
# GPU check: the CUDA-marked tests and the benchmarks on CUDA, all figures into one file.
# For a machine with CUDA (e.g. the device tool); every step has its own time limit and the whole
# script stays under 8 minutes (expected 4-6 on one H100). A step that fails or times out is
# recorded as such in the file and the script goes on.
#   bash benchmarks/gpu_check.sh [OUT_FILE]      (default: gpu_check.md)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check.md}
export HF_HUB_OFFLINE=1
py=${PYTHON:-python}
step() {  # step SECONDS TITLE COMMAND...: run with a time limit, keep table rows (or the tail)
  local limit=$1 title=$2; shift 2
  echo; echo "## $title"; echo
  local start=$SECONDS log
  log=$(timeout "$limit" "$@" 2>&1); local rc=$?
  if grep -q '^|' <<<"$log"; then grep '^|' <<<"$log"; else echo '```'; tail -n 15 <<<"$log"; echo '```'; fi
  echo; echo "(exit $rc, $((SECONDS - start)) s, limit $limit s)"
}
{
  echo "# GPU check $(date -u +%FT%TZ)"
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  step 120 "CUDA-marked tests" "$py" -m pytest -q -m cuda -p no:cacheprovider
  step 45 "render (cuda)" "$py" benchmarks/render.py --devices cuda --sizes 10000 200000 1000000 2700000
  step 60 "backbone (cuda)" "$py" benchmarks/backbone.py --devices cuda \
    --models tiny-clip ViT-B-16-quickgelu ViT-L-14-336-quickgelu --precisions fp32 bf16 fp16 --iters 5
  for m in tiny-clip ViT-B-16-quickgelu ViT-L-14-336-quickgelu; do
    step 40 "inference $m (cuda)" "$py" benchmarks/inference.py --backbone "$m" --device cuda --samples 8
  done
  step 60 "training ViT-L, reference settings (cuda)" "$py" benchmarks/training.py \
    --backbone ViT-L-14-336-quickgelu --device cuda --samples 8 --stage2-batch-size 4
  step 75 "scaling (cuda)" "$py" benchmarks/scaling.py --device cuda --repeats 1
  step 45 "reference design (cuda)" "$py" benchmarks/reference.py --backbone ViT-B-16-quickgelu \
    --device cuda --samples 4
} > "$out" 2>&1
echo "wrote $out"
