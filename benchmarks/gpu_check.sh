#!/usr/bin/env bash
# GPU check (issues 16, 17): what a first run on a real GPU must show, in one report, in < 8 min.
#   bash benchmarks/gpu_check.sh [--cpu-smoke] [OUT_DIR]     (default OUT_DIR: runs/gpu_check-<time>)
#
# On one CUDA GPU: the CLI end to end on a tiny synthetic dataset (train with the tiny model,
# an interrupted train + --resume, test, predict, reproduce of the demo row) on CUDA and on the
# CPU, compared number by number (the tolerance found is printed); the CUDA-marked tests; the
# feature cache on CUDA; bf16 vs fp32 scores; two --deterministic reruns (bitwise?); torchrun with
# NCCL over 2 processes when 2 GPUs exist (skipped, and said, otherwise); ViT-L-14-336 bf16
# extraction (views/s) and one test pass (objects/s), skipped when its weights are not here
# (GPU_CHECK_WEIGHTS=FILE names a local copy).
# --cpu-smoke runs the same steps on the CPU (the device runs are CPU runs, compared bit for bit;
# CUDA-only steps are skipped and said): under a minute on 2 idle cores; .ci/run runs it.
#
# Everything goes into OUT_DIR (report.md, the data, runs, caches, step logs), never into the
# repository root. Every step has its own time limit (they add up to 7.5 min); a step that fails or
# times out is recorded as such and the next one runs. Exit status 1 when a step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
smoke=0
if [ "${1:-}" = "--cpu-smoke" ]; then smoke=1; shift; fi
out=${1:-runs/gpu_check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out" || exit 2
if [ "$(cd "$out" && pwd -P)" = "$(pwd -P)" ]; then
  echo "gpu_check.sh: error: $out is the repository root; name a folder for the report" >&2
  exit 2
fi
export HF_HUB_OFFLINE=1
py=${PYTHON:-python}
helper="$py benchmarks/gpu_check.py"
report="$out/report.md"
failed=() skipped=()
if [ "$smoke" = 1 ]; then dev=cpu; else dev=cuda; fi

# The limits below are for one GPU (they add up to 445 s). The CPU smoke run does the same work in
# about a minute on 2 idle cores; its limits are GPU_CHECK_LIMIT_SCALE (default 4) times longer,
# so that a busy CI machine records slowness, not failures.
scale=${GPU_CHECK_LIMIT_SCALE:-$([ "$smoke" = 1 ] && echo 4 || echo 1)}
step() {  # step SECONDS TITLE COMMAND...: run with a time limit; keep its table rows (or its tail)
  local limit=$(( $1 * scale )) title=$2; shift 2
  local log="$out/logs/$(tr -c 'a-zA-Z0-9\n' '_' <<<"$title").log" start=$SECONDS rc
  mkdir -p "$out/logs"
  timeout -k 5 "$limit" "$@" > "$log" 2>&1; rc=$?
  {
    echo; echo "## $title"; echo
    if grep -q '^|' "$log"; then grep '^|' "$log"; fi
    grep -v '^|' "$log" | grep -E '^(skipped|FAILED|only in one)' || true
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then echo '```'; tail -n 15 "$log"; echo '```'; fi
    local verdict=ok
    [ "$rc" -eq 77 ] && verdict=skipped
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && verdict="timed out"
    [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ "$verdict" = ok ] && verdict=failed
    echo; echo "($verdict: exit $rc, $((SECONDS - start)) s, limit $limit s)"
  } >> "$report"
  case "$rc" in
    0) ;;
    77) skipped+=("$title") ;;
    *) failed+=("$title") ;;
  esac
}
skip() {  # skip TITLE REASON
  { echo; echo "## $1"; echo; echo "skipped: $2"; } >> "$report"; skipped+=("$1")
}

{
  echo "# GPU check $(date -u +%FT%TZ)$([ "$smoke" = 1 ] && echo ' (--cpu-smoke)')"
  echo
  "$py" -c "import torch, align3d_ad; print('align3d-ad', align3d_ad.__version__, '| torch', \
torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name(0) \
if torch.cuda.is_available() else 'no GPU', '|', torch.cuda.device_count(), 'GPU(s)')" 2>&1
} > "$report"
gpus=$("$py" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$smoke" = 0 ] && [ "$gpus" -lt 1 ]; then
  echo "gpu_check.sh: error: no CUDA GPU visible; use --cpu-smoke on a machine without one" >&2
  echo "no CUDA GPU visible" >> "$report"; exit 1
fi
data="$out/data/mini"

step 20 "tiny synthetic dataset" $helper data "$out/data"
step 50 "CLI on $dev: train, --resume, test, predict, reproduce" \
  $helper cli --device "$dev" --data "$data" --out "$out/$dev"
if [ "$smoke" = 1 ]; then
  skip "CLI on cpu (the reference)" "--cpu-smoke: the run above is the CPU run"
  step 15 "--deterministic reruns on cpu (bitwise?)" \
    $helper determinism --device cpu --data "$data" --out "$out/deterministic"
  skip "CUDA-marked tests" "--cpu-smoke: no GPU"
else
  step 50 "CLI on cpu (the reference)" $helper cli --device cpu --data "$data" --out "$out/cpu"
  step 15 "CUDA vs CPU: every number of the CLI runs" $helper compare "$out/cpu" "$out/cuda"
  step 50 "--deterministic reruns on cuda (bitwise?)" \
    $helper determinism --device cuda --data "$data" --out "$out/deterministic"
  step 40 "CUDA-marked tests" "$py" -m pytest -q -m cuda -p no:cacheprovider tests
fi
step 20 "feature cache on $dev" \
  $helper cache --device "$dev" --data "$data" --run "$out/$dev/run" --out "$out/cache"
step 20 "amp-bf16 and bf16 vs fp32 scores on $dev" \
  $helper precision --device "$dev" --data "$data" --run "$out/$dev/run"
if [ "$smoke" = 0 ] && [ "$gpus" -ge 2 ]; then
  step 30 "torchrun, NCCL, 2 processes: test equals one process" bash -c \
    "$py -m torch.distributed.run --standalone --nproc-per-node 2 -m align3d_ad test \
       --checkpoint '$out/cuda/run' --dataset mvtec3d --root '$data' --categories cookie \
       --out '$out/torchrun' --device cuda --no-cache --quiet && \
     mkdir -p '$out/torchrun_cmp/a' '$out/torchrun_cmp/b' && \
     cp -r '$out/cuda/test' '$out/torchrun_cmp/a/test' && cp -r '$out/torchrun' '$out/torchrun_cmp/b/test' && \
     $helper compare '$out/torchrun_cmp/a' '$out/torchrun_cmp/b' --bitwise"
else
  skip "torchrun, NCCL, 2 processes" "$gpus GPU(s) visible; needs 2$([ "$smoke" = 1 ] && echo ' (--cpu-smoke)')"
fi
if [ "$smoke" = 1 ]; then
  skip "ViT-L-14-336 bf16: extraction and one test pass" "--cpu-smoke: timing is for the GPU"
else
  step 60 "ViT-L-14-336 bf16: extraction and one test pass" \
    $helper speed --device cuda --data "$data"
fi
if [ "$smoke" = 1 ]; then
  step 30 "throughput of test (tiny, workers 0 vs 1)" "$py" benchmarks/throughput.py \
    --device cpu --small --samples 4 --workers 0 1
else
  # 14 workers: the default on the 16-core device machine (the cores beyond two)
  step 90 "throughput of test (ViT-L-14-336 amp-bf16, random weights; workers 0 vs 14)" \
    "$py" benchmarks/throughput.py --device cuda --backbone ViT-L-14-336-quickgelu \
    --samples 48 --batch-size 8 --backbone-batch 72 --workers 0 14
fi

{
  echo; echo "## Summary"; echo
  echo "failed: ${#failed[@]}$([ ${#failed[@]} -gt 0 ] && printf ' (%s)' "$(IFS=';'; echo "${failed[*]}")")"
  echo "skipped: ${#skipped[@]}$([ ${#skipped[@]} -gt 0 ] && printf ' (%s)' "$(IFS=';'; echo "${skipped[*]}")")"
} >> "$report"
echo "wrote $report: ${#failed[@]} step(s) failed, ${#skipped[@]} skipped"
[ ${#failed[@]} -eq 0 ]
