"""Cluster benchmark: the SPSA plugin work of a training step through afx.ray.Pool on a 2-node local Ray cluster (one
worker each) against afx.Pool with 2 workers on the same cores, side by side in one run.

The work is the peer benchmark's (``peer.py``): per step, ``render_perturbed(x, θ, k=1)`` then ``vjp(g)`` on a batch
of B = 8 items of 2 s mono real recordings through ZamComp (VST3): ``B (1 + 2K)`` renders per step. The engines take
turns every few steps, their order rotated each round. Printed: each engine's median renders/s, the ratio
``afx.ray.Pool / afx.Pool`` (target >= 0.8) and the time Ray adds per step.

The cluster runs in a network namespace of its own (``unshare --net`` as root, loopback only; Ray's token
authentication on): the script starts itself there. Needs Ray (``pip install 'afx[ray]'``)::

    python python/bench/cluster.py [--steps 10] [--rounds 3] [--batch 8] [--seconds 2] [--plugin PATH --format vst3]
                                   [--json results.json]
"""

import argparse
import glob
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

INSIDE = "AFX_CLUSTER_BENCH_INSIDE"
PLUGIN = "/usr/lib/vst3/ZamComp.vst3"
RECORDINGS = "/usr/share/sonic-pi/samples/loop_*.flac"
RATE = 44100


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per engine per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--plugin", default=PLUGIN, help="another effect, for heavier work per byte of audio")
    parser.add_argument("--format", default="vst3")
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


def in_namespace():
    """Runs this script again inside a network and PID namespace with loopback up; returns its exit code."""
    temp = tempfile.mkdtemp(prefix="afx-rb-", dir="/tmp")
    try:
        env = dict(os.environ, **{INSIDE: temp})
        command = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
                   'ip link set lo up && exec "$0" "$@"', sys.executable, *sys.argv]
        return subprocess.run(command, env=env).returncode
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def batch(items, frames, params, seed):
    import numpy as np

    import afx

    rng = np.random.default_rng(seed)
    clips = [afx.load(path)[0] for path in sorted(glob.glob(RECORDINGS))[:4]]
    x = []
    for i in range(items):
        clip = clips[i % len(clips)]
        start = int(rng.integers(0, max(1, clip.shape[1] - frames)))
        x.append(np.resize(clip[0, start:start + frames], frames))
    x = np.stack(x).astype(np.float32)
    return x, rng.uniform(0.05, 0.95, (items, params)).astype(np.float32), rng.standard_normal(x.shape).astype(np.float32)


def main(args):
    # Render workers at normal priority: this machine is shared by the driver, both nodes and afx.Pool.
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
                      RAY_worker_niceness="0")
    # Everything of Ray's in this run's folder (its "current cluster" file goes to $RAY_TMPDIR/ray).
    os.environ["RAY_TMPDIR"] = os.environ[INSIDE]
    os.makedirs(os.path.join(os.environ[INSIDE], "ray"), exist_ok=True)
    import numpy as np
    import ray
    from ray.cluster_utils import Cluster

    import afx
    import afx.ray

    node = dict(num_cpus=1, object_store_memory=100 << 20, include_dashboard=False, node_ip_address="127.0.0.1",
                temp_dir=os.environ[INSIDE])
    cluster = Cluster(initialize_head=True,
                      head_node_args=dict(node, _system_config={"local_fs_capacity_threshold": 0.99}))
    try:
        cluster.add_node(**node)
        ray.init(address=cluster.address, log_to_driver=False)
        remote = afx.ray.Pool(args.plugin, workers=1, format=args.format)
        local = afx.Pool(args.plugin, workers=2, format=args.format)
        x, theta, grad_y = batch(args.batch, int(args.seconds * RATE), local.num_params, seed=0)
        renders_per_step = args.batch * 3

        def step(pool, seed):
            y, errors, renders = pool.render_perturbed(x, theta, k=1, epsilon=0.01, seed=seed)
            g, vjp_errors = renders.vjp(grad_y)
            assert all(e is None for e in errors + vjp_errors), errors + vjp_errors
            return y, g

        engines = {"afx.Pool (2 workers)": local, "afx.ray.Pool (2 nodes x 1 worker)": remote}
        # Warm-up, and the check that both give the same numbers for the same seed.
        (y_local, g_local), (y_remote, g_remote) = step(local, 0), step(remote, 0)
        same = bool(np.array_equal(y_local, y_remote) and np.array_equal(g_local, g_remote))
        seconds = {name: [] for name in engines}
        names = list(engines)
        for round_ in range(args.rounds):
            order = names[round_ % 2:] + names[:round_ % 2]
            for _ in range(max(1, args.steps // 2)):
                for name in order:
                    started = time.perf_counter()
                    for s in range(2):
                        step(engines[name], 1 + s)
                    seconds[name].append((time.perf_counter() - started) / 2)
        step_s = {name: statistics.median(v) for name, v in seconds.items()}
        rates = {name: renders_per_step / s for name, s in step_s.items()}
        local_name, remote_name = names
        result = {
            "renders_per_step": renders_per_step,
            "step_s": step_s,
            "renders_per_s": rates,
            "ray_over_local": rates[remote_name] / rates[local_name],
            "ray_overhead_per_step_s": step_s[remote_name] - step_s[local_name],
            "same_numbers": same,
            "batch": args.batch,
            "seconds": args.seconds,
            "plugin": args.plugin,
            "ray": ray.__version__,
        }
        for name in names:
            print(f"{name:36} {rates[name]:7.1f} renders/s  ({step_s[name] * 1e3:.1f} ms per step)")
        print(f"afx.ray.Pool / afx.Pool: {result['ray_over_local']:.3f}x (target >= 0.8); Ray adds "
              f"{result['ray_overhead_per_step_s'] * 1e3:.1f} ms per step; same numbers for the same seed: {same}")
        if args.json:
            with open(args.json, "w") as file:
                json.dump(result, file, indent=2)
        remote.close()
        local.close()
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    arguments_ = arguments()
    if os.environ.get(INSIDE):
        main(arguments_)
    else:
        sys.exit(in_namespace())
