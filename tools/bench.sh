#!/usr/bin/env bash
# `make bench` (through tools/in_env.sh): every speed figure for this machine, in one run, into
# bench/results/<machine>.json and .md; prints the Markdown table last. On a machine with a CUDA
# GPU the same command measures the GPU half too; tools/bench_device.sh runs it on the lent device.
# Extra arguments go to `python -m perception_bench.run` (e.g. --sections backends,node --repeats 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec nice -n 10 python -m perception_bench.run "$@"
