#!/usr/bin/env bash
# Behaviour, bit for bit: runs a short `afx train` (20 steps, fixed seed) and `afx infer` with it, an `afx collect`
# (64 examples) and an `afx eval-grads` (4 examples) on the demo corpus through Debian's zam plugins, and reduces
# what they wrote to text that must not change when the code is only restructured: every loss, parameter error
# and validation figure (timing fields dropped), the SHA-256 of the checkpoints' weights, of the collected
# dataset's files and of the processed audio and its preset, and every gradient figure.
#
#   bash scripts/behaviour.sh              # build afx (release), run, and compare with the recording
#   bash scripts/behaviour.sh record       # run and overwrite the recording (only when behaviour is meant to change)
#
# The recording in scripts/behaviour/recorded/ was made at 2442c95 (before the restructuring of issue 25) with
# Debian 12's zam-plugins 4.1 and espeak-ng 1.51. AFX=path/to/afx uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-check}
recorded=scripts/behaviour/recorded

if [ -z "${AFX:-}" ]; then
  cargo build --release --locked --bin afx
  AFX=${CARGO_TARGET_DIR:-target}/release/afx
fi
afx="$AFX --config plugins.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/now
mkdir -p "$out"
# zam plugins print these harmless lines on every load.
quiet() { grep -v -e 'convolution: samplerate mismatch' -e 'bufferSize != 0' >&2 || true; }

# JSON (one document per line, or one whole document) without its timing fields, keys sorted, floats as written.
strip_timing() {
  python3 -c '
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k != "timing" and not k.endswith("_s") and not k.startswith("seconds")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
text = sys.stdin.read()
try:
    docs = [json.loads(text)]
except json.JSONDecodeError:
    docs = [json.loads(line) for line in text.splitlines() if line.strip()]
for d in docs:
    print(json.dumps(strip(d), sort_keys=True, indent=None))
'
}

echo "behaviour: demo corpus"
$afx dataset build-demo --out "$work/corpus" >/dev/null

echo "behaviour: afx train (eq_comp, 20 steps, seed 7) and afx infer"
$afx train --chain eq_comp --data "$work/corpus" --out "$work/run" --steps 20 --seed 7 --batch 4 --clip-seconds 0.5 \
  --val-every 10 --workers 2 >/dev/null 2> >(quiet)
strip_timing <"$work/run/metrics.jsonl" >"$out/train-metrics.jsonl"
sox "$work/corpus/music/loop_tabla.flac" -e floating-point -b 32 "$work/tabla.wav"
$afx infer --run "$work/run" --input "$work/tabla.wav" --reference "$work/corpus/music/guit_e_fifths.flac" \
  --output "$work/styled.wav" >"$out/infer.txt" 2> >(quiet)
(cd "$work" && sha256sum run/checkpoints/*.safetensors styled.wav styled.preset.toml) >"$out/train.sha256"

echo "behaviour: afx collect (eq_comp, 64 examples, seed 3)"
$afx collect --chain eq_comp --data "$work/corpus" --out "$work/dataset" --examples 64 --seed 3 --workers 2 \
  >/dev/null 2> >(quiet)
(cd "$work" && sha256sum dataset/*) >"$out/collect.sha256"

echo "behaviour: afx eval-grads (eq_comp, 4 examples, seed 5)"
$afx eval-grads --chain eq_comp --data "$work/corpus" --examples 4 --k 1,4 --epsilon 0.01 --fd-step 0.01 --seed 5 \
  --workers 2 --out "$work/grads" --json 2> >(quiet) | strip_timing >"$out/eval-grads.json"

if [ "$mode" = record ]; then
  rm -rf "$recorded"
  mkdir -p "$recorded"
  cp "$out"/* "$recorded/"
  echo "behaviour: recorded in $recorded"
  exit 0
fi
if diff -ru "$recorded" "$out"; then
  echo "behaviour: unchanged (train, infer, collect, eval-grads match $recorded bit for bit)"
else
  echo "behaviour: CHANGED (above: the recording, then now)" >&2
  exit 1
fi
