"""afx.Pool against the Rust pool (the `batch_gradients` example): the same renders and gradients for the same
seeds; a segfaulting item reported while the batch completes; bad input refused with a clear message."""

import numpy as np
import pytest

import afx
from conftest import batch, rust_pool

COMP = "urn:zamaudio:ZamComp"
TESTFX = "urn:afx:testfx"


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_renders_and_gradients_equal_the_rust_pool(amen, batch_gradients, tmp_path, isolation):
    with afx.Pool(COMP, workers=2, isolation=isolation) as pool:
        x, theta, grad_y = batch(amen, 5, 11025, pool.num_params)
        y, render_errors = pool.render(x, theta)
        spsa, spsa_errors = pool.spsa(x, theta, grad_y, k=3, epsilon=0.02, seed=7)
        fd, fd_errors = pool.finite_difference(x, theta, grad_y, step=0.01)
        again, _ = pool.spsa(x, theta, grad_y, k=3, epsilon=0.02, seed=7)
        other_seed, _ = pool.spsa(x, theta, grad_y, k=3, epsilon=0.02, seed=8)
        # The forward and perturbed renders in one batch, the estimate taken afterwards: the same numbers.
        y_ahead, ahead_errors, renders_ahead = pool.render_perturbed(x, theta, k=3, epsilon=0.02, seed=7)
        spsa_ahead, vjp_errors = renders_ahead.vjp(grad_y)
    assert render_errors == spsa_errors == fd_errors == ahead_errors == vjp_errors == [None] * 5
    assert np.array_equal(y_ahead.view(np.uint32), y.view(np.uint32))
    assert np.array_equal(spsa_ahead, spsa) and len(renders_ahead) == 5
    assert y.shape == x.shape and spsa.shape == fd.shape == theta.shape
    flags = ["--chain", COMP, "--workers", "2", "--k", "3", "--epsilon", "0.02", "--seed", "7", "--fd-step", "0.01"]
    renders, rust_spsa, rust_fd = rust_pool(batch_gradients, tmp_path / "batch", x, theta, grad_y, *flags)
    for i in range(5):
        assert np.array_equal(y[i].view(np.uint32), renders[i].view(np.uint32)), f"render of item {i}"
        assert np.array_equal(spsa[i], rust_spsa[i]), f"SPSA of item {i}"
        assert np.array_equal(fd[i], rust_fd[i]), f"FD of item {i}"
    assert np.array_equal(spsa, again)
    assert not np.array_equal(spsa, other_seed)
    # The estimates say something: SPSA points the way finite differences do.
    cosine = np.sum(spsa * fd) / (np.linalg.norm(spsa) * np.linalg.norm(fd))
    assert cosine > 0.3, cosine


def test_an_input_changed_in_place_between_calls_is_rendered_as_it_now_is(amen):
    # The pool reuses its copy of an item that is bit for bit the last call's; an array edited in place is not.
    with afx.Pool(COMP, workers=2) as pool:
        x, theta, _ = batch(amen, 3, 4410, pool.num_params)
        first, _ = pool.render(x, theta)
        x[1] *= 0.5
        x[2, 100] = -0.0 if x[2, 100] == 0.0 else 0.0
        second, _ = pool.render(x, theta)
        fresh, _ = pool.render(x.copy(), theta)
    assert np.array_equal(second[0], first[0])
    assert not np.array_equal(second[1], first[1])
    assert np.array_equal(second.view(np.uint32), fresh.view(np.uint32))


def test_two_threads_share_a_pool(amen):
    # Each call holds the pool without the GIL; a second thread waits for it without holding the GIL either.
    # Waiting with the GIL would deadlock the whole interpreter (join included): the faulthandler then ends the
    # run with the threads' stacks instead of letting it hang.
    import faulthandler
    import threading

    faulthandler.dump_traceback_later(240, exit=True)

    with afx.Pool(COMP, workers=2) as pool:
        x, theta, grad_y = batch(amen, 4, 4410, pool.num_params)
        expected, _ = pool.render(x, theta)
        results, failures = [], []

        def work():
            try:
                for _ in range(5):
                    results.append(pool.render(x, theta)[0])
                    pool.spsa(x, theta, grad_y)
            except Exception as e:  # reported below: a thread's exception is otherwise only printed
                failures.append(e)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "the threads hang on the pool"
    faulthandler.cancel_dump_traceback_later()
    assert failures == []
    assert len(results) == 10 and all(np.array_equal(y, expected) for y in results)


def test_item_positions_keep_their_batch_seeds(amen):
    with afx.Pool(COMP, workers=2) as pool:
        x, theta, grad_y = batch(amen, 4, 4410, pool.num_params)
        whole, _ = pool.spsa(x, theta, grad_y, k=2, seed=3)
        part, _ = pool.spsa(x[[1, 3]], theta[[1, 3]], grad_y[[1, 3]], k=2, seed=3, items=[1, 3])
    assert np.array_equal(part, whole[[1, 3]])


def test_a_segfaulting_item_is_reported_and_the_batch_completes(amen, monkeypatch):
    monkeypatch.setenv("AFX_TESTFX_FAULT", "segfault")
    with afx.Pool(TESTFX, format="lv2", workers=2) as pool:
        assert [p["id"] for p in pool.params] == ["drive", "tone", "gain"]
        x, theta, grad_y = batch(amen, 4, 4410, 3)
        theta[2, 0] = 0.99  # drive 23.8 dB: the armed fault fires in this item only
        y, errors = pool.render(x, theta)
        grads, grad_errors = pool.spsa(x, theta, grad_y, k=2, epsilon=0.005)
        y_ahead, ahead_errors, renders = pool.render_perturbed(x, theta, k=2, epsilon=0.005)
        grads_ahead, vjp_errors = renders.vjp(grad_y)
        safe = np.delete(theta, 2, axis=0)
        y_after, errors_after = pool.render(np.delete(x, 2, axis=0), safe)
    for found in (errors, grad_errors, ahead_errors, vjp_errors):
        assert [e is None for e in found] == [True, True, False, True]
        error = found[2]
        assert isinstance(error, afx.ItemError) and isinstance(error, afx.AfxError)
        assert (error.index, error.kind, error.signal) == (2, "crashed", 11)
        assert "SIGSEGV" in str(error) and "chain urn:afx:testfx at θ = [0.9900" in str(error)
        assert error.theta[0] == pytest.approx(0.99)
    assert np.isnan(y[2]).all() and np.isnan(grads[2]).all()
    assert np.array_equal(y_ahead, y, equal_nan=True) and np.array_equal(grads_ahead, grads, equal_nan=True)
    assert np.isfinite(np.delete(y, 2, axis=0)).all() and np.isfinite(np.delete(grads, 2, axis=0)).all()
    # The other items are what a pool without the crash renders, and the pool still works.
    assert errors_after == [None] * 3
    assert np.array_equal(np.delete(y, 2, axis=0), y_after)


def test_the_sandbox_caps_a_worker_and_is_named_in_the_item_error(amen, monkeypatch, tmp_path):
    # The test effect allocates without bound in the armed item; the worker's memory cap ends it there.
    monkeypatch.setenv("AFX_TESTFX_FAULT", "alloc")
    with afx.Pool(TESTFX, format="lv2", workers=2, worker_memory="256M") as pool:
        x, theta, _ = batch(amen, 3, 4410, 3)
        theta[1, 0] = 0.99
        y, errors = pool.render(x, theta)
    assert [e is None for e in errors] == [True, False, True]
    assert (errors[1].kind, errors[1].signal) == ("sandbox", None)
    assert "sandbox: memory cap 256 MiB exceeded" in str(errors[1])
    assert np.isfinite(np.delete(y, 1, axis=0)).all()
    # Off, the armed write lands where the plugin aims it; on (the default), it does not.
    target = tmp_path / "written-by-the-plugin.txt"
    monkeypatch.setenv("AFX_TESTFX_FAULT", "write-file")
    monkeypatch.setenv("AFX_TESTFX_TARGET", str(target))
    for sandbox in (True, False):
        with afx.Pool(TESTFX, format="lv2", workers=1, sandbox=sandbox) as pool:
            _, errors = pool.render(x[1:2], theta[1:2])
        assert errors == [None]
        assert target.exists() == (not sandbox)
    with pytest.raises(ValueError, match="worker_memory"):
        afx.Pool(TESTFX, format="lv2", worker_memory="1M")


def test_bad_input_raises_naming_the_argument(amen):
    with afx.Pool(COMP, workers=1) as pool:
        p = pool.num_params
        x, theta, grad_y = batch(amen, 2, 1000, p)
        with pytest.raises(TypeError, match="theta must be a float32 NumPy array, got a ndarray of dtype float64"):
            pool.render(x, theta.astype(np.float64))
        with pytest.raises(
            ValueError,
            match=rf"theta must have shape \(batch, parameters\) = \(2, {p}\), or \(batch, frames, parameters\) "
            rf"= \(2, F, {p}\) for parameters that move, got \[2, {p + 1}\]",
        ):
            pool.render(x, np.zeros((2, p + 1), np.float32))
        with pytest.raises(ValueError, match=r"theta\[1, 0\] = 1.5 is outside the normalised range \[0, 1\]"):
            bad = theta.copy()
            bad[1, 0] = 1.5
            pool.render(x, bad)
        with pytest.raises(ValueError, match=r"x must have shape \(batch, frames\) or \(batch, channels, frames\)"):
            pool.render(x[0], theta)
        with pytest.raises(ValueError, match="grad_y must have the shape of x"):
            pool.spsa(x, theta, grad_y[:, :500])
        with pytest.raises(ValueError, match="k=0"):
            pool.spsa(x, theta, grad_y, k=0)
        with pytest.raises(ValueError, match="epsilon=0"):
            pool.spsa(x, theta, grad_y, epsilon=0.0)
        with pytest.raises(ValueError, match="items holds 1 positions for a batch of 2"):
            pool.spsa(x, theta, grad_y, items=[0])
        with pytest.raises(ValueError, match="k=0"):
            pool.render_perturbed(x, theta, k=0)
        _, _, renders = pool.render_perturbed(x, theta)
        with pytest.raises(ValueError, match=r"grad_y must have the shape of x, \[2, 1000\], got \[2, 500\]"):
            renders.vjp(grad_y[:, :500])
        with pytest.raises(TypeError, match="grad_y must be a float32 NumPy array"):
            renders.vjp(grad_y.astype(np.float64))
        for method in (lambda g: pool.spsa(x, theta, g), renders.vjp):
            bad = grad_y.copy()
            bad[1, 700] = np.inf
            with pytest.raises(ValueError, match=r"grad_y\[1\]: sample inf \(NaN or infinite\) at frame 700 of channel 0"):
                method(bad)
    with pytest.raises(afx.AfxError, match="the pool of urn:zamaudio:ZamComp is closed"):
        pool.render(x, theta)
    with pytest.raises(ValueError, match='isolation="fork"'):
        afx.Pool(COMP, isolation="fork")
    with pytest.raises(ValueError, match="workers=0"):
        afx.Pool(COMP, workers=0)


def test_a_plugins_toml_chain(amen, tmp_path):
    (tmp_path / "plugins.toml").write_text(
        '[plugins.comp]\nformat = "lv2"\nid = "urn:zamaudio:ZamComp"\n'
        'params.thr = { train = true, min = -40.0, max = -10.0 }\nparams.rat = { train = true }\n'
    )
    with afx.Pool("comp", workers=1) as pool:  # ./plugins.toml is in force, as for the CLI
        assert [(p["stage"], p["id"]) for p in pool.params] == [("comp", "rat"), ("comp", "thr")]  # plugin order
        assert pool.plain_values(np.array([1.0, 0.0], np.float32))["thr"] == -40.0
    (tmp_path / "plugins.toml").write_text("[plugins.comp]\nformat = 'lv2'\n")
    with pytest.raises(afx.AfxError, match="plugins.toml"):
        afx.Pool("comp")


def test_parameters_that_move(amen):
    # θ (batch, F, P) with a hop: row f from frame f·hop, rendered as automation, its gradient (batch, F, P).
    hop, frames = 1024, 8192
    with afx.Pool(COMP, workers=2) as pool:
        p = pool.num_params
        x, theta, grad_y = batch(amen, 3, frames, p)
        rows = frames // hop
        held = np.repeat(theta[:, None, :], rows, axis=1)
        fixed, _ = pool.render(x, theta)
        moving_but_held, errors = pool.render(x, held, hop=hop)
        assert errors == [None] * 3
        assert np.array_equal(moving_but_held.view(np.uint32), fixed.view(np.uint32))
        rng = np.random.default_rng(1)
        trajectory = rng.uniform(0.05, 0.95, (3, rows, p)).astype(np.float32)
        moving, _ = pool.render(x, trajectory, hop=hop)
        # Row 0 holds until frame hop: the output is the fixed render's at row 0 until then, and not after.
        first, _ = pool.render(x, trajectory[:, 0, :])
        assert np.array_equal(moving[:, :hop], first[:, :hop]) and not np.array_equal(moving, first)
        fd, _ = pool.finite_difference(x, trajectory, grad_y, step=0.01, hop=hop)
        assert fd.shape == (3, rows, p)
        cosines = {}
        for scoring in ("whole", "window:1"):
            spsa, errors = pool.spsa(x, trajectory, grad_y, k=16, epsilon=0.01, seed=3, hop=hop, scoring=scoring)
            assert errors == [None] * 3 and spsa.shape == (3, rows, p)
            _, _, ahead = pool.render_perturbed(x, trajectory, k=16, epsilon=0.01, seed=3, hop=hop, scoring=scoring)
            assert np.array_equal(ahead.vjp(grad_y)[0], spsa)
            cosines[scoring] = np.mean(
                [np.sum(s * f) / (np.linalg.norm(s) * np.linalg.norm(f)) for s, f in zip(spsa, fd)]
            )
        # Each row scored against its own output and the next row's: closer to finite differences at equal renders.
        assert cosines["window:1"] > cosines["whole"], cosines
        with pytest.raises(ValueError, match=r"theta has 8 rows per item; x's 8192 frames at hop=512 need 16"):
            pool.render(x, trajectory, hop=512)
        with pytest.raises(ValueError, match="give hop, the frames per row"):
            pool.render(x, trajectory)
        with pytest.raises(ValueError, match="hop=1024 is for parameters that move"):
            pool.render(x, theta, hop=hop)
        with pytest.raises(ValueError, match=r"theta\[2, 5, 1\] = 2 is outside the normalised range"):
            bad = trajectory.copy()
            bad[2, 5, 1] = 2.0
            pool.render(x, bad, hop=hop)
        with pytest.raises(ValueError, match=r"scoring=\"sideways\""):
            pool.spsa(x, trajectory, grad_y, hop=hop, scoring="sideways")
