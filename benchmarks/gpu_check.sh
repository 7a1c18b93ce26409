#!/usr/bin/env bash
# The GPU check, one command on a CUDA machine (sized for under 8 minutes on one H100 / H200):
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT, else benchmarks/results/gpu
#   bash benchmarks/gpu_check.sh --dry-run        # no GPU: the driver on the CPU interpreter at tiny
#                                                 # shapes (does it run?) + every kernel compiled for sm_90
#
# Steps, each with its own time limit; a failed step is recorded and the next one still runs:
#   1. compute-sanitizer memcheck over every op at small ragged shapes (skipped, with a message,
#      where compute-sanitizer is absent);
#   2. the CUDA-only tests of the five ops (realistic shapes, fp32 + bf16; head dims 64..256
#      checked against the chip's shared memory, no spills);
#   3. benchmarks/gpu_check.py: accuracy vs fp64, registers / spills / shared memory of every
#      compiled kernel, time vs the torch reference and vs the roofline, and a bf16 training step and
#      encode of a Qwen3-0.6B-shaped random model against a reference-style step.
# Writes OUT_DIR/gpu_check.json, gpu_check.md (tables for benchmarks/RESULTS.md) and one log per step.
# The package runs from this checkout (no C++ build: GPU tensors never use it): llm2vec_gen/ plus
# kernels/ as llm2vec_gen.kernels, copied to a temporary directory on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [ "${1:-}" = "--dry-run" ]; then
  DRY=1
  shift
fi
OUT_DIR="${1:-${OUT:-benchmarks/results/gpu}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
if [ -x .venv/bin/python ] && [ "$DRY" = 1 ]; then PY=.venv/bin/python; else PY="${PYTHON:-python3}"; fi

SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
cp -r llm2vec_gen "$SRC/" && rm -rf "$SRC/llm2vec_gen/kernels" && cp -r kernels "$SRC/llm2vec_gen/kernels"
export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
STEPS="$OUT_DIR/steps.txt"
: >"$STEPS"

step() {  # step NAME LIMIT_S LOG CMD...: run CMD under a time limit, record "NAME <status>"
  local name=$1 limit=$2 log=$3
  shift 3
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  tail -n 15 "$log"
  case $rc in
    0) echo "$name ok" >>"$STEPS" ;;
    124) echo "$name timed out after ${limit}s (log: $(basename "$log"))" >>"$STEPS" ;;
    *) echo "$name failed, exit $rc (log: $(basename "$log"))" >>"$STEPS" ;;
  esac
}

OPS_TESTS="tests/test_appended_attention.py tests/test_fused_linear_cross_entropy.py tests/test_distill_loss.py
  tests/test_encode_tail.py tests/test_special_token_embedding.py"

if [ "$DRY" = 1 ]; then
  echo "sanitizer skipped (dry run)" >>"$STEPS"
  echo "cuda_tests skipped (dry run: they need a GPU)" >>"$STEPS"
  step driver 600 "$OUT_DIR/driver.log" "$PY" benchmarks/gpu_check.py --dry-run \
    --sections accuracy,resources,timing,model,sanitize --out "$OUT_DIR"
  # Without a GPU the kernels still compile for sm_90: shared memory, registers, spills, wgmma.
  step sm90_compile 900 "$OUT_DIR/sm90_compile.log" env -u TRITON_INTERPRET "$PY" \
    benchmarks/triton_compile_check.py --json "$OUT_DIR/sm90_compile.json"
else
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
    || { echo "no CUDA device here: use --dry-run" >&2; exit 2; }
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv || true
  if command -v compute-sanitizer >/dev/null 2>&1; then
    step sanitizer 90 "$OUT_DIR/sanitizer.log" compute-sanitizer --tool memcheck --error-exitcode 3 \
      --target-processes all "$PY" benchmarks/gpu_check.py --sections sanitize --out "$OUT_DIR/sanitize"
  else
    echo "compute-sanitizer not found: memcheck skipped" | tee -a "$STEPS"
  fi
  # shellcheck disable=SC2086
  step cuda_tests 170 "$OUT_DIR/cuda_tests.log" "$PY" -m pytest $OPS_TESTS -k cuda -q -p no:cacheprovider
  step driver 200 "$OUT_DIR/driver.log" "$PY" benchmarks/gpu_check.py \
    --sections accuracy,timing,resources,model --out "$OUT_DIR"
fi
echo "== steps"
cat "$STEPS"
! grep -qv " ok$\|skipped\|not found" "$STEPS"
