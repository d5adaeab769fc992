"""A Gaussian fitted to the chains' codes, to sample from instead of the prior (docs/math.md eq. 3.3).

The generator is trained on the codes ``z_K`` of short-run chains (eq. 3.1), and nothing in
that update keeps their distribution over the data at the prior N(0, I): over long training
the codes spread wider (docs/REPRODUCTION.md, "What is not fixed"), so samples ``g(z)``,
``z ~ N(0, I)``, fall where the generator was not trained. ``fit`` takes the codes of one
chain per image of a set of training images and returns their mean and covariance (maximum
likelihood, over the concatenated groups); ``latents`` turns standard normal draws into
codes of that Gaussian, split by group. ``srl.evaluate.sample(..., codes=)`` and
``srl sample RUN --from codes`` decode them.

This changes how samples are drawn, not the model or its training: the paper's samples
come from the prior, and ``srl eval`` reports the Fréchet distance of both.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _backend


class CodeGaussian(NamedTuple):
    """Mean ``(d,)`` and covariance ``(d, d)`` of the codes, groups concatenated top group
    first (host float64), and the number of codes they were fitted to."""

    mean: np.ndarray
    cov: np.ndarray
    n: int


def fit(codes) -> CodeGaussian:
    """The Gaussian of eq. (3.3) fitted to ``codes``: a tuple of ``(n, d_l)`` arrays (any
    backend), one row per image, e.g. ``z_K`` of ``srl.evaluate.reconstruct``."""
    z = np.concatenate([np.asarray(_backend.to_numpy(c), dtype=np.float64) for c in codes], axis=1)  # (n, d)
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"fitting the codes' Gaussian needs at least 2 codes, got {n}")
    if not np.all(np.isfinite(z)):
        bad = int(np.sum(~np.all(np.isfinite(z), axis=1)))
        raise ValueError(f"{bad} of the {n} codes are not finite (NaN or inf); fit the Gaussian to finite codes only")
    mean = z.mean(axis=0)  # (d,)
    centred = z - mean  # (n, d)
    cov = centred.T @ centred / n  # (d, d), maximum likelihood
    return CodeGaussian(mean, cov, n)


def latents(codes: CodeGaussian, eps, latent_dims, *, xp, dtype, device) -> tuple:
    """``z = μ + S ε`` per row of the standard normal ``eps (n, d)`` (host), with ``S Sᵀ = Σ``
    (symmetric square root; eigenvalues below 0 from round-off count as 0), split into the
    groups ``latent_dims`` and moved to the backend."""
    eps = np.asarray(eps, dtype=np.float64)
    d = codes.mean.shape[0]
    if eps.ndim != 2 or eps.shape[1] != d or sum(latent_dims) != d:
        raise ValueError(f"eps must have shape (n, {d}) and latent_dims must add up to {d}, got "
                         f"{eps.shape} and {tuple(latent_dims)}")
    w, v = np.linalg.eigh(codes.cov)  # (d,), (d, d)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # (d, d), S = V diag(√w) Vᵀ
    z = codes.mean + eps @ root  # (n, d); S symmetric
    out, off = [], 0
    for dl in latent_dims:
        out.append(_backend.from_numpy(xp, z[:, off:off + dl], dtype=dtype, device=device))
        off += dl
    return tuple(out)
