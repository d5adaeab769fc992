"""The chain's stability index: the largest eigenvalue of ``A^{1/2} H A^{1/2}`` (docs/math.md eq. 2.2).

Near a point of the posterior the noise-free step of eq. (2.1) multiplies deviations by
``I − A H`` (``A = diag(s²/2)`` per group, ``H = ∇²_z E``); it contracts iff every
eigenvalue ``λ̃`` of the symmetric ``A^{1/2} H A^{1/2}`` lies in ``(0, 2)``. Beyond
``λ̃_max = 2`` the chain oscillates with a growing amplitude, and the s-sensitivities of
both step-size objectives grow like ``|1 − λ̃_max|^K``: their pathwise gradients are then
dominated by a geometric blow-up of random sign (docs/math.md §5, "Choosing s").

``stability_index`` estimates ``λ̃_max`` per example by power iteration on stacked
Hessian-vector products (one first-order-jet pass per iteration, docs/math.md eq. 1.3).
"""

from __future__ import annotations

from . import _backend
from .energy import _hvp, _prepare
from .random import host_rng, standard_normal_groups
from .validate import check_step_size


def _stability_index(xp, gen, params, x, z, v0, step_size, sigma, n_iter):
    """Rayleigh quotients ``(n,)`` of ``A^{1/2} H(z) A^{1/2}`` after ``n_iter`` power steps from ``v0``.

    ``z``, ``v0``: tuples of ``(n, d_l)``; ``step_size``: one float per group.
    """
    a = tuple(float(s) / 2.0**0.5 for s in step_size)  # A^{1/2} = diag(s/√2), per group

    def norm(v):  # (n,)
        return xp.sqrt(sum(xp.sum(vl * vl, axis=1) for vl in v))

    v, lam = v0, None
    for _ in range(n_iter):
        nv = norm(v)  # (n,)
        v = tuple(vl / nv[:, None] for vl in v)  # unit vectors, (n, d_l) each
        _, hv = _hvp(xp, gen, params, x, z, tuple((al * vl)[None, ...] for al, vl in zip(a, v)), sigma)  # H A^{1/2} v
        w = tuple(al * hl[0, ...] for al, hl in zip(a, hv))  # A^{1/2} H A^{1/2} v, (n, d_l) each
        lam = sum(xp.sum(vl * wl, axis=1) for vl, wl in zip(v, w))  # vᵀ Ã v with |v| = 1, (n,)
        v = w
    return lam


def stability_index(gen, params, x, z, *, step_size, sigma, n_iter=20, seed=0):
    """Per-example estimate of ``λ̃_max = λ_max(A^{1/2} ∇²_z E(z) A^{1/2})`` (docs/math.md eq. 2.2).

    The chain of eq. (2.1) is locally stable at ``z`` iff ``λ̃_max < 2``. Power iteration
    from a random start (drawn from ``seed`` in float64, as all noise in srl) returns a
    Rayleigh quotient: a lower bound that converges to ``λ̃_max`` when it is the eigenvalue
    of largest magnitude (``H = I + J_zᵀJ_z/σ² + …`` is dominated by its positive part).

    Parameters
    ----------
    gen, params : the generator and its parameters
    x : ``(n, *gen.out_shape)`` data
    z : tuple like the latents, e.g. a chain's ``z_K``
    step_size : one float per latent group (or one for all)
    sigma : observation noise σ
    n_iter : power iterations (each one stacked Hessian-vector product)

    Returns
    -------
    ``(n,)`` array in the dtype and on the device of ``x``.
    """
    xp, sigma = _prepare(gen, params, x, z, sigma)  # the checks of srl.hvp_z
    s = check_step_size(step_size, len(gen.latent_dims))
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer (power iterations), got {n_iter!r}")
    v0 = standard_normal_groups(host_rng(seed), z[0].shape[0], gen.latent_dims, xp=xp, dtype=z[0].dtype,
                                device=_backend.device(z[0]))
    return _stability_index(xp, gen, params, x, tuple(z), v0, s, sigma, n_iter)
