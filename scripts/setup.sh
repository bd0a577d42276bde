#!/usr/bin/env bash
# Create .venv in the repository root and install the project with the given extras (default: dev).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1-dev}"  # "" = the light runtime only
python="${PYTHON:-python3.11}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
