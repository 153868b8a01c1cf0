#!/usr/bin/env bash
# Prepare .device/ (git-ignored) for a GPU run through the workplace's `device` tool, whose machines hold
# torch but no Jupyter and cannot reach the internet:
#   .device/wheels/   papermill and a Jupyter kernel for CPython 3.12 (tools/device-wheels.txt)
#   .device/site/     pyautoattack's code (its wheel ships a 45 MB example model we do not need)
#   .device/data/     the compressed MNIST-family files (torchvision decompresses them on first load)
# usage: tools/device_kit.sh [DATASET ...]     (default: MNIST FashionMNIST)
# Run it again after committing: .device/commit names the commit the results will cite.
# Then, with the device tool, carry .device (and results/full/checkpoints to resume) and run
#   bash tools/device_run.sh SECONDS NOTEBOOK ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ $# -gt 0 ] || set -- MNIST FashionMNIST
for set in "$@"; do  # check every data set before any work
  ls data/"$set"/raw/*.gz >/dev/null 2>&1 || { echo "error: data/$set/raw/*.gz not found (make data)" >&2; exit 2; }
done
platforms=()
for n in 2_17 2_24 2_26 2_27 2_28 2_31 2_34; do platforms+=(--platform "manylinux_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
download() { "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                 "${platforms[@]}" -d "$1" "${@:2}"; }
rm -rf .device.new && mkdir -p .device.new/wheels .device.new/site .device.new/data
download .device.new/wheels $(grep -v '^#' tools/device-wheels.txt)
download .device.new/tmp "pyautoattack==0.2.0"
unzip -q .device.new/tmp/pyautoattack-*.whl -d .device.new/site -x 'pyautoattack/examples/*'
rm -rf .device.new/tmp
for set in "$@"; do
  mkdir -p ".device.new/data/$set/raw" && cp data/"$set"/raw/*.gz ".device.new/data/$set/raw/"
done
dirty=$(git status --porcelain --untracked-files=no | grep -q . && echo "-dirty" || true)
echo "$(git rev-parse HEAD)$dirty" > .device.new/commit  # provenance for results written on the device
rm -rf .device && mv .device.new .device
tracked=$(git ls-files -z | du --files0-from=- -cb 2>/dev/null | tail -1 | cut -f1)
kit=$(du -sb .device | cut -f1)
total=$(( (tracked + kit) / 1048576 ))
echo "kit: $(( kit / 1048576 )) MiB in .device (+ $(( tracked / 1048576 )) MiB tracked files = ${total} MiB of the 64 MiB a call may send)"
[ "$total" -lt 64 ] || { echo "error: too large for one device call; name fewer data sets" >&2; exit 1; }
