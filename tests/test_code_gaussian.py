"""srl.code_gaussian and the samples drawn from it (docs/math.md eq. 3.3)."""

from __future__ import annotations

import array_api_compat
import array_api_compat.numpy
import numpy as np
import pytest

from srl import code_gaussian, evaluate, models
from srl.frechet import digits_frechet

from .conftest import Backend, _params, _scoped, require
from .helpers import to_np


def _codes(n, dims=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((sum(dims), sum(dims)))
    z = 0.3 + rng.standard_normal((n, sum(dims))) @ mix  # correlated across the groups
    return tuple(np.split(z, np.cumsum(dims)[:-1], axis=1))


def test_fit_is_the_maximum_likelihood_gaussian():
    codes = _codes(500)
    z = np.concatenate(codes, axis=1)
    g = code_gaussian.fit(codes)
    assert g.n == 500
    # float64 sums of 500 terms: round-off ~1e-15 relative
    np.testing.assert_allclose(g.mean, z.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.cov, np.cov(z, rowvar=False, bias=True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [500, 4])  # full rank; rank 3 < d = 7 (eigenvalues ~0, some below 0 by round-off)
def test_latents_have_the_fitted_mean_and_covariance(n):
    """With ε the d unit vectors the latents are μ + rows of S, so (z − μ)ᵀ(z − μ) = SᵀS must be Σ."""
    g = code_gaussian.fit(_codes(n))
    d = g.mean.shape[0]
    xp = array_api_compat.numpy
    z = code_gaussian.latents(g, np.eye(d), (3, 4), xp=xp, dtype=np.float64, device="cpu")
    assert [a.shape for a in z] == [(d, 3), (d, 4)]
    rows = np.concatenate(z, axis=1) - g.mean  # (d, d) = S
    scale = np.abs(g.cov).max()
    # eigh and the product: a few ulps of the largest eigenvalue
    np.testing.assert_allclose(rows.T @ rows, g.cov, rtol=0, atol=1e-12 * scale)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 codes"):
        code_gaussian.fit((np.zeros((1, 3)),))
    codes = _codes(10)
    codes[1][3, 2] = np.nan
    codes[0][7, 0] = np.inf
    with pytest.raises(ValueError, match="2 of the 10 codes are not finite"):
        code_gaussian.fit(codes)
    g = code_gaussian.fit(_codes(10))
    xp = array_api_compat.numpy
    with pytest.raises(ValueError, match=r"eps must have shape \(n, 7\)"):
        code_gaussian.latents(g, np.zeros((5, 6)), (3, 4), xp=xp, dtype=np.float64, device="cpu")
    with pytest.raises(ValueError, match="latent_dims must add up to 7"):
        code_gaussian.latents(g, np.zeros((5, 7)), (3, 3), xp=xp, dtype=np.float64, device="cpu")
    gen = models.mlp(latent_dims=(2, 3), hidden=8)
    with pytest.raises(ValueError, match="has 7 dimensions but the generator's latent space has 5"):
        evaluate.sample(gen, gen.init(seed=0), 4, codes=g)


@pytest.mark.parametrize("backend", _params([Backend.TORCH, Backend.ARRAY_API_STRICT, Backend.JAX]))
def test_samples_from_codes_are_the_same_on_every_backend(backend):
    """The draw is made on the host from the seed, so every backend decodes the same z."""
    b = require(backend)
    gen = models.mlp(latent_dims=(3, 4), hidden=8)
    g = code_gaussian.fit(_codes(50))
    want = to_np(evaluate.sample(gen, gen.init(seed=1), 6, seed=[2, 4], codes=g))
    with _scoped(b):
        lib, _, dev = b.value.partition(":")
        got = to_np(evaluate.sample(gen, gen.init(seed=1, backend=lib, device=dev or None), 6, seed=[2, 4], codes=g))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # float64, one forward pass: round-off


def test_evaluate_reports_the_frechet_distance_of_samples_from_the_codes():
    """``evaluate(..., x_codes=)`` fits the codes of those images' chains (seed [seed, 7]) and
    scores samples of that Gaussian drawn like the prior's ([seed, 4])."""
    from srl.data import load

    gen = models.mlp()
    params = gen.init(seed=0)
    ds = load("digits")
    kw = dict(step_size=0.05, n_steps=5, sigma=0.15)
    got = evaluate.evaluate(gen, params, ds.test[:20], seed=3, n_bound=2, iw_chains=2, n_samples=300,
                            x_codes=ds.train[:60], **kw)
    codes = evaluate.fit_codes(gen, params, ds.train[:60], seed=[3, 7], **kw)
    want = digits_frechet(to_np(evaluate.sample(gen, params, 300, seed=[3, 4], codes=codes)))
    assert got["n_codes"] == 60
    assert got["frechet_digits_codes"] == pytest.approx(want, rel=1e-12)
    assert got["frechet_digits_codes"] != pytest.approx(got["frechet_digits"], rel=1e-3)  # other latents


def test_the_vae_codes_are_posterior_samples_of_its_encoder():
    """``fit_vae_codes``: the Gaussian of z = μ + exp(λ/2) ε (eq. 8.1), ε from the seed."""
    from srl.random import host_rng, standard_normal_groups
    from srl.vae import Encoder

    gen = models.mlp(latent_dims=(2, 3), hidden=8)
    enc = Encoder(gen, hidden=8)
    p, q = gen.init(seed=0), enc.init(seed=1)
    x = np.tanh(np.random.default_rng(2).standard_normal((30, *gen.out_shape)))
    xp = array_api_compat.array_namespace(x)
    got = evaluate.fit_vae_codes(gen, enc, p, q, x, seed=[5, 7], batch_size=30)
    mu, lv, _ = enc.forward(xp, q, x)
    eps = standard_normal_groups(host_rng([[5, 7], 0]), 30, gen.latent_dims, xp=xp, dtype=np.float64, device="cpu")
    want = code_gaussian.fit(tuple(m + np.exp(0.5 * v) * e for m, v, e in zip(mu, lv, eps)))
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12, atol=1e-12)  # the same float64 operations
    np.testing.assert_allclose(got.cov, want.cov, rtol=1e-12, atol=1e-12)
