"""Step-size objectives and their s-gradients (docs/math.md §4, §5, §6).

* gradients vs common-random-number central differences in s (same z₀, ξ at s ± h);
* gradients vs torch.autograd through the chain (create_graph, slogdet) on identical noise;
* the importance-weighted bound reduces to −log w for M = 1 and is tighter for M > 1;
* no per-step activations are kept (peak memory does not grow with K);
* the Hutchinson log-det estimator is unbiased for its truncated series and its truncation
  bias obeys the documented bound;
* on a linear-Gaussian generator the expected objectives have closed forms (written out
  below), which the Monte-Carlo values and gradients match, and the optimisers move s
  to the closed-form minimiser.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import srl
from srl.generator import Generator, Level
from srl.layers import Clamp, Dense, Reshape, Residual, Sequential, Shift, Softplus
from srl.stepsize import AdamLogStep, GridSearch, StepSizeWarning

from .helpers import configs, make_problem, to_np


def _crn_fd(gen, p, x, s, *, kind, K, sigma, seed, h=1e-5, **kw):
    s = np.asarray(s, dtype=float)
    fd = []
    for j in range(len(s)):
        e = np.zeros_like(s)
        e[j] = h
        vp = srl.objective_values(gen, p, x, step_size=s + e, n_steps=K, sigma=sigma, seed=seed, kind=kind, **kw)
        vm = srl.objective_values(gen, p, x, step_size=s - e, n_steps=K, sigma=sigma, seed=seed, kind=kind, **kw)
        fd.append((np.sum(vp) - np.sum(vm)) / (2 * h))
    return np.array(fd)


@pytest.mark.parametrize("kind", ["jacobian", "reverse"])
@settings(max_examples=8)
@given(config=configs, n=st.integers(1, 3), K=st.integers(0, 4), seed=st.integers(0, 500))
def test_stepsize_gradient_matches_common_random_number_differences(kind, config, n, K, seed):
    gen, p, x, _ = make_problem(config, n=n, seed=seed)
    rng = np.random.default_rng(seed)
    s = tuple(rng.uniform(0.03, 0.25, size=len(gen.latent_dims)))
    sigma = 0.5
    values, grad = srl.stepsize_objective(gen, p, x, step_size=s, n_steps=K, sigma=sigma, seed=seed, kind=kind)
    fd = _crn_fd(gen, p, x, s, kind=kind, K=K, sigma=sigma, seed=seed)
    # central differences with h = 1e-5 on values of size |values|: round-off
    # eps·Σ|values|/h ≈ 1e-9·scale, truncation h²·|∂³J| ≪ that; 1e-6 (docs/math.md §6).
    scale = float(np.sum(np.abs(values))) + 1.0
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * scale)
    if K == 0:  # no steps: J = log N(z0) + E(z0) = −log w, independent of s
        np.testing.assert_array_equal(grad, np.zeros(len(s)))


@settings(max_examples=10)
@given(config=configs, n=st.integers(1, 3), K=st.integers(0, 5), M=st.integers(1, 3), seed=st.integers(0, 500))
def test_adjoint_and_forward_sensitivities_agree(config, n, K, M, seed):
    """Two exact formulations of the reverse-kernel s-gradient: equal to round-off."""
    gen, p, x, _ = make_problem(config, n=n, seed=seed)
    s = tuple(np.random.default_rng(seed).uniform(0.03, 0.25, size=len(gen.latent_dims)))
    kw = dict(step_size=s, n_steps=K, sigma=0.5, seed=seed, kind="reverse", n_chains=M, return_per_example=True)
    vf, gf, pf = srl.stepsize_objective(gen, p, x, gradient="forward", **kw)
    va, ga, pa = srl.stepsize_objective(gen, p, x, gradient="adjoint", **kw)
    vk, gk, pk = srl.stepsize_objective(gen, p, x, gradient="adjoint", keep_activations=True, **kw)
    np.testing.assert_array_equal(va, vf)  # one forward sweep (srl.reverse_bound.chain_sweep) computes both
    np.testing.assert_array_equal(vk, vf)
    # different summation orders of the same exact terms: 1e-10 of the gradient's scale
    np.testing.assert_allclose(pa, pf, rtol=1e-10, atol=1e-10 * (np.abs(pf).max() + 1))
    # the HVPs from the stored tapes instead of jets: the same terms again, round-off
    np.testing.assert_allclose(pk, pf, rtol=1e-10, atol=1e-10 * (np.abs(pf).max() + 1))
    with pytest.raises(ValueError, match="adjoint"):
        srl.stepsize_objective(gen, p, x, step_size=s, n_steps=K, sigma=0.5, kind="jacobian", gradient="adjoint")


@pytest.mark.parametrize("kw", [dict(kind="jacobian"), dict(kind="reverse", gradient="forward")])
def test_keep_activations_is_refused_where_there_is_no_adjoint_sweep(kw):
    gen, p, x, _ = make_problem({"kind": "mlp", "latent_dims": [2, 2], "hidden": 5, "out_shape": [1, 3, 3]},
                                n=2, seed=0)
    with pytest.raises(ValueError, match="keep_activations applies to the adjoint sweep only"):
        srl.stepsize_objective(gen, p, x, step_size=0.1, n_steps=2, sigma=0.5, keep_activations=True, **kw)
    with pytest.raises(TypeError, match="keep_activations must be True or False"):
        srl.stepsize_objective(gen, p, x, step_size=0.1, n_steps=2, sigma=0.5, kind="reverse",
                               keep_activations="yes")


def test_iw_bound_reduces_to_reverse_and_is_tighter():
    gen, p, x, _ = make_problem({"kind": "mlp", "latent_dims": [2, 2], "hidden": 5, "out_shape": [1, 3, 3]},
                                n=3, seed=4)
    kw = dict(step_size=(0.1, 0.2), n_steps=3, sigma=0.4, kind="reverse")
    v1, g1 = srl.stepsize_objective(gen, p, x, seed=9, n_chains=1, **kw)
    v, g = srl.stepsize_objective(gen, p, x, seed=9, **kw)
    np.testing.assert_array_equal(v1, v)
    np.testing.assert_array_equal(g1, g)
    # M = 16: −log mean w ≤ mean(−log w) over the same 16 chains (Jensen), per example
    M = 16
    z0, noise = srl.random.chain_noise(3, 3 * M, gen.latent_dims, 3, xp=srl._backend.namespace("numpy")[0],
                                       dtype=np.float64, device="cpu")
    viw, _ = srl.stepsize_objective(gen, p, x, z0=z0, noise=noise, n_chains=M, **kw)
    per_chain = srl.objective_values(gen, p, np.concatenate([x] * M), z0=z0, noise=noise, **kw).reshape(M, 3)
    assert np.all(viw <= per_chain.mean(axis=0) + 1e-12)
    lse = -(np.logaddexp.reduce(-per_chain, axis=0) - math.log(M))
    # the IW bound vs log-sum-exp of the per-chain values: the same 16 terms in float64, round-off
    np.testing.assert_allclose(viw, lse, rtol=1e-12)
    # and its gradient is right (CRN differences on the IW value)
    _, giw = srl.stepsize_objective(gen, p, x, z0=z0, noise=noise, n_chains=M, **kw)
    fd = _crn_fd(gen, p, x, (0.1, 0.2), kind="reverse", K=3, sigma=0.4, seed=None, z0=z0, noise=noise, n_chains=M)
    np.testing.assert_allclose(giw, fd, rtol=1e-6, atol=1e-6 * np.abs(viw).sum())


@pytest.mark.parametrize("kind", ["jacobian", "reverse"])
@pytest.mark.parametrize("config", [
    {"kind": "mlp", "latent_dims": [2, 3], "hidden": 6, "out_shape": [1, 3, 3]},
    {"kind": "conv", "latent_dims": [2, 2], "out_shape": [1, 6, 6], "channels": 2, "proj_channels": 2,
     "proj_kernel": 3, "res_kernels": [3, 1], "inj_kernel": 2},
])
def test_matches_torch_autograd_through_the_chain(kind, config):
    torch = pytest.importorskip("torch")
    from srl.interop import torch as ti

    gen, p, x, _ = make_problem(config, n=3, seed=7)
    z0, noise = srl.random.chain_noise(5, 3, gen.latent_dims, 4, xp=srl._backend.namespace("numpy")[0],
                                       dtype=np.float64, device="cpu")
    s = (0.15, 0.08)
    v, g = srl.stepsize_objective(gen, p, x, step_size=s, n_steps=4, sigma=0.3, z0=z0, noise=noise, kind=kind)
    module = ti.to_torch(gen, p)
    tz0 = tuple(torch.as_tensor(a) for a in z0)
    tnoise = [tuple(torch.as_tensor(a) for a in xi) for xi in noise]
    tv, tg = ti.stepsize_objective(module, torch.as_tensor(x), step_size=s, z0=tz0, noise=tnoise, sigma=0.3, kind=kind)
    # two exact float64 implementations: agreement to round-off (1e-10 relative, docs/math.md §6)
    np.testing.assert_allclose(v, tv.numpy(), rtol=1e-10)
    np.testing.assert_allclose(g, tg.numpy(), rtol=1e-9, atol=1e-10 * np.abs(v).sum())


@pytest.mark.parametrize("kind,gradient", [("reverse", "forward"), ("reverse", "adjoint"), ("jacobian", "auto")])
def test_no_per_step_activations_are_kept(kind, gradient):
    """Peak memory of the s-gradient is the same at K = 4 and K = 32 (tracemalloc)."""
    gen, p, x, _ = make_problem({"kind": "conv", "latent_dims": [2, 3], "out_shape": [1, 8, 8], "channels": 8,
                                 "proj_channels": 2, "proj_kernel": 3, "res_kernels": [3, 3], "inj_kernel": 3},
                                n=16, seed=1)

    def peak(K):
        z0, noise = srl.random.chain_noise(0, 16, gen.latent_dims, K, xp=srl._backend.namespace("numpy")[0],
                                           dtype=np.float64, device="cpu")
        tracemalloc.start()
        srl.stepsize_objective(gen, p, x, step_size=0.05, n_steps=K, sigma=0.3, z0=z0, noise=noise, kind=kind,
                               gradient=gradient)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(4), peak(32)
    # Storing activations per step would multiply the peak by ~8; keeping only the current
    # state (plus, for the adjoint, the latents z_k, g_k: 2·(K+1)·16·5 floats) leaves it
    # flat. 25% slack absorbs allocator noise.
    assert large <= 1.25 * small, (small, large)


def test_keep_activations_keeps_one_tape_per_step():
    """With ``keep_activations`` the adjoint's memory grows by one tape per step: the peak at
    K = 32 minus that at K = 4 is 28 tapes (tracemalloc), as the docstring says."""
    from srl.energy import _value_and_grad
    from srl.loop import _leaves

    gen, p, x, z = make_problem({"kind": "conv", "latent_dims": [2, 3], "out_shape": [1, 8, 8], "channels": 8,
                                 "proj_channels": 2, "proj_kernel": 3, "res_kernels": [3, 3], "inj_kernel": 3},
                                n=16, seed=1)
    tape = []
    _value_and_grad(np, gen, p, x, z, 0.3, want_energy=False, tape=tape)
    tape_bytes = sum(a.nbytes for a in _leaves(tape))

    def peak(K, keep):
        z0, noise = srl.random.chain_noise(0, 16, gen.latent_dims, K, xp=np, dtype=np.float64, device="cpu")
        tracemalloc.start()
        srl.stepsize_objective(gen, p, x, step_size=0.05, n_steps=K, sigma=0.3, z0=z0, noise=noise,
                               kind="reverse", gradient="adjoint", keep_activations=keep)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    grown = peak(32, True) - peak(4, True)
    # 28 tapes; the latents' own growth (z_k, g_k, r_k: 3·28·16·5 floats, about 2 % of it)
    # and allocator noise fit in ±15 %
    assert 0.85 * 28 * tape_bytes <= grown <= 1.15 * 28 * tape_bytes, (grown, 28 * tape_bytes)


# ------------------------------------------------------------------- Hutchinson
def test_hutchinson_logdet_is_unbiased_for_its_series_and_bias_is_bounded():
    from srl.jacobian_bound import hutchinson_logdet_step
    from srl.random import rademacher
    from srl.sensitivity import ChainConstants

    gen, p, x, z = make_problem({"kind": "mlp", "latent_dims": [3, 4], "hidden": 6, "out_shape": [1, 3, 3]},
                                n=2, seed=3)
    xp = srl._backend.namespace("numpy")[0]
    s, sigma, T = (0.3, 0.2), 0.5, 6
    ch = ChainConstants(xp, gen, s, np.float64, "cpu")
    H = srl.hessian_z(gen, p, x, z, sigma=sigma)
    a = np.concatenate([np.full(d, 0.5 * v * v) for d, v in zip(gen.latent_dims, s)])
    B = a[None, :, None] * H
    exact = np.linalg.slogdet(np.eye(gen.d)[None] - B)[1]
    series = -sum(np.trace(np.linalg.matrix_power(B, m), axis1=1, axis2=2) / m for m in range(1, T + 1))
    rho = np.max(np.abs(np.linalg.eigvals(B)), axis=1)
    assert np.all(rho < 1)
    bound = gen.d * rho ** (T + 1) / ((T + 1) * (1 - rho))  # documented truncation bias bound
    assert np.all(np.abs(series - exact) <= bound)
    t0 = ch.zeros_tangent(2)
    probes = [rademacher(np.random.default_rng(r), (64, 2, gen.d), xp=xp, dtype=np.float64, device="cpu")
              for r in range(40)]
    ests = np.array([to_np(hutchinson_logdet_step(ch, p, x, z, t0, sigma, want_grad=False, probes=v,
                                                  series_terms=T)[2]) for v in probes])
    mean, se = ests.mean(axis=0), ests.std(axis=0, ddof=1) / math.sqrt(len(ests))
    # unbiased for the truncated series: within 4 standard errors (fixed seeds: deterministic)
    assert np.all(np.abs(mean - series) <= 4 * se + 1e-12), (mean, series, se)
    assert np.all(se > 0)


def test_hutchinson_objective_and_gradient_agree_with_exact():
    gen, p, x, _ = make_problem({"kind": "mlp", "latent_dims": [2, 3], "hidden": 6, "out_shape": [1, 3, 3]},
                                n=3, seed=5)
    kw = dict(step_size=(0.2, 0.1), n_steps=3, sigma=0.6, seed=2, kind="jacobian")
    ve, ge = srl.stepsize_objective(gen, p, x, **kw)
    runs = [srl.stepsize_objective(gen, p, x, logdet="hutchinson", n_probes=32, series_terms=10, probe_seed=r, **kw)
            for r in range(24)]
    vh = np.array([r[0] for r in runs])
    gh = np.array([r[1] for r in runs])
    # series bias is < 1e-6 here (ρ(B) ≈ 0.1); the rest is Monte-Carlo error: 4 standard errors
    for est, exact in ((vh, ve), (gh, ge)):
        se = est.std(axis=0, ddof=1) / math.sqrt(len(est))
        assert np.all(np.abs(est.mean(axis=0) - exact) <= 4 * se + 1e-6), (est.mean(axis=0), exact, se)


# -------------------------------------------------------------- linear-Gaussian
def linear_gaussian(seed=0, sigma=0.5):
    """A generator that is linear in z: Dense layers only, no tanh, and a constant
    variance head (its weight is zero), so u₁ = μ(h₀) + c ⊙ z₁ is linear too."""
    d0, d1, H, shape = 1, 2, 3, (1, 2, 2)
    D = 4
    levels = [
        Level(None, None, Sequential(Dense("proj0.dense", d0, H)),
              Residual(Sequential(Dense("res0.dense1", H, H)), name="res0")),
        Level(Sequential(Dense("inj1.mu.dense", H, d1)),
              Sequential(Dense("inj1.v.dense", H, d1), Softplus(), Shift(1e-8), Clamp(0.0, 10.0)),
              Sequential(Dense("proj1.dense", d1, H)), Residual(Sequential(Dense("res1.dense1", H, H)), name="res1")),
    ]
    out = Sequential(Dense("out.dense", H, D), Reshape((D,), shape))
    gen = Generator({"kind": "linear-test", "latent_dims": [d0, d1], "out_shape": list(shape)}, levels, out)
    p = gen.init(seed=seed)
    p["inj1.v.dense.weight"] = np.zeros_like(p["inj1.v.dense.weight"])
    p["out.dense.weight"] = p["out.dense.weight"] * 4.0  # a posterior that differs from the prior
    x = np.array([[[[0.5, -0.3], [0.8, 0.1]]]])
    # the affine map g(z) = G z + b, read off the generator itself
    b = gen.forward(p, (np.zeros((1, d0)), np.zeros((1, d1)))).reshape(D)
    G = np.stack([gen.forward(p, (e[None, :d0], e[None, d0:])).reshape(D) - b for e in np.eye(d0 + d1)], axis=1)
    return gen, p, x, G, b, sigma


def closed_forms(G, b, x, sigma, s_vec, K):
    """E[J_jac], E[−log w] and −log p(x) for z ~ N(0, I), x | z ~ N(Gz + b, σ²I).

    E(z) = E* + ½ (z − μ*)ᵀ H (z − μ*),  H = I + GᵀG/σ²,  μ* = H⁻¹ Gᵀ(x − b)/σ².
    The chain is linear: z_{k+1} = (I − AH) z_k + A H μ* + S ξ_k, so z_k ~ N(m_k, P_k) with
    m_{k+1} = (I − AH) m_k + AHμ*,  P_{k+1} = (I − AH) P_k (I − AH)ᵀ + S²,  m₀ = 0, P₀ = I.
    E[J_jac] = −(d/2)(log 2π + 1) − K log|det(I − AH)| + E* + ½ tr(H P_K) + ½ ‖m_K − μ*‖²_H.
    −log w: with g_k = H(z_k − μ*), r_k = ξ_k − ½ S(g_k + g_{k+1}) = R z_k + Q ξ_k + q where
    R = −½ S H (2I − AH),  Q = I − ½ S H S,  q = ½ S H (2I − AH) μ*, hence
    E‖r_k‖² = ‖R m_k + q‖² + tr(R P_k Rᵀ) + tr(Q Qᵀ) and
    E[−log w] = E[E(z_K)] − (d/2)(log 2π + 1) − Σ_k (d/2 − ½ E‖r_k‖²).
    """
    x = x.reshape(-1)
    d, D = G.shape[1], G.shape[0]
    Hm = np.eye(d) + G.T @ G / sigma**2
    mu = np.linalg.solve(Hm, G.T @ (x - b) / sigma**2)
    E_star = 0.5 * mu @ mu + np.sum((x - G @ mu - b) ** 2) / (2 * sigma**2) + 0.5 * d * math.log(2 * math.pi) \
        + 0.5 * D * math.log(2 * math.pi * sigma**2)
    A, S = np.diag(0.5 * s_vec**2), np.diag(s_vec)
    Mx = np.eye(d) - A @ Hm
    m, P = np.zeros(d), np.eye(d)
    R = -0.5 * S @ Hm @ (2 * np.eye(d) - A @ Hm)
    Q = np.eye(d) - 0.5 * S @ Hm @ S
    q = 0.5 * S @ Hm @ (2 * np.eye(d) - A @ Hm) @ mu
    rev_steps = 0.0
    for _ in range(K):
        er2 = np.sum((R @ m + q) ** 2) + np.trace(R @ P @ R.T) + np.trace(Q @ Q.T)
        rev_steps += 0.5 * d - 0.5 * er2
        m, P = Mx @ m + A @ Hm @ mu, Mx @ P @ Mx.T + S @ S
    EzK = E_star + 0.5 * np.trace(Hm @ P) + 0.5 * (m - mu) @ Hm @ (m - mu)
    logN = -0.5 * d * (math.log(2 * math.pi) + 1)
    J = logN - K * np.linalg.slogdet(Mx)[1] + EzK
    rev = EzK + logN - rev_steps
    C = sigma**2 * np.eye(D) + G @ G.T
    nlp = 0.5 * np.linalg.slogdet(2 * math.pi * C)[1] + 0.5 * (x - b) @ np.linalg.solve(C, x - b)
    return J, rev, nlp, Hm


def test_linear_gaussian_closed_forms_match_monte_carlo():
    gen, p, x, G, b, sigma = linear_gaussian()
    K, s = 4, np.array([0.3, 0.2])
    s_vec = np.array([0.3, 0.2, 0.2])
    J, rev, nlp, Hm = closed_forms(G, b, x, sigma, s_vec, K)
    # the model really is linear-Gaussian: its Hessian is the constant H above
    z = gen.prior(2, seed=1)
    np.testing.assert_allclose(srl.hessian_z(gen, p, np.concatenate([x, x]), z, sigma=sigma), np.stack([Hm, Hm]),
                               rtol=1e-12, atol=1e-12)
    assert J >= nlp and rev >= nlp  # both are upper bounds on −log p(x)
    M = 4000
    xs = np.concatenate([x] * M)
    for kind, closed in (("jacobian", J), ("reverse", rev)):
        v, _, per = srl.stepsize_objective(gen, p, xs, step_size=s, n_steps=K, sigma=sigma, seed=11, kind=kind,
                                           return_per_example=True)
        se = v.std(ddof=1) / math.sqrt(M)
        assert abs(v.mean() - closed) <= 4 * se, (kind, v.mean(), closed, se)
        # the mean per-example gradient estimates ∂E[objective]/∂s (closed form by differences)
        h = 1e-6
        fd = []
        for j in range(2):
            e = np.zeros(2)
            e[j] = h
            sp, sm = s + e, s - e
            cp = closed_forms(G, b, x, sigma, np.array([sp[0], sp[1], sp[1]]), K)[0 if kind == "jacobian" else 1]
            cm = closed_forms(G, b, x, sigma, np.array([sm[0], sm[1], sm[1]]), K)[0 if kind == "jacobian" else 1]
            fd.append((cp - cm) / (2 * h))
        gse = per.std(axis=0, ddof=1) / math.sqrt(M)
        assert np.all(np.abs(per.mean(axis=0) - fd) <= 4 * gse), (kind, per.mean(axis=0), fd, gse)


def _closed_argmin(G, b, x, sigma, K, which):
    grid = np.exp(np.linspace(np.log(0.02), np.log(1.2), 121))
    vals = np.array([[closed_forms(G, b, x, sigma, np.array([u, v, v]), K)[which] for v in grid] for u in grid])
    i, j = np.unravel_index(np.nanargmin(np.where(np.isfinite(vals), vals, np.nan)), vals.shape)
    return np.array([grid[i], grid[j]]), vals[i, j]


@pytest.mark.parametrize("kind", ["jacobian", "reverse"])
def test_adam_on_log_s_moves_to_the_closed_form_minimum(kind):
    gen, p, x, G, b, sigma = linear_gaussian()
    K = 4
    which = 0 if kind == "jacobian" else 1
    s_star, best = _closed_argmin(G, b, x, sigma, K, which)
    s0 = s_star / 4

    def closed(s):
        return closed_forms(G, b, x, sigma, np.array([s[0], s[1], s[1]]), K)[which]

    opt = AdamLogStep(kind=kind, lr=0.08)
    s, state = tuple(s0), opt.init()
    xs = np.concatenate([x] * 64)
    for it in range(80):
        upd, state = opt.update(state, gen, p, xs, s, n_steps=K, sigma=sigma, seed=it)
        s = upd.step_size
    gap0, gap = closed(s0) - best, closed(s) - best
    # the optimiser closes at least 95% of the initial gap in expected objective
    assert gap <= 0.05 * gap0, (s, s_star, gap, gap0)


def test_grid_search_picks_the_closed_form_best_candidate():
    gen, p, x, G, b, sigma = linear_gaussian()
    K = 4
    cands = (0.05, 0.1, 0.2, 0.4, 0.8)

    def closed(c):
        return closed_forms(G, b, x, sigma, np.full(3, c), K)[0]

    best = min(cands, key=closed)
    xs = np.concatenate([x] * 512)
    upd, _ = GridSearch(kind="jacobian", candidates=cands, tied=True).update(None, gen, p, xs, (0.1, 0.1), n_steps=K,
                                                                            sigma=sigma, seed=3)
    assert upd.step_size == (best, best)
    assert set(upd.evaluated) == {(c, c) for c in cands}


def test_divergent_step_sizes_back_off_with_a_warning():
    gen, p, x, _ = make_problem({"kind": "mlp", "latent_dims": [2, 2], "hidden": 4, "out_shape": [1, 2, 2]},
                                n=2, seed=0)
    with pytest.warns(StepSizeWarning, match="diverged"), np.errstate(all="ignore"):
        opt = AdamLogStep(kind="reverse")
        upd, state = opt.update(opt.init(), gen, p, x, (1e5, 1e5), n_steps=25, sigma=0.05, seed=0)
    assert state == opt.init()  # the moments are reset
    assert upd.diverged and upd.step_size == (2.0, 2.0)  # 1e5 · backoff 0.5, clipped to max_step = 2
    with pytest.warns(StepSizeWarning, match="diverged"), np.errstate(all="ignore"):
        upd, _ = opt.update(opt.init(), gen, p, x, (3.0, 3.0), n_steps=25, sigma=0.05, seed=0)
    assert upd.diverged and upd.step_size == (1.5, 1.5)  # s > 2 diverges (docs/math.md §2); 3 · backoff 0.5
    with pytest.warns(StepSizeWarning, match="discarded"), np.errstate(all="ignore"):
        upd, _ = GridSearch(kind="jacobian", candidates=(0.05, 1e5)).update(None, gen, p, x, (0.1, 0.1), n_steps=5,
                                                                            sigma=0.05, seed=0)
    assert upd.step_size == (0.05, 0.05) and not upd.diverged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GridSearch(kind="reverse", candidates=(0.05,)).update(None, gen, p, x, (0.1, 0.1), n_steps=3, sigma=0.5, seed=0)


@pytest.mark.parametrize("kind", ["jacobian", "reverse"])
def test_adam_on_log_s_is_projected_into_the_stable_region(kind):
    """Beyond (s²/2) λ_max(H) = 2 (docs/math.md eq. 2.2) the chain stays finite for K = 25
    but its s-sensitivities grow like |1 − λ̃|^K: instead of following that gradient the
    update scales s so that λ̃_max = 2·margin, and keeps Adam's state; inside it steps."""
    gen, p, x, G, b, sigma = linear_gaussian()
    lam = np.linalg.eigvalsh(np.eye(3) + G.T @ G / sigma**2).max()  # H is constant: λ̃ is exact
    xs = np.concatenate([x] * 16) + np.random.default_rng(0).normal(0, 0.3, (16,) + x.shape[1:])
    s_stable = math.sqrt(2 * 0.8 / lam)  # λ̃_max = 0.8 (at 1, I − AH is singular and J_jac infinite)
    s_unstable = math.sqrt(2 * 2.5 / lam)  # λ̃_max = 2.5: |1 − 2.5|^25 ≈ 2.5e4, yet finite
    opt = AdamLogStep(kind=kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        upd, state = opt.update(opt.init(), gen, p, xs, (s_stable, s_stable), n_steps=25, sigma=sigma, seed=0)
        assert not upd.projected and state.t == 1 and upd.grad is not None
        # 10 power iterations with eigenvalue ratio 11.6/40.9 leave a relative error ≈ 0.28^20
        assert upd.stability == pytest.approx(0.8, rel=1e-8)
        upd2, state2 = opt.update(state, gen, p, xs, (s_unstable, s_unstable), n_steps=25, sigma=sigma, seed=0)
    assert upd2.projected and state2 == state and upd2.grad is None
    assert upd2.stability == pytest.approx(2.5, rel=1e-8)
    np.testing.assert_allclose(upd2.step_size, (s_unstable * math.sqrt(1.8 / 2.5),) * 2, rtol=1e-8)  # margin 0.9
    # without the projection the same update follows the exploding gradient
    free = AdamLogStep(kind=kind, stable_fraction=None)
    upd3, _ = free.update(free.init(), gen, p, xs, (s_unstable, s_unstable), n_steps=25, sigma=sigma, seed=0)
    assert not upd3.projected and max(abs(g) for g in upd3.grad) > 1e3 * max(abs(g) for g in upd.grad)


def test_stability_index_is_the_top_eigenvalue_of_the_scaled_hessian():
    from srl.stability import stability_index

    gen, p, x, _ = make_problem({"kind": "mlp", "latent_dims": [2, 3], "hidden": 6, "out_shape": [1, 3, 3]},
                                n=5, seed=1)
    z = gen.prior(5, seed=2)
    s = (0.3, 0.1)
    H = srl.hessian_z(gen, p, x, z, sigma=0.2)  # (n, d, d)
    a = np.array([0.3] * 2 + [0.1] * 3) / math.sqrt(2)
    ev = np.linalg.eigvalsh(a[:, None] * H * a[None, :])  # (n, d), ascending
    top = ev[np.arange(5), np.abs(ev).argmax(axis=1)]  # power iteration finds the largest |λ|
    lam = stability_index(gen, p, x, z, step_size=s, sigma=0.2, n_iter=300, seed=0)
    # float64; 300 iterations reduce the Rayleigh-quotient error below 1e-9 unless the top
    # two eigenvalues are within 3% of each other, which these draws are not (checked below)
    second = np.sort(np.abs(ev), axis=1)[:, -2]
    assert np.all(second < 0.97 * np.abs(top))
    np.testing.assert_allclose(lam, top, rtol=1e-9)


def test_stability_index_and_the_projection_options_reject_bad_input():
    from srl.errors import ShapeError
    from srl.stability import stability_index

    gen, p, x, _ = make_problem({"kind": "mlp", "latent_dims": [2, 3], "hidden": 6, "out_shape": [1, 3, 3]},
                                n=4, seed=1)
    z = gen.prior(4, seed=2)
    with pytest.raises(ShapeError, match="3 values but the generator has 2 latent groups"):
        stability_index(gen, p, x, z, step_size=(0.1, 0.1, 0.1), sigma=0.2)
    with pytest.raises(ValueError, match="n_iter must be a positive integer"):
        stability_index(gen, p, x, z, step_size=0.1, sigma=0.2, n_iter=0)
    with pytest.raises(ValueError, match="sigma must be a positive finite number"):
        stability_index(gen, p, x, z, step_size=0.1, sigma=-1.0)
    with pytest.raises(ShapeError, match=r"z\[0\] has shape \(3, 2\), expected \(4, 2\)"):
        stability_index(gen, p, x, gen.prior(3, seed=2), step_size=0.1, sigma=0.2)
    for kw, match in ((dict(stable_fraction=1.5), "stable_fraction must be in"),
                      (dict(margin=None), "margin must be in"),
                      (dict(margin=0.0), "margin must be in"),
                      (dict(power_iterations=0), "power_iterations must be a positive integer")):
        with pytest.raises(ValueError, match=match):
            AdamLogStep(**kw)
    AdamLogStep(stable_fraction=None)  # None turns the projection off
