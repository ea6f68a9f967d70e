# Sourced (not run) by the measurement scripts (demo.sh, eval.sh, eval-automation.sh, automation-task.sh,
# proxy.sh) from the repository root: the Debian plugins and tools, a release build, `$afx` (the release binary
# with the repo's plugins.toml), `quiet`, `demo_corpus DIR` and `eval_folder`.
bash scripts/setup-debian.sh
cargo build --release --locked
afx="target/release/afx --config plugins.toml"
# zam plugins print these harmless lines on every load; keep the console readable.
quiet() { grep -v -e 'convolution: samplerate mismatch' -e 'bufferSize != 0' >&2 || true; }
# The demo corpus in folder $1, built unless it is there already.
demo_corpus() { [ -f "$1/manifest.json" ] || $afx dataset build-demo --out "$1"; }
# What the evaluation scripts share: the test effect's release bundles, and `$out` = out/eval with the demo
# corpus in it.
eval_folder() {
  bash scripts/package-testfx.sh --release >/dev/null
  out=out/eval
  mkdir -p "$out"
  demo_corpus "$out/corpus"
}
