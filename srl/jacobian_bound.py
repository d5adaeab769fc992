"""The Jacobian bound J_jac and its exact s-gradient (docs/math.md §4, eqs. 4.1–4.7).

Per example and per noise draw of the chain (2.1):

    J_jac = log N(z_0; 0, I) − Σ_{k<K} log|det(I − A H_k)| + E_θ(z_K; x)              (4.1)

an upper bound on −log p_θ(x) in expectation over the noise. Its s-gradient carries the
forward sensitivities ``t_k = ∂z_k/∂s`` (eq. 4.2, ``srl.sensitivity``) and differentiates
each log-determinant including the third-order term ``D³E(z_k)[t_k]`` (eq. 4.3):

    ∂J/∂s_j = Σ_k ∂/∂s_j (−log|det M_k|) + g_K·t_K^{(j)},      M_k = I − A H_k

The log-determinant, one of two ways per step:

* exact (small d), ``exact_logdet_step``: from the per-example Hessian ``H (n, d, d)``
  and the third-order matrices ``D³E[t_j] (L, n, d, d)``, both from one hyper-dual jet
  pass (docs/math.md eq. 1.4, ``srl.jet``):

      ∂/∂s_j (−log|det M|) = tr(M⁻¹ (∂A/∂s_j) H) + tr(M⁻¹ A D³E[t_j])              (4.3)

* stochastic (large d, docs/math.md §4.2), ``hutchinson_logdet_step``: with ``B = A H``
  and ρ(B) < 1, ``log det(I − B) = −Σ_{m≥1} tr(Bᵐ)/m`` (4.4). The estimator truncates
  the series after T terms and estimates each trace with P Rademacher probes v:

      value ≈ −Σ_{m=1}^{T} (1/m) mean_p vₚ·Bᵐvₚ                                      (4.5)
      ∂/∂s_j log det ≈ −Σ_{m=0}^{T−1} mean_p (∂B_jᵀ vₚ)·Bᵐvₚ,
      ∂B_jᵀ v = s_j H(1_j ⊙ v) + D³E[t_j](A v)                                         (4.6)

  Its expectation is the truncated series, which differs from the exact value by
  ``Σ_{m>T} tr(Bᵐ)/m``, at most ``d ρ^{T+1} / ((T+1)(1−ρ))`` in magnitude (4.7); the
  series diverges when ρ(B) ≥ 1 (large steps): use ``logdet="exact"`` there.
  ``tests/test_objectives.py::test_hutchinson_logdet_is_unbiased_for_its_series_and_bias_is_bounded``
  checks the bound and the unbiasedness, and
  ``::test_hutchinson_objective_and_gradient_agree_with_exact`` compares value and
  gradient with the exact ones.

Per-example values ``(n,)`` and gradients ``(n, L)``; the public entry points are
``srl.objectives.stepsize_objective`` and ``objective_values``.
"""

from __future__ import annotations

from . import compiled
from ._backend import device
from .energy import _grad_z, _hvp, _value_and_grad, columns_to_matrix, unit_directions
from .errors import DivergenceError
from .jet import Jet
from .langevin import check_chain, langevin_update
from .loop import fold, length
from .sensitivity import log_normal

LOGDETS = ("exact", "hutchinson")


#: raised (once per chain, after its last step) when some ``I − A H_k`` was singular or non-finite
SINGULAR = ("I − A H_k is singular or non-finite for some example: the step size is too large for the "
            "model's curvature (docs/math.md §4)")


def exact_logdet_terms(xp, H, D3, A_vec, dA):
    """Exact per-example ``log|det(I − A H)|`` and ``∂(−log|det|)/∂s_j``.

    H: (n, d, d) Hessian.   D3: (L, n, d, d) with ``D3[j] = D³E[t_j]`` or None.
    A_vec: (d,) diagonal of A.   dA: (L, d) diagonal of ∂A/∂s_j.
    Returns ``(logabsdet (n,), regular, grad (n, L) or None)``; ``regular`` is a 0-d
    boolean array, False when some ``I − A H`` is singular or non-finite (the caller checks
    it once per chain: no host synchronisation here). The gradient of such an example is
    meaningless (its matrix is replaced by I before the inverse).
    """
    n, d = H.shape[0], H.shape[1]
    eye = xp.eye(d, dtype=H.dtype, device=device(H))
    M = eye - A_vec[:, None] * H  # (n, d, d): I − A H (A scales rows)
    sign, logabs = xp.linalg.slogdet(M)  # (n,), (n,)
    ok = xp.logical_and(sign != 0, xp.isfinite(logabs))  # (n,)
    regular = xp.all(ok)  # 0-d
    if D3 is None:
        return logabs, regular, None
    Minv = xp.linalg.inv(xp.where(ok[:, None, None], M, eye))  # (n, d, d); I where M is singular
    # tr(M⁻¹ dA_j H) = Σ_b dA_j[b] Σ_a M⁻¹[a, b] H[b, a];  H symmetric → H[a, b]
    Y = xp.sum(Minv * H, axis=1)  # (n, d): Y[n, b] = Σ_a M⁻¹[n, a, b] H[n, a, b]
    term1 = Y @ dA.T  # (n, L)
    # tr(M⁻¹ A D3_j) = Σ_{a,b} (M⁻¹ A)[a, b] D3_j[b, a];  D3_j symmetric → D3_j[a, b]
    W = Minv * A_vec[None, None, :]  # (n, d, d): M⁻¹ A (A scales columns)
    term2 = xp.sum(xp.reshape(D3 * W[None, ...], (D3.shape[0], n, d * d)), axis=2)  # (L, n)
    return logabs, regular, term1 + xp.permute_dims(term2, (1, 0))  # (n, L)


def exact_logdet_step(ch, params, x, z, t, sigma, *, want_grad):
    """One hyper-dual pass: ``g, H t, log|det M|, regular (0-d), ∂(−log|det M|)/∂s (n, L)``."""
    xp, gen = ch.xp, ch.gen
    n = z[0].shape[0]
    dirs = unit_directions(xp, ch.dims, n, dtype=ch.dtype, device=ch.device)  # (d, n, d_l)
    if not want_grad:
        zj = tuple(Jet(zl, el) for zl, el in zip(z, dirs))
        gz = _grad_z(xp, gen, params, x, zj, sigma)
        H = columns_to_matrix(xp, [gj.b for gj in gz])  # (n, d, d)
        logabs, regular, _ = exact_logdet_terms(xp, H, None, ch.A_vec, ch.dA)
        return tuple(gj.a for gj in gz), None, logabs, regular, None
    zj = tuple(
        Jet(zl, el, tl, xp.zeros((ch.d, ch.L, n, dl), dtype=ch.dtype, device=ch.device))
        for zl, el, tl, dl in zip(z, dirs, t, ch.dims)
    )
    gz = _grad_z(xp, gen, params, x, zj, sigma)
    H = columns_to_matrix(xp, [gj.b for gj in gz])  # (n, d, d): H e_a in column a
    T = xp.concat([gj.d for gj in gz], axis=-1)  # (d_a, L, n, d_b): D³E[t_j] e_a
    D3 = xp.permute_dims(T, (1, 2, 0, 3))  # (L, n, a, b)
    logabs, regular, dterm = exact_logdet_terms(xp, H, D3, ch.A_vec, ch.dA)
    return tuple(gj.a for gj in gz), tuple(gj.c for gj in gz), logabs, regular, dterm


def hutchinson_logdet_step(ch, params, x, z, t, sigma, *, want_grad, probes, series_terms):
    """Truncated-series Hutchinson estimate of ``log det(I − A H)`` (the series above) with the
    Rademacher ``probes (P, n, d)`` (drawn by the caller: randomness stays out of the math)."""
    xp, gen = ch.xp, ch.gen
    v = probes  # (P, n, d)
    n, P, L = z[0].shape[0], v.shape[0], ch.L
    vg, off = [], 0
    for dl in ch.dims:
        vg.append(v[..., off:off + dl])  # (P, n, d_l)
        off += dl
    # ε-directions: the probes masked to each group l, indexed (l, p): (L·P, n, d_g)
    masked = []
    for g_idx, (vl, dl) in enumerate(zip(vg, ch.dims)):
        blocks = [vl if l == g_idx else xp.zeros_like(vl) for l in range(L)]
        masked.append(xp.concat(blocks, axis=0))
    if want_grad:
        zj = tuple(
            Jet(zl, ml, tl, xp.zeros((L * P, L, n, dl), dtype=ch.dtype, device=ch.device))
            for zl, ml, tl, dl in zip(z, masked, t, ch.dims)
        )
    else:
        zj = tuple(Jet(zl, ml) for zl, ml in zip(z, masked))
    gz = _grad_z(xp, gen, params, x, zj, sigma)
    g = tuple(gj.a for gj in gz)
    # H v^{(l)}_p per group: (L, P, n, d_g); H v_p = Σ_l H v^{(l)}_p
    Hv_masked = [xp.reshape(gj.b, (L, P, n, dl)) for gj, dl in zip(gz, ch.dims)]
    Hv = [xp.sum(h, axis=0) for h in Hv_masked]  # (P, n, d_g)
    w = [ch.s[gi] ** 2 * 0.5 * h for gi, h in enumerate(Hv)]  # w_1 = A H v
    powers = [vg, w]  # w_0 = v, w_1, ...
    for _ in range(2, series_terms + 1):
        _, hw = _hvp(xp, gen, params, x, z, powers[-1], sigma)
        powers.append([0.5 * ch.s[gi] ** 2 * h for gi, h in enumerate(hw)])

    def probe_dot(a, b):  # mean_p Σ_g a_g · b_g → (n,)
        acc = None
        for ag, bg in zip(a, b):
            term = xp.sum(ag * bg, axis=2)  # (P, n)
            acc = term if acc is None else acc + term
        return xp.mean(acc, axis=0)

    logdet = None
    for m in range(1, series_terms + 1):
        term = probe_dot(vg, powers[m]) * (-1.0 / m)
        logdet = term if logdet is None else logdet + term
    if not want_grad:
        return g, None, logdet, None
    # ∂B_jᵀ v = s_j H(1_j ⊙ v) + Σ_l A_l D³E[t_j] v^{(l)}:  per group (P, n, d_g), for each j
    D3v = [xp.reshape(gj.d, (L, P, L, n, dl)) for gj, dl in zip(gz, ch.dims)]  # (l, p, j, n, d_g)
    cols = []
    for j in range(L):
        dBv = []
        for gi, dl in enumerate(ch.dims):
            acc = ch.s[j] * Hv_masked[gi][j]  # (P, n, d_g)
            for l in range(L):
                acc = acc + (0.5 * ch.s[l] ** 2) * D3v[gi][l, :, j, ...]
            dBv.append(acc)
        total = None
        for m in range(series_terms):
            term = probe_dot(dBv, powers[m])
            total = term if total is None else total + term
        cols.append(total)  # ∂(−log det)/∂s_j ≈ Σ_m tr(Bᵐ ∂B_j)
    dterm = xp.stack(cols, axis=1)  # (n, L)
    return g, tuple(gj.c for gj in gz), logdet, dterm


def jacobian_bound(ch, params, x, z0, noise, sigma, *, want_grad, logdet="exact", probes=None, series_terms=8):
    """J_jac (4.1) per example and its per-example s-gradient (4.3): ``(values, grad (n, L))``.

    ``noise``: tuple like z of ``(K, n, d_l)`` stacks (ξ_0..ξ_{K−1}); ``probes``: the
    Hutchinson probes ``(K, P, n, d)`` (``logdet="hutchinson"`` only). The K steps are one
    ``srl.loop.fold`` (a compiled loop on JAX).
    """
    xp = ch.xp
    n = z0[0].shape[0]
    exact = logdet == "exact"

    def step(carry, inputs):
        z, t, sum_logdet, grad, regular = carry
        xi, v = inputs  # ξ_k tuple of (n, d_l);  probes (P, n, d) or None
        if exact:
            g, Ht, logabs, ok, dterm = exact_logdet_step(ch, params, x, z, t, sigma, want_grad=want_grad)
            regular = xp.logical_and(regular, ok)
        else:  # a non-finite estimate is caught by the objective's final check
            g, Ht, logabs, dterm = hutchinson_logdet_step(ch, params, x, z, t, sigma, want_grad=want_grad,
                                                           probes=v, series_terms=series_terms)
        sum_logdet = sum_logdet + logabs
        if want_grad:
            grad = grad + dterm
            t = ch.tangent_update(t, g, Ht, xi)  # (4.2)
        z = langevin_update(z, g, xi, ch.s)  # (2.1)
        return (z, t, sum_logdet, grad, regular), None

    carry = (tuple(z0), ch.zeros_tangent(n) if want_grad else None,
             xp.zeros((n,), dtype=ch.dtype, device=ch.device),
             xp.zeros((n, ch.L), dtype=ch.dtype, device=ch.device) if want_grad else None,
             xp.asarray(True, device=ch.device))  # all I − A H_k so far regular (0-d)
    (z, t, sum_logdet, grad, regular), _ = fold(xp, step, carry, (tuple(noise), None if exact else probes))
    if exact and not compiled.defer(lambda: regular, "log|det(I − A H_k)|") and not bool(regular):  # once
        raise DivergenceError(SINGULAR)
    check_chain(xp, z, step_size=ch.s, sigma=sigma, n_steps=length(noise), what="step-size objective chain")
    energy, gK, _ = _value_and_grad(xp, ch.gen, params, x, z, sigma)
    values = log_normal(xp, z0) - sum_logdet + energy
    if want_grad:
        grad = grad + ch.dot_tangent(gK, t)  # g_K · t_K
    return values, grad
