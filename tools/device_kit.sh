#!/usr/bin/env bash
# Prepare .device/ (git-ignored) for one GPU piece of the named chapters (default: robustness):
#   robustness  chapters 2-3, every MNIST unit        (MNIST, pyautoattack's code)
#   anode       chapter 5 sized for the GPU: seeds 0-2 of the MNIST variants, instability seeds 0-1  (MNIST)
#   attention   chapter 4's CUDA timing rows only; its training stays on the CPU                       (MNIST)
# The kit holds the chapters' compressed data, pyautoattack's code (without its 45 MB example model) where
# AutoAttack runs, the resume checkpoints of the chapters' unfinished units only, and .device/commit (the
# commit the results will cite: run the kit again after committing). It counts everything that will travel
# (tracked and untracked-not-ignored files plus .device) and refuses a kit over the device's 64 MiB.
# usage: tools/device_kit.sh [CHAPTER ...]
# Then, with the device tool: run(command="bash tools/device_run.sh 540", carry=[".device"], timeout_s=600),
# and back here: python -m robustode.piece unpack <the returned files' folder>.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m robustode.piece kit "$@"
