"""Adam written against the array API (docs/math.md §3; paper defaults lr 8e-5, β1 = 0.5).

    m ← β1 m + (1 − β1) g          v ← β2 v + (1 − β2) g²
    θ ← θ − lr · m̂ / (√v̂ + ε),     m̂ = m/(1 − β1ᵗ),  v̂ = v/(1 − β2ᵗ)

Functional: ``step`` returns new parameter arrays and never mutates its inputs, so the
same code runs on every backend (array-api-strict has no in-place updates).
"""

from __future__ import annotations

import math

from . import _backend


class Adam:
    """Adam over a dict of arrays (one moment pair per parameter)."""

    def __init__(self, *, lr: float = 8e-5, betas=(0.5, 0.999), eps: float = 1e-8):
        if lr <= 0 or not math.isfinite(lr):
            raise ValueError(f"lr must be positive, got {lr}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.lr, self.betas, self.eps = float(lr), (float(b1), float(b2)), float(eps)
        self.m: dict = {}
        self.v: dict = {}
        self.t = 0

    def step(self, params: dict, grads: dict) -> dict:
        """One update along ``−grads`` (``grads`` are gradients of the loss to minimise)."""
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        new = {}
        for k, p in params.items():
            g = grads[k]
            m = g * (1.0 - b1) if k not in self.m else self.m[k] * b1 + g * (1.0 - b1)
            v = (g * g) * (1.0 - b2) if k not in self.v else self.v[k] * b2 + (g * g) * (1.0 - b2)
            self.m[k], self.v[k] = m, v
            xp = _backend.array_namespace(p)
            new[k] = p - (m * (self.lr / c1)) / (xp.sqrt(v / c2) + self.eps)
        return new

    def state_dict(self) -> dict:
        """Host (NumPy) copies of the moments and the step count."""
        return {
            "t": self.t,
            "m": {k: _backend.to_numpy(v) for k, v in self.m.items()},
            "v": {k: _backend.to_numpy(v) for k, v in self.v.items()},
        }

    def load_state_dict(self, state: dict, *, like: dict) -> None:
        """Restore moments onto the backend/dtype/device of the arrays in ``like``."""
        self.t = int(state["t"])

        def put(arrs):
            out = {}
            for k, a in arrs.items():
                ref = like[k]
                xp = _backend.array_namespace(ref)
                out[k] = _backend.from_numpy(xp, a, dtype=ref.dtype, device=_backend.device(ref))
            return out

        self.m, self.v = put(state["m"]), put(state["v"])
