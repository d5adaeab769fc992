"""The srl generators written in plain JAX, and a JAX-autodiff oracle.

An independent implementation of docs/math.md §1, §2, §4 and §5 as a JAX user would
write it: the generator of ``docs/models.md`` from ``jax.numpy``/``lax`` layers, the
energy of eq. (1.1), and every derivative by JAX autodiff (``jax.grad`` for ∇z and ∇θ,
forward-over-reverse ``jax.jvp(jax.grad)`` for Hessian-vector products, ``jax.hessian``
per example for the log-determinants, and ``jax.grad`` through the whole chain for the
step-size gradients). It imports nothing from the rest of ``srl`` (like
``srl.interop.torch``), so ``srl check`` and the benchmarks can compare srl's
hand-written derivatives against it.

Conventions (as ``srl.interop.torch``): ``params`` maps the docs/models.md names to arrays
in PyTorch layouts (NumPy or JAX arrays; converted with ``jnp.asarray``); ``z`` is a tuple
of ``L`` arrays ``(n, d_l)``, top group first; ``x`` is ``(n, *out_shape)``; ``z0`` a tuple
like ``z`` and ``noise`` a list of ``K`` such tuples; nothing here draws random numbers.
float64 needs JAX's 64-bit mode (``jax.enable_x64``), as everywhere in JAX.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["forward", "energy", "grad_z", "grad_params", "hvp_z", "short_run", "stepsize_objective"]

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------- layers
def _dense(p, name, x):
    """``x Wᵀ + b`` with PyTorch's ``(out, in)`` weight."""
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)  # exact x Φ(x)


def _conv(p, name, x, pad, bias=True):
    """Cross-correlation, NCHW activations, OIHW weights, stride 1."""
    y = lax.conv_general_dilated(x, p[f"{name}.weight"], (1, 1), [(pad, pad), (pad, pad)],
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + p[f"{name}.bias"][None, :, None, None] if bias else y


def _conv_t(p, name, x, stride, pad, bias):
    """``torch.nn.ConvTranspose2d`` semantics; weight ``(in, out, k, k)``."""
    k = p[f"{name}.weight"].shape[2]
    q = k - 1 - pad
    y = lax.conv_transpose(x, p[f"{name}.weight"], (stride, stride), [(q, q), (q, q)],
                           dimension_numbers=("NCHW", "OIHW", "NCHW"), transpose_kernel=True)
    return y + p[f"{name}.bias"][None, :, None, None] if bias else y


def forward(config: Mapping, params: Mapping, z):
    """``x̂ = g_θ(z)`` of docs/math.md §1 for a docs/models.md config: ``(n, *out_shape)``."""
    p = {k: jnp.asarray(v) for k, v in params.items()}
    kind, L = config["kind"], len(config["latent_dims"])
    n = z[0].shape[0]
    if kind == "mlp":
        def res(name, h):
            return _gelu(_dense(p, f"{name}.dense2", _gelu(_dense(p, f"{name}.dense1", h)))) + h

        def proj(i, u):
            return _gelu(_dense(p, f"proj{i}.dense", u))

        def head(name, h):
            return _dense(p, f"{name}.dense2", _gelu(_dense(p, f"{name}.dense1", h)))

        def out(h):
            return jnp.tanh(_dense(p, "out.dense", res("out.res", h)).reshape(n, *config["out_shape"]))
    elif kind == "conv":
        _, hh, ww = config["out_shape"]
        q, kp = config["proj_channels"], config["proj_kernel"]
        k1, k2 = config["res_kernels"]

        def res(name, h):
            a = _gelu(_conv(p, f"{name}.conv1", h, (k1 - 1) // 2))
            return _gelu(_conv(p, f"{name}.conv2", a, (k2 - 1) // 2)) + h

        def proj(i, u):
            a = _gelu(_dense(p, f"proj{i}.dense", u)).reshape(n, q, hh // 2, ww // 2)
            return _gelu(_conv_t(p, f"proj{i}.convt", a, 1, (kp - 1) // 2, bias=False))

        def head(name, h):
            return _dense(p, f"{name}.dense", _gelu(_conv(p, f"{name}.conv", h, 0)).reshape(n, -1))

        def out(h):
            return jnp.tanh(_conv_t(p, "out.convt", res("out.res", h), 2, 1, bias=True))
    else:
        raise ValueError(f"unknown generator kind {kind!r}")
    h = res("res0", proj(0, z[0]))
    for i in range(1, L):
        mu = head(f"inj{i}.mu", h)
        v = jnp.clip(jax.nn.softplus(head(f"inj{i}.v", h)) + 1e-8, 0.0, 10.0)
        h = res(f"res{i}", proj(i, mu + jnp.exp(0.5 * v) * z[i])) + h
    return out(h)


# ----------------------------------------------------------------------------- energy
def _split(zf, dims):
    out, off = [], 0
    for d in dims:
        out.append(zf[..., off:off + d])
        off += d
    return tuple(out)


def _energy_flat(config, p, x, zf, sigma):
    """Eq. (1.1) on concatenated latents ``zf (n, d)``: ``(n,)``."""
    n, d = zf.shape
    D = math.prod(config["out_shape"])
    r = (x - forward(config, p, _split(zf, config["latent_dims"]))).reshape(n, -1)
    return (0.5 * jnp.sum(zf * zf, axis=1) + jnp.sum(r * r, axis=1) / (2.0 * sigma ** 2)
            + 0.5 * d * _LOG_2PI + 0.5 * D * math.log(2.0 * math.pi * sigma ** 2))


def _flat(z):
    return jnp.concatenate([jnp.asarray(a) for a in z], axis=1)


def energy(config, params, x, z, *, sigma):
    """Per-example energy ``(n,)`` of docs/math.md eq. (1.1)."""
    return _energy_flat(config, params, jnp.asarray(x), _flat(z), float(sigma))


def _grad_flat(config, p, x, zf, sigma):
    return jax.grad(lambda a: jnp.sum(_energy_flat(config, p, x, a, sigma)))(zf)


def grad_z(config, params, x, z, *, sigma):
    """``∇_z Σ_i E_i`` by ``jax.grad``; a tuple like ``z``."""
    return _split(_grad_flat(config, params, jnp.asarray(x), _flat(z), float(sigma)), config["latent_dims"])


def grad_params(config, params, x, z, *, sigma):
    """``∇_θ Σ_i E_i`` by ``jax.grad``; ``{name: gradient}``."""
    p = {k: jnp.asarray(v) for k, v in params.items()}
    zf = _flat(z)
    return jax.grad(lambda q: jnp.sum(_energy_flat(config, q, jnp.asarray(x), zf, float(sigma))))(p)


def hvp_z(config, params, x, z, v, *, sigma):
    """Per-example ``H(z_i) v_i`` by forward-over-reverse: ``jax.jvp`` of ``jax.grad``
    (examples are independent, so the batched product is per example)."""
    x, s = jnp.asarray(x), float(sigma)
    _, hv = jax.jvp(lambda a: _grad_flat(config, params, x, a, s), (_flat(z),), (_flat(v),))
    return _split(hv, config["latent_dims"])


# ----------------------------------------------------------------------------- chain
def _per_coordinate(s, dims):
    return jnp.concatenate([jnp.broadcast_to(s[l], (d,)) for l, d in enumerate(dims)])


def _chain(config, p, x, s, z0, noise, sigma):
    """Eq. (2.1) on flat latents: lists ``z_0..z_K`` and ``g_0..g_K`` (differentiable in s)."""
    sc = _per_coordinate(s, config["latent_dims"])  # (d,)
    z = _flat(z0)
    zs, gs = [z], [_grad_flat(config, p, x, z, sigma)]
    for xi in noise:
        z = z - 0.5 * sc * sc * gs[-1] + sc * _flat(xi)
        zs.append(z)
        gs.append(_grad_flat(config, p, x, z, sigma))
    return zs, gs, sc


def short_run(config, params, x, *, step_size, z0, noise, sigma):
    """``z_K`` of eq. (2.1) (a tuple like ``z``)."""
    s = _steps(step_size, len(config["latent_dims"]), _flat(z0).dtype)
    zs, _, _ = _chain(config, params, jnp.asarray(x), s, z0, noise, float(sigma))
    return _split(zs[-1], config["latent_dims"])


def _steps(step_size, L, dtype):
    s = jnp.asarray(step_size, dtype=dtype)
    return jnp.broadcast_to(s, (L,)) if s.ndim == 0 else s


def _objective(config, p, x, s, z0, noise, sigma, kind):
    """Per-example J_jac (eq. 4.1) or −log w (eq. 5.1) as a function of the ``(L,)`` s."""
    zs, gs, sc = _chain(config, p, x, s, z0, noise, sigma)
    e_K = _energy_flat(config, p, x, zs[-1], sigma)
    d = zs[0].shape[1]
    val = -0.5 * jnp.sum(zs[0] ** 2, axis=1) - 0.5 * d * _LOG_2PI + e_K  # log N(z_0) + E(z_K)
    if kind == "jacobian":
        # per-example Hessians by jax.hessian of the one-example energy
        def e_one(zi, xi):
            return _energy_flat(config, p, xi[None], zi[None], sigma)[0]

        hess = jax.vmap(jax.hessian(e_one))
        A = 0.5 * sc * sc
        for z in zs[:-1]:
            M = jnp.eye(d, dtype=z.dtype) - A[:, None] * hess(z, x)  # (n, d, d)
            val = val - jnp.linalg.slogdet(M)[1]
        return val
    if kind == "reverse":
        for k, xi in enumerate(noise):
            xf = _flat(xi)
            r = xf - 0.5 * sc * (gs[k] + gs[k + 1])
            val = val - 0.5 * jnp.sum(xf * xf, axis=1) + 0.5 * jnp.sum(r * r, axis=1)
        return val
    raise ValueError(f"kind must be 'jacobian' or 'reverse', got {kind!r}")


def stepsize_objective(config, params, x, *, step_size, z0, noise, sigma, kind="jacobian"):
    """``(values (n,), grad (L,))``: the objective of docs/math.md eq. (4.1) or (5.1) and
    ``d values.sum() / d s`` by ``jax.grad`` through the whole chain (every path through
    ``z_k(s)``, ``g_k`` and ``H_k``, so the third-order term is included)."""
    p = {k: jnp.asarray(v) for k, v in params.items()}
    x = jnp.asarray(x)
    s = _steps(step_size, len(config["latent_dims"]), _flat(z0).dtype)

    def total(s):
        v = _objective(config, p, x, s, z0, noise, float(sigma), kind)
        return jnp.sum(v), v

    (_, values), grad = jax.value_and_grad(total, has_aux=True)(s)
    return values, grad
