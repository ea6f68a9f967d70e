"""afx.torch.PluginLayer: its forward is the pool's render, its gradient the Rust pool's SPSA estimate for the same
seed, and a crashing item gets silence, a zero gradient and its error while the others train."""

import numpy as np
import pytest
import torch

import afx
import afx.torch
from conftest import batch, rust_pool

COMP = "urn:zamaudio:ZamComp"


def test_gradients_are_the_rust_pools_spsa_estimates(amen, batch_gradients, tmp_path):
    with afx.Pool(COMP, workers=2) as pool:
        x, theta, grad_y = batch(amen, 4, 8820, pool.num_params, seed=1)
        layer = afx.torch.PluginLayer(pool, k=2, epsilon=0.01, seed=41)
        theta_t = torch.tensor(theta, requires_grad=True)
        y = layer(torch.from_numpy(x), theta_t)
        # L = ⟨y, g⟩, so ∂L/∂y is exactly g.
        (y * torch.from_numpy(grad_y)).sum().backward()
        rendered, _ = pool.render(x, theta)
        second = torch.tensor(theta, requires_grad=True)
        (layer(torch.from_numpy(x), second) * torch.from_numpy(grad_y)).sum().backward()
        next_seed, _ = pool.spsa(x, theta, grad_y, k=2, epsilon=0.01, seed=42)
    assert np.array_equal(y.detach().numpy(), rendered)
    assert layer.forward_errors == layer.backward_errors == [None] * 4
    flags = ["--chain", COMP, "--workers", "2", "--k", "2", "--epsilon", "0.01", "--seed", "41"]
    _, rust_spsa, _ = rust_pool(batch_gradients, tmp_path / "batch", x, theta, grad_y, *flags)
    assert np.array_equal(theta_t.grad.numpy(), np.stack(rust_spsa))
    # Each backward pass draws the next seed's perturbations.
    assert layer.seed == 43
    assert np.array_equal(second.grad.numpy(), next_seed)


def test_dtype_and_device_follow_the_input(amen):
    with afx.Pool(COMP, workers=1) as pool:
        x, theta, _ = batch(amen, 2, 2000, pool.num_params)
        layer = afx.torch.PluginLayer(pool)
        theta_t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        y = layer(torch.tensor(x, dtype=torch.float64), theta_t)
        assert y.dtype == torch.float64 and y.shape == x.shape
        y.square().sum().backward()
        assert theta_t.grad.dtype == torch.float64 and theta_t.grad.abs().sum() > 0
        with pytest.raises(ValueError, match="x holds 2 items and theta 1"):
            layer(torch.from_numpy(x), torch.from_numpy(theta[:1]))
        with pytest.raises(ValueError, match="k=0"):
            afx.torch.PluginLayer(pool, k=0)
        # Without a gradient to compute (inference), the layer only renders: no backward pass, no seed drawn.
        with torch.no_grad():
            plain = layer(torch.from_numpy(x), torch.from_numpy(theta))
        assert layer.seed == 1 and np.array_equal(plain.numpy(), pool.render(x, theta)[0])


def test_a_crashing_item_gets_silence_a_zero_gradient_and_its_error(amen, monkeypatch):
    monkeypatch.setenv("AFX_TESTFX_FAULT", "segfault")
    with afx.Pool("urn:afx:testfx", format="lv2", workers=2) as pool:
        x, theta, grad_y = batch(amen, 3, 4410, 3, seed=2)
        theta[1, 0] = 0.99  # drive 23.8 dB arms the fault in item 1
        layer = afx.torch.PluginLayer(pool, k=2, epsilon=0.005, seed=5)
        theta_t = torch.tensor(theta, requires_grad=True)
        y = layer(torch.from_numpy(x), theta_t)
        (y * torch.from_numpy(grad_y)).sum().backward()
        others, errors = pool.spsa(x[[0, 2]], theta[[0, 2]], grad_y[[0, 2]], k=2, epsilon=0.005, seed=5, items=[0, 2])
    assert errors == [None, None]
    assert [e is None for e in layer.forward_errors] == [True, False, True]
    assert layer.forward_errors[1].kind == "crashed" and layer.forward_errors[1].signal == 11
    assert layer.backward_errors[1] is layer.forward_errors[1]
    assert (y[1] == 0).all() and torch.isfinite(y).all()
    assert (theta_t.grad[1] == 0).all()
    assert np.array_equal(theta_t.grad.numpy()[[0, 2]], others)


def test_two_forward_passes_before_one_backward_each_get_their_own_gradient(amen):
    # Each forward pass keeps its own perturbed renders and errors: the second must not overwrite the first's.
    with afx.Pool(COMP, workers=2) as pool:
        x, theta, grad_y = batch(amen, 4, 4410, pool.num_params, seed=3)
        layer = afx.torch.PluginLayer(pool, k=1, epsilon=0.01, seed=9)
        first = torch.tensor(theta[:2], requires_grad=True)
        second = torch.tensor(theta[2:], requires_grad=True)
        y_first = layer(torch.from_numpy(x[:2]), first)
        y_second = layer(torch.from_numpy(x[2:]), second)
        loss = (y_first * torch.from_numpy(grad_y[:2])).sum() + (y_second * torch.from_numpy(grad_y[2:])).sum()
        loss.backward()
        want_first, _ = pool.spsa(x[:2], theta[:2], grad_y[:2], k=1, epsilon=0.01, seed=9)
        want_second, _ = pool.spsa(x[2:], theta[2:], grad_y[2:], k=1, epsilon=0.01, seed=10)
    assert np.array_equal(first.grad.numpy(), want_first)
    assert np.array_equal(second.grad.numpy(), want_second)
    assert not np.array_equal(want_first, want_second)


def test_a_controller_can_emit_automation(amen):
    # θ (batch, F, P) with a hop: the layer renders it as automation and θ's gradient is the pool's SPSA estimate
    # of every row, bit for bit.
    hop, frames = 1024, 4096
    with afx.Pool(COMP, workers=2) as pool:
        x, _, grad_y = batch(amen, 2, frames, pool.num_params)
        rows = frames // hop
        theta = np.random.default_rng(5).uniform(0.1, 0.9, (2, rows, pool.num_params)).astype(np.float32)
        layer = afx.torch.PluginLayer(pool, k=2, epsilon=0.01, seed=4, hop=hop, scoring="window:1")
        assert "hop=1024, scoring='window:1'" in repr(layer)
        theta_t = torch.tensor(theta, requires_grad=True)
        y = layer(torch.from_numpy(x), theta_t)
        assert np.array_equal(y.detach().numpy(), pool.render(x, theta, hop=hop)[0])
        (y * torch.from_numpy(grad_y)).sum().backward()
        expected, _ = pool.spsa(x, theta, grad_y, k=2, epsilon=0.01, seed=4, hop=hop, scoring="window:1")
        assert theta_t.grad.shape == (2, rows, pool.num_params)
        assert np.array_equal(theta_t.grad.numpy(), expected)
        with pytest.raises(ValueError, match="hop=0"):
            afx.torch.PluginLayer(pool, hop=0)
