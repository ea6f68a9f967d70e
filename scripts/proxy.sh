#!/usr/bin/env bash
# The neural-proxy measurement of the proxy issue (about 35 minutes on 2 cores once built):
#   1. collect 4096 examples of 1.5 s through the real eq_comp chain (ZamEQ2 -> ZamComp) from the demo corpus;
#   2. train the default proxy for 2400 steps (about 20 minutes) and report it against the identity baseline;
#   3. train a controller for 300 steps with each gradient method (spsa, np-fh, np-hh, proxy), same seed,
#      validated on the real chain, and print the final validation of each.
# Results land in out/proxy/ (the proxy's report.md; each run's report.md and metrics.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/release-afx.sh
out=out/proxy
mkdir -p "$out"

demo_corpus "$out/corpus"
echo "== 1. collect"
$afx collect --chain eq_comp --data "$out/corpus" --out "$out/data" --examples 4096 --seed 7 2> >(quiet)
echo "== 2. train the proxy"
rm -rf "$out/proxy"
$afx train-proxy --data "$out/data" --out "$out/proxy" --steps 2400 --val-every 100
echo "== 3. controllers through each gradient method"
for grad in spsa np-fh np-hh proxy; do
  rm -rf "$out/run-$grad"
  proxy=(); [ "$grad" = spsa ] || proxy=(--proxy "$out/proxy")
  echo "-- $grad"
  $afx train --chain eq_comp --data "$out/corpus" --grad "$grad" "${proxy[@]}" --out "$out/run-$grad" \
    --steps 300 --val-every 100 2> >(quiet) | grep -E "validation MRSTFT|steps,"
done
