"""The body of test_ray.py's cluster, run inside a network namespace of its own (see test_ray.py): a 2-node local
Ray cluster with token authentication, afx.ray.Pool against afx.Pool, a PluginLayer training loop that loses a
node halfway. Prints one line ``RESULT {json}``; the test asserts on it.

    python ray_cluster.py TEMP_DIR AFX_PROGRAM PLUGINS_TOML
"""

import filecmp
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import warnings

os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import afx  # noqa: E402
import afx.ray  # noqa: E402
from afx.torch import PluginLayer  # noqa: E402

COMP = "urn:zamaudio:ZamComp"
STEPS = 24
LOSE_AT = 10


def batch(items, frames, params, seed):
    audio, _ = afx.load("/usr/share/sonic-pi/samples/loop_amen.flac")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, audio.shape[1] - frames, items)
    x = np.stack([audio[i % 2, s : s + frames] for i, s in enumerate(starts)]).astype(np.float32)
    theta = rng.uniform(0.05, 0.95, (items, params)).astype(np.float32)
    return x, theta, rng.standard_normal(x.shape).astype(np.float32)


def vjp_twice(renders, grad_y):
    renders.vjp(grad_y)
    return renders.vjp(-2 * grad_y)


def corpus(folder):
    """Three real recordings, all in the training split."""
    os.makedirs(folder)
    names = ["loop_amen.flac", "loop_tabla.flac", "guit_em9.flac"]
    for name in names:
        shutil.copy(f"/usr/share/sonic-pi/samples/{name}", folder)
    files = ", ".join(f'{{"path": "{n}", "split": "train"}}' for n in names)
    with open(os.path.join(folder, "manifest.json"), "w") as file:
        file.write(f'{{"version": 1, "files": [{files}]}}')
    return folder


def cluster_collect(cluster, second, temp_dir, program, config):
    """afx.ray.collect over both nodes, the second lost mid-run; run again; against one machine's afx collect."""
    data = corpus(os.path.join(temp_dir, "corpus"))
    args = dict(examples=10, shard_size=3, seconds=0.25, workers=1, seed=3)
    flags = [item for name, value in args.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    one = os.path.join(temp_dir, "one-machine")
    subprocess.run([program, "--config", config, "collect", "--chain", "zam_comp", "--data", data, "--out", one, *flags],
                   check=True, capture_output=True)
    out = os.path.join(temp_dir, "cluster")
    # The second node goes while its slice renders.
    threading.Timer(0.8, lambda: cluster.remove_node(second, allow_graceful=False)).start()
    result = {}
    try:
        afx.ray.collect("zam_comp", data, out, program=program, config=config, shards=2, **args)
        result["first_run"] = "complete"
    except afx.AfxError as e:
        result["first_run"] = str(e)
    result["manifest_after_first"] = os.path.exists(os.path.join(out, "manifest.json"))
    result["partial_files"] = [n for n in os.listdir(out) if n.endswith(".tmp") or n.startswith(".afx-")]
    time.sleep(2)
    result["second_run_wrote"] = afx.ray.collect("zam_comp", data, out, program=program, config=config, shards=2,
                                                 **args)
    ones, theirs = sorted(os.listdir(one)), sorted(os.listdir(out))
    result["files"] = theirs
    result["identical"] = ones == theirs and all(
        filecmp.cmp(os.path.join(one, n), os.path.join(out, n), shallow=False) for n in ones)
    return result


def crowded_node(cluster, node):
    """A node whose CPU other work holds: the pool starts without it (warning), no call waits for it, and it joins
    once its CPU is free."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    third = cluster.add_node(**node)
    cluster.wait_for_nodes()

    @ray.remote(num_cpus=1)
    class Holder:
        def ready(self):
            return True

    holder = Holder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(third.node_id, soft=False)).remote()
    ray.get(holder.ready.remote())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = afx.ray.Pool(COMP, workers=1, start_timeout=3)
    out = {"actors": pool.actors, "warnings": [str(w.message) for w in caught]}
    x, theta, _ = batch(4, 4410, pool.num_params, seed=3)
    with afx.Pool(COMP, workers=1) as local:
        expected, _ = local.render(x, theta)

    def same():
        y, errors = pool.render(x, theta)
        return bool(np.array_equal(y, expected)) and errors == [None] * 4

    out["same"] = same()
    ray.kill(holder)
    deadline = time.monotonic() + 60
    while pool.actors < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        out["same"] = out["same"] and same()
    out["actors_later"] = pool.actors
    out["same_later"] = same()
    pool.close()
    return out


def main(temp_dir, program, config):
    # Everything of Ray's in the test's folder: its sockets, logs and the "current cluster" file (kept in
    # $RAY_TMPDIR/ray whatever a node's temp_dir says).
    os.environ["RAY_TMPDIR"] = temp_dir
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    result = {}
    node = dict(num_cpus=1, object_store_memory=100 << 20, include_dashboard=False, node_ip_address="127.0.0.1",
                temp_dir=temp_dir)
    # Fast health checks: a removed node's actors are known dead in about a second.
    checks = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_timeout_ms": 500,
              "health_check_failure_threshold": 3, "local_fs_capacity_threshold": 0.99}
    cluster = Cluster(initialize_head=True, head_node_args=dict(node, _system_config=checks))
    try:
        second = cluster.add_node(**node)
        ray.init(address=cluster.address, log_to_driver=False)
        addresses = {n["NodeManagerAddress"] for n in ray.nodes()} | {cluster.address.rsplit(":", 1)[0]}
        result["addresses"] = sorted(addresses)
        result["all_loopback"] = all(ipaddress.ip_address(a).is_loopback for a in addresses)

        result["collect"] = cluster_collect(cluster, second, temp_dir, program, config)
        # A fresh second node for the pool.
        second = cluster.add_node(**node)
        cluster.wait_for_nodes()

        # The same batch through afx.ray.Pool (2 one-worker nodes) and afx.Pool (2 workers), same seeds.
        remote = afx.ray.Pool(COMP, workers=1)
        result["actors"] = remote.actors
        x, theta, grad_y = batch(6, 4410, remote.num_params, seed=1)
        # 3 items of 16 s a node: 8.5 MB, past the inline budget (the short batch travels as pieces).
        long = np.resize(x, (6, 16 * 44_100))
        assert 3 * long[0].nbytes > afx.ray.INLINE_BYTES
        moving = np.random.default_rng(2).uniform(0.05, 0.95, (6, 10, remote.num_params)).astype(np.float32)
        with afx.Pool(COMP, workers=2) as local:
            same = {}
            for name, call in {
                "render": lambda p: p.render(x, theta),
                "spsa": lambda p: p.spsa(x, theta, grad_y, k=2, epsilon=0.01, seed=5),
                "finite_difference": lambda p: p.finite_difference(x, theta, grad_y, step=0.01),
                "render_perturbed": lambda p: p.render_perturbed(x, theta, k=2, epsilon=0.01, seed=5)[:2],
                "vjp": lambda p: p.render_perturbed(x, theta, k=2, epsilon=0.01, seed=5)[2].vjp(grad_y),
                # As often as it is called (the second call, with another gradient).
                "vjp_again": lambda p: vjp_twice(p.render_perturbed(x, theta, k=2, epsilon=0.01, seed=5)[2], grad_y),
                # Parameters that move: θ and the gradients (batch, F, P).
                "spsa_moving": lambda p: p.spsa(x, moving, grad_y, k=2, seed=5, hop=441, scoring="window:1"),
                "vjp_moving": lambda p: p.render_perturbed(x, moving, k=2, seed=5, hop=441)[2].vjp(grad_y),
                # Past afx.ray.INLINE_BYTES a node's arrays travel whole, through the object stores.
                "render_whole": lambda p: p.render(long, theta),
                "vjp_whole": lambda p: p.render_perturbed(long, theta, k=1, seed=2)[2].vjp(np.resize(grad_y, long.shape)),
            }.items():
                (a, a_errors), (b, b_errors) = call(remote), call(local)
                same[name] = bool(np.array_equal(a, b)) and a_errors == [None] * 6 and b_errors == [None] * 6
            result["same_as_local"] = same
            result["params_same"] = remote.params == local.params

        # Training through it with PluginLayer; the second node goes away at step LOSE_AT.
        target_theta = torch.full((4, remote.num_params), 0.3)
        x, _, _ = batch(4, 4410, remote.num_params, seed=2)
        layer = PluginLayer(remote, k=1, epsilon=0.02, seed=0)
        with torch.no_grad():
            target = layer(torch.from_numpy(x), target_theta)
        logits = torch.zeros((4, remote.num_params), requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=0.05)
        steps, failed = [], {}
        for step in range(STEPS):
            if step == LOSE_AT:
                cluster.remove_node(second, allow_graceful=False)
                time.sleep(2)
            optimizer.zero_grad()
            y = layer(torch.from_numpy(x), torch.sigmoid(logits))
            loss = torch.mean((y - target) ** 2)
            loss.backward()
            optimizer.step()
            kinds = [e.kind for e in layer.forward_errors if e is not None]
            if kinds:
                failed[step] = kinds
            steps.append(float(loss))
        result["steps"] = len(steps)
        result["failed"] = failed
        result["actors_after"] = remote.actors
        # Each step's renders are dropped once PluginLayer is done with them (told with a later step's call).
        result["renders_held_after"] = [ray.get(a.describe.remote())["held"] for a, _, _ in remote._actors]
        result["loss_first_last"] = [steps[0], steps[-1]]

        # A pool that gets no actor is a clear error.
        try:
            afx.ray.Pool(COMP, nodes=0)
            result["no_actor_error"] = None
        except afx.AfxError as e:
            result["no_actor_error"] = str(e)
        remote.close()
        # A chain no node can load: the actors' own error, naming it.
        try:
            afx.ray.Pool("no_such_chain", workers=1)
            result["bad_chain_error"] = None
        except Exception as e:  # noqa: BLE001 - the test reads what the user would see
            result["bad_chain_error"] = f"{type(e).__name__}: {e}"
        result["crowded"] = crowded_node(cluster, node)
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
