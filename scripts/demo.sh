#!/usr/bin/env bash
# Set up .venv (training extras) and train a small demo scene on the bundled coins image in a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train
exec .venv/bin/trainer fit data/coins/image.png --mask data/coins/mask.png --classes data/coins/classes.txt \
    --out runs/coins-quick --overwrite --max-size 64 --width 0.25 --precision bf16 \
    --iters 400 --save-every 100 --preview-every 100 "$@"
