#!/usr/bin/env bash
# The Python module's tests (run by scripts/test.sh after the Rust tests): installs the module with pytest and
# torch into a venv ($AFX_PYTHON_VENV, default <target>/python-venv), then runs pytest on python/tests. The tests
# build, with cargo, the Rust programs they compare the module with (the afx CLI, the pool example
# batch_gradients, the test effect): after `cargo test` that takes a moment.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
venv=${AFX_PYTHON_VENV:-$target/python-venv}
# PyPI's torch and its CUDA libraries are ~3 GB of wheels: installed, not also kept in pip's cache.
export PIP_NO_CACHE_DIR=1

started=$SECONDS
bash scripts/install-python.sh "$venv" test
echo "test-python.sh: the venv (PyTorch, pytest, pedalboard) and the module installed in $((SECONDS - started)) s"
# tests/bench_model.rs's comparison with PyTorch needs a python with torch: `cargo test` lists it as ignored, and it
# runs here on this venv's (the test build is cargo test's, already made; CI=true makes a python without torch fail).
started=$SECONDS
AFX_PYTHON="$venv/bin/python" cargo test --workspace --locked --test bench_model -- --ignored
echo "test-python.sh: afx bench model against PyTorch in $((SECONDS - started)) s"
"$venv/bin/pytest" -q python/tests
