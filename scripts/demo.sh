#!/usr/bin/env bash
# The main job, end to end (about 15 minutes on 2 cores once built):
#   1. build the demo corpus from Debian packages (sonic-pi-samples recordings + espeak-ng speech);
#   2. train an encoder/controller against Debian's zam EQ -> compressor chain (plugins.toml `eq_comp`, real
#      LV2 plugins in worker processes) with SPSA gradients, for a bounded time, validating on held-out files;
#   3. process a held-out recording in the style of another with the trained run, and replay its preset;
#   4. show the same zam plugin as LV2, CLAP and VST3, and the harness overhead per format.
# Everything lands in out/demo/; the training report is out/demo/run/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/release-afx.sh
out=out/demo
rm -rf "$out/run"
mkdir -p "$out"

echo "== 1. demo corpus"
$afx dataset build-demo --out "$out/corpus"

echo "== 2. training against eq_comp (ZamEQ2 -> ZamComp) with SPSA, at most 10 minutes"
$afx train --chain eq_comp --data "$out/corpus" --grad spsa --out "$out/run" --steps 2400 --minutes 10 2> >(quiet)

echo "== 3. a held-out recording (test split) in the style of another held-out one; its preset replayed"
sox "$out/corpus/music/loop_tabla.flac" -e floating-point -b 32 "$out/tabla.wav"
$afx infer --run "$out/run" --input "$out/tabla.wav" --reference "$out/corpus/music/guit_e_fifths.flac" \
  --output "$out/tabla-styled.wav" 2> >(quiet) | tee "$out/tabla-styled.txt"
$afx render --preset "$out/tabla-styled.preset.toml" --input "$out/tabla.wav" --output "$out/tabla-replayed.wav" \
  > /dev/null 2> >(quiet)
cmp -s "$out/tabla-styled.wav" "$out/tabla-replayed.wav" && echo "the preset replays bit-identically"

echo "== 4. one zam plugin as LV2, CLAP and VST3; harness overhead per format"
sox /usr/share/sonic-pi/samples/loop_amen.flac -e floating-point -b 32 "$out/amen.wav"
for format in lv2 clap vst3; do
  $afx render --plugin ZaMaximX2 --format "$format" -i "$out/amen.wav" -o "$out/amen-maxim-$format.wav" \
    --set Threshold=-12 --set Release=40 2> >(quiet) | tail -n 1
done
$afx bench render --all-formats --seconds 2 2> >(quiet) | tee "$out/bench-render.txt"

echo
echo "results in $out/:"
echo "  run/report.md (validation table), run/loss.png, run/metrics.jsonl, run/checkpoints/"
echo "  tabla-styled.wav + tabla-styled.preset.toml (predicted parameters), corpus/ (the demo corpus)"
grep -A6 '^## Final validation' "$out/run/report.md" || true
