"""afx.ray.Pool on a 2-node local Ray cluster (one CPU each) against afx.Pool: bit for bit the same renders and
gradients for the same seeds; a PluginLayer training loop that loses a node halfway reports that step's items
on it as errors and finishes on the other; a pool with no actor is a clear error.

The cluster runs in a network namespace this test makes (``unshare --net`` with loopback up, and a PID namespace
so nothing of it outlives the test): there Ray binds to 127.0.0.1 and cannot reach, or probe, anything else. Ray's
token authentication is on; the test asserts that every address the cluster reports is loopback. Needs root (for
the namespaces) and Ray (the ``test`` extra installs it); without them the test is skipped saying why, except
under CI=true, where it fails.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("ray_cluster.py")
REPO = Path(__file__).resolve().parents[2]


def missing():
    """Why this machine cannot run the test cluster, or None."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'afx[test]' installs it)"
    if os.geteuid() != 0:
        return "the test cluster's network namespace needs root"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) and ip (iproute2) are needed for the test cluster's namespace"
    return None


def test_arrays_travel_as_pieces_within_the_inline_budget_and_whole_past_it():
    import numpy as np

    import afx.ray as afx_ray

    rng = np.random.default_rng(0)
    errors = [None] * 3
    small = rng.standard_normal((3, 50_000)).astype(np.float32), rng.random((3, 4)).astype(np.float32)
    # 3 items of 1 000 000 frames: 12 MB, past the 8 MiB a call may carry inline.
    big = rng.standard_normal((3, 1_000_000)).astype(np.float32), small[1]
    for arrays, whole in ((small, False), (big, True)):
        layout, *pieces = afx_ray._pack(*arrays)
        assert all(p.nbytes <= afx_ray.PIECE_BYTES for p in pieces) != whole
        if whole:
            # Whole arrays go as they are: no copy on the sending side.
            assert len(pieces) == 2 and np.shares_memory(pieces[0], arrays[0])
        else:
            assert len(pieces) == -(-arrays[0].nbytes // afx_ray.PIECE_BYTES) + 1
        for sent, got in zip(arrays, afx_ray._unpack(layout, pieces)):
            assert got.dtype == np.float32 and np.array_equal(sent, got)
        reply = afx_ray._reply(arrays[0], errors)
        assert len(reply) == afx_ray._returns(arrays[0].shape) and reply[0] == errors
        assert np.array_equal(np.concatenate(reply[1:]).reshape(arrays[0].shape), arrays[0])


def test_ray_pool_equals_the_local_pool_and_a_training_loop_survives_a_lost_node(afx_cli):
    why = missing()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI: {why}")
        pytest.skip(why)
    # Ray's sockets live under the temp folder: a short path (AF_UNIX paths stop at 107 bytes).
    temp = tempfile.mkdtemp(prefix="afx-ray-", dir="/tmp")
    try:
        command = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
                   'ip link set lo up && exec "$0" "$@"', sys.executable, str(CHILD), temp, str(afx_cli),
                   str(REPO / "plugins.toml")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, start_new_session=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT "):])
    print(result)
    assert result["all_loopback"], result["addresses"]
    # Cluster collect: the first run lost a node's slice and said so, wrote no manifest and no partial file; the
    # second completed it; the dataset equals one machine's afx collect byte for byte.
    collect = result["collect"]
    assert "1 of 2 slices failed" in collect["first_run"], collect
    assert not collect["manifest_after_first"] and collect["partial_files"] == [], collect
    assert collect["second_run_wrote"] >= 1, collect
    assert collect["identical"] and "manifest.json" in collect["files"], collect
    assert result["actors"] == 2
    assert result["params_same"]
    assert all(result["same_as_local"].values()), result["same_as_local"]
    # The loop ran every step; only the steps right after the node went (those that still sent it items) lost
    # anything, and only that node's items, as node_lost errors; then the pool went on with the other node.
    assert result["steps"] == 24
    failed = {int(step): kinds for step, kinds in result["failed"].items()}
    assert failed, "losing a node cost no item: the test did not lose it"
    assert all(step >= 10 for step in failed), failed
    assert all(kind == "node_lost" for kinds in failed.values() for kind in kinds), failed
    assert all(len(kinds) <= 2 for kinds in failed.values()), failed
    assert max(failed) <= 11, f"items were still lost after the step that found the node gone: {failed}"
    assert result["actors_after"] == 1
    # Renders are dropped once PluginLayer lets them go: a few steps' worth stay held (the last step's, the one
    # whose graph lived until the last step's output replaced it, and one whose drop waits for a next call), not
    # one per step.
    assert all(held <= 3 for held in result["renders_held_after"]), result["renders_held_after"]
    assert "no live node" in result["no_actor_error"]
    # afx's own message, naming the chain and the node, not Ray's actor-death traceback.
    bad_chain = result["bad_chain_error"] or ""
    assert bad_chain.startswith("AfxError: afx.ray.Pool: on node ") and "no_such_chain" in bad_chain, bad_chain
    # A node whose CPU other work holds: the pool starts with the other node and says so; no call waits; the node
    # joins once its CPU is free; the renders are one machine's throughout.
    crowded = result["crowded"]
    assert crowded["actors"] == 1 and any("not started" in w for w in crowded["warnings"]), crowded
    assert crowded["same"] and crowded["actors_later"] == 2 and crowded["same_later"], crowded
