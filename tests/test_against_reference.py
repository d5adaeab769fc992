"""srl (NumPy backend, float64) equals the independent oracle ``reference/`` (docs/math.md §6).

The oracle shares no code with ``srl/``: explicit per-layer tangent rules, loops over
kernel offsets, ``np.linalg.slogdet`` on explicit Hessians. Agreement is required to
rtol 1e-10 for every §7 quantity over random architectures, shapes, batch sizes, σ and
step sizes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import srl
from srl import reference as ref

from .helpers import configs, like, make_problem

RTOL = 1e-10  # docs/math.md §6: float64 vs reference


def _close(a, b, err, scale=None):
    a, b = np.asarray(a), np.asarray(b)
    # absolute floor: 1e-10 of the largest entry, for components that cancel to ~0
    atol = RTOL * (np.max(np.abs(b)) if scale is None else scale)
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=atol, err_msg=err)


@given(config=configs, n=st.integers(1, 3), seed=st.integers(0, 1000), sigma=st.floats(0.1, 1.0))
def test_model_quantities_equal_the_reference(config, n, seed, sigma):
    gen, p, x, z = make_problem(config, n=n, seed=seed)
    v = like(np.random.default_rng(seed), z)
    _close(gen.forward(p, z), ref.forward(config, p, z), "forward")
    _close(srl.energy(gen, p, x, z, sigma=sigma), ref.energy(config, p, x, z, sigma), "energy")
    for l, (a, b) in enumerate(zip(srl.grad_z(gen, p, x, z, sigma=sigma), ref.grad_z(config, p, x, z, sigma))):
        _close(a, b, f"grad_z[{l}]")
    gp, rp = srl.grad_params(gen, p, x, z, sigma=sigma), ref.grad_params(config, p, x, z, sigma)
    assert set(gp) == set(rp)
    for k in gp:
        _close(gp[k], rp[k], f"grad_params[{k}]")
    for l, (a, b) in enumerate(zip(srl.hvp_z(gen, p, x, z, v, sigma=sigma), ref.hvp_z(config, p, x, z, v, sigma))):
        _close(a, b, f"hvp_z[{l}]")
    _close(srl.hessian_z(gen, p, x, z, sigma=sigma), ref.hessian_z(config, p, x, z, sigma), "hessian_z")


@settings(max_examples=8)
@given(config=configs, n=st.integers(1, 3), K=st.integers(0, 4), seed=st.integers(0, 1000))
def test_chain_and_objectives_equal_the_reference(config, n, K, seed):
    gen, p, x, _ = make_problem(config, n=n, seed=seed)
    rng = np.random.default_rng(seed)
    s = tuple(rng.uniform(0.02, 0.3, size=len(gen.latent_dims)))
    sigma = float(rng.uniform(0.2, 1.0))
    z0, noise = ref.chain_noise(config, n, K, seed)
    zK, path = srl.short_run(gen, p, x, step_size=s, n_steps=K, sigma=sigma, z0=z0, noise=noise, return_path=True)
    rzK, rpath = ref.short_run(config, p, x, s, z0, noise, sigma)
    for l in range(len(gen.latent_dims)):
        _close(zK[l], rzK[l], f"z_K[{l}]")
        _close(path[l], np.stack([step[l] for step in rpath]), f"path[{l}]")
    kw = dict(step_size=s, n_steps=K, sigma=sigma, z0=z0, noise=noise)
    _close(srl.objective_values(gen, p, x, kind="jacobian", **kw), ref.jacobian_objective(config, p, x, s, z0, noise, sigma),
           "J_jac")
    _close(srl.stepsize_objective(gen, p, x, kind="reverse", **kw)[0],
           ref.reverse_objective(config, p, x, s, z0, noise, sigma), "-log w")


def test_importance_weighted_bound_equals_the_reference():
    config = {"kind": "conv", "latent_dims": [2, 2], "out_shape": [1, 6, 6], "channels": 2, "proj_channels": 1,
              "proj_kernel": 3, "res_kernels": [3, 1], "inj_kernel": 2}
    gen, p, x, _ = make_problem(config, n=2, seed=3)
    M, K, s, sigma = 5, 3, (0.1, 0.15), 0.4
    chains = [ref.chain_noise(config, 2, K, 100 + m) for m in range(M)]
    z0 = tuple(np.concatenate([c[0][l] for c in chains]) for l in range(2))  # chain-major rows
    noise = [tuple(np.concatenate([c[1][k][l] for c in chains]) for l in range(2)) for k in range(K)]
    got = srl.objective_values(gen, p, x, step_size=s, n_steps=K, sigma=sigma, z0=z0, noise=noise, kind="reverse",
                               n_chains=M)
    want = ref.iw_reverse_objective(config, p, x, s, [c[0] for c in chains], [c[1] for c in chains], sigma)
    _close(got, want, "IW bound")


def test_paper_model_forward_and_energy_equal_the_reference():
    gen = srl.models.paper()
    p = gen.init(seed=0)
    z = gen.prior(1, seed=1)
    x = np.tanh(np.random.default_rng(2).standard_normal((1, 3, 32, 32)))
    _close(gen.forward(p, z), ref.forward(gen.config, p, z), "paper forward")
    _close(srl.energy(gen, p, x, z, sigma=0.15), ref.energy(gen.config, p, x, z, 0.15), "paper energy")


@given(config=configs, seed=st.integers(0, 1000))
def test_seeded_init_prior_and_noise_follow_the_documented_draws(config, seed):
    """srl's seeds reproduce the draw order of docs/models.md, as implemented by the oracle."""
    gen = srl.models.from_config(config)
    p, rp = gen.init(seed=seed), ref.init_params(config, seed)
    assert list(p) == list(rp)
    for k in p:
        np.testing.assert_array_equal(p[k], rp[k])
    for a, b in zip(gen.prior(3, seed=seed), ref.prior(config, 3, seed)):
        np.testing.assert_array_equal(a, b)
    xp = srl._backend.namespace("numpy")[0]
    z0, noise = srl.random.chain_noise(seed, 3, gen.latent_dims, 2, xp=xp, dtype=np.float64, device="cpu")
    rz0, rnoise = ref.chain_noise(config, 3, 2, seed)
    for a, b in zip(z0, rz0):
        np.testing.assert_array_equal(a, b)
    for xi, rxi in zip(noise, rnoise):
        for a, b in zip(xi, rxi):
            np.testing.assert_array_equal(a, b)
