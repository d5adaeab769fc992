"""Short-run Langevin chain (docs/math.md §2) and the step-size objectives (docs/math.md §4 eq. 4.1, §5 eq. 5.1).

Everything here works on an abstract :class:`Target` -- an energy E(z) on the
*concatenated* latent vector (n, d) with its gradient and exact Hessian -- so the same
code can be run on the generator's energy (the public functions, which take a config)
and on hand-built targets (e.g. a linear-Gaussian model in the tests).
"""

import math

import numpy as np

from . import derivatives as En
from . import network as N

_LOG_2PI = math.log(2.0 * math.pi)


class Target:
    """An energy on concatenated latents.

    dims:     latent group sizes, top-down (d = sum(dims))
    energy:   (n, d) -> (n,)        per-example E
    grad:     (n, d) -> (n, d)      per-example ∇E
    hessian:  (n, d) -> (n, d, d)   per-example ∇²E
    """

    def __init__(self, dims, energy, grad, hessian):
        """See the class docstring."""
        self.dims = tuple(int(d) for d in dims)
        self.energy, self.grad, self.hessian = energy, grad, hessian

    def split(self, zc):
        """(n, d) -> tuple of (n, d_l), groups top-down."""
        offsets = np.cumsum((0,) + self.dims)
        return tuple(zc[:, offsets[l]:offsets[l + 1]] for l in range(len(self.dims)))


def generator_target(config, params, x, sigma):
    """The energy of docs/math.md eq. (1.1) for the generator ``config`` as a :class:`Target`."""
    dims = N.latent_dims(config)
    x = np.asarray(x, dtype=np.float64)
    t = Target(dims, None, None, None)
    t.energy = lambda zc: En.energy(config, params, x, t.split(zc), sigma)
    t.grad = lambda zc: np.concatenate(En.grad_z(config, params, x, t.split(zc), sigma), axis=1)
    t.hessian = lambda zc: En.hessian_z(config, params, x, t.split(zc), sigma)
    return t


def concat(z):
    """tuple of (n, d_l) -> (n, d)."""
    return np.concatenate([np.asarray(zl, dtype=np.float64) for zl in z], axis=1)


def step_vector(dims, step_size):
    """Per-coordinate step sizes s (d,): each group's coordinates get its group's s (docs/math.md §2).

    ``step_size`` is a float (shared) or a sequence of one value per group.
    """
    dims = tuple(dims)
    s = np.asarray(step_size, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(len(dims), float(s))
    if s.shape != (len(dims),):
        raise ValueError(f"step_size must be a float or {len(dims)} values, got shape {s.shape}")
    return np.concatenate([np.full(d, s_l) for d, s_l in zip(dims, s)])


def log_std_normal(zc):
    """log N(z; 0, I) with its constant −(d/2) log 2π, per example: (n, d) -> (n,)."""
    d = zc.shape[1]
    return -0.5 * (zc ** 2).sum(axis=1) - 0.5 * d * _LOG_2PI


# --------------------------------------------------------------------------- #
# Generic (Target-level) implementations
# --------------------------------------------------------------------------- #

def run_chain(target, step_size, z0, noise):
    """docs/math.md eq. (2.1): z_{k+1} = z_k − A ∇E(z_k) + s ⊙ ξ_k, A = diag(s²/2).

    z0: (n, d); noise: list of K arrays (n, d).
    Returns (zs, gs): lists of the K+1 states z_0..z_K and gradients g_0..g_K, each (n, d).
    """
    s = step_vector(target.dims, step_size)                # (d,)
    a = 0.5 * s ** 2                                       # diagonal of A, (d,)
    zs = [np.asarray(z0, dtype=np.float64)]
    gs = [target.grad(zs[0])]
    for xi in noise:
        z_next = zs[-1] - a * gs[-1] + s * xi
        zs.append(z_next)
        gs.append(target.grad(z_next))
    return zs, gs


def jacobian_objective_target(target, step_size, z0, noise):
    """J_jac of docs/math.md eq. (4.1) for one draw of the noise:

        log N(z_0; 0, I) − Σ_{k<K} log|det(I − A H_k)| + E(z_K),   H_k = ∇²E(z_k)

    with explicit Hessians and np.linalg.slogdet. z0: (n, d); noise: K × (n, d). -> (n,)
    """
    s = step_vector(target.dims, step_size)
    a = 0.5 * s ** 2
    zs, _ = run_chain(target, step_size, z0, noise)
    d = zs[0].shape[1]
    logdet = np.zeros(zs[0].shape[0])
    for k in range(len(noise)):
        H = target.hessian(zs[k])                          # (n, d, d)
        M = np.eye(d)[None] - a[None, :, None] * H         # I − A H_k, A scales rows; (n, d, d)
        logdet += np.linalg.slogdet(M)[1]                  # log|det|, sign ignored
    return log_std_normal(zs[0]) - logdet + target.energy(zs[-1])


def log_weight_target(target, step_size, z0, noise):
    """log w of docs/math.md eq. (5.1) for one chain (Langevin forward and reverse kernels):

        log w = −E(z_K) − log N(z_0; 0, I) + Σ_{k<K} [½‖ξ_k‖² − ½‖ξ_k − ½ s ⊙ (g_k + g_{k+1})‖²]

    z0: (n, d); noise: K × (n, d). -> (n,)
    """
    s = step_vector(target.dims, step_size)
    zs, gs = run_chain(target, step_size, z0, noise)
    log_w = -target.energy(zs[-1]) - log_std_normal(zs[0])
    for k, xi in enumerate(noise):
        r = xi - 0.5 * s * (gs[k] + gs[k + 1])             # (n, d)
        log_w += 0.5 * (xi ** 2).sum(axis=1) - 0.5 * (r ** 2).sum(axis=1)
    return log_w


def iw_objective_target(target, step_size, z0s, noises):
    """−log (1/M) Σ_m w_m over M independent chains (docs/math.md §5, importance-weighted), via a
    stable log-sum-exp. z0s: M × (n, d); noises: M × K × (n, d). -> (n,)"""
    if len(z0s) != len(noises) or len(z0s) == 0:
        raise ValueError("need the same number M >= 1 of z0s and noises")
    log_w = np.stack([log_weight_target(target, step_size, z0, nz)
                      for z0, nz in zip(z0s, noises)])     # (M, n)
    m = log_w.max(axis=0)                                  # (n,)
    lse = m + np.log(np.exp(log_w - m).sum(axis=0))
    return -(lse - math.log(log_w.shape[0]))


# --------------------------------------------------------------------------- #
# Public functions on a generator config
# --------------------------------------------------------------------------- #

def short_run(config, params, x, step_size, z0, noise, sigma):
    """Short-run Langevin, docs/math.md eq. (2.1), on the energy (1.1) with the given noise.

    z0: tuple like z; noise: list of K tuples like z; step_size: float or one per group.
    Returns (z_K, path) with path the list of the K+1 tuples z_0..z_K.
    """
    t = generator_target(config, params, x, sigma)
    zs, _ = run_chain(t, step_size, concat(z0), [concat(xi) for xi in noise])
    path = [t.split(zc) for zc in zs]
    return path[-1], path


def jacobian_objective(config, params, x, step_size, z0, noise, sigma):
    """J_jac of docs/math.md eq. (4.1) for this noise (the integrand of the expectation). -> (n,)"""
    t = generator_target(config, params, x, sigma)
    return jacobian_objective_target(t, step_size, concat(z0), [concat(xi) for xi in noise])


def reverse_objective(config, params, x, step_size, z0, noise, sigma):
    """−log w of docs/math.md eq. (5.1) for this noise. -> (n,)"""
    t = generator_target(config, params, x, sigma)
    return -log_weight_target(t, step_size, concat(z0), [concat(xi) for xi in noise])


def iw_reverse_objective(config, params, x, step_size, z0s, noises, sigma):
    """−log (1/M) Σ_m w_m, w_m of docs/math.md eq. (5.1) over M chains (docs/math.md §5). -> (n,)

    z0s: list of M tuples like z; noises: list of M lists of K tuples like z.
    """
    t = generator_target(config, params, x, sigma)
    return iw_objective_target(t, step_size, [concat(z0) for z0 in z0s],
                               [[concat(xi) for xi in nz] for nz in noises])
