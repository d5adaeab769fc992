"""Step-size objectives and their exact s-gradients (docs/math.md §4, §4.1, §5).

Both objectives are upper bounds on −log p_θ(x) in expectation over the chain noise;
minimising them over the step sizes ``s`` is the paper's variational optimisation.

``kind="jacobian"`` — the paper's objective (4.1), per example and per noise draw:

    J_jac = log N(z_0; 0, I) − Σ_{k<K} log|det(I − A H_k)| + E_θ(z_K; x)

``kind="reverse"`` — extended-space bound with Langevin reverse kernels (5.1):

    −log w = E(z_K) + log N(z_0; 0, I) − Σ_{k<K} [½‖ξ_k‖² − ½‖r_k‖²],
    r_k = ξ_k − ½ s ⊙ (g_k + g_{k+1})

Gradients use forward sensitivities ``t_k^{(j)} = ∂z_k/∂s_j`` (4.2), carried for all L
groups at once on a jet axis, so memory does not grow with K (only the current state is
kept):

    t_{k+1} = t_k − (∂A/∂s_j) g_k − A H_k t_k + 1_j ⊙ ξ_k,    t_0 = 0              (4.2)

* jacobian: one hyper-dual pass per step gives ``g_k``, ``H_k`` (all d columns),
  ``H_k t_k`` and ``D³E(z_k)[t_k]`` (the third-order term, never dropped); then (4.3).
* reverse: one first-order pass per step gives ``g_{k+1}`` and ``H_{k+1} t_{k+1}``; then
  (5.2): ``∂(−log w)/∂s_j = g_K·t_K + Σ_k r_k·∂r_k/∂s_j`` with
  ``∂r_k/∂s_j = −½ 1_j ⊙ (g_k + g_{k+1}) − ½ s ⊙ (H_k t_k + H_{k+1} t_{k+1})``.

Per-example gradients ``(n, L)`` are returned by the private functions; the public
``stepsize_objective`` returns ``∂ values.sum() / ∂s``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from .energy import LOG_2PI, _grad_z, _hvp, _value_and_grad, columns_to_matrix, unit_directions
from .errors import DivergenceError
from .jet import Jet
from .langevin import check_chain, langevin_update, resolve_noise
from .logdet import exact_logdet_terms
from .random import host_rng, rademacher
from .validate import prepare_chain

KINDS = ("jacobian", "reverse")
LOGDETS = ("exact", "hutchinson")
GRADIENTS = ("auto", "forward", "adjoint")


class _Chain:
    """Constants of one objective evaluation: step sizes and their per-group masks."""

    def __init__(self, xp, gen, s, dtype, device):
        self.xp, self.gen, self.s = xp, gen, tuple(float(v) for v in s)
        self.dims = gen.latent_dims
        self.L = len(self.dims)
        self.d = gen.d
        self.dtype, self.device = dtype, device
        eye = np.eye(self.L)
        # masks[l]: (L, 1, 1) one-hot of group l, selects row j = l of a tangent stack
        self.masks = [xp.asarray(eye[:, l].reshape(self.L, 1, 1), dtype=dtype, device=device)
                      for l in range(self.L)]
        A = np.concatenate([np.full(dl, 0.5 * sl * sl) for dl, sl in zip(self.dims, self.s)])
        dA = np.zeros((self.L, self.d))  # diag of ∂A/∂s_j = s_j 1_{group j}
        off = 0
        for j, (dl, sl) in enumerate(zip(self.dims, self.s)):
            dA[j, off:off + dl] = sl
            off += dl
        self.A_vec = xp.asarray(A, dtype=dtype, device=device)  # (d,)
        self.dA = xp.asarray(dA, dtype=dtype, device=device)  # (L, d)

    def zeros_tangent(self, n):
        xp = self.xp
        return tuple(xp.zeros((self.L, n, dl), dtype=self.dtype, device=self.device) for dl in self.dims)

    def tangent_update(self, t, g, Ht, xi):
        """eq. (4.2) for every group l (rows j of each ``(L, n, d_l)`` stack)."""
        out = []
        for l, (tl, gl, htl, xil, sl) in enumerate(zip(t, g, Ht, xi, self.s)):
            out.append(tl - (0.5 * sl * sl) * htl + self.masks[l] * (xil - sl * gl)[None, ...])
        return tuple(out)

    def dot_tangent(self, g, t):
        """``(n, L)`` with entry ``[i, j] = Σ_l g_l[i] · t_l[j, i]``."""
        xp = self.xp
        acc = None
        for gl, tl in zip(g, t):
            term = xp.sum(tl * gl[None, ...], axis=2)  # (L, n)
            acc = term if acc is None else acc + term
        return xp.permute_dims(acc, (1, 0))


def _sqnorm(xp, z):
    """``‖z‖²`` per example over all groups: ``(n,)``."""
    out = None
    for zl in z:
        q = xp.sum(zl * zl, axis=1)
        out = q if out is None else out + q
    return out


def log_normal(xp, z):
    """``log N(z; 0, I)`` per example, with its constant: ``(n,)``."""
    d = sum(zl.shape[1] for zl in z)
    return -0.5 * _sqnorm(xp, z) - 0.5 * d * LOG_2PI


def _exact_step(ch, params, x, z, t, sigma, *, want_grad):
    """One hyper-dual pass: ``g, H t, log|det M|, ∂(−log|det M|)/∂s (n, L)``."""
    xp, gen = ch.xp, ch.gen
    n = z[0].shape[0]
    dirs = unit_directions(xp, ch.dims, n, dtype=ch.dtype, device=ch.device)  # (d, n, d_l)
    if not want_grad:
        zj = tuple(Jet(zl, el) for zl, el in zip(z, dirs))
        gz = _grad_z(xp, gen, params, x, zj, sigma)
        H = columns_to_matrix(xp, [gj.b for gj in gz])  # (n, d, d)
        logabs, _ = exact_logdet_terms(xp, H, None, ch.A_vec, ch.dA)
        return tuple(gj.a for gj in gz), None, logabs, None
    zj = tuple(
        Jet(zl, el, tl, xp.zeros((ch.d, ch.L, n, dl), dtype=ch.dtype, device=ch.device))
        for zl, el, tl, dl in zip(z, dirs, t, ch.dims)
    )
    gz = _grad_z(xp, gen, params, x, zj, sigma)
    H = columns_to_matrix(xp, [gj.b for gj in gz])  # (n, d, d): H e_a in column a
    T = xp.concat([gj.d for gj in gz], axis=-1)  # (d_a, L, n, d_b): D³E[t_j] e_a
    D3 = xp.permute_dims(T, (1, 2, 0, 3))  # (L, n, a, b)
    logabs, dterm = exact_logdet_terms(xp, H, D3, ch.A_vec, ch.dA)
    return tuple(gj.a for gj in gz), tuple(gj.c for gj in gz), logabs, dterm


def _hutchinson_step(ch, params, x, z, t, sigma, *, want_grad, rng, n_probes, series_terms):
    """Truncated-series Hutchinson estimate of ``log det(I − A H)`` (``srl.logdet``)."""
    xp, gen = ch.xp, ch.gen
    n, P, L = z[0].shape[0], int(n_probes), ch.L
    v = rademacher(rng, (P, n, ch.d), xp=xp, dtype=ch.dtype, device=ch.device)  # (P, n, d)
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


def _jacobian(ch, params, x, z0, noise, sigma, *, want_grad, logdet="exact", rng=None,
              n_probes=8, series_terms=8):
    """J_jac (4.1) per example and its per-example s-gradient (4.3): ``(values, grad (n, L))``."""
    xp = ch.xp
    n = z0[0].shape[0]
    z, t = z0, ch.zeros_tangent(n)
    sum_logdet = xp.zeros((n,), dtype=ch.dtype, device=ch.device)
    grad = xp.zeros((n, ch.L), dtype=ch.dtype, device=ch.device) if want_grad else None
    for xi in noise:
        if logdet == "exact":
            g, Ht, logabs, dterm = _exact_step(ch, params, x, z, t, sigma, want_grad=want_grad)
        else:
            g, Ht, logabs, dterm = _hutchinson_step(ch, params, x, z, t, sigma, want_grad=want_grad, rng=rng,
                                                    n_probes=n_probes, series_terms=series_terms)
        sum_logdet = sum_logdet + logabs
        if want_grad:
            grad = grad + dterm
            t = ch.tangent_update(t, g, Ht, xi)  # (4.2)
        z = langevin_update(z, g, xi, ch.s)  # (2.1)
    check_chain(xp, z, step_size=ch.s, sigma=sigma, n_steps=len(noise), what="step-size objective chain")
    energy, gK, _ = _value_and_grad(xp, ch.gen, params, x, z, sigma)
    values = log_normal(xp, z0) - sum_logdet + energy
    if want_grad:
        grad = grad + ch.dot_tangent(gK, t)  # g_K · t_K
    return values, grad


def _reverse(ch, params, x, z0, noise, sigma, *, want_grad):
    """−log w (5.1) per example and its per-example s-gradient (5.2)."""
    xp, gen, L = ch.xp, ch.gen, ch.L
    n = z0[0].shape[0]
    K = len(noise)
    z = z0
    energy, g, _ = _value_and_grad(xp, gen, params, x, z, sigma, want_energy=(K == 0))
    t = ch.zeros_tangent(n)
    Ht = t  # H_0 t_0 = 0
    values = log_normal(xp, z0)
    grad = xp.zeros((n, L), dtype=ch.dtype, device=ch.device) if want_grad else None
    for k, xi in enumerate(noise):
        last = k == K - 1
        z_next = langevin_update(z, g, xi, ch.s)  # (2.1)
        if want_grad:
            t_next = ch.tangent_update(t, g, Ht, xi)  # (4.2)
            zj = tuple(Jet(zl, tl) for zl, tl in zip(z_next, t_next))
            e, gj, _ = _value_and_grad(xp, gen, params, x, zj, sigma, want_energy=last)
            g_next, Ht_next = tuple(a.a for a in gj), tuple(a.b for a in gj)
        else:
            e, g_next, _ = _value_and_grad(xp, gen, params, x, z_next, sigma, want_energy=last)
        if last:
            energy = e
        # r_k = ξ_k − ½ s ⊙ (g_k + g_{k+1})
        r = tuple(xl - (0.5 * sl) * (gl + gnl) for xl, sl, gl, gnl in zip(xi, ch.s, g, g_next))
        values = values - 0.5 * _sqnorm(xp, xi) + 0.5 * _sqnorm(xp, r)
        if want_grad:
            acc = None
            for l, (rl, gl, gnl, htl, htnl, sl) in enumerate(zip(r, g, g_next, Ht, Ht_next, ch.s)):
                dr = ch.masks[l] * (-0.5 * (gl + gnl))[None, ...] - (0.5 * sl) * (htl + htnl)  # (L, n, d_l)
                term = xp.sum(dr * rl[None, ...], axis=2)  # (L, n)
                acc = term if acc is None else acc + term
            grad = grad + xp.permute_dims(acc, (1, 0))
            t, Ht = t_next, Ht_next
        z, g = z_next, g_next
    check_chain(xp, z, step_size=ch.s, sigma=sigma, n_steps=K, what="step-size objective chain")
    values = values + energy
    if want_grad:
        grad = grad + ch.dot_tangent(g, t)  # g_K · t_K
    return values, grad


def _reverse_adjoint(ch, params, x, z0, noise, sigma):
    """−log w (5.1) and its per-example s-gradient by a reverse (adjoint) sweep.

    The forward chain stores ``z_k`` and ``g_k`` (O(K·n·d), no activations). With
    ``λ_k = dℓ/dz_k`` (ℓ = −log w, noise held fixed) the sweep is

        λ_K = g_K − H_K (½ s ⊙ r_{K−1})
        λ_k = λ_{k+1} − H_k (A λ_{k+1} + ½ s ⊙ (r_{k−1} + r_k)),      1 ≤ k < K

    one Hessian-vector product per step whatever the number of groups L, and

        dℓ/ds_j = Σ_k λ_{k+1}·1_j ⊙ (ξ_k − s_j g_k) − ½ Σ_k r_k·1_j ⊙ (g_k + g_{k+1}).

    Equal to the forward-sensitivity gradient (5.2) (tested); cheaper when L > 2.
    """
    xp = ch.xp
    n = z0[0].shape[0]
    K = len(noise)
    zs, gs = [z0], [_grad_z(xp, ch.gen, params, x, z0, sigma)]
    for xi in noise:
        zs.append(langevin_update(zs[-1], gs[-1], xi, ch.s))  # (2.1)
        e, g, _ = _value_and_grad(xp, ch.gen, params, x, zs[-1], sigma, want_energy=len(zs) == K + 1)
        gs.append(g)
    if K == 0:
        energy = _value_and_grad(xp, ch.gen, params, x, z0, sigma)[0]
    else:
        energy = e
    check_chain(xp, zs[-1], step_size=ch.s, sigma=sigma, n_steps=K, what="step-size objective chain")
    rs = [tuple(xl - (0.5 * sl) * (gl + gnl) for xl, sl, gl, gnl in zip(xi, ch.s, gs[k], gs[k + 1]))
          for k, xi in enumerate(noise)]
    values = log_normal(xp, z0) + energy
    for xi, r in zip(noise, rs):
        values = values - 0.5 * _sqnorm(xp, xi) + 0.5 * _sqnorm(xp, r)
    cols = [xp.zeros((n,), dtype=ch.dtype, device=ch.device) for _ in range(ch.L)]
    lam = None  # λ_{k+1}
    for k in range(K, 0, -1):
        # v_k = A λ_{k+1} + ½ s ⊙ (r_{k−1} + r_k)   (λ_{K+1} = 0, r_K = 0)
        v = []
        for l, sl in enumerate(ch.s):
            term = (0.5 * sl) * rs[k - 1][l]
            if k < K:
                term = term + (0.5 * sl * sl) * lam[l] + (0.5 * sl) * rs[k][l]
            v.append(term)
        _, hv = _hvp(xp, ch.gen, params, x, zs[k], tuple(vl[None, ...] for vl in v), sigma)
        lam = tuple((gs[K][l] if k == K else lam[l]) - hv[l][0, ...] for l in range(ch.L))  # λ_k
        # explicit s-dependence of step k−1: z_k = z_{k−1} − A g_{k−1} + s ξ_{k−1}, and r_{k−1}
        for j, sj in enumerate(ch.s):
            dz = noise[k - 1][j] - sj * gs[k - 1][j]
            dr = -0.5 * (gs[k - 1][j] + gs[k][j])
            cols[j] = cols[j] + xp.sum(lam[j] * dz, axis=1) + xp.sum(rs[k - 1][j] * dr, axis=1)
    return values, xp.stack(cols, axis=1)


def _logmeanexp_weights(xp, logw):
    """``log mean_m exp(logw[m])`` and the softmax weights, for ``logw (M, n)``."""
    m = xp.max(logw, axis=0)  # (n,)
    e = xp.exp(logw - m[None, :])
    s = xp.sum(e, axis=0)
    return m + xp.log(s) - math.log(logw.shape[0]), e / s[None, :]


def _use_adjoint(gradient: str, L: int) -> bool:
    """Forward sensitivities cost ≈ (1 + L) gradient passes per step, the adjoint sweep
    ≈ 3.2 (measured, docs/BENCHMARKS.md): ``"auto"`` takes the adjoint when L > 2."""
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    return gradient == "adjoint" or (gradient == "auto" and L > 2)


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
        v, gr = _jacobian(ch, params, xr, z0, noise, sigma, want_grad=want_grad,
                          **{k: o for k, o in opts.items() if k != "gradient"})
    elif want_grad and _use_adjoint(opts.get("gradient", "auto"), ch.L):
        v, gr = _reverse_adjoint(ch, params, xr, z0, noise, sigma)
    else:
        v, gr = _reverse(ch, params, xr, z0, noise, sigma, want_grad=want_grad)
    if not (bool(xp.all(xp.isfinite(v))) and (gr is None or bool(xp.all(xp.isfinite(gr))))):
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
              n_probes, series_terms, probe_seed, want_grad, gradient="auto"):
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
    xp, dtype, n, sigma, K, s = prepare_chain(gen, params, x, sigma=sigma, n_steps=n_steps, step_size=step_size)
    M = int(n_chains)
    if M < 1:
        raise ValueError(f"n_chains must be a positive integer, got {n_chains!r}")
    z0, noise = resolve_noise(gen, xp, x, n_steps=K, seed=seed, z0=z0, noise=noise, dtype=dtype, n=n * M)
    ch = _Chain(xp, gen, s, dtype, _backend.device(x))
    opts = {"gradient": gradient}
    if kind == "jacobian":
        if probe_seed is None:
            probe_seed = [seed, 7919] if isinstance(seed, int) else 7919
        opts.update(logdet=logdet, n_probes=n_probes, series_terms=series_terms, rng=host_rng(probe_seed))
    values, per_example = _objective(ch, params, x, z0, noise, sigma, kind=kind, want_grad=want_grad,
                                     n_chains=M, **opts)
    return xp, values, per_example


def stepsize_objective(gen, params, x, *, step_size, n_steps, sigma, seed=0, kind="jacobian",
                       z0=None, noise=None, n_chains: int = 1, logdet: str = "exact",
                       n_probes: int = 8, series_terms: int = 8, probe_seed=None,
                       return_per_example: bool = False, gradient: str = "auto"):
    """Step-size objective values and their exact gradient in s (docs/math.md §4, §5, §7).

    Parameters
    ----------
    gen, params, x : generator, parameters, data ``(n, *out_shape)``
    step_size : float or one float per latent group (a float gives L equal values; the
        gradient is still per group)
    n_steps : K;  sigma : σ
    seed : selects the chain noise (``srl.random.chain_noise``); ``z0=``/``noise=`` override
    kind : ``"jacobian"`` (J_jac, eq. 4.1, the paper's) or ``"reverse"`` (−log w, eq. 5.1)
    n_chains : M chains per example; ``"reverse"`` then gives the importance-weighted bound
        ``−log (1/M) Σ_m w_m`` and ``"jacobian"`` the mean over chains. Explicit noise is
        then for the stacked batch of ``M·n`` rows, chain-major.
    logdet : ``"exact"`` (batched Hessians, small d) or ``"hutchinson"`` (truncated series
        with Rademacher probes, large d; see ``srl.logdet`` for its bias) — jacobian only
    n_probes, series_terms, probe_seed : settings of the Hutchinson estimator
    return_per_example : also return the per-example gradients ``(n, L)``
    gradient : ``"forward"`` sensitivities (eq. 4.2, L tangents per step), ``"adjoint"``
        reverse sweep (one HVP per step; reverse kind only) or ``"auto"`` (adjoint when
        L > 2). Both are exact and agree to round-off.

    Returns
    -------
    ``(values (n,), grad (L,))`` with ``grad = ∂ values.sum() / ∂ s``; each value is an
    upper bound on ``−log p_θ(x)`` in expectation over the noise.
    """
    xp, values, per_example = _evaluate(
        gen, params, x, step_size=step_size, n_steps=n_steps, sigma=sigma, seed=seed, kind=kind, z0=z0,
        noise=noise, n_chains=n_chains, logdet=logdet, n_probes=n_probes, series_terms=series_terms,
        probe_seed=probe_seed, want_grad=True, gradient=gradient)
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
