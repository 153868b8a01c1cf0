#!/usr/bin/env bash
# One GPU session's work, prepared so that a single call of the `device` tool does all of it:
#   bash tools/device_run.sh SECONDS [NOTEBOOK ...]
# 1. installs .device/wheels (tools/device_kit.sh) into /tmp/site;  2. records the device;
# 3. runs the engine's tests, the CUDA-graph ones included (if one fails, step 6 is skipped);
# 4. benchmarks/epoch_time.py: s/epoch, plain vs engine vs 3 seeds at once (SKIP_BENCHMARK=1 skips it);
# 5. benchmarks/engine_accuracy.py: MNIST test accuracy of both paths over 3 seeds, ACCURACY_EPOCHS (3)
#    epochs (SKIP_ACCURACY=1 skips it);  6. `reproduce --profile full` for the notebooks, stopped after
#    SECONDS: finished runs are results files, unfinished ones resume from their per-epoch checkpoints;
# 7. packs results/full (checkpoints included) into $OUT/results-full.tar.gz; unpack it in the checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${1:?usage: tools/device_run.sh SECONDS [NOTEBOOK ...]}
shift
case $budget in '' | *[!0-9]*) echo "error: SECONDS must be a whole number, got '$budget'" >&2; exit 2 ;; esac
OUT=${OUT:-$PWD/.device/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ROBUSTODE_DATA="$PWD/.device/data"
export ROBUSTODE_GIT_COMMIT=${ROBUSTODE_GIT_COMMIT:-$(cat .device/commit 2>/dev/null)}
export PYTHONPATH="$PWD/src:$PWD/.device/site:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
if [ "${SKIP_INSTALL:-0}" != 1 ] && ls .device/wheels/*.whl >/dev/null 2>&1; then  # SKIP_INSTALL=1: a local dry run
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .device/wheels/*.whl || exit 1
fi
"$PY" - <<'PY' 2>&1 | tee "$OUT/device.txt"
import torch
from robustode.results import device_name
print("torch", torch.__version__, "| device:", device_name(torch.device("cuda" if torch.cuda.is_available() else "cpu")))
PY
"$PY" -m pytest -q -p no:cacheprovider tests/test_engine.py 2>&1 | tee "$OUT/engine-tests.log"
engine_ok=${PIPESTATUS[0]}
if [ "${SKIP_BENCHMARK:-0}" != 1 ]; then
  "$PY" benchmarks/epoch_time.py --device auto --batches "${BENCH_BATCHES:-60}" 2>&1 | tee "$OUT/benchmark.txt"
fi
if [ "${SKIP_ACCURACY:-0}" != 1 ]; then
  "$PY" benchmarks/engine_accuracy.py --device auto --epochs "${ACCURACY_EPOCHS:-3}" ${ACCURACY_ARGS:-} 2>&1 \
    | tee "$OUT/engine-accuracy.txt"
fi
status=0
if [ $# -gt 0 ] && [ "$engine_ok" != 0 ]; then
  echo "engine tests failed: no reproduction this time (see engine-tests.log)" | tee "$OUT/reproduce.log"
  status=3
elif [ $# -gt 0 ]; then
  timeout -k 30 "$budget" "$PY" -m robustode reproduce --profile full --device auto --log-output --notebooks "$@" \
    >"$OUT/reproduce.log" 2>&1
  status=$?
  [ $status -eq 124 ] && echo "stopped after $budget s; run again to resume" >>"$OUT/reproduce.log"
  pkill -f ipykernel_launcher 2>/dev/null; sleep 2
  tail -n 40 "$OUT/reproduce.log"
fi
tar czf "$OUT/results-full.tar.gz" --exclude='*.tmp' --exclude='*.partial.ipynb' results/full
echo "packed: $(du -h "$OUT/results-full.tar.gz" | cut -f1) results/full; reproduce exit status $status"
