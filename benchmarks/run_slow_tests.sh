#!/usr/bin/env bash
# The full-size cases the default suite leaves out (every model x (1,8),(2,16) x 112,224),
# timed; append the result to benchmarks/results.md by hand with the machine line it prints.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), torch $(python -c 'import torch; print(torch.__version__)')"
start=$(date +%s)
python -m pytest -q -m slow tests/
echo "slow suite: $(( $(date +%s) - start )) s"
