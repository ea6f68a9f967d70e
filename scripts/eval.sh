#!/usr/bin/env bash
# Reproduces the README's gradient evaluation and method comparison (about 35 minutes on 2 cores once built):
#   1. `afx compare` on eq_comp (ZamEQ2 -> ZamComp): builds a proxy (collects 4096 examples, trains it for
#      PROXY_MINUTES), then trains spsa, fd, np-fh, np-hh and proxy for MINUTES each and scores them on the
#      same held-out examples through the real chain;
#   2. `afx eval-grads` on eq_comp with that proxy: SPSA (K x ε), FD and the proxy gradients against an FD
#      reference;
#   3. `afx eval-grads` on afx's own test effect, whose exact gradient is known.
# Results in out/eval/{compare,grads-eq_comp,grads-testfx}/ (report.md, report.json, *.png).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-2}
PROXY_MINUTES=${PROXY_MINUTES:-10}

source scripts/release-afx.sh
eval_folder

echo "== 1. compare on eq_comp: $MINUTES min per method, proxy built here ($PROXY_MINUTES min)"
rm -rf "$out/compare/runs"
$afx compare --chain eq_comp --data "$out/corpus" --methods spsa,fd,np-fh,np-hh,proxy --minutes "$MINUTES" \
  --proxy-minutes "$PROXY_MINUTES" --out "$out/compare" 2> >(quiet)

echo "== 2. eval-grads on eq_comp (FD reference) with the proxy"
$afx eval-grads --chain eq_comp --data "$out/corpus" --proxy "$out/compare/proxy/proxy" --examples 32 \
  --out "$out/grads-eq_comp" 2> >(quiet)

echo "== 3. eval-grads on the test effect (exact reference)"
LV2_PATH=target/testfx/lv2 $afx eval-grads --chain urn:afx:testfx --data "$out/corpus" --examples 32 \
  --out "$out/grads-testfx" 2> >(quiet)
