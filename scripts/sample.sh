#!/usr/bin/env bash
# Set up .venv (the light runtime, no torch) and write 1000 image/mask pairs of the bundled coins scene.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ""
exec .venv/bin/runtime sample --count 1000 --out samples/coins "$@"
