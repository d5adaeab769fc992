"""The energy E_θ(z; x) = −log p_θ(x, z) and its derivatives (docs/math.md eq. 1.1, §7).

    E_θ(z; x) = ½‖z‖² + ‖x − g_θ(z)‖²/(2σ²) + (d/2) log 2π + (D/2) log(2πσ²)

Gradient (reverse mode through the hand-written generator VJP):

    ∇_z E = z + J_gᵀ (g_θ(z) − x)/σ²          ∇_θ E = J_θᵀ (g_θ(z) − x)/σ²

Hessian-vector products push a first-order jet through the same forward and reverse
passes (``srl.jet``): the tangent of ``∇_z E`` along ``v`` is ``H v``.

The private ``_``-prefixed functions take ``xp`` and skip validation; the loops in
``langevin`` and ``objectives`` call them. The public functions validate their inputs.
"""

from __future__ import annotations

import math

from . import _backend, compiled
from .jet import Jet, primal
from .validate import check_z, prepare

LOG_2PI = math.log(2.0 * math.pi)


def log_constant(gen, sigma: float) -> float:
    """``(d/2) log 2π + (D/2) log(2πσ²)``, the constant of eq. (1.1)."""
    return 0.5 * gen.d * LOG_2PI + 0.5 * gen.D * (LOG_2PI + 2.0 * math.log(sigma))


def _sum_rest(xp, a):
    """Sum over every axis but the first: ``(n, ...) → (n,)``."""
    return xp.sum(xp.reshape(a, (a.shape[0], -1)), axis=1)


def _energy_from(xp, gen, z, residual, sigma):
    """eq. (1.1) from plain ``z`` and ``residual = g(z) − x``: ``(n,)``."""
    quad = _sum_rest(xp, residual * residual) / (2.0 * sigma * sigma)  # (n,)
    for zl in z:
        quad = quad + 0.5 * xp.sum(zl * zl, axis=1)
    return quad + log_constant(gen, sigma)


def _energy(xp, gen, params, x, z, sigma):
    """Per-example energy ``(n,)`` (no derivatives)."""
    x_hat, _ = gen.forward_cache(xp, params, z)
    return _energy_from(xp, gen, z, x_hat - x, sigma)


def _value_and_grad(xp, gen, params, x, z, sigma, *, want_params=False, want_energy=True,
                    want_residual=False, tape=None):
    """``(E (n,) or None, ∇_z Σ E tuple, ∇_θ Σ E dict or None)`` [+ residual ``g(z) − x``].

    ``z`` may hold jets (then ``∇_z`` holds jets and ``E`` is evaluated at the primal).
    ``tape``: a list that receives the linearisation for ``_hvp_from_tape`` (plain ``z`` only).
    """
    x_hat, cache = gen.forward_cache(xp, params, z)  # (n, *out_shape)
    residual = x_hat - x  # g(z) − x
    g_xhat = residual * (1.0 / (sigma * sigma))  # ∂E/∂x̂
    grads = {} if want_params else None
    gz = gen.backward(xp, params, g_xhat, cache, grads, tape)  # J_gᵀ (g − x)/σ²
    gz = tuple(g + zl for g, zl in zip(gz, z))  # + ∇ ½‖z‖²
    energy = None
    if want_energy:
        energy = _energy_from(xp, gen, tuple(primal(zl) for zl in z), primal(residual), sigma)
    if want_residual:
        return energy, gz, grads, primal(residual)
    return energy, gz, grads


def _grad_z(xp, gen, params, x, z, sigma):
    return _value_and_grad(xp, gen, params, x, z, sigma, want_energy=False)[1]


def _hvp(xp, gen, params, x, z, directions, sigma):
    """Stacked HVPs: ``directions`` is a tuple of ``(P, n, d_l)``; returns ``(g, Hv)``.

    One forward+reverse pass of a first-order jet handles all P directions.
    """
    zj = tuple(Jet(zl, vl) for zl, vl in zip(z, directions))
    gz = _grad_z(xp, gen, params, x, zj, sigma)
    return tuple(g.a for g in gz), tuple(g.b for g in gz)


def _hvp_from_tape(xp, gen, params, tape, v, sigma):
    """``H v`` at the point where ``_value_and_grad(..., tape=tape)`` ran, by a tangent pass
    alone (``srl.layers``): no forward value is recomputed. ``v`` and the result are tuples
    of ``(n, d_l)``; equal to ``_hvp`` with one direction, to round-off.

        H v = v + d/dε [J_gᵀ (g − x)/σ²](z + ε v) = v + backward_jvp(jvp(v)/σ²)       (1.3)
    """
    t_xhat, tcache = gen.jvp(xp, params, v, tape)  # J_g v: (n, *out_shape)
    tgz = gen.backward_jvp(xp, params, t_xhat * (1.0 / (sigma * sigma)), tcache)  # tangent of J_gᵀ (g − x)/σ²
    return tuple(t + vl for t, vl in zip(tgz, v))  # + ∇²(½‖z‖²) v


def unit_directions(xp, latent_dims, n, *, dtype, device):
    """The d one-hot directions of the concatenated latent space, split by group:
    a tuple of ``(d, n, d_l)`` arrays (``e_a`` restricted to group l, for every example)."""
    d = sum(latent_dims)
    eye = xp.eye(d, dtype=dtype, device=device)  # (d, d)
    out, off = [], 0
    for dl in latent_dims:
        block = eye[:, off:off + dl]  # (d, d_l)
        out.append(xp.broadcast_to(block[:, None, :], (d, n, dl)))  # (d, n, d_l)
        off += dl
    return tuple(out)


def columns_to_matrix(xp, cols):
    """Group-split stacked columns ``(P, n, d_l)`` → per-example matrices ``(n, d, P)``."""
    B = xp.concat(list(cols), axis=-1)  # (P, n, d): B[a, n, :] = column a
    return xp.permute_dims(B, (1, 2, 0))  # (n, d, P)


def _hessian(xp, gen, params, x, z, sigma):
    """Per-example Hessians ``(n, d, d)`` from d stacked HVP directions (one pass)."""
    n = z[0].shape[0]
    dirs = unit_directions(xp, gen.latent_dims, n, dtype=z[0].dtype, device=_backend.device(z[0]))
    _, hv = _hvp(xp, gen, params, x, z, dirs, sigma)
    return columns_to_matrix(xp, hv)


# ------------------------------------------------------------------------ public API
# On JAX the public functions run compiled (srl.compiled), after the same validation.
def _prepare(gen, params, x, z, sigma):
    xp, dtype, n, sigma = prepare(gen, params, x, sigma=sigma)
    _backend.array_namespace(x, *z)  # one array library for data and latents too
    check_z(gen, z, dtype=dtype, n=n)
    return xp, sigma


def energy(gen, params, x, z, *, sigma):
    """Per-example energy ``E_θ(z; x)`` of docs/math.md eq. (1.1), with all constants: ``(n,)``.

    Parameters
    ----------
    gen : srl.Generator
    params : dict from ``gen.init``
    x : array ``(n, *gen.out_shape)``, data scaled to [−1, 1]
    z : tuple of ``(n, d_l)`` arrays, top group first
    sigma : observation noise standard deviation σ > 0
    """
    xp, sigma = _prepare(gen, params, x, z, sigma)
    if compiled.active(xp):
        return compiled.energy(gen, params, x, z, sigma)
    return _energy(xp, gen, params, x, tuple(z), sigma)


def grad_z(gen, params, x, z, *, sigma):
    """``∇_z Σ_i E_i`` (a tuple like ``z``); row i is ``∇_z E(z_i; x_i)``."""
    xp, sigma = _prepare(gen, params, x, z, sigma)
    if compiled.active(xp):
        return compiled.grad_z(gen, params, x, z, sigma)
    return _grad_z(xp, gen, params, x, tuple(z), sigma)


def grad_params(gen, params, x, z, *, sigma):
    """``∇_θ Σ_i E_i`` (a dict like ``params``), by the hand-written reverse pass."""
    xp, sigma = _prepare(gen, params, x, z, sigma)
    if compiled.active(xp):
        return compiled.grad_params(gen, params, x, z, sigma)
    grads = _value_and_grad(xp, gen, params, x, tuple(z), sigma, want_params=True, want_energy=False)[2]
    return {k: grads[k] for k in params}  # the key order of params (the reverse pass fills it backwards)


def hvp_z(gen, params, x, z, v, *, sigma):
    """Per-example Hessian-vector products ``H(z_i) v_i`` (a tuple like ``z``).

    ``H = ∇²_z E = I + ∇²_z [‖x − g(z)‖²/(2σ²)]``, computed exactly by forward mode
    (a first-order jet) over the hand-written reverse pass.
    """
    xp, sigma = _prepare(gen, params, x, z, sigma)
    dtype = next(iter(params.values())).dtype
    check_z(gen, v, dtype=dtype, n=z[0].shape[0], what="v")
    if compiled.active(xp):
        return compiled.hvp_z(gen, params, x, z, v, sigma)
    _, hv = _hvp(xp, gen, params, x, tuple(z), tuple(vl[None, ...] for vl in v), sigma)
    return tuple(h[0, ...] for h in hv)


def hessian_z(gen, params, x, z, *, sigma):
    """Per-example Hessians ``∇²_z E(z_i; x_i)`` in the concatenated latent space
    (groups top-down): ``(n, d, d)``, all d columns from one stacked jet pass."""
    xp, sigma = _prepare(gen, params, x, z, sigma)
    return _hessian(xp, gen, params, x, tuple(z), sigma)
