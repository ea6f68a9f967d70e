"""afx.ray: the plugin pool across a Ray cluster, with ``afx.Pool``'s interface.

A GPU box trains; CPU nodes render. ``afx.ray.Pool(chain)`` starts one Ray actor per node (or per ``workers``
CPUs of a node), each owning a local ``afx.Pool`` with its own crash-proof worker processes, and splits every
batch over the actors in proportion to their workers, in item order. Items keep the seeds they have in the whole
batch (``items=`` of the local pools), so renders and SPSA estimates are bit for bit what one ``afx.Pool`` gives
for the same seeds, whatever the split. ``afx.torch.PluginLayer(afx.ray.Pool(...))`` trains through it unchanged.

``afx.ray.collect(...)`` (or ``python -m afx.ray collect ...``) runs the shards of ``afx collect`` as Ray tasks and
writes the dataset the one-machine command writes (see ``collect``).

Faults: a plugin that crashes is an item error, as locally. An actor or node that is lost (killed, removed) fails
the items it held in that call: they come back as ``afx.ItemError`` with ``kind == "node_lost"`` and NaN rows,
never retried (a retry could render a plugin's crash twice, and the step's other items are already done); the
pool then replaces the actor where the cluster still has room and goes on with the others. A pool with no live
actor left raises ``afx.AfxError``.

>>> import ray, afx.ray
>>> ray.init(address="auto")                                   # doctest: +SKIP
>>> pool = afx.ray.Pool("eq_comp", config="plugins.toml")      # doctest: +SKIP
>>> y, errors = pool.render(x, theta)                          # doctest: +SKIP
"""

import itertools
import os
import tempfile
import warnings

import numpy as np

import afx

__all__ = ["Pool", "RayPerturbedRenders", "collect"]


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - the message is the point
        raise afx.AfxError("afx.ray needs Ray: pip install ray") from e
    return ray


def _error_state(error):
    """An ``afx.ItemError`` as plain data (its attributes), to cross between processes."""
    if error is None:
        return None
    return {
        "message": str(error),
        "kind": error.kind,
        "signal": error.signal,
        "theta": list(error.theta),
        "chain": error.chain,
        "stderr": error.stderr,
    }


def _item_error(index, state):
    """The ``afx.ItemError`` of item ``index`` from its plain data."""
    error = afx.ItemError(state["message"])
    error.index = index
    for key in ("kind", "signal", "theta", "chain", "stderr"):
        setattr(error, key, state[key])
    return error


def _config_in_force(config):
    """The plugins.toml the CLI and ``afx.Pool`` would use: ``config``, else ``$AFX_CONFIG``, else
    ``./plugins.toml`` when it exists."""
    if config is not None:
        return config
    if os.environ.get("AFX_CONFIG"):
        return os.environ["AFX_CONFIG"]
    return "plugins.toml" if os.path.exists("plugins.toml") else None


def _lost(start, stop, chain, why):
    """The error of an item whose actor was lost."""
    return {"message": f"items {start}..{stop - 1}: the Ray actor holding them was lost ({why})", "kind": "node_lost",
            "signal": None, "theta": [], "chain": chain, "stderr": ""}


# How audio travels. Ray puts a call's argument or result into the call's own message when it is at most
# ``max_direct_call_object_size`` (100 KiB unless the cluster was started with another), up to
# ``task_rpc_inlined_bytes_limit`` (10 MiB) a call; larger ones go through the object stores, and between two
# nodes that path costs several times the CPU per byte (on the 2-core bench machine, a 1.4 MB round trip to the
# other node took 38 ms of CPU through the stores and 8 ms as pieces). So the arrays of a call, or of its result,
# travel as float32 pieces of at most PIECE_BYTES while they fit in INLINE_BYTES together, and whole (each through
# the store, zero-copy on the receiving node) past that. A cluster set up with a lower limit only sends the pieces
# through the stores: slower, never different.
PIECE_BYTES = 64 << 10
INLINE_BYTES = 8 << 20


def _piece(*shapes):
    """Floats per piece for arrays of ``shapes`` travelling together; 0: each travels whole."""
    return PIECE_BYTES // 4 if 4 * sum(int(np.prod(s)) for s in shapes) <= INLINE_BYTES else 0


def _count(shape, piece):
    """How many pieces an array of ``shape`` travels as, ``piece`` floats each (0: whole)."""
    return 1 if piece == 0 else max(1, -(-int(np.prod(shape)) // piece))


def _pieces(array, piece):
    """``array`` as float32 pieces of ``piece`` floats (0: one), views of it in order: no copy when it is float32
    and contiguous already."""
    flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
    if piece == 0:
        return [flat]
    return [flat[i:i + piece] for i in range(0, max(1, flat.size), piece)]


def _pack(*arrays):
    """The arguments that carry ``arrays`` in one call: how they are cut (piece size, shapes), then every piece of
    each in order."""
    piece = _piece(*(a.shape for a in arrays))
    return [(piece, [a.shape for a in arrays]), *itertools.chain.from_iterable(_pieces(a, piece) for a in arrays)]


def _unpack(layout, pieces):
    """The arrays ``_pack`` sent, from how they were cut and their pieces."""
    piece, shapes = layout
    arrays, at = [], 0
    for shape in shapes:
        n = _count(shape, piece)
        arrays.append(pieces[at].reshape(shape) if n == 1 else np.concatenate(pieces[at:at + n]).reshape(shape))
        at += n
    return arrays


def _returns(shape):
    """How many results a call whose array result has ``shape`` returns: its error list, then the pieces."""
    return 1 + _count(shape, _piece(shape))


def _reply(array, errors):
    """An actor's results: the item errors as plain data, then ``array``'s pieces (``_returns(array.shape)``)."""
    return ([_error_state(e) for e in errors], *_pieces(array, _piece(array.shape)))


class _Node:
    """The actor: one local ``afx.Pool`` on one node, and the perturbed renders it holds for ``vjp``. Arrays come
    and go as pieces (``_pack``, ``_reply``)."""

    def __init__(self, chain, workers, config_text, options):
        self.config = None
        if config_text is not None:
            # The driver's plugins.toml, here: nodes need not share a filesystem with it.
            handle, self.config = tempfile.mkstemp(prefix="afx-plugins-", suffix=".toml")
            with os.fdopen(handle, "w") as file:
                file.write(config_text)
        self.renders = {}
        # A pool that will not start (a chain this node cannot load, bad options) is reported by describe(), as
        # afx's own message: raised here, Ray would wrap it in its actor-death error and traceback.
        self.pool, self.error = None, None
        try:
            self.pool = afx.Pool(chain, workers=workers, config=self.config, **options)
        except (afx.AfxError, ValueError, TypeError) as e:
            self.error = str(e) if isinstance(e, afx.AfxError) else f"{type(e).__name__}: {e}"

    def describe(self):
        import ray

        node = ray.get_runtime_context().get_node_id()
        if self.error is not None:
            return {"error": self.error, "node": node}
        return {
            "workers": self.pool.workers,
            "node": node,
            "params": self.pool.params,
            "num_params": self.pool.num_params,
            "chain": self.pool.chain,
            "held": len(self.renders),
        }

    def plain_values(self, theta_row):
        return self.pool.plain_values(theta_row)

    def render(self, options, layout, *pieces):
        x, theta = _unpack(layout, pieces)
        return _reply(*self.pool.render(x, theta, **options))

    def spsa(self, options, layout, *pieces):
        x, theta, grad_y = _unpack(layout, pieces)
        return _reply(*self.pool.spsa(x, theta, grad_y, **options))

    def finite_difference(self, options, layout, *pieces):
        x, theta, grad_y = _unpack(layout, pieces)
        return _reply(*self.pool.finite_difference(x, theta, grad_y, **options))

    def render_perturbed(self, key, forget, options, layout, *pieces):
        for old in forget:
            self.renders.pop(old, None)
        x, theta = _unpack(layout, pieces)
        y, errors, self.renders[key] = self.pool.render_perturbed(x, theta, **options)
        return _reply(y, errors)

    def vjp(self, key, layout, *pieces):
        (grad_y,) = _unpack(layout, pieces)
        return _reply(*self.renders[key].vjp(grad_y))

    def close(self):
        if self.pool is not None:
            self.pool.close()
        if self.config is not None:
            os.unlink(self.config)


class RayPerturbedRenders:
    """What ``Pool.render_perturbed`` returns for the backward pass: each actor keeps its slice's renders; ``vjp``
    asks each for its slice's dot products, as often as it is called. A slice whose actor was lost gives
    ``node_lost`` errors. Once this object is gone, the pool's next ``render_perturbed`` tells the actors to drop
    its renders (a call of its own costs about 1 ms of CPU here)."""

    def __init__(self, pool, key, slices, shape):
        self._pool, self._key, self._slices, self._shape = pool, key, slices, shape

    def vjp(self, grad_y):
        grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
        if grad_y.shape[0] != self._shape[0]:
            raise ValueError(f"grad_y holds {grad_y.shape[0]} items and the renders {self._shape[0]}")
        calls = [(actor, s, self._pool._call(actor, "vjp", (s.stop - s.start, *self._shape[1:]), self._key,
                                             *_pack(grad_y[s])))
                 for actor, s in self._slices]
        return self._pool._gather(calls, self._shape)

    def __len__(self):
        return self._shape[0]

    def __repr__(self):
        return f"afx.ray.RayPerturbedRenders(batch={self._shape[0]}, actors={len(self._slices)})"

    def __del__(self):
        try:
            self._pool._forget.extend((actor, self._key) for actor, _ in self._slices)
        except AttributeError:  # half-built, or the interpreter is shutting down: nothing to tell
            pass


def _warn_failed(failures):
    """Says which actors failed to start (the pool goes on with the others)."""
    for error in failures:
        warnings.warn(f"afx.ray.Pool: an actor failed to start and is left out: {error}")


class Pool:
    """``afx.Pool`` over a Ray cluster: one actor per node (``workers`` CPUs each, default all of the node's),
    started on the cluster ``ray.init`` connected to (or a local one it starts).

    Args:
        chain: as for ``afx.Pool``.
        workers: worker processes per actor [default: every CPU Ray sees on its node]; a node with more CPUs than
            that gets one actor per ``workers`` of them.
        nodes: at most this many nodes [default: every live node].
        config: a plugins.toml on this machine; its text travels to the actors.
        start_timeout: seconds to wait for the actors to start [60]. One still waiting then (its node's CPUs are
            taken by other work) is left to start and joins the pool at the first call after it does; no call
            ever waits for it. None started is an error.
        Other keywords (``format``, ``sample_rate``, ``timeout``, ``block_size``, ``sandbox``, ``worker_memory``)
        go to each actor's ``afx.Pool``.
    """

    def __init__(self, chain, workers=None, nodes=None, config=None, start_timeout=60.0, **options):
        self._ray = _ray()
        if not self._ray.is_initialized():
            self._ray.init()
        config_path = _config_in_force(config)
        self._config_text = open(config_path).read() if config_path else None
        self._chain_name, self._workers, self._options = chain, workers, options
        self._start_timeout = start_timeout
        self._keys = itertools.count()
        self._forget = []  # (actor, key) of perturbed renders no longer wanted, told with the next render_perturbed
        self._actors = []  # (actor, workers, node id): started and answering
        self._starting = []  # (actor, workers, node id, its describe()): started, not answering yet
        for node in self._live_nodes()[:nodes]:
            self._start_on(node)
        if not self._starting:
            raise afx.AfxError("afx.ray.Pool: the Ray cluster has no live node with a CPU to start an actor on")
        failures = self._admit(timeout=start_timeout)
        if not self._actors:
            self.close()
            if failures:
                raise failures[0]  # the actor's own error: a plugin or chain that will not load, say
            raise afx.AfxError(f"afx.ray.Pool: no actor started within start_timeout={start_timeout} s: the "
                               "nodes' CPUs are taken by other work")
        _warn_failed(failures)
        if self._starting:
            warnings.warn(f"afx.ray.Pool: {len(self._starting)} actor(s) not started after {start_timeout} s (their "
                          f"nodes' CPUs are taken); going on with {len(self._actors)}, they join once started")
        first = self._described  # every actor runs the same chain
        self.params, self.num_params, self.chain = first["params"], first["num_params"], first["chain"]
        self.sample_rate = options.get("sample_rate", 44_100)

    # -- the actors ---------------------------------------------------------------------------------------------
    def _live_nodes(self):
        nodes = [n for n in self._ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1]
        return sorted(nodes, key=lambda n: n["NodeID"])

    def _start_on(self, node):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cpus = int(node["Resources"]["CPU"])
        per_actor = min(self._workers or cpus, cpus)
        actor_class = self._ray.remote(_Node)
        for _ in range(max(1, cpus // per_actor)):
            actor = actor_class.options(
                num_cpus=per_actor,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(self._chain_name, per_actor, self._config_text, self._options)
            self._starting.append((actor, per_actor, node["NodeID"], actor.describe.remote()))

    def _admit(self, timeout=0):
        """Moves the started actors that answer (within ``timeout`` s) into the pool, keeping the last one's
        ``describe()``; drops those that failed to start. Returns their errors."""
        if not self._starting:
            return []
        refs = [ref for *_, ref in self._starting]
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=timeout)
        ready = set(ready)
        waiting, failures = [], []
        for actor, workers, node, ref in self._starting:
            if ref not in ready:
                waiting.append((actor, workers, node, ref))
                continue
            try:
                described = self._ray.get(ref)
            except self._ray.exceptions.RayActorError as e:  # its node went while it started
                failures.append(afx.AfxError(f"afx.ray.Pool: the actor on node {node} was lost starting: {e}"))
                continue
            if "error" in described:
                self._ray.kill(actor)
                failures.append(afx.AfxError(f"afx.ray.Pool: on node {node}: {described['error']}"))
                continue
            self._actors.append((actor, workers, node))
            self._described = described
        self._starting = waiting
        return failures

    def _replace_lost(self, lost):
        """Drops the lost actors and starts new ones on live nodes that have no actor of this pool and room."""
        for actor in lost:
            try:
                self._ray.kill(actor)
            except Exception:  # already gone
                pass
        self._actors = [a for a in self._actors if all(a[0] is not gone for gone in lost)]
        held = {node for _, _, node in self._actors} | {node for _, _, node, _ in self._starting}
        available = self._ray.available_resources().get("CPU", 0)
        for node in self._live_nodes():
            if node["NodeID"] not in held and available >= 1:
                try:
                    self._start_on(node)
                except Exception:  # no room after all: the pool goes on with the actors it has
                    continue
        # With no actor left, the call waits for a replacement (up to start_timeout); else it joins later.
        _warn_failed(self._admit(timeout=0 if self._actors else self._start_timeout))
        if not self._actors:
            raise afx.AfxError("afx.ray.Pool: every actor was lost and no replacement started: the cluster has no "
                               "live node with room for one")

    @property
    def workers(self):
        """Worker processes over all actors."""
        return sum(w for _, w, _ in self._actors)

    @property
    def actors(self):
        """How many actors (nodes, or parts of nodes) the batches are split over."""
        return len(self._actors)

    # -- splitting and gathering ---------------------------------------------------------------------------------
    def _slices(self, n):
        """Contiguous item ranges, in order, in proportion to each actor's workers."""
        total = self.workers
        bounds = [0]
        for _, w, _ in self._actors:
            bounds.append(min(n, bounds[-1] + -(-n * w // total)))
        bounds[-1] = n
        return [(actor, slice(a, b)) for (actor, _, _), a, b in zip(self._actors, bounds, bounds[1:]) if b > a]

    def _call(self, actor, method, out_shape, *args):
        """``actor.method.remote(*args)``, its results an error list and ``out_shape``'s pieces: their refs, or
        ``None`` when the actor is no longer one of this pool's."""
        if all(actor is not a for a, _, _ in self._actors):
            return None
        return getattr(actor, method).options(num_returns=_returns(out_shape)).remote(*args)

    def _gather(self, calls, shape):
        """Each call's (array, error states) in item order; a lost actor's items as ``node_lost`` errors and NaN."""
        out = np.full(shape, np.nan, dtype=np.float32)
        errors = [None] * shape[0]
        lost = []
        for actor, s, refs in calls:
            try:
                if refs is None:
                    raise self._ray.exceptions.RayActorError()
                states, *pieces = self._ray.get(refs)
            except self._ray.exceptions.RayActorError as e:
                lost.append(actor)
                for i in range(s.start, s.stop):
                    errors[i] = _item_error(i, _lost(s.start, s.stop, self.chain, type(e).__name__))
                continue
            # out[s] is a contiguous run of rows: the pieces land in it without another copy.
            np.concatenate(pieces, out=out[s].reshape(-1))
            for i, state in zip(range(s.start, s.stop), states):
                if state is not None:
                    errors[i] = _item_error(i, state)
        if lost:
            self._replace_lost(lost)
        return out, errors

    def _forgotten(self, slices):
        """Per actor of ``slices`` (by ``id``), the keys of renders it may drop: their ``RayPerturbedRenders`` are
        gone. The keys of other live actors wait for a call to them; those of lost actors are dropped."""
        told = {id(actor): [] for actor, _ in slices}
        live = {id(actor) for actor, _, _ in self._actors}
        keep = []
        for actor, key in self._forget:
            if id(actor) in told:
                told[id(actor)].append(key)
            elif id(actor) in live:
                keep.append((actor, key))
        self._forget = keep
        return told

    def _run(self, method, out_width, arrays, items=None, key=None, **options):
        """``method`` on each actor's slice of the per-item ``arrays`` (and of ``items``), its results rows of
        ``out_width`` (a shape's tail): (actor, slice, refs) per actor."""
        _warn_failed(self._admit())
        calls, slices = [], self._slices(arrays[0].shape[0])
        forgotten = self._forgotten(slices) if key is not None else None
        for actor, s in slices:
            if items is not None:
                options["items"] = items[s]
            lead = () if key is None else (key, forgotten[id(actor)])
            out_shape = (s.stop - s.start, *out_width)
            calls.append((actor, s, self._call(actor, method, out_shape, *lead, dict(options),
                                               *_pack(*(a[s] for a in arrays)))))
        return calls

    @staticmethod
    def _batch(x, theta):
        x = np.ascontiguousarray(x, dtype=np.float32)
        theta = np.ascontiguousarray(theta, dtype=np.float32)
        if x.shape[0] != theta.shape[0]:
            raise ValueError(f"x holds {x.shape[0]} items and theta {theta.shape[0]}: one θ per item")
        return x, theta

    # -- afx.Pool's methods ---------------------------------------------------------------------------------------
    def plain_values(self, theta_row):
        return self._ray.get(self._actors[0][0].plain_values.remote(np.asarray(theta_row, dtype=np.float32)))

    def render(self, x, theta, hop=None):
        x, theta = self._batch(x, theta)
        return self._gather(self._run("render", x.shape[1:], (x, theta), hop=hop), x.shape)

    def spsa(self, x, theta, grad_y, k=1, epsilon=0.01, seed=0, items=None, hop=None, scoring="whole"):
        x, theta = self._batch(x, theta)
        grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
        items = list(range(x.shape[0])) if items is None else list(items)
        calls = self._run("spsa", theta.shape[1:], (x, theta, grad_y), items, k=k, epsilon=epsilon, seed=seed,
                          hop=hop, scoring=scoring)
        return self._gather(calls, theta.shape)

    def finite_difference(self, x, theta, grad_y, step=0.01, hop=None):
        x, theta = self._batch(x, theta)
        grad_y = np.ascontiguousarray(grad_y, dtype=np.float32)
        calls = self._run("finite_difference", theta.shape[1:], (x, theta, grad_y), step=step, hop=hop)
        return self._gather(calls, theta.shape)

    def render_perturbed(self, x, theta, k=1, epsilon=0.01, seed=0, items=None, hop=None, scoring="whole"):
        x, theta = self._batch(x, theta)
        key = next(self._keys)
        items = list(range(x.shape[0])) if items is None else list(items)
        calls = self._run("render_perturbed", x.shape[1:], (x, theta), items, key=key, k=k, epsilon=epsilon,
                          seed=seed, hop=hop, scoring=scoring)
        y, errors = self._gather(calls, x.shape)
        return y, errors, RayPerturbedRenders(self, key, [(actor, s) for actor, s, _ in calls], theta.shape)

    def close(self):
        for actor, _, _ in self._actors:
            try:
                self._ray.get(actor.close.remote())
                self._ray.kill(actor)
            except Exception:  # a lost actor has nothing left to close
                pass
        for actor, *_ in self._starting:
            self._ray.kill(actor)
        self._actors, self._starting = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _collect_slice(program, config_text, args, index, count):
    """A Ray task: ``afx collect ... --shard index/count`` into a folder of this node's own; the shard files' names
    and bytes."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="afx-collect-") as folder:
        command = [program]
        if config_text is not None:
            config = os.path.join(folder, "plugins.toml")
            with open(config, "w") as file:
                file.write(config_text)
            command += ["--config", config]
        out = os.path.join(folder, "out")
        command += ["collect", *args, "--out", out, "--shard", f"{index}/{count}"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"afx collect --shard {index}/{count} failed ({done.returncode}): {done.stderr[-2000:]}")
        names = sorted(n for n in os.listdir(out) if n.startswith("shard-") and n.endswith(".safetensors"))
        return [(name, open(os.path.join(out, name), "rb").read()) for name in names]


def _write_atomic(path, data):
    """``data`` to ``path`` through a temporary name in the same folder, synced and renamed: never half a file."""
    handle, temporary = tempfile.mkstemp(prefix=".afx-", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def collect(chain, data, out, examples, *, shards=None, program="afx", config=None, seed=0, shard_size=64,
            seconds=1.5, sample_rate=22_050, workers=None, timeout=None):
    """``afx collect`` across a Ray cluster: the collection's shards in ``shards`` slices (default: one per live
    node), each an ``afx collect --shard I/N`` run as a Ray task on a node (``program``: the ``afx`` CLI there; the
    corpus ``data`` must be at that path on every node, ``config`` travels along). The driver writes each shard
    into ``out`` as its task returns it, atomically; when every slice is in, it runs ``afx collect --shard 0/1``
    here, which finds every shard present and writes ``manifest.json`` last. The result is byte for byte what
    ``afx collect`` on one machine writes with the same arguments.

    A slice whose node is lost fails (Ray does not retry it: the other slices' shards are written) and this
    raises ``afx.AfxError`` naming it; run it again and only the slices with missing shards run. Returns the
    number of shards written by this call.
    """
    ray = _ray()
    if not ray.is_initialized():
        ray.init()
    config_path = _config_in_force(config)
    config_text = open(config_path).read() if config_path else None
    os.makedirs(out, exist_ok=True)
    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1]
    count = shards or max(1, len(nodes))
    args = ["--chain", chain, "--data", str(data), "--examples", str(examples), "--seed", str(seed),
            "--shard-size", str(shard_size), "--seconds", str(seconds), "--sample-rate", str(sample_rate)]
    if workers is not None:
        args += ["--workers", str(workers)]
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    total = -(-examples // shard_size)
    present = set(os.listdir(out))
    todo = [i for i in range(count) if any(f"shard-{j:05}.safetensors" not in present for j in range(i, total, count))]
    task = ray.remote(num_cpus=1, max_retries=0)(_collect_slice)
    pending = {task.remote(program, config_text, args, i, count): i for i in todo}
    written, failed = 0, {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(done[0])
        try:
            files = ray.get(done[0])
        except Exception as e:  # a lost node, or afx collect failing there: the slice is redone on the next run
            failed[index] = f"{type(e).__name__}: {e}"[:500]
            continue
        for name, content in files:
            path = os.path.join(out, name)
            if not os.path.exists(path):
                _write_atomic(path, content)
                written += 1
    if failed:
        lines = "; ".join(f"--shard {i}/{count}: {why}" for i, why in sorted(failed.items()))
        raise afx.AfxError(f"afx.ray.collect: {len(failed)} of {count} slices failed, their shards are missing "
                           f"(run again to complete them): {lines}")
    # Every shard is in: the manifest, written here last (afx collect renders nothing it finds present).
    import subprocess

    command = [program] + (["--config", config_path] if config_path else [])
    command += ["collect", *args, "--out", str(out), "--shard", "0/1"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise afx.AfxError(f"afx.ray.collect: writing the manifest failed: {done.stderr[-2000:]}")
    return written


def _main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m afx.ray", description="afx across a Ray cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("collect", help="afx collect's shards as Ray tasks over the cluster's nodes")
    c.add_argument("--chain", required=True)
    c.add_argument("--data", required=True, help="the corpus folder, at this path on every node")
    c.add_argument("--out", required=True)
    c.add_argument("--examples", type=int, required=True)
    c.add_argument("--shards", type=int, help="slices of the collection [default: one per live node]")
    c.add_argument("--afx", default="afx", help="the afx program on the nodes")
    c.add_argument("--config")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--shard-size", type=int, default=64)
    c.add_argument("--seconds", type=float, default=1.5)
    c.add_argument("--sample-rate", type=int, default=22_050)
    c.add_argument("--address", default=None, help="the Ray cluster [default: RAY_ADDRESS, or a local one]")
    a = parser.parse_args(argv)
    ray = _ray()
    ray.init(address=a.address)
    written = collect(a.chain, a.data, a.out, a.examples, shards=a.shards, program=a.afx, config=a.config,
                      seed=a.seed, shard_size=a.shard_size, seconds=a.seconds, sample_rate=a.sample_rate)
    print(f"wrote {written} shards into {a.out}; the manifest is written")


if __name__ == "__main__":
    _main()
