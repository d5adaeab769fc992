"""Portable seeded noise (docs/math.md §2, §7; draw order in docs/models.md "Noise").

The core math never draws random numbers: noise is an argument. This module is the one
place that turns a ``seed`` into arrays. Every draw is made in float64 by
``numpy.random.default_rng(seed)`` on the host and then cast and moved to the backend, so
the same seed gives the same values on NumPy, PyTorch (CPU or CUDA), CuPy and
array-api-strict, up to the final dtype rounding.
"""

from __future__ import annotations

import numpy as np

from ._backend import from_numpy


def host_rng(seed) -> np.random.Generator:
    """``numpy.random.default_rng(seed)``; a Generator passes through unchanged.

    ``seed`` is a non-negative integer or a sequence of them; anything else raises a
    ``ValueError`` that says so (NumPy's own message does not name the seed).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_, str, bytes)) or seed is None:
        raise ValueError(f"seed must be a non-negative integer (or a sequence of them), got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed must be a non-negative integer (or a sequence of them), got {seed!r}") from None


def standard_normal_groups(rng, n: int, latent_dims, *, xp, dtype, device) -> tuple:
    """One draw like ``z``: for each group l in order, ``rng.standard_normal((n, d_l))``."""
    return tuple(
        from_numpy(xp, rng.standard_normal((n, d)), dtype=dtype, device=device) for d in latent_dims
    )


def host_chain_noise_flat(seed, n: int, latent_dims, n_steps: int) -> np.ndarray:
    """``chain_noise``'s float64 draws on the host as one ``(K + 1, n·d)`` array: row 0 is
    ``z0``, row k + 1 is ``ξ_k``, each a z-like draw flattened group by group (each group's
    ``(n, d_l)`` block row-major)."""
    per_draw = int(n) * sum(int(d) for d in latent_dims)
    return host_rng(seed).standard_normal((n_steps + 1) * per_draw).reshape(n_steps + 1, per_draw)


def host_chain_noise(seed, n: int, latent_dims, n_steps: int):
    """``chain_noise``'s float64 draws on the host, stacked per group:
    ``(z0 tuple of (n, d_l), noise tuple of (K, n, d_l))``.

    All ``(K + 1)·n·d`` numbers come from one ``standard_normal`` call and are split in
    ``chain_noise``'s order (a ``Generator`` yields the same sequence whatever sizes it is
    asked for in; ``tests/test_backends.py`` checks the equality).
    """
    dims = tuple(int(d) for d in latent_dims)
    flat = host_chain_noise_flat(seed, n, dims, n_steps)
    groups, off = [], 0
    for d in dims:
        groups.append(flat[:, off:off + n * d].reshape(n_steps + 1, n, d))  # (K + 1, n, d_l)
        off += n * d
    return tuple(g[0] for g in groups), tuple(g[1:] for g in groups)


def chain_noise(seed, n: int, latent_dims, n_steps: int, *, xp, dtype, device):
    """Noise for a short-run chain (docs/math.md eq. 2.1): ``(z0, [xi_0, ..., xi_{K-1}])``.

    Draw order: ``z0`` group by group, then for k = 0..K-1 each ``xi_k`` group by group.
    """
    z0, noise = host_chain_noise(seed, n, latent_dims, n_steps)
    put = lambda a: from_numpy(xp, a, dtype=dtype, device=device)  # noqa: E731
    return tuple(put(a) for a in z0), [tuple(put(a[k]) for a in noise) for k in range(n_steps)]


def _signs(rng, shape) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


def rademacher(rng, shape, *, xp, dtype, device):
    """Rademacher (±1) probes for Hutchinson trace estimates (docs/math.md §4.2)."""
    return from_numpy(xp, _signs(rng, shape), dtype=dtype, device=device)


def rademacher_steps(rng, n_steps: int, shape, *, xp, dtype, device, host=False):
    """``n_steps`` successive ``rademacher(rng, shape)`` draws stacked on the host and moved
    at once: ``(n_steps, *shape)``, the same values as the successive calls. ``host``: return
    the host NumPy array in ``dtype`` instead (a compiled JAX call moves it with its other
    inputs, cheaper than a separate transfer)."""
    signs = np.stack([_signs(rng, shape) for _ in range(n_steps)]) if n_steps else np.zeros((0, *shape))
    if host:
        return np.asarray(signs, dtype=np.dtype(dtype))
    return from_numpy(xp, signs, dtype=dtype, device=device)
