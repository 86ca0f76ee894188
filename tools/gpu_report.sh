#!/usr/bin/env bash
# The device report on one GPU, in one command (installs nothing):
#
#   once, where a package index is reachable:  bash tools/gpu_deps.sh
#   on the GPU machine (output/gpu_deps copied beside the repository):
#                                             bash tools/gpu_report.sh
#
# First the tests that need CUDA (names with "cuda": the Triton kernels against the
# reference, bf16 on CUDA against fp32, the decoder under CUDA's sync check; at most
# TESTS_S seconds, default 90), then the report. Writes $OUT/gpu_report.json (the device
# tool brings $OUT back; elsewhere output/gpu_report.json) and $OUT/gpu_report.log
# (everything printed, the markdown tables at its end). The report starts no row after
# BUDGET_S seconds (default 400), so the whole script ends within about 9 minutes;
# ifr.benchmark.report says what it measures.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${IFR_GPU_DEPS:-$ROOT/output/gpu_deps/site}"
OUT_DIR="${OUT:-$ROOT/output}"
PYTHON="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-400}"
TESTS_S="${TESTS_S:-90}"

if [ ! -d "$DEPS" ]; then
    echo "error: $DEPS is missing: run 'bash tools/gpu_deps.sh' on the development" \
        "machine and carry output/gpu_deps" >&2
    exit 1
fi
export PYTHONPATH="$ROOT:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
cd "$ROOT"

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    "$PYTHON" -c "import torch, triton, ifr; print('torch', torch.__version__, 'triton', \
triton.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
    timeout "$TESTS_S" "$PYTHON" -m pytest -q -p no:cacheprovider -k cuda \
        tests/modeling/test_msda_triton.py tests/modeling/test_precision.py \
        tests/modeling/test_frame_step.py
    "$PYTHON" tools/benchmark.py --report gpu --device cuda --budget-s "$BUDGET_S" \
        --output "$OUT_DIR/gpu_report.json"
} 2>&1 | tee "$OUT_DIR/gpu_report.log"
