#!/usr/bin/env bash
# Installs the `afx` Python module from this repository into a venv (default .venv), with PyTorch for
# `afx.torch`: `bash scripts/install-python.sh [VENV] [EXTRAS]`. Builds the extension module with maturin (cargo
# builds it in release; a first build takes a few minutes). EXTRAS: the package's optional dependencies, default
# "torch"; "test" adds pytest, "bench" pedalboard (the peer benchmark's rival).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
extras=${2:-torch}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# PyTorch's CPU wheel (~200 MB) where its index is reachable; otherwise PyPI's, a CUDA build that pulls ~3 GB
# of NVIDIA libraries (it runs on the CPU all the same).
if [[ ",$extras," == *,torch,* || ",$extras," == *,test,* ]] && ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  "$venv/bin/pip" install -q --retries 0 --timeout 15 --index-url https://download.pytorch.org/whl/cpu torch 2>/dev/null \
    || "$venv/bin/pip" install -q torch
fi
"$venv/bin/pip" install -q "./python[$extras]"
echo "afx installed in $venv: $venv/bin/python -c 'import afx; print(afx.scan()[0][\"name\"])'"
