#!/usr/bin/env bash
# The main job, end to end. Until the trainer exists it hosts real plugins: scan what is installed, render a
# real drum loop through the EQ -> compressor chain of plugins.toml and through a limiter, and measure the
# harness against a direct livi loop. Results land in out/demo/.
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

echo "== harness overhead"
$afx bench render --seconds 10 | tee "$out/bench-render.txt"

echo
echo "results: $out/ (plugins.json, amen-eq-comp.wav + its parameters, amen-limited.wav, bench-render.txt)"
