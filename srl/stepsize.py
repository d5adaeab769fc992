"""Step-size optimisers: grid search (the paper's option) and Adam on log s (docs/math.md §4).

Both are explicit-state optimisers: ``init() → state`` and ``update(state, gen, params, x,
step_size, ...) → (StepSizeUpdate, state)``; ``state_to_json`` / ``state_from_json`` give
the checkpointed form. Both minimise a step-size objective (``kind="jacobian"``, J_jac of eq. 4.1, or
``kind="reverse"``, −log w of eq. 5.1) averaged over a minibatch, on common random
numbers (every candidate of one update sees the same chain noise). They are meant to be
called inside training every N iterations on a subset of the batch (``srl.train``).

Divergence — a non-finite or exploding chain, or a singular ``I − A H_k`` — is detected
(``DivergenceError`` from the objective): a grid candidate that diverges is discarded,
and when the current step size itself diverges it is multiplied by ``backoff``; every
such event raises a ``StepSizeWarning`` saying what happened.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from . import _backend
from .distributed import SINGLE, local_chain_noise
from .errors import DivergenceError
from .objectives import KINDS, stepsize_objective
from .random import host_rng, standard_normal_groups


def _check_positive(name, value):
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


class StepSizeWarning(UserWarning):
    """A step size was discarded or backed off because the chain diverged."""


@dataclass
class StepSizeUpdate:
    """What one optimiser call did."""

    step_size: tuple  # the new step sizes, one per group
    objective: float  # mean objective at the new step size (nan if unknown)
    grad: Optional[tuple] = None  # mean gradient per group (gradient method)
    diverged: bool = False  # whether a back-off happened
    evaluated: dict = field(default_factory=dict)  # grid: candidate tuple -> mean objective
    stability: float = math.nan  # the checked quantile of the chain's stability index λ̃_max (eq. 2.2)
    projected: bool = False  # whether s was projected back into the stable region


def _mean_objective(gen, params, x, s, *, kind, n_steps, sigma, seed, workers=SINGLE, **opts):
    """Mean objective over the batch ``x`` and its mean s-gradient ``(L,)``, on host.

    With several workers (``srl.distributed``) each evaluates its rows of ``x`` on the whole
    batch's noise; the sums and a divergence flag are all-reduced, so every worker gets the
    same value, gradient and divergence decision — those of one process up to the order of
    summation.
    """
    if not workers.distributed:
        values, grad = stepsize_objective(gen, params, x, step_size=s, n_steps=n_steps, sigma=sigma, seed=seed,
                                          kind=kind, **opts)
        n = values.shape[0]
        return float(_backend.to_numpy(values).mean()), _backend.to_numpy(grad) / n
    if opts.get("logdet", "exact") != "exact":
        raise ValueError("the Hutchinson log-determinant draws its probes per worker; use logdet='exact' "
                         "with several workers")
    xp, n = _backend.array_namespace(x), x.shape[0]
    rows = workers.rows(n)
    z0, noise = local_chain_noise(seed, n, gen.latent_dims, n_steps, rows=rows, xp=xp, dtype=x.dtype,
                                  device=_backend.device(x))
    local, reason = np.zeros(2 + len(gen.latent_dims)), None  # [diverged, Σ values, Σ ∂/∂s]
    try:
        values, grad = stepsize_objective(gen, params, x[rows], step_size=s, n_steps=n_steps, sigma=sigma,
                                          kind=kind, z0=z0, noise=noise, **opts)
        local[1], local[2:] = float(np.sum(_backend.to_numpy(values))), _backend.to_numpy(grad)
    except DivergenceError as exc:
        local[0], reason = 1.0, str(exc)
    total = workers.sum_host(local)
    if total[0] > 0:
        raise DivergenceError(reason or f"step-size objective ({kind}) diverged on another worker with step_size={s}")
    return float(total[1]) / n, total[2:] / n


def _stability_indices(gen, params, x, s, *, n_steps, sigma, seed, n_iter, workers=SINGLE):
    """Per-example stability index ``λ̃_max`` (eq. 2.2) at the ``z_K`` of a chain at ``s``,
    ``(n,)`` on host; with several workers each computes its rows and the vector is all-reduced."""
    from .langevin import _short_run, chain_ok, check_chain
    from .stability import _stability_index

    xp, n = _backend.array_namespace(x), x.shape[0]
    rows = workers.rows(n) if workers.distributed else slice(0, n)
    dev = _backend.device(x)
    z0, noise = local_chain_noise(seed, n, gen.latent_dims, n_steps, rows=rows, xp=xp, dtype=x.dtype, device=dev)
    zK, _ = _short_run(xp, gen, params, x[rows, ...], z0, noise, s, sigma)  # eq. (2.1)
    if not workers.distributed:
        check_chain(xp, zK, step_size=s, sigma=sigma, n_steps=n_steps)
    v0 = standard_normal_groups(host_rng([*np.atleast_1d(seed).tolist(), 1]), n, gen.latent_dims, xp=xp,
                                dtype=x.dtype, device=dev)
    lam = _stability_index(xp, gen, params, x[rows, ...], zK, tuple(v[rows, ...] for v in v0), s, sigma, n_iter)
    lam = _backend.to_numpy(lam).astype(np.float64)  # (n_rows,)
    if not workers.distributed:
        return lam
    full = np.zeros(n + 1)  # every worker's rows, and a divergence count, all-reduced
    full[rows] = lam
    full[n] = 0.0 if chain_ok(xp, zK) else 1.0
    full = workers.sum_host(full)
    if full[n] > 0:
        raise DivergenceError(f"short-run chain diverged on a worker with step_size={s}")
    return full[:n]


class GridSearch:
    """Pick the step size with the lowest mean objective on a grid (the paper's option).

    ``candidates``: absolute step sizes to try; otherwise ``factors`` times the current
    value (a local multiplicative grid). With ``tied=True`` all groups share one value;
    otherwise the groups are swept one after another (coordinate descent), each over
    the same grid with the others held fixed.
    """

    def __init__(self, *, kind: str = "jacobian", candidates=None, factors=(0.5, 0.71, 1.0, 1.41, 2.0),
                 tied: bool = True, backoff: float = 0.5, **objective_options):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if candidates is not None and (len(candidates) == 0 or min(candidates) <= 0):
            raise ValueError("candidates must be a non-empty list of positive step sizes")
        self.kind, self.tied, self.backoff = kind, tied, float(backoff)
        self.candidates = None if candidates is None else tuple(float(c) for c in candidates)
        self.factors = tuple(float(f) for f in factors)
        self.options = objective_options

    def _grid(self, current):
        if self.candidates is not None:
            return self.candidates
        return tuple(current * f for f in self.factors)

    @staticmethod
    def init():
        """Grid search keeps no state between updates."""
        return None

    @staticmethod
    def state_to_json(state):
        return None

    @staticmethod
    def state_from_json(doc):
        return None

    def update(self, state, gen, params, x, step_size, *, n_steps, sigma, seed=0, workers=SINGLE):
        """One grid search from ``step_size``: ``(StepSizeUpdate, state)``.

        ``workers``: the grid values are all-reduced over the workers' rows of ``x``
        (``srl.distributed``), so every worker picks the same step size.
        """
        return self._search(gen, params, x, step_size, n_steps=n_steps, sigma=sigma, seed=seed,
                            workers=workers), state

    def _search(self, gen, params, x, step_size, *, n_steps, sigma, seed, workers) -> StepSizeUpdate:
        s = list(step_size)
        L = len(s)
        evaluated = {}

        def score(cand):
            key = tuple(round(c, 12) for c in cand)
            if key not in evaluated:
                try:
                    evaluated[key] = _mean_objective(gen, params, x, cand, kind=self.kind, n_steps=n_steps,
                                                     sigma=sigma, seed=seed, workers=workers, **self.options)[0]
                except DivergenceError as exc:
                    warnings.warn(f"step size {key} discarded: {exc}", StepSizeWarning, stacklevel=4)
                    evaluated[key] = math.inf
            return evaluated[key]

        groups = [list(range(L))] if self.tied else [[j] for j in range(L)]
        for members in groups:
            grid = self._grid(s[members[0]])
            best, best_val = None, math.inf
            for c in grid:
                cand = list(s)
                for j in members:
                    cand[j] = c
                val = score(cand)
                if val < best_val:
                    best, best_val = c, val
            if best is None:  # everything diverged: back off from the current value
                for j in members:
                    s[j] *= self.backoff
                warnings.warn(f"every grid step size diverged; backing off to {tuple(s)}", StepSizeWarning,
                              stacklevel=3)
                return StepSizeUpdate(tuple(s), math.nan, diverged=True, evaluated=evaluated)
            for j in members:
                s[j] = best
        return StepSizeUpdate(tuple(s), score(s), evaluated=evaluated)


class LogStepAdamState(NamedTuple):
    """Adam's step count and moments on ``log s`` (host float64 arrays; None before step 1)."""

    t: int
    m: Optional[np.ndarray]
    v: Optional[np.ndarray]


class AdamLogStep:
    """Adam on ``log s`` with the exact objective gradient (``∂/∂ log s = s ∂/∂s``).

    ``tied=True`` keeps one shared value (the group gradients are summed). On divergence
    the step size is multiplied by ``backoff``, the Adam moments are reset and a
    ``StepSizeWarning`` is raised. ``min_step``/``max_step`` bound the result.

    **Stable region** (docs/math.md eq. 2.2 and §5, "Choosing s"). Before each step the
    stability index ``λ̃_max`` of the chain is estimated at ``z_K`` for every example
    (``srl.stability``). When more than ``1 − stable_fraction`` of the examples have
    ``λ̃_max ≥ 2`` the chain is unstable for them, and the objectives' pathwise s-gradients
    grow like ``|1 − λ̃_max|^K`` with a sign that carries no information. Instead of an
    Adam step, s is then projected back into the stable region: all groups are scaled by
    ``c = (2·margin / q)^{1/2}``, where q is the ``stable_fraction`` quantile of ``λ̃_max``
    (``λ̃`` scales as s², so the quantile lands at ``2·margin``); the Adam moments are kept.
    ``stable_fraction=None`` turns the projection off.
    """

    def __init__(self, *, kind: str = "reverse", lr: float = 0.05, betas=(0.9, 0.999), eps: float = 1e-8,
                 tied: bool = False, backoff: float = 0.5, min_step: float = 1e-5, max_step: float = 2.0,
                 stable_fraction: Optional[float] = 0.9, margin: float = 0.9, power_iterations: int = 10,
                 **objective_options):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        _check_positive("lr (the step-size learning rate)", lr)
        _check_positive("backoff", backoff)
        for name, value in (("stable_fraction", stable_fraction), ("margin", margin)):
            if (value is not None or name == "margin") and not (
                    isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1):
                raise ValueError(f"{name} must be in (0, 1]{' or None' if name == 'stable_fraction' else ''}, "
                                 f"got {value!r}")
        if isinstance(power_iterations, bool) or not isinstance(power_iterations, int) or power_iterations < 1:
            raise ValueError(f"power_iterations must be a positive integer, got {power_iterations!r}")
        self.stable_fraction, self.margin = stable_fraction, float(margin)
        self.power_iterations = power_iterations
        self.kind, self.lr, self.betas, self.eps = kind, float(lr), tuple(betas), float(eps)
        self.tied, self.backoff = tied, float(backoff)
        self.min_step, self.max_step = float(min_step), float(max_step)
        self.options = objective_options

    @staticmethod
    def init() -> LogStepAdamState:
        return LogStepAdamState(0, None, None)

    @staticmethod
    def state_to_json(state: LogStepAdamState) -> dict:
        return {"m": None if state.m is None else state.m.tolist(), "v": None if state.v is None else state.v.tolist(),
                "t": state.t}

    @staticmethod
    def state_from_json(doc) -> LogStepAdamState:
        if doc is None:
            return LogStepAdamState(0, None, None)
        return LogStepAdamState(int(doc["t"]), None if doc["m"] is None else np.asarray(doc["m"], dtype=float),
                                None if doc["v"] is None else np.asarray(doc["v"], dtype=float))

    def update(self, state: LogStepAdamState, gen, params, x, step_size, *, n_steps, sigma, seed=0,
               workers=SINGLE):
        """One Adam step on ``log s``: ``(StepSizeUpdate, state)``.

        ``workers``: the objective's gradient is all-reduced over the workers' rows of ``x``
        (``srl.distributed``), so every worker takes the same step.
        """
        s = np.asarray(step_size, dtype=float)
        if self.tied and len(set(s.tolist())) > 1:
            raise ValueError(f"tied step sizes must start equal, got {tuple(s.tolist())}: give one initial value "
                             "(or tied=False)")
        try:
            stability = math.nan
            if self.stable_fraction is not None:
                lam = _stability_indices(gen, params, x, tuple(float(v) for v in s), n_steps=n_steps, sigma=sigma, seed=seed,
                                         n_iter=self.power_iterations, workers=workers)
                stability = float(np.quantile(lam, self.stable_fraction))
                if not stability < 2.0:  # eq. (2.2) fails for too many examples: project, no gradient step
                    new = np.clip(s * math.sqrt(2.0 * self.margin / stability), self.min_step, self.max_step)
                    return StepSizeUpdate(tuple(float(v) for v in new), math.nan, stability=stability,
                                          projected=True), state
            value, grad = _mean_objective(gen, params, x, tuple(s), kind=self.kind, n_steps=n_steps, sigma=sigma,
                                          seed=seed, workers=workers, **self.options)
        except DivergenceError as exc:
            new = np.clip(s * self.backoff, self.min_step, self.max_step)
            warnings.warn(f"step size {tuple(s)} diverged ({exc}); backing off to {tuple(new)}", StepSizeWarning,
                          stacklevel=2)
            return StepSizeUpdate(tuple(float(v) for v in new), math.nan, diverged=True), self.init()
        g = grad * s  # ∂/∂ log s
        if self.tied:
            g = np.full_like(g, g.sum())
        m, v = (np.zeros_like(g), np.zeros_like(g)) if state.m is None else (state.m, state.v)
        b1, b2 = self.betas
        t = state.t + 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        log_s = np.log(s) - self.lr * mhat / (np.sqrt(vhat) + self.eps)
        new = np.clip(np.exp(log_s), self.min_step, self.max_step)
        update = StepSizeUpdate(tuple(float(v) for v in new), value, grad=tuple(float(v) for v in grad),
                                stability=stability)
        return update, LogStepAdamState(t, m, v)
