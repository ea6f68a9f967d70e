#!/usr/bin/env bash
# The test command: installs what the tests need, then checks formatting, lints and runs every test
# (unit tests, end-to-end tests through the afx CLI with real plugins and real recordings, and the Python
# module's tests).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
bash scripts/test-python.sh
