"""Step-size objectives: the public entry points (docs/math.md §4, §5, §7).

Both objectives are upper bounds on −log p_θ(x) in expectation over the chain noise;
minimising them over the step sizes ``s`` is the paper's variational optimisation.

* ``kind="jacobian"``: J_jac (eq. 4.1), the paper's, in ``srl.jacobian_bound`` (exact or
  stochastic log-determinants, forward-sensitivity gradient eqs. 4.2–4.3);
* ``kind="reverse"``: −log w (eq. 5.1), the reverse-kernel bound, in
  ``srl.reverse_bound`` (forward-sensitivity gradient eq. 5.2, or the adjoint sweep).

This module validates the inputs once, draws the noise, stacks ``n_chains`` chains per
example (the importance-weighted bound for ``"reverse"``, eqs. 5.3, 5.4) and dispatches. The bound
modules return per-example gradients ``(n, L)``; ``stepsize_objective`` returns
``∂ values.sum() / ∂s``.
"""

from __future__ import annotations

import math

from . import _backend, compiled
from .errors import DivergenceError
from .jacobian_bound import LOGDETS, jacobian_bound
from .langevin import stacked_noise
from .random import host_rng, rademacher_steps
from .reverse_bound import GRADIENTS, reverse_bound, reverse_bound_adjoint, use_adjoint
from .sensitivity import ChainConstants
from .validate import prepare_chain

KINDS = ("jacobian", "reverse")


def _logmeanexp_weights(xp, logw):
    """``log mean_m exp(logw[m])`` and the softmax weights, for ``logw (M, n)``."""
    m = xp.max(logw, axis=0)  # (n,)
    e = xp.exp(logw - m[None, :])
    s = xp.sum(e, axis=0)
    return m + xp.log(s) - math.log(logw.shape[0]), e / s[None, :]


def _objective(ch, params, x, z0, noise, sigma, *, kind, want_grad, n_chains, **opts):
    """Values ``(n,)`` and per-example gradients ``(n, L)`` over ``n_chains`` stacked chains.

    The batch of ``z0``/``noise`` is chain-major: row ``m·n + i`` is chain m of example i.
    ``jacobian`` averages the M chains; ``reverse`` forms the importance-weighted bound
    ``−log (1/M) Σ_m w_m`` whose gradient is the softmax(log w)-weighted mean.
    """
    xp = ch.xp
    M = int(n_chains)
    n = x.shape[0]
    xr = xp.concat([x] * M, axis=0) if M > 1 else x
    if kind == "jacobian":
        v, gr = jacobian_bound(ch, params, xr, z0, noise, sigma, want_grad=want_grad,
                               **{k: o for k, o in opts.items() if k not in ("gradient", "keep_activations")})
    elif want_grad and use_adjoint(opts.get("gradient", "auto"), ch.L):
        v, gr = reverse_bound_adjoint(ch, params, xr, z0, noise, sigma,
                                      keep_activations=opts.get("keep_activations", False))
    else:
        v, gr = reverse_bound(ch, params, xr, z0, noise, sigma, want_grad=want_grad)
    finite = xp.all(xp.isfinite(v))
    if gr is not None:
        finite = xp.logical_and(finite, xp.all(xp.isfinite(gr)))
    if not compiled.defer(lambda: finite, f"step-size objective ({kind})") and not bool(finite):  # once
        raise DivergenceError(
            f"step-size objective ({kind}) is not finite with step_size={ch.s}: the chain "
            "diverged; use a smaller step size"
        )
    if M == 1:
        return v, gr
    v = xp.reshape(v, (M, n))
    gr = xp.reshape(gr, (M, n, ch.L)) if gr is not None else None
    if kind == "jacobian":
        return xp.mean(v, axis=0), (xp.mean(gr, axis=0) if gr is not None else None)
    lme, wts = _logmeanexp_weights(xp, -v)  # log (1/M) Σ w_m
    grad = xp.sum(wts[:, :, None] * gr, axis=0) if gr is not None else None
    return -lme, grad


def _evaluate(gen, params, x, *, step_size, n_steps, sigma, seed, kind, z0, noise, n_chains, logdet,
              n_probes, series_terms, probe_seed, want_grad, gradient="auto", keep_activations=False):
    """Validate the inputs once, draw the noise, run the objective."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if logdet not in LOGDETS:
        raise ValueError(f"logdet must be one of {LOGDETS}, got {logdet!r}")
    if logdet != "exact" and kind != "jacobian":
        raise ValueError("logdet applies to kind='jacobian' only")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if gradient == "adjoint" and kind != "reverse":
        raise ValueError("gradient='adjoint' is implemented for kind='reverse' only")
    if not isinstance(keep_activations, bool):
        raise TypeError(f"keep_activations must be True or False, got {keep_activations!r}")
    if keep_activations and (kind != "reverse" or gradient == "forward"):
        raise ValueError("keep_activations applies to the adjoint sweep only: use kind='reverse' with "
                         "gradient='adjoint' (or 'auto'), or leave keep_activations False")
    xp, dtype, n, sigma, K, s = prepare_chain(gen, params, x, sigma=sigma, n_steps=n_steps, step_size=step_size,
                                              compiled_finite_test=True)
    M = int(n_chains)
    if M < 1:
        raise ValueError(f"n_chains must be a positive integer, got {n_chains!r}")
    dev = _backend.device(x)
    z0, noise = stacked_noise(gen, xp, x, n_steps=K, seed=seed, z0=z0, noise=noise, dtype=dtype, n=n * M,
                              packed=compiled.active(xp))
    opts = {"gradient": gradient, "keep_activations": keep_activations}
    if kind == "jacobian":
        probes = None
        if logdet == "hutchinson":  # drawn on the host, one (P, M·n, d) set per step
            if probe_seed is None:
                probe_seed = [seed, 7919] if isinstance(seed, int) else 7919
            probes = rademacher_steps(host_rng(probe_seed), K, (int(n_probes), n * M, gen.d), xp=xp, dtype=dtype,
                                      device=dev, host=compiled.active(xp))  # JAX: moved with the compiled call
        opts.update(logdet=logdet, probes=probes, series_terms=int(series_terms))
    if compiled.active(xp):  # JAX: one compiled call (srl.compiled)
        values, per_example = compiled.objective(gen, params, x, z0, noise, s, sigma, kind=kind,
                                                 want_grad=want_grad, n_chains=M, **opts)
        return xp, values, per_example
    ch = ChainConstants(xp, gen, s, dtype, dev)
    values, per_example = _objective(ch, params, x, z0, noise, sigma, kind=kind, want_grad=want_grad,
                                     n_chains=M, **opts)
    return xp, values, per_example


def stepsize_objective(gen, params, x, *, step_size, n_steps, sigma, seed=0, kind="jacobian",
                       z0=None, noise=None, n_chains: int = 1, logdet: str = "exact",
                       n_probes: int = 8, series_terms: int = 8, probe_seed=None,
                       return_per_example: bool = False, gradient: str = "auto",
                       keep_activations: bool = False):
    """Step-size objective values and their exact gradient in s (docs/math.md §4, §5, §7).

    Parameters
    ----------
    gen, params, x : generator, parameters, data ``(n, *out_shape)``
    step_size : float or one float per latent group (a float gives L equal values; the
        gradient is still per group)
    n_steps : K;  sigma : σ
    seed : selects the chain noise (``srl.random.chain_noise``); ``z0=``/``noise=`` override
        it (``noise`` as K tuples like z, or stacked: one ``(K, n, d_l)`` array per group)
    kind : ``"jacobian"`` (J_jac, eq. 4.1, the paper's) or ``"reverse"`` (−log w, eq. 5.1)
    n_chains : M chains per example; ``"reverse"`` then gives the importance-weighted bound
        ``−log (1/M) Σ_m w_m`` and ``"jacobian"`` the mean over chains. Explicit noise is
        then for the stacked batch of ``M·n`` rows, chain-major.
    logdet : ``"exact"`` (batched Hessians, small d) or ``"hutchinson"`` (truncated series
        with Rademacher probes, large d; see ``srl.jacobian_bound`` for its bias) — jacobian only
    n_probes, series_terms, probe_seed : settings of the Hutchinson estimator
    return_per_example : also return the per-example gradients ``(n, L)``
    gradient : ``"forward"`` sensitivities (eq. 4.2, L tangents per step), ``"adjoint"``
        reverse sweep (eqs. 5.5, 5.6: one HVP per step; reverse kind only) or ``"auto"`` (adjoint when
        L > 2). Both are exact and agree to round-off.
    keep_activations : adjoint sweep only. Keep, for every step, the linearisation that the
        chain's gradient at ``z_k`` leaves (the input and incoming gradient of each of the
        generator's nonlinearities), so that each Hessian-vector product of the reverse
        sweep is a tangent pass alone: about one gradient pass instead of two, and the whole
        gradient about 2 chains instead of 3 (docs/math.md, the adjoint sweep). Memory grows by
        K times two arrays the size of each nonlinearity's input (``paper()``: about 3 MB
        per example and step in float32). With ``"auto"`` it is ignored when L ≤ 2
        (forward sensitivities keep no path).

    Returns
    -------
    ``(values (n,), grad (L,))`` with ``grad = ∂ values.sum() / ∂ s``; each value is an
    upper bound on ``−log p_θ(x)`` in expectation over the noise.
    """
    xp, values, per_example = _evaluate(
        gen, params, x, step_size=step_size, n_steps=n_steps, sigma=sigma, seed=seed, kind=kind, z0=z0,
        noise=noise, n_chains=n_chains, logdet=logdet, n_probes=n_probes, series_terms=series_terms,
        probe_seed=probe_seed, want_grad=True, gradient=gradient, keep_activations=keep_activations)
    grad = xp.sum(per_example, axis=0)
    if return_per_example:
        return values, grad, per_example
    return values, grad


def objective_values(gen, params, x, *, step_size, n_steps, sigma, seed=0, kind="jacobian", z0=None,
                     noise=None, n_chains: int = 1, logdet: str = "exact", n_probes: int = 8,
                     series_terms: int = 8, probe_seed=None):
    """The values of ``stepsize_objective`` without the gradient (no tangents: cheaper).

    ``−values`` are per-example lower bounds on ``log p_θ(x)`` in expectation (ELBOs).
    """
    return _evaluate(
        gen, params, x, step_size=step_size, n_steps=n_steps, sigma=sigma, seed=seed, kind=kind, z0=z0,
        noise=noise, n_chains=n_chains, logdet=logdet, n_probes=n_probes, series_terms=series_terms,
        probe_seed=probe_seed, want_grad=False)[1]
