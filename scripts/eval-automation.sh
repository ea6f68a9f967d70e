#!/usr/bin/env bash
# Reproduces the README's gradients of trajectories (a few minutes on 2 cores once built): `afx eval-grads --hop`
# with SPSA scored whole (DeepAFx), causal and over windows, at equal renders:
#   1. on afx's own test effect against its exact gradient (22 rows of 3 parameters: 66 values per example);
#   2. on zam_comp (ZamComp, 7 parameters) against central finite differences (22 rows: 154 values).
# Results in out/eval/automation-{testfx,zam_comp}/ (report.md, report.json, *.png).
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${EXAMPLES:-32}
HOP=${HOP:-1024}
scoring=whole,causal,window:1,window:3

source scripts/release-afx.sh
eval_folder

echo "== 1. the test effect (exact reference), hop $HOP"
LV2_PATH=target/testfx/lv2 $afx eval-grads --chain urn:afx:testfx --data "$out/corpus" --examples "$EXAMPLES" \
  --hop "$HOP" --scoring "$scoring" --estimators spsa,exact --k 1,4,16,64 --epsilon 0.01 \
  --out "$out/automation-testfx" 2> >(quiet)

echo "== 2. zam_comp (FD reference), hop $HOP"
$afx eval-grads --chain zam_comp --data "$out/corpus" --examples "$EXAMPLES" --hop "$HOP" --scoring "$scoring" \
  --estimators spsa,fd --k 1,4,16,64 --epsilon 0.01 --fd-step 0.01 --out "$out/automation-zam_comp" 2> >(quiet)
