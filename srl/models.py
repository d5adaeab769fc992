"""The three generator architectures (docs/math.md §1, §7; exact layer tables in docs/models.md).

    srl.models.mlp(latent_dims=(4, 8), hidden=32, out_shape=(1, 8, 8))
    srl.models.conv(latent_dims=(8, 16), out_shape=(1, 8, 8), channels=16)
    srl.models.paper()          # the authors' 5-layer 3×32×32 CelebA model
    srl.models.from_config(gen.config)
"""

from __future__ import annotations

import math

from .generator import Generator, Level
from .layers import (
    Clamp, Conv2d, ConvTranspose2d, Dense, GELU, Reshape, Residual, Sequential, Shift, Softplus, Tanh,
)

#: v ← clamp(softplus(v) + 1e-8, 0, 10), as in the authors' training script (docs/math.md §1)
VAR_EPS, VAR_MIN, VAR_MAX = 1e-8, 0.0, 10.0


def _ints(name, values, *, n=None, positive=True):
    try:
        out = tuple(int(v) for v in values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of integers, got {values!r}") from None
    if any(int(v) != v for v in values):
        raise ValueError(f"{name} must contain integers, got {values!r}")
    if n is not None and len(out) != n:
        raise ValueError(f"{name} must have {n} entries, got {values!r}")
    if not out or (positive and min(out) < 1):
        raise ValueError(f"{name} must be non-empty positive integers, got {values!r}")
    return out


def _variance_head(layers):
    return Sequential(*layers, Softplus(), Shift(VAR_EPS), Clamp(VAR_MIN, VAR_MAX))


def mlp(latent_dims=(4, 8), hidden: int = 32, out_shape=(1, 8, 8)) -> Generator:
    """Dense generator: the paper's structure with every convolution replaced by Dense."""
    dims = _ints("latent_dims", latent_dims)
    shape = _ints("out_shape", out_shape)
    H = int(hidden)
    if H < 1:
        raise ValueError(f"hidden must be positive, got {hidden}")
    cfg = {"kind": "mlp", "latent_dims": list(dims), "out_shape": list(shape), "hidden": H}

    def res(prefix):
        return Residual(
            Sequential(Dense(f"{prefix}.dense1", H, H), GELU(), Dense(f"{prefix}.dense2", H, H), GELU()),
            name=prefix,
        )

    levels = []
    for i, d in enumerate(dims):
        mu = v = None
        if i > 0:
            mu = Sequential(Dense(f"inj{i}.mu.dense1", H, H), GELU(), Dense(f"inj{i}.mu.dense2", H, d))
            v = _variance_head([Dense(f"inj{i}.v.dense1", H, H), GELU(), Dense(f"inj{i}.v.dense2", H, d)])
        proj = Sequential(Dense(f"proj{i}.dense", d, H), GELU())
        levels.append(Level(mu, v, proj, res(f"res{i}")))
    D = math.prod(shape)
    out = Sequential(res("out.res"), Dense("out.dense", H, D), Reshape((D,), shape), Tanh())
    return Generator(cfg, levels, out)


def conv(latent_dims=(8, 16), out_shape=(1, 8, 8), channels: int = 16, *, proj_channels: int = 4,
         proj_kernel: int = 3, res_kernels=(3, 3), inj_kernel: int = 3) -> Generator:
    """Convolutional generator with the authors' layer types (docs/math.md §1; layer table in docs/models.md).

    The images ``(C, H, W)`` are produced by a final stride-2 transposed convolution from a
    ``(channels, H/2, W/2)`` grid. The defaults suit 8×8 digits; ``paper()`` sets the
    authors' kernel sizes for 32×32.
    """
    dims = _ints("latent_dims", latent_dims)
    C, Hh, Ww = _ints("out_shape", out_shape, n=3)
    c, q = int(channels), int(proj_channels)
    kp, ki = int(proj_kernel), int(inj_kernel)
    k1, k2 = _ints("res_kernels", res_kernels, n=2)
    if Hh % 2 or Ww % 2:
        raise ValueError(f"conv generator needs even image height and width, got out_shape={out_shape}")
    for name, k in (("proj_kernel", kp), ("res_kernels[0]", k1), ("res_kernels[1]", k2)):
        if k % 2 == 0:
            raise ValueError(f"{name} must be odd for 'same' padding, got {k}")
    gh, gw = Hh // 2, Ww // 2
    ih, iw = gh - ki + 1, gw - ki + 1
    if ih < 1 or iw < 1:
        raise ValueError(f"inj_kernel={ki} is larger than the {gh}×{gw} feature grid")
    cfg = {"kind": "conv", "latent_dims": list(dims), "out_shape": [C, Hh, Ww], "channels": c,
           "proj_channels": q, "proj_kernel": kp, "res_kernels": [k1, k2], "inj_kernel": ki}

    def res(prefix):
        return Residual(
            Sequential(
                Conv2d(f"{prefix}.conv1", c, c, k1, pad=(k1 - 1) // 2), GELU(),
                Conv2d(f"{prefix}.conv2", c, c, k2, pad=(k2 - 1) // 2), GELU(),
            ),
            name=prefix,
        )

    def head(prefix, d):
        return [Conv2d(f"{prefix}.conv", c, d, ki, pad=0), GELU(), Reshape((d, ih, iw), (d * ih * iw,)),
                Dense(f"{prefix}.dense", d * ih * iw, d)]

    levels = []
    for i, d in enumerate(dims):
        mu = v = None
        if i > 0:
            mu = Sequential(*head(f"inj{i}.mu", d))
            v = _variance_head(head(f"inj{i}.v", d))
        proj = Sequential(
            Dense(f"proj{i}.dense", d, q * gh * gw), GELU(), Reshape((q * gh * gw,), (q, gh, gw)),
            ConvTranspose2d(f"proj{i}.convt", q, c, kp, stride=1, pad=(kp - 1) // 2, bias=False), GELU(),
        )
        levels.append(Level(mu, v, proj, res(f"res{i}")))
    out = Sequential(res("out.res"), ConvTranspose2d("out.convt", c, C, 4, stride=2, pad=1), Tanh())
    return Generator(cfg, levels, out)


def paper() -> Generator:
    """The authors' 5-layer CelebA 32×32 generator, from their public training script (docs/math.md §1;
    layer table in docs/models.md)."""
    return conv(latent_dims=(64, 64, 64, 96, 128), out_shape=(3, 32, 32), channels=64,
                proj_channels=4, proj_kernel=5, res_kernels=(5, 3), inj_kernel=5)


def from_config(config: dict) -> Generator:
    """Rebuild a generator from ``gen.config`` (e.g. read from a checkpoint)."""
    cfg = dict(config)
    kind = cfg.pop("kind", None)
    if kind == "mlp":
        return mlp(**cfg)
    if kind == "conv":
        return conv(**cfg)
    raise ValueError(f"unknown generator kind {kind!r}; expected 'mlp' or 'conv'")
