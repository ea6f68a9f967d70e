# Sourced (not run) by the measurement scripts demo.sh, eval.sh and proxy.sh, from the repository root: the
# Debian plugins and tools, a release build, `$afx` (the release binary with the repo's plugins.toml), and `quiet`.
bash scripts/setup-debian.sh
cargo build --release --locked
afx="target/release/afx --config plugins.toml"
# zam plugins print these harmless lines on every load; keep the console readable.
quiet() { grep -v -e 'convolution: samplerate mismatch' -e 'bufferSize != 0' >&2 || true; }
