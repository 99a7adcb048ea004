#!/usr/bin/env bash
# Download the wheels of scripts/gpu-wheels.txt for the GPU machine (Python 3.12, x86-64 Linux, no internet)
# into a folder to carry there (default .whl/, git-ignored), and check the set.
#
#   bash scripts/gpu_wheels.sh [DIR]
#
# On the GPU machine (see overfit_first/tools/article_gpu.py for the whole command):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
mkdir -p "$dir"
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/gpu-wheels.txt)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "${wanted[@]}"
count=$(find "$dir" -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$count" -ne "${#wanted[@]}" ]; then
    echo "gpu_wheels: $dir holds $count wheels, scripts/gpu-wheels.txt lists ${#wanted[@]}: remove stale ones" >&2
    exit 1
fi
du -ch "$dir"/*.whl | tail -1 | sed "s|total|in $dir ($count wheels)|"
