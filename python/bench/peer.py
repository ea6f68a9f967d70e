"""Peer benchmark: the SPSA plugin work of one training step through afx.Pool, pedalboard + multiprocessing, and
two threads calling pedalboard directly.

What it measures: renders per second of DeepAFx's plugin work for a batch, done by several engines on the same
inputs. A step is, per item, one forward render ``y = f(x, θ)`` and K pairs of perturbed renders
``f(x, clip(θ ± εΔ, 0, 1))`` (Δ Rademacher) giving the SPSA estimate ``ĝ = 1/K Σ ⟨g, y₊ − y₋⟩ / (2ε) · Δ``:
``1 + 2K`` renders per item, ``B (1 + 2K)`` per step (24 at B = 8, K = 1). The work is ZamComp (VST3, Debian's
zam-plugins) on 2 s mono clips of real recordings (sonic-pi's loops) at 44.1 kHz.

- ``afx.Pool``: two worker processes, driven as ``afx.torch.PluginLayer`` drives them:
  ``pool.render_perturbed(x, θ, k, ε, seed)`` (the forward pass: the forward and perturbed renders in one batch),
  then ``renders.vjp(g)`` (the backward pass: dot products, no render).
- ``afx.Pool, render then spsa``: the same pool called twice per step, ``pool.render(x, θ)`` then
  ``pool.spsa(x, θ, g, k, ε, seed)``: for code that cannot make the perturbed renders before it knows ``g``. Shown
  for reference; the targets are read from ``afx.Pool``.
- ``pedalboard + multiprocessing``: what DeepAFx/ST-ITO-style code does: a ``multiprocessing.Pool(2)`` whose
  initializer loads the plugin once per worker, one pickled task per item ``(x_i, θ_i, g_i, seed)`` through
  ``pool.map``, each worker doing the item's three renders and returning ``(y_i, ĝ_i)``.
- ``two direct threads``: the ceiling without any IPC: a ``ThreadPoolExecutor(2)``, one plugin instance per
  thread, the same renders (pedalboard releases the GIL while it processes). ``one direct thread`` is shown
  beside it as a reference, so that the ceiling's scaling over one core is visible.

Each engine is warmed up, then timed over ``--steps`` steps, ``--rounds`` times. Within a round the engines take
turns every few steps (the order rotated every round), so that load from other work on the machine, which comes
and goes within seconds on a shared host, falls on all of them alike. The table reports the median renders/s of
each engine, then the ratios ``afx.Pool / pedalboard+multiprocessing`` (target ≥ 1.6) and ``afx.Pool / two
direct threads`` (target ≥ 0.85). Before timing, a sanity check renders one item through afx and through
pedalboard at the same θ and prints how far apart the two are, and the pedalboard engines' first step is
compared (they must agree exactly).

Run (with numpy, pedalboard and afx installed)::

    python python/bench/peer.py [--steps 20] [--rounds 3] [--batch 8] [--seconds 2] [--json results.json]
"""

import argparse
import concurrent.futures
import glob
import json
import multiprocessing
import os
import platform
import queue
import statistics
import sys
import threading
import time

import numpy as np
import pedalboard

import afx

PLUGIN_NAME = "ZamComp"
PLUGIN_PATH = "/usr/lib/vst3/ZamComp.vst3"
RECORDINGS_GLOB = "/usr/share/sonic-pi/samples/loop_*.flac"
SAMPLE_RATE = 44100
WORKERS = 2
# afx's default block size, passed explicitly so the sanity check can render pedalboard at the same size. Each
# engine is timed at its own default (afx 512 frames, pedalboard 8192), as their users get them: on ZamComp the
# larger block is a few per cent cheaper per render.
AFX_BLOCK_SIZE = 512
K = 1
EPSILON = 0.01
# θ stays this far inside [0, 1], so that θ ± ε is never clipped and the (2ε)-denominator of DeepAFx's estimator
# is the exact distance afx divides by: both engines then compute the same estimator.
THETA_LOW, THETA_HIGH = 0.05, 0.95
WARMUP_STEPS = 2
# Steps an engine runs before the next takes its turn: long enough that switching costs nothing measurable (a
# turn is a few tenths of a second), short enough that a burst of other work hits every engine.
TURN_STEPS = 5
# Distinct batches of (x, θ, g) for the timed steps, cycled: a render costs the same whatever the values, and one
# batch per step would hold steps × B × frames floats of x and g for nothing. At least two, so that consecutive
# steps never pass the same input (a training loop's never do).
DISTINCT_BATCHES = 8
TARGET_VS_MULTIPROCESSING = 1.6
TARGET_VS_THREADS = 0.85
# Below this, two direct threads did not get two cores' worth of time (see the warning in main).
MIN_THREAD_SCALING = 1.6

AFX_POOL = "afx.Pool"
AFX_TWO_CALLS = "afx.Pool, render then spsa"
MULTIPROCESSING = "pedalboard+multiprocessing"
TWO_THREADS = "two direct threads"
ONE_THREAD = "one direct thread"


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def recording_clips(batch, frames):
    """`batch` mono clips of `frames` frames, float32 (batch, frames), cut from sonic-pi's loops at 44.1 kHz.

    The loops are mixed down to mono and joined end to end in name order; clip i is the i-th window of that
    stream (tiled if the stream is shorter than the batch needs), so every clip is real, mostly distinct audio.
    """
    recordings = []
    for path in sorted(glob.glob(RECORDINGS_GLOB)):
        audio, rate = afx.load(path)
        if rate == SAMPLE_RATE:  # no resampling: a clip is a recording as it was made
            recordings.append(audio.mean(axis=0))
    if not recordings:
        sys.exit(f"no {SAMPLE_RATE} Hz recordings match {RECORDINGS_GLOB} (Debian's sonic-pi ships them)")
    stream = np.concatenate(recordings)
    needed = batch * frames
    if stream.size < needed:
        stream = np.tile(stream, -(-needed // stream.size))
    return np.ascontiguousarray(stream[:needed].reshape(batch, frames), dtype=np.float32)


class StepInputs:
    """The inputs of one step: clips x (B, frames), θ (B, P) uniform in [THETA_LOW, THETA_HIGH] and g (B,
    frames) standard normal, float32. Each step has clips of its own, as a training loop's batches do: no engine
    sees the same input array twice in a row, except in a step's own forward and backward pass."""

    def __init__(self, rng, clips, num_params):
        batch, frames = clips.shape
        self.x = clips
        self.theta = rng.uniform(THETA_LOW, THETA_HIGH, size=(batch, num_params)).astype(np.float32)
        self.grad_y = rng.standard_normal(size=(batch, frames), dtype=np.float32)


def item_seed(step, item, batch):
    """The seed of item `item`'s perturbations in step `step` for the pedalboard engines (afx seeds its own)."""
    return step * batch + item


def item_tasks(step, inputs):
    """One task per item of a step, as the pedalboard engines hand them out: (x_i, θ_i, g_i, seed_i)."""
    batch = len(inputs.x)
    return [(inputs.x[i], inputs.theta[i], inputs.grad_y[i], item_seed(step, i, batch)) for i in range(batch)]


# ---------------------------------------------------------------------------------------------------------------
# pedalboard: one plugin instance and the per-item SPSA work, shared by the process and the thread engines


def pedalboard_parameter_keys(plugin, afx_params):
    """The pedalboard parameter keys of afx's θ columns, in θ order.

    Matched by display name (afx's `name` is the plugin's own parameter title, as is pedalboard's
    `AudioProcessorParameter.name`), so that both engines move the same knobs. Should a name not match, the
    plugin's first P parameters after pedalboard's host-level ones (buffer size, sample rate, program) are used,
    with a warning: the sanity check then shows whether that mapping is right.
    """
    by_name = {parameter.name.lower(): key for key, parameter in plugin.parameters.items()}
    keys = [by_name.get(param["name"].lower()) for param in afx_params]
    if all(keys):
        return keys
    host_level = {"buffer_size_frames", "sample_rate_frames", "current_program", "bypass"}
    fallback = [key for key in plugin.parameters if key not in host_level][: len(afx_params)]
    print(f"warning: afx parameter names {[p['name'] for p in afx_params]} do not all match pedalboard's; "
          f"using its first {len(afx_params)} parameters {fallback}", file=sys.stderr)
    return fallback


class PedalboardRenderer:
    """A loaded pedalboard plugin whose θ columns are the parameters named by `parameter_keys`."""

    def __init__(self, path, parameter_keys):
        self.plugin = pedalboard.load_plugin(path)
        self.parameter_keys = list(parameter_keys)
        # The parameter objects write through to the plugin: holding them saves a lookup per value per render.
        self.parameters = [self.plugin.parameters[key] for key in parameter_keys]

    def render(self, x, theta):
        """f(x, θ): θ normalised, set through `raw_value` (pedalboard's [0, 1] view of a parameter, linear in
        the plain value for ZamComp's parameters as for afx's θ); the plugin is reset so renders are independent."""
        for parameter, value in zip(self.parameters, theta):
            parameter.raw_value = float(value)
        return self.plugin.process(x, SAMPLE_RATE, reset=True)

    def spsa_item(self, x, theta, grad_y, seed, k=K, epsilon=EPSILON):
        """(y, ĝ) of one item: DeepAFx's forward render and SPSA estimate, 1 + 2k renders."""
        y = self.render(x, theta)
        rng = np.random.default_rng(seed)
        estimate = np.zeros(theta.shape, np.float64)
        for _ in range(k):
            delta = rng.integers(0, 2, size=theta.shape) * 2.0 - 1.0
            y_plus = self.render(x, np.clip(theta + epsilon * delta, 0.0, 1.0))
            y_minus = self.render(x, np.clip(theta - epsilon * delta, 0.0, 1.0))
            estimate += float(np.dot(grad_y, y_plus - y_minus)) / (2.0 * epsilon) * delta
        return y, (estimate / k).astype(np.float32)


# The multiprocessing engine's worker state: one plugin per worker process, loaded by the pool's initializer.
_process_renderer = None


def _load_process_renderer(path, parameter_keys):
    global _process_renderer
    _process_renderer = PedalboardRenderer(path, parameter_keys)


def _process_item(task):
    x, theta, grad_y, seed = task
    return _process_renderer.spsa_item(x, theta, grad_y, seed)


# ---------------------------------------------------------------------------------------------------------------
# Engines: each runs one step of B items and returns (y (B, frames), ĝ (B, P))


class AfxPoolEngine:
    name = AFX_POOL

    def __init__(self, pool):
        self.pool = pool

    def step(self, step, inputs):
        y, render_errors, renders = self.pool.render_perturbed(inputs.x, inputs.theta, k=K, epsilon=EPSILON,
                                                               seed=step)
        gradients, spsa_errors = renders.vjp(inputs.grad_y)
        return self.checked(step, y, gradients, render_errors + spsa_errors)

    @staticmethod
    def checked(step, y, gradients, errors):
        failed = [error for error in errors if error is not None]
        if failed:
            raise RuntimeError(f"afx.Pool failed {len(failed)} items of step {step}: {failed[0]}")
        return y, gradients


class AfxTwoCallsEngine(AfxPoolEngine):
    name = AFX_TWO_CALLS

    def step(self, step, inputs):
        y, render_errors = self.pool.render(inputs.x, inputs.theta)
        gradients, spsa_errors = self.pool.spsa(inputs.x, inputs.theta, inputs.grad_y, k=K, epsilon=EPSILON,
                                                seed=step)
        return self.checked(step, y, gradients, render_errors + spsa_errors)


class MultiprocessingEngine:
    name = MULTIPROCESSING

    def __init__(self, process_pool):
        self.process_pool = process_pool

    def step(self, step, inputs):
        tasks = item_tasks(step, inputs)
        # chunksize=1: one task per item, as such code sends them (map would pick 1 for 8 items on 2 workers too).
        results = self.process_pool.map(_process_item, tasks, chunksize=1)
        return np.stack([y for y, _ in results]), np.stack([g for _, g in results])


class DirectThreadsEngine:
    def __init__(self, name, renderers):
        self.name = name
        # The plugins are loaded here, on the main thread, and handed one to each pool thread: loading a VST3 off
        # the main thread is what JUCE-based hosts are least sure about, and it is no part of the measured work.
        spare = queue.SimpleQueue()
        for renderer in renderers:
            spare.put(renderer)
        self.local = threading.local()

        def take_renderer():
            self.local.renderer = spare.get_nowait()

        self.executor = concurrent.futures.ThreadPoolExecutor(len(renderers), initializer=take_renderer)

    def _item(self, task):
        x, theta, grad_y, seed = task
        return self.local.renderer.spsa_item(x, theta, grad_y, seed)

    def step(self, step, inputs):
        results = list(self.executor.map(self._item, item_tasks(step, inputs)))
        return np.stack([y for y, _ in results]), np.stack([g for _, g in results])

    def close(self):
        self.executor.shutdown()


# ---------------------------------------------------------------------------------------------------------------
# Measurement


def timed_round(engines, batches, steps, renders_per_step, first_step):
    """Renders per second of each engine over `steps` steps (from `first_step`, cycling over `batches`), the
    engines taking turns every TURN_STEPS steps in the order given."""
    seconds = {engine.name: 0.0 for engine in engines}
    for turn_start in range(first_step, first_step + steps, TURN_STEPS):
        turn = range(turn_start, min(turn_start + TURN_STEPS, first_step + steps))
        for engine in engines:
            # The same steps (hence the same θ, g and seeds) for every engine.
            start = time.perf_counter()
            for step in turn:
                engine.step(step, batches[step % len(batches)])
            seconds[engine.name] += time.perf_counter() - start
    return {name: renders_per_step * steps / elapsed for name, elapsed in seconds.items()}


def rms(signal):
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))


def sanity_check(pool, reference_renderer, clips, theta):
    """afx's and pedalboard's render of item 0 at the same θ, printed with the plain values each side set.

    At pedalboard's default block (what the timed engine uses) the two differ slightly: ZamComp's envelope
    follows the block boundaries. At afx's block size they should be equal; a large difference there means the
    θ → parameter mapping is wrong. Reported, never fatal.
    """
    afx_y, errors = pool.render(clips[:1], theta[:1])
    if errors[0] is not None:
        raise RuntimeError(f"afx.Pool could not render the sanity item: {errors[0]}")
    afx_y = afx_y[0]
    pedalboard_y = reference_renderer.render(clips[0], theta[0])
    plugin = reference_renderer.plugin
    same_block_y = plugin.process(clips[0], SAMPLE_RATE, buffer_size=AFX_BLOCK_SIZE, reset=True)
    check = {
        "max_abs_difference": float(np.max(np.abs(afx_y - pedalboard_y))),
        "max_abs_difference_same_block": float(np.max(np.abs(afx_y - same_block_y))),
        "rms_afx": rms(afx_y),
        "rms_pedalboard": rms(pedalboard_y),
        "rms_input": rms(clips[0]),
    }
    plain = pool.plain_values(theta[0])
    values = ", ".join(f"{param['name']} {plain[param['id']]:.4g}/{float(getattr(plugin, key)):.4g}"
                       for param, key in zip(pool.params, reference_renderer.parameter_keys))
    print(f"sanity, item 0 at θ₀, plain values afx/pedalboard: {values}")
    print(f"sanity: max |y_afx − y_pedalboard| = {check['max_abs_difference']:.3g} at pedalboard's default block, "
          f"{check['max_abs_difference_same_block']:.3g} at afx's {AFX_BLOCK_SIZE}; RMS afx {check['rms_afx']:.4f}, "
          f"pedalboard {check['rms_pedalboard']:.4f} (input {check['rms_input']:.4f})")
    return check


def difference(outputs, reference):
    """The largest |Δy| and |Δĝ| between two engines' (y, ĝ) of one step."""
    (y, gradients), (reference_y, reference_gradients) = outputs, reference
    return {"max_abs_difference_y": float(np.max(np.abs(y - reference_y))),
            "max_abs_difference_gradient": float(np.max(np.abs(gradients - reference_gradients)))}


def describe_difference(name, d):
    return f"{name} max |Δy| {d['max_abs_difference_y']:.3g}, max |Δĝ| {d['max_abs_difference_gradient']:.3g}"


def afx_agreement(first_outputs):
    """How far the two ways of driving afx.Pool are apart on the first warm-up step: they must agree bit for bit."""
    agreement = difference(first_outputs[AFX_POOL], first_outputs[AFX_TWO_CALLS])
    print("afx.Pool (render_perturbed then vjp) vs the same pool called twice, first step: "
          + describe_difference(AFX_TWO_CALLS, agreement))
    return agreement


def pedalboard_agreement(first_outputs):
    """How far the pedalboard engines' (y, ĝ) of the first warm-up step are from the two threads': the same
    plugin, block, θ and seeds, so anything but 0 means an engine does different work."""
    agreement = {name: difference(first_outputs[name], first_outputs[TWO_THREADS])
                 for name in (MULTIPROCESSING, ONE_THREAD)}
    print("pedalboard engines vs two direct threads, first step: " + "; ".join(
        describe_difference(name, d) for name, d in agreement.items()))
    return agreement


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per engine per round [20]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, engines interleaved; medians reported [3]")
    parser.add_argument("--batch", type=int, default=8, help="items per step, B [8]")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length in seconds [2]")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.batch < 1 or args.seconds <= 0:
        parser.error("--steps, --rounds and --batch must be at least 1, --seconds positive")
    if not os.path.exists(PLUGIN_PATH):
        sys.exit(f"{PLUGIN_PATH} is missing: install Debian's zam-plugins")

    frames = int(round(args.seconds * SAMPLE_RATE))
    renders_per_step = args.batch * (1 + 2 * K)

    # Linux's default start method, fork, works for pedalboard here: afx.Pool and a loaded pedalboard plugin leave
    # no threads behind in this process (checked: one thread after both), so the fork copies no held lock, and
    # each worker loads its own plugin in the initializer, as DeepAFx-style code does. The children inherit afx's
    # pipe ends, which is harmless because the process pool is closed before afx.Pool. Spawn would only add
    # start-up time, which is not measured anyway.
    context = multiprocessing.get_context()
    start_method = context.get_start_method()

    distinct = max(2, min(args.steps, DISTINCT_BATCHES))
    clips = recording_clips(args.batch * distinct, frames)
    pool = afx.Pool(PLUGIN_NAME, format="vst3", workers=WORKERS, sample_rate=SAMPLE_RATE, block_size=AFX_BLOCK_SIZE)
    process_pool = None
    engines = []
    try:
        afx_params = pool.params
        # The θ → pedalboard mapping is resolved once, here, and handed to every worker and thread.
        probe = pedalboard.load_plugin(PLUGIN_PATH)
        parameter_keys = pedalboard_parameter_keys(probe, afx_params)
        del probe
        process_pool = context.Pool(WORKERS, initializer=_load_process_renderer,
                                    initargs=(PLUGIN_PATH, parameter_keys))

        rng = np.random.default_rng(0)
        batches = [StepInputs(rng, clips[i * args.batch:(i + 1) * args.batch], pool.num_params)
                   for i in range(distinct)]

        print(f"{PLUGIN_NAME} VST3 ({PLUGIN_PATH}), {args.seconds:g} s clips at {SAMPLE_RATE} Hz, B={args.batch}, "
              f"K={K}, ε={EPSILON}: {renders_per_step} renders/step; {args.steps} steps × {args.rounds} rounds")
        mapping = ", ".join(f"{param['name']}→{key}" for param, key in zip(afx_params, parameter_keys))
        print(f"θ columns → pedalboard parameters: {mapping}")
        print(f"multiprocessing start method: {start_method}; python {platform.python_version()}, "
              f"pedalboard {pedalboard.__version__}, {os.cpu_count()} CPUs")

        thread_renderers = [PedalboardRenderer(PLUGIN_PATH, parameter_keys) for _ in range(WORKERS + 1)]
        sanity = sanity_check(pool, thread_renderers[-1], batches[0].x, batches[0].theta)

        engines = [AfxPoolEngine(pool), AfxTwoCallsEngine(pool), MultiprocessingEngine(process_pool),
                   DirectThreadsEngine(TWO_THREADS, thread_renderers[:WORKERS]),
                   DirectThreadsEngine(ONE_THREAD, thread_renderers[WORKERS:])]
        first_outputs = {}
        for engine in engines:
            for step in range(WARMUP_STEPS):
                outputs = engine.step(step, batches[step % len(batches)])
                first_outputs.setdefault(engine.name, outputs)
        agreement = pedalboard_agreement(first_outputs)
        afx_agree = afx_agreement(first_outputs)

        rates = {engine.name: [] for engine in engines}
        for round_index in range(args.rounds):
            order = engines[round_index % len(engines):] + engines[:round_index % len(engines)]
            round_rates = timed_round(order, batches, args.steps, renders_per_step, round_index * args.steps)
            for name, rate in round_rates.items():
                rates[name].append(rate)
            print(f"round {round_index + 1}: " + ", ".join(f"{name} {round_rates[name]:.0f}" for name in rates))
    finally:
        for engine in engines:
            if hasattr(engine, "close"):
                engine.close()
        if process_pool is not None:
            process_pool.close()
            process_pool.join()
        pool.close()

    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio_vs_multiprocessing = medians[AFX_POOL] / medians[MULTIPROCESSING]
    ratio_vs_threads = medians[AFX_POOL] / medians[TWO_THREADS]
    thread_scaling = medians[TWO_THREADS] / medians[ONE_THREAD]

    print()
    print(f"{'engine':<30}{'median renders/s':>18}{'min':>10}{'max':>10}")
    for name, values in rates.items():
        print(f"{name:<30}{medians[name]:>18.0f}{min(values):>10.0f}{max(values):>10.0f}")
    print()
    met = {True: "met", False: "NOT met"}
    print(f"afx.Pool / pedalboard+multiprocessing = {ratio_vs_multiprocessing:.3f} "
          f"(target ≥ {TARGET_VS_MULTIPROCESSING}: {met[ratio_vs_multiprocessing >= TARGET_VS_MULTIPROCESSING]})")
    print(f"afx.Pool / two direct threads         = {ratio_vs_threads:.3f} "
          f"(target ≥ {TARGET_VS_THREADS}: {met[ratio_vs_threads >= TARGET_VS_THREADS]})")
    print(f"two direct threads / one direct thread = {thread_scaling:.3f} (how far the ceiling scales on "
          f"{os.cpu_count()} CPUs)")
    if thread_scaling < MIN_THREAD_SCALING:
        # Two threads that do not beat one mean the machine did not give this run two cores (other work, or a
        # host that shares its CPUs): every engine then measured a smaller machine than the one it was sized for.
        print(f"warning: two direct threads ran only {thread_scaling:.2f}× one: fewer than {WORKERS} cores were "
              f"free during this run, so the ratios describe a busier machine")

    if args.json:
        results = {
            "plugin": {"name": PLUGIN_NAME, "format": "vst3", "path": PLUGIN_PATH},
            "config": {"steps": args.steps, "rounds": args.rounds, "batch": args.batch, "seconds": args.seconds,
                       "sample_rate": SAMPLE_RATE, "k": K, "epsilon": EPSILON, "workers": WORKERS,
                       "renders_per_step": renders_per_step, "start_method": start_method,
                       "python": platform.python_version(), "pedalboard": pedalboard.__version__,
                       "cpus": os.cpu_count()},
            "parameter_keys": dict(zip((p["name"] for p in afx_params), parameter_keys)),
            "sanity": sanity,
            "pedalboard_agreement": agreement,
            "afx_agreement": afx_agree,
            "renders_per_second": {"median": medians, "rounds": rates},
            "ratios": {"afx_vs_multiprocessing": ratio_vs_multiprocessing, "afx_vs_two_threads": ratio_vs_threads,
                       "two_threads_vs_one_thread": thread_scaling},
            "targets": {"afx_vs_multiprocessing": TARGET_VS_MULTIPROCESSING, "afx_vs_two_threads": TARGET_VS_THREADS},
        }
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
