"""Whole-model derivatives over random architectures, shapes, batch sizes and σ (docs/math.md §6).

float64 NumPy; every check compares the hand-written derivative with central
differences along random directions (or an exact identity).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import srl

from .helpers import assert_directional, central_difference, configs, energy_scale, like, make_problem, to_np


@given(config=configs, n=st.integers(1, 3), seed=st.integers(0, 1000), sigma=st.floats(0.1, 1.0))
def test_energy_gradients_match_finite_differences(config, n, seed, sigma):
    gen, p, x, z = make_problem(config, n=n, seed=seed)
    rng = np.random.default_rng(seed + 10)
    E = srl.energy(gen, p, x, z, sigma=sigma)
    assert E.shape == (n,)
    scale = energy_scale(E)

    gz = srl.grad_z(gen, p, x, z, sigma=sigma)
    v = like(rng, z)
    fd = central_difference(lambda zz: srl.energy(gen, p, x, zz, sigma=sigma), z, v)  # per example
    analytic = sum(np.sum(g * vl, axis=1) for g, vl in zip(gz, v))
    assert_directional(fd, analytic, scale=scale, err="grad_z")

    gp = srl.grad_params(gen, p, x, z, sigma=sigma)
    assert set(gp) == set(p) and all(gp[k].shape == p[k].shape for k in p)
    dp = like(rng, p)
    fd = central_difference(lambda pp: np.sum(srl.energy(gen, pp, x, z, sigma=sigma)), p, dp)
    analytic = sum(np.sum(gp[k] * dp[k]) for k in p)
    assert_directional(fd, analytic, scale=scale * n, err="grad_params")


@given(config=configs, n=st.integers(1, 3), seed=st.integers(0, 1000), sigma=st.floats(0.1, 1.0))
def test_hvp_and_hessian(config, n, seed, sigma):
    gen, p, x, z = make_problem(config, n=n, seed=seed)
    rng = np.random.default_rng(seed + 20)
    v, u = like(rng, z), like(rng, z)
    hv = srl.hvp_z(gen, p, x, z, v, sigma=sigma)
    fd = central_difference(lambda zz: srl.grad_z(gen, p, x, zz, sigma=sigma), z, v)
    scale = max(float(np.abs(a).max()) for a in hv) + 1.0
    for l, (a, b) in enumerate(zip(fd, hv)):
        assert_directional(a, b, scale=scale, err=f"hvp group {l}")
    # symmetry ⟨u, Hv⟩ = ⟨v, Hu⟩ per example; round-off only (1e-10 of the terms' size)
    hu = srl.hvp_z(gen, p, x, z, u, sigma=sigma)
    uhv = sum(np.sum(a * b, axis=1) for a, b in zip(u, hv))
    vhu = sum(np.sum(a * b, axis=1) for a, b in zip(v, hu))
    np.testing.assert_allclose(uhv, vhu, rtol=1e-10, atol=1e-10 * scale * gen.d)
    # the batched Hessian's columns are the HVPs with unit vectors; it is symmetric
    H = srl.hessian_z(gen, p, x, z, sigma=sigma)
    assert H.shape == (n, gen.d, gen.d)
    vflat = np.concatenate(v, axis=1)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", H, vflat), np.concatenate(hv, axis=1),
                               rtol=1e-10, atol=1e-10 * scale)
    np.testing.assert_allclose(H, np.transpose(H, (0, 2, 1)), rtol=1e-10, atol=1e-10 * scale)


def test_energy_constants_match_eq_1_1(rng):
    """E includes ½‖z‖², ‖x − g‖²/(2σ²), (d/2) log 2π and (D/2) log 2πσ² — checked by hand."""
    gen, p, x, z = make_problem({"kind": "mlp", "latent_dims": [2, 3], "hidden": 4, "out_shape": [1, 2, 2]},
                                n=2, seed=3)
    sigma = 0.37
    xhat = gen.forward(p, z)
    zz = np.concatenate(z, axis=1)
    expect = (0.5 * np.sum(zz**2, axis=1) + np.sum((x - xhat).reshape(2, -1) ** 2, axis=1) / (2 * sigma**2)
              + 0.5 * 5 * math.log(2 * math.pi) + 0.5 * 4 * math.log(2 * math.pi * sigma**2))
    # the same terms of eq. (1.1) summed in another order: a few ulps of E
    np.testing.assert_allclose(srl.energy(gen, p, x, z, sigma=sigma), expect, rtol=1e-14)


@given(config=configs, seed=st.integers(0, 1000))
def test_noise_free_langevin_lowers_energy(config, seed):
    """With ξ = 0 and a small step, (2.1) is gradient descent: E(z_K) < E(z_0)."""
    gen, p, x, z0 = make_problem(config, n=2, seed=seed)
    sigma = 0.5
    zeros = tuple(np.zeros_like(a) for a in z0)
    K = 5
    zK, path = srl.short_run(gen, p, x, step_size=0.05, n_steps=K, sigma=sigma, z0=z0, noise=[zeros] * K,
                             return_path=True)
    E0 = srl.energy(gen, p, x, z0, sigma=sigma)
    EK = srl.energy(gen, p, x, zK, sigma=sigma)
    assert np.all(EK < E0)
    assert [a.shape for a in path] == [(K + 1, 2, d) for d in gen.latent_dims]
    for l in range(len(z0)):
        np.testing.assert_array_equal(path[l][0], z0[l])
        np.testing.assert_array_equal(path[l][-1], zK[l])


def test_short_run_follows_eq_2_1_step_by_step(rng):
    """z_{k+1} = z_k − (s²/2)∇E + s ξ_k with per-group s, checked against grad_z."""
    gen, p, x, z0 = make_problem({"kind": "conv", "latent_dims": [2, 3], "out_shape": [1, 4, 4], "channels": 2,
                                  "proj_channels": 1, "proj_kernel": 3, "res_kernels": [3, 1], "inj_kernel": 1},
                                 n=3, seed=4)
    s = (0.2, 0.05)
    noise = [like(rng, z0) for _ in range(3)]
    _, path = srl.short_run(gen, p, x, step_size=s, n_steps=3, sigma=0.4, z0=z0, noise=noise, return_path=True)
    z = z0
    for k in range(3):
        g = srl.grad_z(gen, p, x, z, sigma=0.4)
        z = tuple(zl - 0.5 * sl**2 * gl + sl * xl for zl, gl, xl, sl in zip(z, g, noise[k], s))
        for l in range(2):
            # the same update in another association order, over 3 steps: ulps of |z| ≲ 10
            np.testing.assert_allclose(path[l][k + 1], z[l], rtol=1e-13, atol=1e-13)


def test_seed_selects_the_documented_noise():
    """seed → z0 then ξ_0..ξ_{K−1}, group by group, from numpy.random.default_rng(seed)."""
    gen, p, x, _ = make_problem({"kind": "mlp", "latent_dims": [2, 1], "hidden": 3, "out_shape": [1, 2, 2]},
                                n=2, seed=1)
    r = np.random.default_rng(42)
    z0 = tuple(r.standard_normal((2, d)) for d in (2, 1))
    noise = [tuple(r.standard_normal((2, d)) for d in (2, 1)) for _ in range(4)]
    a = srl.short_run(gen, p, x, step_size=0.1, n_steps=4, sigma=0.5, seed=42)
    b = srl.short_run(gen, p, x, step_size=0.1, n_steps=4, sigma=0.5, z0=z0, noise=noise)
    for u, w in zip(a, b):
        np.testing.assert_array_equal(to_np(u), to_np(w))


@given(config=configs, n=st.integers(1, 3), seed=st.integers(0, 1000), sigma=st.floats(0.1, 1.0))
def test_hvp_from_a_stored_tape_equals_the_jet_hvp(config, n, seed, sigma):
    """The adjoint sweep's tangent pass through a stored linearisation (``srl.layers``:
    ``jvp``/``backward_jvp``) against the first-order jet pass (1.3) at the same point."""
    from srl.energy import _hvp, _hvp_from_tape, _value_and_grad

    gen, p, x, z = make_problem(config, n=n, seed=seed)
    v = like(np.random.default_rng(seed + 30), z)
    tape = []
    _value_and_grad(np, gen, p, x, z, sigma, want_energy=False, tape=tape)
    got = _hvp_from_tape(np, gen, p, tape, v, sigma)
    _, want = _hvp(np, gen, p, x, z, tuple(vl[None, ...] for vl in v), sigma)
    scale = max(float(np.abs(a).max()) for a in want) + 1.0
    for a, b in zip(got, want):  # the same products in another order: float64 round-off
        np.testing.assert_allclose(a, b[0], rtol=1e-11, atol=1e-11 * scale)


def test_hvp_from_a_stored_tape_on_the_paper_model():
    """Every layer kind of ``paper()`` (transposed convolutions, the softplus/clamp variance
    heads, tanh) in one tangent pass, against the jet HVP; and a tape of another model is
    refused rather than misread."""
    import pytest

    from srl.energy import _hvp, _hvp_from_tape, _value_and_grad

    gen = srl.models.paper()
    p = gen.init(seed=0, backend="numpy", dtype="float64")
    z = gen.prior(1, seed=1, backend="numpy", dtype="float64")
    v = gen.prior(1, seed=2, backend="numpy", dtype="float64")
    x = np.tanh(np.random.default_rng(3).standard_normal((1, *gen.out_shape)))
    tape = []
    _value_and_grad(np, gen, p, x, z, 0.3, want_energy=False, tape=tape)
    got = _hvp_from_tape(np, gen, p, tape, v, 0.3)
    _, want = _hvp(np, gen, p, x, z, tuple(vl[None, ...] for vl in v), 0.3)
    scale = max(float(np.abs(a).max()) for a in want) + 1.0
    for a, b in zip(got, want):  # float64 round-off over ~40 layers
        np.testing.assert_allclose(a, b[0], rtol=1e-11, atol=1e-11 * scale)
    with pytest.raises(RuntimeError, match="more entries"):
        _hvp_from_tape(np, gen, p, tape[:1] + tape, v, 0.3)  # read last, after every layer
