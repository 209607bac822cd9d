#!/usr/bin/env bash
# Run ON the device machine (the `run` tool), after benchmarks/device_wheels.sh here:
#   command: bash benchmarks/device_check.sh      carry: [".whl"]      timeout_s: 540
# Installs the carried wheels, then: the GPU's name, the CUDA tests (pytest -m cuda), the
# benchmarks on CUDA and one paper-preset epoch per phase, each under its own time limit, all
# logged to $OUT/device_check.log with a summary table in $OUT/device_check.md. About 7 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}; mkdir -p "$OUT"
LOG="$OUT/device_check.log"; MD="$OUT/device_check.md"
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl DIMALIB_TEST_DEVICE=cuda
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 || echo "wheel install failed" | tee -a "$LOG"
  export PYTHONPATH=/tmp/site:$PWD/src:$PWD
else
  export PYTHONPATH=$PWD/src:$PWD
fi
step() {  # step NAME SECONDS COMMAND...: run with a limit, log, record the status
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$LOG" 2>&1; local rc=$?
  echo "| $name | $rc | $((SECONDS - t0)) s |" >>"$MD"
  echo "    -> rc=$rc in $((SECONDS - t0)) s" | tee -a "$LOG"
}
{
  echo "# device check $(date -u +%Y-%m-%dT%H:%M)Z"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  echo; echo "| step | exit | wall |"; echo "|---|---|---|"
} >"$MD" 2>&1
step "cuda tests" 120 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py
step "bench_dynamics" 60 python3 benchmarks/bench_dynamics.py --device cuda --repeats 20
step "bench_unet" 40 python3 benchmarks/bench_unet.py --device cuda --rounds 3
step "bench_imagination" 90 python3 benchmarks/bench_imagination.py --device cuda --repeats 3
step "bench_buffer" 45 python3 benchmarks/bench_buffer.py --device cuda --repeats 50
step "paper epoch" 150 python3 benchmarks/bench_epoch.py --preset paper --device cuda --fraction 0.25
step "cpu-preset epoch" 60 python3 benchmarks/bench_epoch.py --preset cpu --device cuda
cp "$MD" "$LOG" "$OUT"/ 2>/dev/null
cat "$MD"
echo "full log: $LOG"
