#!/usr/bin/env bash
# The test command: installs what the tests need, then checks formatting, lints and runs every test
# (unit tests, end-to-end tests through the afx CLI with real plugins and real recordings, and the Python
# module's tests). Each phase prints its time, and the run ends with a table of them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Disk is what a fresh machine runs out of first (the Rust build, then PyTorch's ~5 GB venv): say how much there
# is, so that a run that fails for space says so up front.
echo "test.sh: free disk where the build goes: $(df -h --output=avail "${CARGO_TARGET_DIR:-.}" 2>/dev/null | tail -1 | tr -d ' ')"
# Incremental compilation state is of no use to a one-off run and takes GBs; a developer may set it to 1.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

phases=()
phase() {
  local name=$1 started=$SECONDS
  shift
  echo "test.sh: == $name"
  "$@"
  phases+=("$(printf '%-28s %5d s' "$name" $((SECONDS - started)))")
  echo "test.sh: $name took $((SECONDS - started)) s"
}

phase "Debian packages" bash scripts/setup-debian.sh
phase "cargo fmt --check" cargo fmt --all -- --check
phase "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
phase "cargo test" cargo test --workspace --locked
phase "Python module (pytest)" bash scripts/test-python.sh
echo "test.sh: phases"
printf '  %s\n' "${phases[@]}"
echo "test.sh: all passed in $SECONDS s"
