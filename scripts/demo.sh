#!/usr/bin/env bash
# The main job, end to end. Until the trainer exists it hosts real plugins: scan what is installed, render a
# real drum loop through the EQ -> compressor chain of plugins.toml, through a limiter, and through one zam
# plugin in all three formats, then measure the harness and the worker pool. Results land in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cargo build --release --locked
afx=target/release/afx
out=out/demo
mkdir -p "$out"

echo "== installed plugins"
$afx scan --json > "$out/plugins.json"
$afx scan 2>&1 >/dev/null | tail -n 1

echo "== a real recording (sonic-pi-samples, CC0) as WAV"
sox /usr/share/sonic-pi/samples/loop_amen.flac -e floating-point -b 32 "$out/amen.wav"

echo "== EQ -> compressor (plugins.toml chain eq_comp)"
$afx --config plugins.toml render --plugin eq_comp -i "$out/amen.wav" -o "$out/amen-eq-comp.wav" \
  --set boost1=6 --set f1=120 --set boosth=4 --set thr=-28 --set rat=5 --set mak=6 > "$out/amen-eq-comp.txt"
cat "$out/amen-eq-comp.txt"

echo "== limiter with 64-sample look-ahead, latency compensated (x42 dpl)"
$afx --config plugins.toml render --plugin x42_limiter -i "$out/amen.wav" -o "$out/amen-limited.wav" \
  --set gain=12 --set threshold=-1

echo "== the same effect as LV2, CLAP and VST3 (Debian ships zam-plugins in all three)"
for format in lv2 clap vst3; do
  $afx render --plugin ZaMaximX2 --format "$format" -i "$out/amen.wav" -o "$out/amen-maxim-$format.wav" \
    --set Threshold=-12 --set Release=40 2>/dev/null | tail -n 1
done

echo "== harness overhead"
$afx bench render --all-formats --seconds 10 2>/dev/null | tee "$out/bench-render.txt"

echo "== worker pool: isolation cost and SPSA throughput"
$afx bench spsa --rounds 3 2>/dev/null | tee "$out/bench-spsa.txt"

echo
echo "results: $out/ (plugins.json, amen-eq-comp.wav + its parameters, amen-limited.wav, amen-maxim-*.wav, bench-*.txt)"
