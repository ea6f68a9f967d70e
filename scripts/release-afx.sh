# Sourced (not run) by the measurement scripts (demo.sh, eval.sh, eval-automation.sh, automation-task.sh,
# proxy.sh) from the repository root: the Debian plugins and tools, a release build, `$afx` (the release binary
# with the repo's plugins.toml), `quiet`, and `demo_corpus DIR`.
bash scripts/setup-debian.sh
cargo build --release --locked
afx="target/release/afx --config plugins.toml"
# zam plugins print these harmless lines on every load; keep the console readable.
quiet() { grep -v -e 'convolution: samplerate mismatch' -e 'bufferSize != 0' >&2 || true; }
# The demo corpus in folder $1, built unless it is there already.
demo_corpus() { [ -f "$1/manifest.json" ] || $afx dataset build-demo --out "$1"; }
