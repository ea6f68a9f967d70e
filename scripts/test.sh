#!/usr/bin/env bash
# The test command: installs what the tests need, then checks formatting, lints and runs every test
# (unit tests, end-to-end tests through the afx CLI with real plugins and real recordings, and the Python
# module's tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# Disk is what a fresh machine runs out of first (the Rust build, then PyTorch's ~5 GB venv): say how much there
# is, so that a run that fails for space says so up front.
echo "test.sh: free disk where the build goes: $(df -h --output=avail "${CARGO_TARGET_DIR:-.}" 2>/dev/null | tail -1 | tr -d ' ')"
# Incremental compilation state is of no use to a one-off run and takes GBs; a developer may set it to 1.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
bash scripts/setup-debian.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
bash scripts/test-python.sh
