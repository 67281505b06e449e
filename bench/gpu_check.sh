#!/usr/bin/env bash
# The GPU check (python bench/gpu_check.py in the project's venv): on a machine with CUDA, in
# under five minutes, the tests that skip without CUDA, one fold of every model on the GPU
# against the same fold on the CPU, training speed and peak GPU memory per model at the
# organizers' shape, and feature extraction on the GPU; JSON lines on stdout, exit 1 on a failure.
# Without CUDA it prints one JSON line saying no GPU was found and what it would check; exit 0.
#
#   bash bench/gpu_check.sh                 # the first thing to run on a new GPU machine
#   bash bench/gpu_check.sh --device cuda:1 --keep work/gpu-check
#   bash bench/gpu_check.sh --help          # the steps, the settings, the options
set -euo pipefail
cd "$(dirname "$0")/.."
source solution/venv.sh >&2  # its install messages are not results
exec "$PY" bench/gpu_check.py "$@"
