"""The peer benchmark runs end to end on a small configuration: the engines do the same work and the
ratios come out. (Its speed targets are read from a full run, never asserted in a test.)"""

import json
import subprocess
import sys

from conftest import REPO


def test_peer_benchmark_runs_and_its_engines_agree(tmp_path):
    out = tmp_path / "peer.json"
    args = ["--steps", "2", "--rounds", "1", "--batch", "2", "--seconds", "0.25", "--json", str(out)]
    run = subprocess.run([sys.executable, str(REPO / "python/bench/peer.py"), *args], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "afx.Pool / pedalboard+multiprocessing = " in run.stdout
    assert "afx.Pool / two direct threads" in run.stdout
    results = json.loads(out.read_text())
    rates = results["renders_per_second"]["median"]
    assert set(rates) == {"afx.Pool", "afx.Pool, render then spsa", "pedalboard+multiprocessing", "two direct threads",
                          "one direct thread"}
    assert all(rate > 0 for rate in rates.values())
    # The pedalboard engines rendered the same items at the same θ and seeds: identical outputs and estimates.
    for agreement in results["pedalboard_agreement"].values():
        assert agreement == {"max_abs_difference_y": 0.0, "max_abs_difference_gradient": 0.0}
    # Both ways of driving afx.Pool give the same renders and estimates, bit for bit.
    assert results["afx_agreement"] == {"max_abs_difference_y": 0.0, "max_abs_difference_gradient": 0.0}
    # afx and pedalboard host the same plugin with the same parameter values: at the same block size, the same
    # output.
    assert results["sanity"]["max_abs_difference_same_block"] == 0.0, results["sanity"]
