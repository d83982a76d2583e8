#!/usr/bin/env bash
# Build .gpu/ (wheels, a 2K slice of the ShareGPT pool, a real tokenizer) for benchmarks/gpu_check.sh on the
# lent GPU machine, and print the device call. Run it in the checkout the device copies (the lead's).
# See benchmarks/gpu_prepare.py for what goes in and why.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n 10 python benchmarks/gpu_prepare.py "$@"
