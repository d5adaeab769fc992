"""The VAE baseline on the same generator (the paper's comparison; docs/math.md §8).

An inference network ("encoder") maps x to a diagonal Gaussian over each latent group,
in the same standardised (non-centred) coordinates z that short-run inference samples:

    q_φ(z_l | x) = N(μ_l(x), diag exp(λ_l(x))),       z = μ + exp(λ/2) ⊙ ε,  ε ~ N(0, I)

and the usual ELBO with the generator's joint ``log p_θ(x, z) = −E_θ(z; x)`` (docs/math.md eq. 1.1):

    ELBO(x) = E_q[−E_θ(z; x)] + H[q],     H[q] = Σ ½ (λ + log 2π + 1)

Gradients by reparameterisation, all hand-written (the encoder is built from
``srl.layers``, whose VJPs are tested like the generator's):

    ∂(−ELBO)/∂θ = ∇_θ E(z; x)                         (same as docs/math.md eq. 3.1 at z)
    ∂(−ELBO)/∂μ = ∇_z E(z; x)
    ∂(−ELBO)/∂λ = ∇_z E(z; x) ⊙ ½ exp(λ/2) ⊙ ε − ½

The importance-weighted bound ``log (1/M) Σ_m p(x, z_m)/q(z_m | x)`` with
``z_m ~ q`` is the VAE's counterpart of the reverse-kernel IW bound.
"""

from __future__ import annotations

import math

from . import _backend
from .energy import LOG_2PI, _value_and_grad
from .layers import Conv2d, Dense, GELU, Reshape, Sequential
from .random import host_rng, standard_normal_groups

PREFIX = "enc."


class Encoder:
    """Inference network for a generator: a trunk, then (μ, λ) heads per latent group."""

    def __init__(self, gen, *, hidden: int = None):
        cfg = gen.config
        self.latent_dims = gen.latent_dims
        D = gen.D
        if cfg["kind"] == "conv" and len(gen.out_shape) == 3:
            C, H, W = gen.out_shape
            c = int(cfg.get("channels", 16))
            h = int(hidden or 4 * c)
            hh, ww = (H + 2 - 4) // 2 + 1, (W + 2 - 4) // 2 + 1
            self.trunk = Sequential(
                Conv2d(f"{PREFIX}conv1", C, c, 3, pad=1), GELU(),
                Conv2d(f"{PREFIX}conv2", c, c, 4, stride=2, pad=1), GELU(),
                Reshape((c, hh, ww), (c * hh * ww,)), Dense(f"{PREFIX}dense", c * hh * ww, h), GELU(),
            )
        else:
            h = int(hidden or cfg.get("hidden", 64))
            self.trunk = Sequential(
                Reshape(tuple(gen.out_shape), (D,)), Dense(f"{PREFIX}dense1", D, h), GELU(),
                Dense(f"{PREFIX}dense2", h, h), GELU(),
            )
        self.mu = [Dense(f"{PREFIX}mu{l}", h, d) for l, d in enumerate(self.latent_dims)]
        self.logvar = [Dense(f"{PREFIX}logvar{l}", h, d) for l, d in enumerate(self.latent_dims)]

    def param_specs(self):
        specs = self.trunk.param_specs()
        for m, v in zip(self.mu, self.logvar):
            specs += m.param_specs() + v.param_specs()
        return specs

    def init(self, *, seed=0, backend="numpy", dtype="float64", device=None) -> dict:
        """U(±1/√fan_in) like the generator; the λ heads start at λ ≈ 0 scale·0.1."""
        xp, dev = _backend.namespace(backend, device)
        dt = _backend.resolve_dtype(xp, dtype)
        rng = host_rng(seed)
        out = {}
        for spec in self.param_specs():
            bound = 1.0 / math.sqrt(spec.fan_in)
            if ".logvar" in spec.name:
                bound *= 0.1
            out[spec.name] = _backend.from_numpy(xp, rng.uniform(-bound, bound, size=spec.shape), dtype=dt, device=dev)
        return out

    def forward(self, xp, params, x):
        """``(μ tuple, λ tuple, cache)`` for data ``x (n, *out_shape)``."""
        h, c_trunk = self.trunk.forward(xp, params, x)  # (n, hidden)
        mus, lvs, caches = [], [], []
        for m, v in zip(self.mu, self.logvar):
            mu, cm = m.forward(xp, params, h)
            lv, cv = v.forward(xp, params, h)
            mus.append(mu)
            lvs.append(lv)
            caches.append((cm, cv))
        return tuple(mus), tuple(lvs), (c_trunk, caches)

    def backward(self, xp, params, g_mu, g_lv, cache, grads):
        """VJP of (μ, λ) → parameter gradients (filled into ``grads``)."""
        c_trunk, caches = cache
        gh = None
        for m, v, gm, gl, (cm, cv) in zip(self.mu, self.logvar, g_mu, g_lv, caches):
            term = m.backward(xp, params, gm, cm, grads) + v.backward(xp, params, gl, cv, grads)
            gh = term if gh is None else gh + term
        self.trunk.backward(xp, params, gh, c_trunk, grads)


def split_params(params: dict):
    """``(generator params, encoder params)`` from a merged dict (encoder names start with 'enc.')."""
    gen_p = {k: v for k, v in params.items() if not k.startswith(PREFIX)}
    enc_p = {k: v for k, v in params.items() if k.startswith(PREFIX)}
    return gen_p, enc_p


def neg_elbo(xp, gen, enc, params, enc_params, x, eps, sigma, *, want_grads=True):
    """Per-example −ELBO with one reparameterised sample ``z = μ + exp(λ/2) ε``.

    Returns ``(values (n,), grads_gen, grads_enc, aux)``; gradients are of
    ``Σ_i −ELBO_i``, ``aux`` holds the residual ``g(z) − x`` and the posterior mean μ.
    """
    mu, lv, cache = enc.forward(xp, enc_params, x)
    scale = tuple(xp.exp(0.5 * l) for l in lv)  # (n, d_l)
    z = tuple(m + s * e for m, s, e in zip(mu, scale, eps))
    energy, gz, grads_gen, residual = _value_and_grad(xp, gen, params, x, z, sigma, want_params=want_grads,
                                                      want_residual=True)
    entropy = None
    for l in lv:
        term = 0.5 * xp.sum(l + (LOG_2PI + 1.0), axis=1)
        entropy = term if entropy is None else entropy + term
    values = energy - entropy  # −ELBO
    grads_enc = None
    if want_grads:
        g_mu = gz  # ∂(−ELBO)/∂μ
        g_lv = tuple(g * (0.5 * s * e) - 0.5 for g, s, e in zip(gz, scale, eps))  # ∂(−ELBO)/∂λ
        grads_enc = {}
        enc.backward(xp, enc_params, g_mu, g_lv, cache, grads_enc)
    return values, grads_gen, grads_enc, {"residual": residual, "mu": mu}


def posterior_sample(xp, mu, lv, eps) -> tuple:
    """``z = μ + exp(λ/2) ⊙ ε`` per group (eq. 8.1): a sample of ``q(z | x)`` from standard normal ``eps``."""
    return tuple(m + xp.exp(0.5 * l) * e for m, l, e in zip(mu, lv, eps))


def iw_bound(xp, gen, enc, params, enc_params, x, sigma, *, n_samples, seed=0):
    """Per-example ``−log (1/M) Σ_m p(x, z_m)/q(z_m|x)``, ``z_m ~ q`` (IWAE, in nats)."""
    mu, lv, _ = enc.forward(xp, enc_params, x)
    n = x.shape[0]
    rng = host_rng(seed)
    logws = []
    for _ in range(int(n_samples)):
        eps = standard_normal_groups(rng, n, gen.latent_dims, xp=xp, dtype=x.dtype, device=_backend.device(x))
        z = posterior_sample(xp, mu, lv, eps)
        energy, _, _ = _value_and_grad(xp, gen, params, x, z, sigma)
        logq = None
        for l, e in zip(lv, eps):
            term = -0.5 * xp.sum(e * e + l + LOG_2PI, axis=1)
            logq = term if logq is None else logq + term
        logws.append(-energy - logq)
    logw = xp.stack(logws, axis=0)  # (M, n)
    m = xp.max(logw, axis=0)
    return -(m + xp.log(xp.mean(xp.exp(logw - m[None, :]), axis=0)))


def reconstruct(xp, gen, enc, params, enc_params, x):
    """``g(μ(x))``: the decoded posterior mean."""
    mu, _, _ = enc.forward(xp, enc_params, x)
    return gen.forward_cache(xp, params, mu)[0]
