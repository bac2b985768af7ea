#!/usr/bin/env bash
# Create .venv (when missing) and install the project's requirements into it.
# Where a torch in the supported range is already installed (a GPU machine), the venv sees it and
# keeps it; elsewhere constraints.txt pins the torch build served from this machine's disk.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
# Where $PY is itself a virtual environment (the GPU image's python3 is), --system-site-packages
# reaches the base interpreter only: a .pth file makes $PY's own packages (torch) visible too.
if "$PY" -c "import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)"; then
  own=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  "$PY" -c "import site; print('\n'.join(site.getsitepackages()))" > "$own/_parent_site.pth"
fi
if .venv/bin/python -c "import torch, sys; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(0 if (2, 11) <= v < (2, 15) else 1)" 2>/dev/null; then
  constraints=()
else
  constraints=(-c constraints.txt)
  # The torch and torchvision builds served from disk here are CUDA builds: about 5.6 GB in .venv.
  need_mb=6144
  free_mb=$(df -Pm .venv | awk 'NR == 2 {print $4}')
  if [ "$free_mb" -lt "$need_mb" ]; then
    echo "setup.sh: installing torch into $PWD/.venv needs about $need_mb MB free on its disk;" \
      "$free_mb MB are free (df -h $PWD)" >&2
    exit 1
  fi
fi
req=${1:-requirements.txt}
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$req" "${constraints[@]}"
