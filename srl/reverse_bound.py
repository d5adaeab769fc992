"""The reverse-kernel bound −log w and its exact s-gradient (docs/math.md §5, eqs. 5.1, 5.2, 5.5, 5.6).

Extended-space bound with Langevin reverse kernels, per example and per noise draw:

    −log w = E(z_K) + log N(z_0; 0, I) − Σ_{k<K} [½‖ξ_k‖² − ½‖r_k‖²],                (5.1)
    r_k = ξ_k − ½ s ⊙ (g_k + g_{k+1}),      g_k = ∇_z E(z_k)

an upper bound on −log p_θ(x) in expectation over the noise. ``chain_sweep`` runs the
chain (2.1) once and accumulates r_k and −log w (the one implementation of both); its
s-gradient comes in two exact forms that agree to round-off:

* forward sensitivities (5.2): the sweep also carries ``t_k = ∂z_k/∂s`` (eq. 4.2,
  ``srl.sensitivity``) and ``H_k t_k`` (one first-order jet pass per step, L tangents):

      ∂(−log w)/∂s_j = g_K·t_K + Σ_k r_k·∂r_k/∂s_j,
      ∂r_k/∂s_j = −½ 1_j ⊙ (g_k + g_{k+1}) − ½ s ⊙ (H_k t_k + H_{k+1} t_{k+1})        (5.2)

* adjoint (reverse) sweep: the sweep keeps ``z_k``, ``g_k``, ``r_k`` (O(K·n·d)) and
  ``adjoint_gradient`` runs backwards with ``λ_k = dℓ/dz_k`` (ℓ = −log w, noise held fixed):

      λ_K = g_K − H_K (½ s ⊙ r_{K−1})
      λ_k = λ_{k+1} − H_k (A λ_{k+1} + ½ s ⊙ (r_{k−1} + r_k)),      1 ≤ k < K       (5.5)
      dℓ/ds_j = Σ_k λ_{k+1}·1_j ⊙ (ξ_k − s_j g_k) − ½ Σ_k r_k·1_j ⊙ (g_k + g_{k+1})   (5.6)

  one Hessian-vector product per step whatever the number of groups L: cheaper when L > 2.
  Each HVP is a jet pass at the stored ``z_k`` (about two gradient passes), or, with
  ``keep_activations``, a tangent pass alone (about one) through the linearisation that
  the forward sweep's gradient at ``z_k`` left on a tape (``srl.layers``): memory grows
  by K tapes, two arrays the size of each nonlinearity's input.

The importance-weighted bound over M chains (5.3, 5.4) is formed from these per-chain
values and gradients by ``srl.objectives``. Per-example values ``(n,)`` and gradients
``(n, L)``; the public entry points are
``srl.objectives.stepsize_objective`` and ``objective_values``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from .energy import _energy, _hvp, _hvp_from_tape, _value_and_grad
from .jet import Jet
from .langevin import check_chain, langevin_update
from .loop import fold, length
from .sensitivity import log_normal, sqnorm

GRADIENTS = ("auto", "forward", "adjoint")


def reverse_residual(xi, g, g_next, s):
    """``r_k = ξ_k − ½ s ⊙ (g_k + g_{k+1})`` per group (eq. 5.1)."""
    return tuple(xl - (0.5 * sl) * (gl + gnl) for xl, sl, gl, gnl in zip(xi, s, g, g_next))


class Sweep(NamedTuple):
    """What one forward pass of the chain leaves for the gradients."""

    values: object  # −log w per example (n,)
    g: tuple  # g_K
    t: Optional[tuple]  # t_K (forward sensitivities), or None
    grad: Optional[object]  # Σ_k r_k·∂r_k/∂s (n, L) (forward sensitivities), or None
    path: Optional[tuple]  # (g_0, z_1..z_K or their tapes, g_1..g_K, r_0..r_{K−1}) for the adjoint, or None


def chain_sweep(ch, params, x, z0, noise, sigma, *, sensitivities: bool, keep_path: bool,
                keep_activations: bool = False) -> Sweep:
    """Run the chain (2.1) from ``z0`` with ``noise`` (tuple like z of ``(K, n, d_l)``),
    accumulating −log w (5.1); the K steps are one ``srl.loop.fold`` (a compiled loop on JAX).

    ``sensitivities``: also carry ``t_k``, ``H_k t_k`` and the sum of (5.2)'s
    ``r_k·∂r_k/∂s``. ``keep_path``: keep ``z_k``, ``g_k``, ``r_k`` (k ≥ 1, stacked
    ``(K, n, d_l)``) for ``adjoint_gradient``; with ``keep_activations`` the tapes of
    g_1..g_K take the place of z_1..z_K (a ``srl.loop.Steps`` list eagerly, stacked when
    compiled).
    Raises ``DivergenceError`` when ``z_K`` is not finite or has exploded.
    """
    xp, gen, L = ch.xp, ch.gen, ch.L
    n = z0[0].shape[0]
    z0 = tuple(z0)
    _, g0, _ = _value_and_grad(xp, gen, params, x, z0, sigma, want_energy=False)

    def step(carry, xi):
        z, g, t, Ht, grad, values = carry
        z_next = langevin_update(z, g, xi, ch.s)  # (2.1)
        t_next = Ht_next = tape = None
        if sensitivities:
            t_next = ch.tangent_update(t, g, Ht, xi)  # (4.2)
            zj = tuple(Jet(zl, tl) for zl, tl in zip(z_next, t_next))
            _, gj, _ = _value_and_grad(xp, gen, params, x, zj, sigma, want_energy=False)
            g_next, Ht_next = tuple(a.a for a in gj), tuple(a.b for a in gj)
        else:
            tape = [] if keep_activations else None
            _, g_next, _ = _value_and_grad(xp, gen, params, x, z_next, sigma, want_energy=False, tape=tape)
        r = reverse_residual(xi, g, g_next, ch.s)
        values = values - 0.5 * sqnorm(xp, xi) + 0.5 * sqnorm(xp, r)
        if sensitivities:
            acc = None
            for l, (rl, gl, gnl, htl, htnl, sl) in enumerate(zip(r, g, g_next, Ht, Ht_next, ch.s)):
                dr = ch.masks[l] * (-0.5 * (gl + gnl))[None, ...] - (0.5 * sl) * (htl + htnl)  # (L, n, d_l)
                term = xp.sum(dr * rl[None, ...], axis=2)  # (L, n)
                acc = term if acc is None else acc + term
            grad = grad + xp.permute_dims(acc, (1, 0))
        out = ((tape if keep_activations else z_next), g_next, r) if keep_path else None
        return (z_next, g_next, t_next, Ht_next, grad, values), out

    t0 = ch.zeros_tangent(n) if sensitivities else None  # H_0 t_0 = 0 too
    grad0 = xp.zeros((n, L), dtype=ch.dtype, device=ch.device) if sensitivities else None
    carry = (z0, g0, t0, t0, grad0, log_normal(xp, z0))
    (z, g, t, _, grad, values), path = fold(xp, step, carry, tuple(noise), stack=(not keep_activations, True, True))
    check_chain(xp, z, step_size=ch.s, sigma=sigma, n_steps=length(noise), what="step-size objective chain")
    values = values + _energy(xp, gen, params, x, z, sigma)  # + E(z_K)
    return Sweep(values, g, t, grad, (g0, *path) if path is not None else None)


def reverse_bound(ch, params, x, z0, noise, sigma, *, want_grad):
    """−log w (5.1) per example and, with ``want_grad``, its per-example s-gradient (n, L)
    by forward sensitivities (5.2)."""
    sw = chain_sweep(ch, params, x, z0, noise, sigma, sensitivities=want_grad, keep_path=False)
    if not want_grad:
        return sw.values, None
    return sw.values, sw.grad + ch.dot_tangent(sw.g, sw.t)  # + g_K · t_K


def reverse_bound_adjoint(ch, params, x, z0, noise, sigma, *, keep_activations=False):
    """−log w (5.1) and its per-example s-gradient (n, L) by the adjoint sweep (module docstring)."""
    sw = chain_sweep(ch, params, x, z0, noise, sigma, sensitivities=False, keep_path=True,
                     keep_activations=keep_activations)
    if sw.path is None:  # K = 0: −log w does not depend on s
        return sw.values, ch.xp.zeros((z0[0].shape[0], ch.L), dtype=ch.dtype, device=ch.device)
    return sw.values, adjoint_gradient(ch, params, x, tuple(noise), sigma, *sw.path, from_tapes=keep_activations)


def adjoint_gradient(ch, params, x, noise, sigma, g0, points, gs, rs, *, from_tapes=False):
    """``dℓ/ds (n, L)`` from the stored path by the reverse sweep (5.5) for ``λ_k`` and (5.6).

    ``g0`` tuple of ``(n, d_l)``; ``points``, ``gs``, ``rs``: z_1..z_K, g_1..g_K,
    r_0..r_{K−1} as tuples of ``(K, n, d_l)`` stacks; ``noise`` likewise. ``from_tapes``:
    ``points`` are instead the linearisations at z_1..z_K
    (``chain_sweep(keep_activations=True)``), and each HVP is a tangent pass through them
    instead of a jet pass at ``z_k``. The sweep runs k = K..1 as one reversed
    ``srl.loop.fold`` over i = k − 1.
    """
    xp = ch.xp
    n = g0[0].shape[0]
    K = length(noise)
    gK = tuple(gl[K - 1, ...] for gl in gs)
    g_prev = tuple(xp.concat([a[None, ...], gl[:K - 1, ...]], axis=0) for a, gl in zip(g0, gs))  # g_{k−1}
    r_next = tuple(xp.concat([rl[1:, ...], xp.zeros_like(rl[:1, ...])], axis=0) for rl in rs)  # r_k, r_K = 0
    first = xp.asarray([0.0] * (K - 1) + [1.0], dtype=ch.dtype, device=ch.device)  # (K,): 1 at k = K

    def step(carry, inputs):
        lam, cols = carry  # λ_{k+1} (0 for k = K), the L columns (n,) accumulated so far
        at_k, g_km1, g_k, r_km1, r_k, xi_km1, at_K = inputs  # at_k: z_k, or its tape (from_tapes)
        # v_k = A λ_{k+1} + ½ s ⊙ (r_{k−1} + r_k)   (λ_{K+1} = 0, r_K = 0)
        v = tuple((0.5 * sl * sl) * ll + (0.5 * sl) * (a + b) for sl, ll, a, b in zip(ch.s, lam, r_km1, r_k))
        if from_tapes:
            hv = _hvp_from_tape(xp, ch.gen, params, at_k, v, sigma)
        else:
            _, hv = _hvp(xp, ch.gen, params, x, at_k, tuple(vl[None, ...] for vl in v), sigma)
            hv = tuple(h[0, ...] for h in hv)
        # λ_K = g_K − H_K v_K;  λ_k = λ_{k+1} − H_k v_k
        lam = tuple(ll + at_K * gl - h for ll, gl, h in zip(lam, gK, hv))
        # explicit s-dependence of step k−1: z_k = z_{k−1} − A g_{k−1} + s ξ_{k−1}, and r_{k−1}
        out = []
        for j, sj in enumerate(ch.s):
            dz = xi_km1[j] - sj * g_km1[j]
            dr = -0.5 * (g_km1[j] + g_k[j])
            out.append(cols[j] + xp.sum(lam[j] * dz, axis=1) + xp.sum(r_km1[j] * dr, axis=1))
        return (lam, tuple(out)), None

    zero = xp.zeros((n,), dtype=ch.dtype, device=ch.device)
    carry = (tuple(xp.zeros_like(gl) for gl in gK), (zero,) * ch.L)
    (_, cols), _ = fold(xp, step, carry, (points, g_prev, gs, rs, r_next, noise, first), reverse=True)
    return xp.stack(cols, axis=1)


def use_adjoint(gradient: str, L: int) -> bool:
    """Forward sensitivities cost ≈ (1 + L) gradient passes per step, the adjoint sweep
    ≈ 3.2 (≈ 2 with ``keep_activations``; measured, docs/BENCHMARKS.md): ``"auto"`` takes
    the adjoint when L > 2."""
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    return gradient == "adjoint" or (gradient == "auto" and L > 2)
