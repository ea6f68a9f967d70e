#!/usr/bin/env bash
# The README's automation task (about 9 minutes on 2 cores once built): ZamGate (`zam_gate` in
# plugins.toml: threshold, makeup and closed level trained) on the demo corpus (espeak-ng speech and sonic-pi
# recordings), pairs rendered along hidden random trajectories (a row every 1024 frames at 22.05 kHz), trained
#   1. with automation: the controller predicts a row per hop (`--automation-hop 1024`);
#   2. with fixed parameters on the same pairs (`--automation-hop 1024 --fixed-parameters`): one row per clip;
# for the same STEPS each (the same renders; the learning rate decays over them), seed and held-out pairs.
# Results in out/automation-task/{moving,fixed}/ (report.md, metrics.jsonl, loss.png); the last validation of
# each is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2500}

source scripts/release-afx.sh
out=out/automation-task
mkdir -p "$out"
demo_corpus out/eval/corpus
for kind in moving fixed; do
  flags=(--automation-hop 1024)
  [ "$kind" = fixed ] && flags+=(--fixed-parameters)
  rm -rf "${out:?}/$kind"
  echo "== $kind: $STEPS steps"
  $afx train --chain zam_gate --data out/eval/corpus --out "$out/$kind" "${flags[@]}" --steps "$STEPS" \
    --val-every 100 --seed 1 2> >(quiet) | tail -2
done
