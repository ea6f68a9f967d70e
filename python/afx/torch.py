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

When θ needs a gradient, the forward pass makes the backward pass's 2K perturbed renders per item too, in the
same batch as ``y`` (``pool.render_perturbed``, as DeepAFx's layer runs its three instances in the forward pass):
the workers start and drain once per step, the backward pass only takes dot products with ``∂L/∂y``, and the
perturbed renders (2K outputs per item) are held until then. Under ``torch.no_grad()``, or for a θ that needs no
gradient, the forward pass only renders ``y``.

Parameters that move: give ``hop`` and θ of shape ``(batch, F, P)``, one row per ``hop`` frames (F = ⌈frames /
hop⌉): the chain renders them as automation (row ``f`` from frame ``f·hop``, sample-accurate in every format),
and θ's gradient has that shape too. A controller that emits one parameter vector per frame, as DeepAFx's does,
trains through the real plugins this way; ``scoring="window:1"`` scores each row's perturbation against its own
and the next row's output, much less noise than ``"whole"`` for effects whose memory is shorter than a hop (see
the README's "Gradients of trajectories").

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
    def forward(ctx, x, theta, layer, wants_gradient):
        x_np, theta_np = _as_numpy(x), _as_numpy(theta)
        renders = None
        if wants_gradient:
            # The backward pass's renders are made now, in the same batch as the forward pass's (DeepAFx's three
            # instances): the workers start and drain once per step. backward() then only takes dot products.
            seed = layer.seed
            layer.seed += 1
            y, errors, renders = layer.pool.render_perturbed(x_np, theta_np, k=layer.k, epsilon=layer.epsilon,
                                                             seed=seed, hop=layer.hop, scoring=layer.scoring)
        else:
            y, errors = layer.pool.render(x_np, theta_np, hop=layer.hop)
        layer.forward_errors = errors
        ok = np.array([e is None for e in errors])
        y[~ok] = 0.0
        # This pass's errors, kept with it: the layer may run again before this pass's backward.
        ctx.layer, ctx.renders, ctx.forward_errors = layer, renders, errors
        return torch.from_numpy(y).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        layer = ctx.layer
        grad_theta = None
        if ctx.needs_input_grad[1]:
            estimate, item_errors = ctx.renders.vjp(_as_numpy(grad_y))
            errors = list(ctx.forward_errors)
            # An item that did not render got silence: its gradient is zero whatever its other renders gave.
            for row, error in enumerate(item_errors):
                if error is not None and errors[row] is None:
                    errors[row] = error
            failed = np.array([e is not None for e in errors])
            estimate[failed] = 0.0
            layer.backward_errors = errors
            grad_theta = torch.from_numpy(estimate).to(device=grad_y.device, dtype=grad_y.dtype)
        return None, grad_theta, None, None


class PluginLayer(torch.nn.Module):
    """``y = layer(x, theta)``: ``pool``'s chain rendered on every item, differentiable in ``theta`` by SPSA.

    Args:
        pool: an ``afx.Pool``; its ``params`` give θ's columns, its ``sample_rate`` the audio's rate.
        k: perturbations per item and backward pass (each costs two renders).
        epsilon: perturbation size in the normalised space (DeepAFx: 0.01).
        seed: the first training pass's seed (a forward pass that makes a gradient's renders); each such pass
            uses the next one, so a run is repeatable and consecutive steps draw fresh perturbations. Item ``i`` of
            a pass seeded ``s`` is perturbed exactly as ``pool.spsa(..., seed=s)`` perturbs it.
        hop: frames per row of θ for parameters that move (θ ``(batch, F, P)``); ``None``: fixed parameters.
        scoring: how SPSA scores a row's perturbation with ``hop``: ``"whole"``, ``"causal"`` or ``"window:W"``.

    Shapes: ``x`` ``(batch, frames)`` or ``(batch, channels, frames)``, ``theta`` ``(batch, P)`` in [0, 1] (or
    ``(batch, F, P)`` with ``hop``); any
    float dtype and device (the audio travels to the workers as float32 on the CPU). The output has ``x``'s shape,
    dtype and device.
    """

    def __init__(self, pool, k=1, epsilon=0.01, seed=0, hop=None, scoring="whole"):
        super().__init__()
        if k < 1:
            raise ValueError(f"k={k}: SPSA needs at least one perturbation")
        if not 0.0 < epsilon <= 0.5:
            raise ValueError(f"epsilon={epsilon}: give a step in (0, 0.5] of the normalised range")
        if hop is not None and hop < 1:
            raise ValueError(f"hop={hop}: give the frames per row of θ, at least 1")
        self.pool, self.k, self.epsilon, self.seed = pool, k, epsilon, seed
        self.hop, self.scoring = hop, scoring
        self.forward_errors = []
        self.backward_errors = []

    def forward(self, x, theta):
        if x.shape[0] != theta.shape[0]:
            raise ValueError(f"x holds {x.shape[0]} items and theta {theta.shape[0]}: give one θ row per item")
        # Inside the autograd function grad mode is off, and `needs_input_grad` ignores torch.no_grad(): whether a
        # backward pass can come is known here only.
        wants_gradient = torch.is_grad_enabled() and theta.requires_grad
        return _PluginFunction.apply(x, theta, self, wants_gradient)

    def extra_repr(self):
        moving = "" if self.hop is None else f", hop={self.hop}, scoring={self.scoring!r}"
        return f"chain={self.pool.chain!r}, k={self.k}, epsilon={self.epsilon}{moving}"
