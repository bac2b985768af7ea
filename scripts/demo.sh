#!/usr/bin/env bash
# Set up (see setup.sh), generate the synthetic RGBNT201 set if missing, then evaluate, train and
# re-evaluate the tiny DeMo and DeMo_SDTPS models on the CPU (about 8 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
.venv/bin/python tools/demo.py "$@"
