"""Adam written against the array API (docs/math.md §3; paper defaults lr 8e-5, β1 = 0.5).

    m ← β1 m + (1 − β1) g          v ← β2 v + (1 − β2) g²
    θ ← θ − lr · m̂ / (√v̂ + ε),     m̂ = m/(1 − β1ᵗ),  v̂ = v/(1 − β2ᵗ)

The optimiser is a pure pair ``init(params) → state`` and ``update(state, params, grads)
→ (params, state)``: the moments live in an explicit ``AdamState`` and no array is
mutated, so the same code runs on every backend (array-api-strict has no in-place
updates) and checkpointing is ``state_to_host`` / ``state_from_host``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

from . import _backend


class AdamState(NamedTuple):
    """Step count and first/second moments (one array per parameter; empty before step 1)."""

    t: int
    m: dict
    v: dict


class Adam:
    """Adam over a dict of arrays; holds only hyperparameters (the state is ``AdamState``)."""

    def __init__(self, *, lr: float = 8e-5, betas=(0.5, 0.999), eps: float = 1e-8):
        if lr <= 0 or not math.isfinite(lr):
            raise ValueError(f"lr must be positive, got {lr}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.lr, self.betas, self.eps = float(lr), (float(b1), float(b2)), float(eps)

    @staticmethod
    def init(params: dict) -> AdamState:
        """The state before the first step (the moments start from the first gradient)."""
        return AdamState(0, {}, {})

    def update(self, state: AdamState, params: dict, grads: dict, *, lr: Optional[float] = None):
        """One step along ``−grads`` (gradients of the loss to minimise): ``(params, state)``.

        ``lr`` overrides the learning rate for this step (a schedule).
        """
        lr = self.lr if lr is None else float(lr)
        t = state.t + 1
        lr_c1, c2 = self.bias_corrections(t, lr)
        new, ms, vs = adam_arithmetic(params, grads, state.m, state.v, lr_c1=lr_c1, c2=c2, betas=self.betas,
                                      eps=self.eps)
        return new, AdamState(t, ms, vs)

    def bias_corrections(self, t: int, lr: float):
        """``(lr / (1 − β1ᵗ), 1 − β2ᵗ)`` for step ``t`` (Python floats)."""
        b1, b2 = self.betas
        return lr / (1.0 - b1**t), 1.0 - b2**t

    @staticmethod
    def state_to_host(state: AdamState) -> dict:
        """Host (NumPy) copies of the moments and the step count (the checkpoint's ``adam``)."""
        return {
            "t": state.t,
            "m": {k: _backend.to_numpy(v) for k, v in state.m.items()},
            "v": {k: _backend.to_numpy(v) for k, v in state.v.items()},
        }

    @staticmethod
    def state_from_host(host: dict, *, like: dict) -> AdamState:
        """The state of ``state_to_host`` on the backend/dtype/device of the arrays in ``like``."""

        def put(arrs):
            out = {}
            for k, a in arrs.items():
                ref = like[k]
                xp = _backend.array_namespace(ref)
                out[k] = _backend.from_numpy(xp, a, dtype=ref.dtype, device=_backend.device(ref))
            return out

        return AdamState(int(host["t"]), put(host["m"]), put(host["v"]))


def adam_arithmetic(params: dict, grads: dict, m: dict, v: dict, *, lr_c1, c2, betas, eps: float):
    """Adam's moments and step for every parameter: ``(new params, m, v)``.

    ``m``/``v`` hold the previous moments; a parameter missing from them starts from its first
    gradient. ``lr_c1 = lr/(1 − β1ᵗ)`` and ``c2 = 1 − β2ᵗ`` may be Python floats or 0-d
    arrays (traced inside ``srl.compiled``'s training iteration, so that a learning-rate
    schedule does not recompile).
    """
    b1, b2 = betas
    new, ms, vs = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        mk = g * (1.0 - b1) if k not in m else m[k] * b1 + g * (1.0 - b1)  # m ← β1 m + (1 − β1) g
        vk = (g * g) * (1.0 - b2) if k not in v else v[k] * b2 + (g * g) * (1.0 - b2)  # v ← β2 v + (1 − β2) g²
        ms[k], vs[k] = mk, vk
        xp = _backend.array_namespace(p)
        new[k] = p - (mk * lr_c1) / (xp.sqrt(vk / c2) + eps)  # θ − lr m̂/(√v̂ + ε)
    return new, ms, vs
