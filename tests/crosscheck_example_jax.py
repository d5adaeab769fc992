"""A pure-JAX implementation of the paper's multi-layer generator, in its own style.

Parameters are a nested dict with Flax-like layouts (Dense kernels ``(in, out)``, Conv2d
kernels ``HWIO``), the top latent is ``(n, d)`` and the lower ones ``(n, d, 1, 1)``, the
energy is a summed squared error / 2σ², and the Langevin loop takes its noise as an
argument. ``build()`` tells ``srl crosscheck`` how to compare it with srl.
"""

import jax
import jax.numpy as jnp
from jax import lax

import srl

GEN = srl.models.conv(latent_dims=(2, 3, 4), out_shape=(2, 8, 8), channels=4, proj_channels=2, proj_kernel=3,
                      res_kernels=(3, 3), inj_kernel=3)


def act(t):
    return jax.nn.gelu(t, approximate=False)


def dense(p, t):
    return t @ p["kernel"] + p["bias"]


def conv(p, t, pad):
    y = lax.conv_general_dilated(t, p["kernel"], (1, 1), [(pad, pad)] * 2, dimension_numbers=("NCHW", "HWIO", "NCHW"))
    return y + p["bias"][None, :, None, None]


def up(kernel, t, stride, pad):
    """Transposed convolution, kernel (cin, cout, k, k)."""
    q = kernel.shape[-1] - 1 - pad
    return lax.conv_transpose(t, kernel, (stride, stride), [(q, q)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                              transpose_kernel=True)


def block(p, t):
    k1, k2 = p["c1"]["kernel"].shape[0], p["c2"]["kernel"].shape[0]
    return t + act(conv(p["c2"], act(conv(p["c1"], t, k1 // 2)), k2 // 2))


def head(p, h):
    return dense(p["fc"], act(conv(p["conv"], h, 0)).reshape(h.shape[0], -1))


def generate(params, eps):
    """``eps[0]`` (n, d_0) is the top latent, ``eps[i]`` (n, d_i, 1, 1) the lower ones."""
    h = None
    for i, level in enumerate(params["levels"]):
        if i == 0:
            u = eps[0]
        else:
            mean = head(level["heads"]["mean"], h)
            var = jnp.clip(jax.nn.softplus(head(level["heads"]["var"], h)) + 1e-8, 0.0, 10.0)
            u = mean[:, :, None, None] + jnp.exp(0.5 * var)[:, :, None, None] * eps[i]
        lift = level["lift"]
        t = act(dense(lift["fc"], u.reshape(u.shape[0], -1))).reshape(u.shape[0], *params["grid"])
        r = block(level["block"], act(up(lift["up"], t, 1, lift["up"].shape[-1] // 2)))
        h = r if h is None else r + h
    out = params["out"]
    return jnp.tanh(up(out["up"]["kernel"], block(out["block"], h), 2, 1) + out["up"]["bias"][None, :, None, None])


def init(dims, image, width, lift_channels, lift_kernel, block_kernels, head_kernel):
    """A parameter tree of zeros (values are loaded by the cross-check)."""
    channels, rows, _ = image
    g = rows // 2
    gi = g - head_kernel + 1
    z = jnp.zeros

    def blk():
        return {"c1": {"kernel": z((block_kernels[0],) * 2 + (width, width)), "bias": z(width)},
                "c2": {"kernel": z((block_kernels[1],) * 2 + (width, width)), "bias": z(width)}}

    def hd(d):
        return {"conv": {"kernel": z((head_kernel, head_kernel, width, d)), "bias": z(d)},
                "fc": {"kernel": z((d * gi * gi, d)), "bias": z(d)}}

    levels = []
    for i, d in enumerate(dims):
        level = {"lift": {"fc": {"kernel": z((d, lift_channels * g * g)), "bias": z(lift_channels * g * g)},
                          "up": z((lift_channels, width, lift_kernel, lift_kernel))},
                 "block": blk()}
        if i > 0:
            level["heads"] = {"mean": hd(d), "var": hd(d)}
        levels.append(level)
    return {"levels": levels, "grid": (lift_channels, g, g),
            "out": {"block": blk(), "up": {"kernel": z((width, channels, 4, 4)), "bias": z(channels)}}}


def energy(params, x, eps, sigma):
    """Summed squared error / 2σ² + ½‖eps‖², one value per example."""
    sq = jnp.sum(((generate(params, eps) - x) ** 2).reshape(x.shape[0], -1), axis=1)
    return sq / (2 * sigma ** 2) + 0.5 * sum(jnp.sum(e.reshape(e.shape[0], -1) ** 2, axis=1) for e in eps)


def langevin(params, x, eps, noises, step, sigma):
    """Short-run Langevin: eps <- eps - step²/2 ∇E(eps) + step · noise, noise given."""
    @jax.grad
    def grad_recon(e):
        return jnp.sum((generate(params, e) - x) ** 2) / (2 * sigma ** 2)

    for xi in noises:
        grads = grad_recon(eps)
        eps = [e - 0.5 * step ** 2 * (g + e) + step * n for e, g, n in zip(eps, grads, xi)]
    return eps


# ---------------------------------------------------------------- how to compare with srl
def to_hwio(w):
    return jnp.transpose(w, (2, 3, 1, 0))


def srl_to_mine(name):
    """srl parameter name (docs/models.md) -> (path in the tree, layout transform)."""
    layer, _, leaf = name.rpartition(".")
    parts = layer.split(".")
    stem = parts[0].rstrip("0123456789")
    level = parts[0][len(stem):]
    if stem == "proj":
        if parts[1] == "convt":
            return f"levels/{level}/lift/up"
        return (f"levels/{level}/lift/fc/kernel", jnp.transpose) if leaf == "weight" else f"levels/{level}/lift/fc/bias"
    if stem in ("res", "out") and (stem == "res" or parts[1] == "res"):
        base = f"levels/{level}/block" if stem == "res" else "out/block"
        c = "c1" if parts[-1] == "conv1" else "c2"
        return (f"{base}/{c}/kernel", to_hwio) if leaf == "weight" else f"{base}/{c}/bias"
    if stem == "inj":
        base = f"levels/{level}/heads/{'mean' if parts[1] == 'mu' else 'var'}/{'conv' if parts[2] == 'conv' else 'fc'}"
        if leaf == "bias":
            return f"{base}/bias"
        return (f"{base}/kernel", to_hwio if parts[2] == "conv" else jnp.transpose)
    return f"out/up/{'kernel' if leaf == 'weight' else 'bias'}"


def mine(z):
    """srl's latents (a tuple of (n, d)) in this implementation's layout."""
    return [z[0]] + [zl[:, :, None, None] for zl in z[1:]]


def chain(apply_fn, params, x, z0, noise, step_size, sigma, n_steps):
    eps = langevin(params, x, mine(z0), [mine(xi) for xi in noise], step_size, sigma)
    return [e.reshape(e.shape[0], -1) for e in eps]


def build():
    cfg = GEN.config
    params = init(cfg["latent_dims"], cfg["out_shape"], cfg["channels"], cfg["proj_channels"], cfg["proj_kernel"],
                  cfg["res_kernels"], cfg["inj_kernel"])
    return {
        "apply_fn": lambda p, z: generate(p, mine(z)),
        "variables": params,
        "gen": GEN,
        "mapping": srl_to_mine,
        "energy": lambda p, x, z, sigma: energy(p, x, mine(z), sigma),
        "chain": chain,
    }
