#!/usr/bin/env bash
# Builds afx's test effect (crate afx-testfx) and packages it as CLAP, VST3 and LV2 under <target>/testfx:
#   <target>/testfx/AfxTest.clap
#   <target>/testfx/AfxTest.vst3/Contents/x86_64-linux/AfxTest.so
#   <target>/testfx/afx-testfx.lv2/{manifest.ttl,testfx.ttl,testfx.so}
# Then e.g.: LV2_PATH=target/testfx lv2info urn:afx:testfx
# Extra arguments go to cargo (e.g. --release). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p afx-testfx "$@"
cargo run -q -p afx-testfx --bin afx-testfx-package "$@"
