"""The real plugin chain as a PyTorch layer: forward renders it, backward is DeepAFx's SPSA estimate.

>>> import afx, afx.torch
>>> pool = afx.Pool("ZamComp", format="lv2", workers=2)
>>> layer = afx.torch.PluginLayer(pool, epsilon=0.01)
>>> y = layer(x, torch.sigmoid(controller(x)))   # x: (batch, frames) audio, θ: (batch, P) in [0, 1]
>>> loss_fn(y, target).backward()                  # θ's gradient: one SPSA estimate per item

The estimate of item ``i`` is ``ĝ = (1/K) Σ_k ⟨∂L/∂y, y(θ + εΔ_k) − y(θ − εΔ_k)⟩ / (2ε) · Δ_k`` with Rademacher
``Δ_k``: two renders per perturbation, spread over the pool's workers. It is an unbiased estimate of the
vector-Jacobian product ``(∂y/∂θ)ᵀ ∂L/∂y`` up to O(ε²); the audio input gets no gradient (``None``): put the
layer where its input is data, as DeepAFx does.

An item whose render or estimate fails (a crash, a hang, NaN) does not stop the batch: its output is silence,
its gradient zero, and its ``afx.ItemError`` is in ``layer.forward_errors`` / ``layer.backward_errors``.
"""

import numpy as np
import torch

__all__ = ["PluginLayer"]


def _as_numpy(tensor):
    """A tensor as a float32 NumPy array, without a copy when it already is one on the CPU."""
    return np.ascontiguousarray(tensor.detach().to(device="cpu", dtype=torch.float32).numpy())


class _PluginFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, layer):
        x_np, theta_np = _as_numpy(x), _as_numpy(theta)
        y, errors = layer.pool.render(x_np, theta_np)
        layer.forward_errors = errors
        ok = np.array([e is None for e in errors])
        y[~ok] = 0.0
        ctx.layer, ctx.x, ctx.theta, ctx.ok = layer, x_np, theta_np, ok
        return torch.from_numpy(y).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        layer = ctx.layer
        grad_theta = None
        if ctx.needs_input_grad[1]:
            seed = layer.seed
            layer.seed += 1
            rows = np.flatnonzero(ctx.ok)
            gradient = np.zeros(ctx.theta.shape, np.float32)
            errors = list(layer.forward_errors)
            if len(rows) > 0:
                # Only the items that rendered; each keeps the seed it has in the whole batch. When all did, the
                # arrays go as they are: indexing would copy the batch's audio for nothing.
                x, theta, grad = ctx.x, ctx.theta, _as_numpy(grad_y)
                if len(rows) < len(ctx.ok):
                    x, theta, grad = x[rows], theta[rows], grad[rows]
                estimate, item_errors = layer.pool.spsa(
                    x, theta, grad, k=layer.k, epsilon=layer.epsilon, seed=seed, items=rows.tolist()
                )
                for row, g, error in zip(rows, estimate, item_errors):
                    if error is None:
                        gradient[row] = g
                    else:
                        errors[row] = error
            layer.backward_errors = errors
            grad_theta = torch.from_numpy(gradient).to(device=grad_y.device, dtype=grad_y.dtype)
        return None, grad_theta, None


class PluginLayer(torch.nn.Module):
    """``y = layer(x, theta)``: ``pool``'s chain rendered on every item, differentiable in ``theta`` by SPSA.

    Args:
        pool: an ``afx.Pool``; its ``params`` give θ's columns, its ``sample_rate`` the audio's rate.
        k: perturbations per item and backward pass (each costs two renders).
        epsilon: perturbation size in the normalised space (DeepAFx: 0.01).
        seed: the first backward pass's seed; each backward pass uses the next one, so a run is repeatable and
            consecutive steps draw fresh perturbations. Item ``i`` of a pass seeded ``s`` is perturbed exactly as
            ``pool.spsa(..., seed=s)`` perturbs it.

    Shapes: ``x`` ``(batch, frames)`` or ``(batch, channels, frames)``, ``theta`` ``(batch, P)`` in [0, 1]; any
    float dtype and device (the audio travels to the workers as float32 on the CPU). The output has ``x``'s shape,
    dtype and device.
    """

    def __init__(self, pool, k=1, epsilon=0.01, seed=0):
        super().__init__()
        if k < 1:
            raise ValueError(f"k={k}: SPSA needs at least one perturbation")
        if not 0.0 < epsilon <= 0.5:
            raise ValueError(f"epsilon={epsilon}: give a step in (0, 0.5] of the normalised range")
        self.pool, self.k, self.epsilon, self.seed = pool, k, epsilon, seed
        self.forward_errors = []
        self.backward_errors = []

    def forward(self, x, theta):
        if x.shape[0] != theta.shape[0]:
            raise ValueError(f"x holds {x.shape[0]} items and theta {theta.shape[0]}: give one θ row per item")
        return _PluginFunction.apply(x, theta, self)

    def extra_repr(self):
        return f"chain={self.pool.chain!r}, k={self.k}, epsilon={self.epsilon}"
