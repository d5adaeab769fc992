"""The VAE baseline: its hand-written gradients pass the generator's finite-difference tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import array_api_compat.numpy as xp
from srl import vae
from srl.train import TrainConfig, train

from .helpers import assert_directional, central_difference, configs, like, make_problem


@settings(max_examples=10)
@given(config=configs, n=st.integers(1, 3), seed=st.integers(0, 500), sigma=st.floats(0.2, 1.0))
def test_neg_elbo_gradients_match_finite_differences(config, n, seed, sigma):
    gen, p, x, _ = make_problem(config, n=n, seed=seed)
    enc = vae.Encoder(gen)
    q = enc.init(seed=seed + 5)
    rng = np.random.default_rng(seed)
    eps = tuple(rng.standard_normal((n, d)) for d in gen.latent_dims)  # fixed: reparameterisation
    values, g_gen, g_enc, _ = vae.neg_elbo(xp, gen, enc, p, q, x, eps, sigma)
    scale = float(np.sum(np.abs(values))) + 1.0

    def total(pp, qq):
        return np.sum(vae.neg_elbo(xp, gen, enc, pp, qq, x, eps, sigma, want_grads=False)[0])

    dp, dq = like(rng, p), like(rng, q)
    fd = central_difference(lambda pp: total(pp, q), p, dp)
    assert_directional(fd, sum(np.sum(g_gen[k] * dp[k]) for k in p), scale=scale, err="generator")
    fd = central_difference(lambda qq: total(p, qq), q, dq)
    assert_directional(fd, sum(np.sum(g_enc[k] * dq[k]) for k in q), scale=scale, err="encoder")


def test_neg_elbo_is_energy_minus_entropy():
    gen, p, x, _ = make_problem({"kind": "mlp", "latent_dims": [2, 1], "hidden": 4, "out_shape": [1, 2, 2]},
                                n=2, seed=0)
    enc = vae.Encoder(gen)
    q = enc.init(seed=1)
    eps = gen.prior(2, seed=3)
    values, *_ = vae.neg_elbo(xp, gen, enc, p, q, x, eps, 0.5, want_grads=False)
    mu, lv, _ = enc.forward(xp, q, x)
    z = tuple(m + np.exp(0.5 * l) * e for m, l, e in zip(mu, lv, eps))
    import srl

    entropy = sum(np.sum(0.5 * (l + math.log(2 * math.pi) + 1), axis=1) for l in lv)
    # −ELBO = E(z) − H[q] per draw (docs/math.md §8): the same float64 terms in another order
    np.testing.assert_allclose(values, srl.energy(gen, p, x, z, sigma=0.5) - entropy, rtol=1e-13)
    # IWAE with one sample is −log p(x, z) + log q(z|x) at that sample: ≥ −ELBO on average
    iw1 = vae.iw_bound(xp, gen, enc, p, q, x, 0.5, n_samples=1, seed=0)
    iw64 = vae.iw_bound(xp, gen, enc, p, q, x, 0.5, n_samples=64, seed=0)
    assert np.all(np.isfinite(iw1)) and np.all(iw64 <= iw1 + 5.0)


def test_vae_training_lowers_the_loss_and_reports(tmp_path):
    cfg = TrainConfig(method="vae", limit=200, model="mlp", latent_dims=(2, 3), hidden=16, batch_size=50, lr=3e-3,
                      epochs=6, out=str(tmp_path / "vae"), eval_n_bound=20, eval_iw_chains=4)
    res = train(cfg, progress=False)
    e = [h["neg_elbo"] for h in res.history]
    assert np.mean(e[-4:]) < 0.8 * np.mean(e[:4])
    for key in ("mse_per_pixel", "neg_elbo_vae_nats", "neg_iw4_elbo_vae_nats", "frechet_digits",
                "frechet_digits_codes"):
        assert np.isfinite(res.metrics[key]), key
    assert res.metrics["n_codes"] == 200 and (tmp_path / "vae" / "samples_codes.png").stat().st_size > 0
    assert res.metrics["neg_iw4_elbo_vae_nats"] <= res.metrics["neg_elbo_vae_nats"] + 1.0
    from srl.cli import main

    assert main(["reconstruct", str(tmp_path / "vae"), "-n", "4"]) == 0
    assert main(["eval", str(tmp_path / "vae"), "--n-bound", "8", "--iw-chains", "2", "--json"]) == 0


def test_vae_conv_encoder_shapes():
    gen, p, x, _ = make_problem({"kind": "conv", "latent_dims": [2, 3], "out_shape": [1, 8, 8], "channels": 4,
                                 "proj_channels": 2, "proj_kernel": 3, "res_kernels": [3, 3], "inj_kernel": 3},
                                n=3, seed=0)
    enc = vae.Encoder(gen)
    mu, lv, _ = enc.forward(xp, enc.init(seed=0), x)
    assert [m.shape for m in mu] == [(3, 2), (3, 3)] == [l.shape for l in lv]
    with pytest.raises(KeyError):
        enc.forward(xp, {}, x)
