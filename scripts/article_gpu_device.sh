#!/usr/bin/env bash
# The article's eight runs on the GPU machine (Python 3.12 + jax with CUDA, no TensorFlow, no DVC, no internet),
# from the repository root there, with the wheels of scripts/gpu-wheels.txt carried in .whl/:
#
#   bash scripts/article_gpu_device.sh ARCHIVES [MINUTES]
#
# ARCHIVES: the folder holding cifar10-jpeg.tar.gz and cifar100-jpeg.tar.gz (or the official python archives).
# MINUTES (default 7): the wall-clock budget of the whole run; it writes into $OUT/article (or ./article-out).
set -euo pipefail
archives=${1:?usage: bash scripts/article_gpu_device.sh ARCHIVES [MINUTES]}
minutes=${2:-7}
out=${OUT:-$PWD/article-out}/article
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
python3 -m overfit_first article_gpu --archives "$archives" --out "$out" --work /tmp/article-work \
    --minutes "$minutes" --grace-seconds 30 > "$out.stdout.log" 2>&1 || status=$?
tail -n 40 "$out.stdout.log"
cat "$out/summary.md" 2>/dev/null || true
exit "$status"
