#!/usr/bin/env bash
# One GPU piece, everything inside one deadline set here, at the start: SECONDS (default 540, at most 590:
# the device tool's command limit is 600 s) from now, the last pack of the results included.
#   device tool: run(command="bash tools/device_run.sh 540", carry=[".device"], timeout_s=600)
#   local dry run (CPU, tiny profile, private results folder):
#     OUT=/tmp/piece bash tools/device_run.sh 60 --dry-run --data data --chapters robustness anode attention
# Steps (python -m robustode.piece run; see src/robustode/piece.py): record the device; the engine's tests
# (no training if they fail); the GPU-fill measurement (first piece only); chapter 4's CUDA timing rows;
# the plan's units of the kit's chapters with the time left (no epoch or evaluation stage starts that cannot
# finish); how many pieces are left. Each step is a child process stopped by its own process group when its
# time is up; nothing else is ever killed. Results and checkpoints are packed into $OUT after every step and
# every few seconds while units run: piece.log, results.tar.gz and checkpoints.tar.gz (split into parts of at
# most 15 MiB; at most 8 files). Exit status: 0 the chapters' units are all done, 3 more to do, 1 a step failed.
set -uo pipefail
start=$(date +%s)
cd "$(dirname "$0")/.."
budget=${1:-540}
[ $# -gt 0 ] && shift
case $budget in '' | *[!0-9]*) echo "error: SECONDS must be a whole number, got '$budget'" >&2; exit 2 ;; esac
[ "$budget" -ge 30 ] && [ "$budget" -le 590 ] || { echo "error: SECONDS must be 30 to 590, got $budget" >&2; exit 2; }
: "${OUT:?set OUT to the folder whose files come back (the device tool sets it)}"
export PYTHONPATH="$PWD/src:$PWD/.device/site${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m robustode.piece run --end "$((start + budget))" --out "$OUT" "$@"
