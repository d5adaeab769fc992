"""Short-run Langevin inference, noise-initialised and non-persistent (docs/math.md §2).

    z_0 ~ N(0, I)
    z_{k+1} = z_k − A ∇_z E(z_k) + s ⊙ ξ_k,     A = diag(s²/2),  ξ_k ~ N(0, I)      (2.1)

One step size per latent group (broadcast over the group's coordinates). ``q_s(z|x)`` is
the law of ``z_K``. The noise ``(z_0, ξ_0..ξ_{K-1})`` is an input: ``seed`` only selects
it through ``srl.random.chain_noise``, so explicit ``z0=``/``noise=`` reproduce a chain
exactly on any backend.
"""

from __future__ import annotations

from . import _backend, compiled
from .energy import _grad_z
from .errors import DivergenceError
from .random import chain_noise
from .validate import (all_finite, check_finite_noise, check_noise_stack, check_z, is_noise_stack, prepare_chain,
                       raise_non_finite)


def langevin_update(z, g, xi, step_size):
    """One step of eq. (2.1) given ``g = ∇_z E(z)``: ``z − (s²/2) g + s ξ`` per group."""
    return tuple(zl - (0.5 * s * s) * gl + s * xl for zl, gl, xl, s in zip(z, g, xi, step_size))


#: |z| beyond this is no posterior sample of an N(0, I)-prior model: the chain is unstable.
DIVERGED_ABS_Z = 1e6


def chain_ok(xp, z):
    """0-d boolean array: every ``z_K`` entry finite and within ``DIVERGED_ABS_Z`` (traceable;
    ``check_chain`` turns a False into the error)."""
    ok = None
    for a in z:
        good = xp.all(xp.abs(a) <= DIVERGED_ABS_Z)  # False for NaN too
        ok = good if ok is None else xp.logical_and(ok, good)
    return ok


def check_chain(xp, z, *, step_size, sigma, n_steps, what="short-run chain"):
    """Raise ``DivergenceError`` if ``z_K`` is non-finite or has exploded (|z| > 1e6).

    Called once per chain, after its last step: a step that overflows leaves inf or NaN
    in every later state, so checking ``z_K`` alone catches it without synchronising
    with the device at every step.

    Near a stationary point the noise-free linearisation of (2.1) is stable only while
    every eigenvalue of A^{1/2} H A^{1/2} lies in (0, 2), i.e. (s²/2)·λ_max(H) < 2 for
    one shared s (docs/math.md eq. 2.2). Where H ⪰ I (a generator linear in z, for
    example) that rules out every s > 2; in general the residual-curvature part of H can
    be indefinite, so this check looks at the outcome instead.
    """
    if compiled.defer(lambda: chain_ok(xp, z), what):  # compiled: read once after the call
        return
    if bool(chain_ok(xp, z)):  # the one host synchronisation of a chain
        return
    finite = all_finite(xp, z)
    state = "is not finite" if not finite else f"exceeds {DIVERGED_ABS_Z:g} in magnitude"
    raise DivergenceError(
        f"{what} diverged: z_K {state} after {n_steps} steps with step_size={step_size}, "
        f"sigma={sigma}; use a smaller step size (stability needs s²/2 · λ_max(H) < 2)"
    )


def _resolve(gen, xp, x, *, n_steps, seed, z0, noise, dtype, n, test_finite):
    """Explicit ``z0``/``noise`` validated, what is missing drawn from ``seed``:
    ``(z0, noise, stacked)`` with ``noise`` in its given form, stacked (one ``(K, n, d_l)``
    array per group; ``stacked`` True) or ``[ξ_0, ..., ξ_{K−1}]``. ``test_finite=False``:
    the caller's compiled function tests the given arrays for NaN/inf."""
    stacked = noise is not None and is_noise_stack(gen, noise)
    given_z0, given_noise = z0, noise
    if z0 is None or noise is None:  # z_0 is drawn first: without the ξ_k when they are given
        drawn_z0, drawn_noise = chain_noise(seed, n, gen.latent_dims, n_steps if noise is None else 0, xp=xp,
                                            dtype=dtype, device=_backend.device(x))
        z0 = drawn_z0 if z0 is None else z0
        noise = drawn_noise if noise is None else noise
    z0 = tuple(z0)
    check_z(gen, z0, dtype=dtype, n=n, what="z0")
    if stacked:
        check_noise_stack(gen, noise, dtype=dtype, n=n, n_steps=n_steps)
        noise = tuple(noise)
    else:
        noise = [tuple(xi) for xi in noise]
        if len(noise) != n_steps:
            raise ValueError(f"noise has {len(noise)} steps but n_steps={n_steps}")
        for k, xi in enumerate(noise):
            check_z(gen, xi, dtype=dtype, n=n, what=f"noise[{k}]")
    if test_finite:
        check_finite_noise(xp, given_z0, given_noise)
    return z0, noise, stacked


def resolve_noise(gen, xp, x, *, n_steps, seed, z0, noise, dtype, n):
    """Explicit ``z0``/``noise`` if given (validated; ``noise`` as K z-like tuples or
    stacked, one ``(K, n, d_l)`` array per group), else drawn from ``seed``:
    ``(z0, [ξ_0, ..., ξ_{K−1}])``."""
    z0, noise, stacked = _resolve(gen, xp, x, n_steps=n_steps, seed=seed, z0=z0, noise=noise, dtype=dtype, n=n,
                                  test_finite=True)
    if stacked:
        noise = [tuple(a[k, ...] for a in noise) for k in range(n_steps)]  # views, step by step
    return z0, noise


def stacked_noise(gen, xp, x, *, n_steps, seed, z0, noise, dtype, n, packed=False):
    """``resolve_noise`` with the noise as one ``(K, n, d_l)`` array per group (for
    ``srl.loop.fold`` and the compiled chain); the same values. ``packed`` (compiled JAX
    calls): noise drawn from ``seed`` comes as ``(None, one (K + 1, n·d) host array)``, moved
    by the compiled call with its other inputs and split inside it; explicit noise is checked here for shapes
    and dtypes only, its NaN/inf test runs inside the compiled function."""
    from .compiled import packed_chain_noise, stack_noise, stacked_chain_noise

    dev = _backend.device(x)
    if z0 is None and noise is None:  # drawn and stacked on the host: one transfer per group
        if packed:
            return None, packed_chain_noise(gen, seed=seed, n=n, n_steps=n_steps, dtype=dtype)
        return stacked_chain_noise(gen, xp, seed=seed, n=n, n_steps=n_steps, dtype=dtype, device=dev)
    z0, noise, stacked = _resolve(gen, xp, x, n_steps=n_steps, seed=seed, z0=z0, noise=noise, dtype=dtype, n=n,
                                  test_finite=not packed)
    return z0, (noise if stacked else stack_noise(xp, noise, gen.latent_dims, n, dtype=dtype, device=dev))


def _short_run(xp, gen, params, x, z0, noise, step_size, sigma, *, return_path=False):
    z = z0
    path = [z0] if return_path else None
    for xi in noise:
        g = _grad_z(xp, gen, params, x, z, sigma)  # ∇_z E(z_k), per example
        z = langevin_update(z, g, xi, step_size)  # eq. (2.1)
        if return_path:
            path.append(z)
    return z, path


def short_run(gen, params, x, *, step_size, n_steps, sigma, seed=0, z0=None, noise=None,
              return_path=False):
    """Run K steps of short-run Langevin inference from noise (docs/math.md eq. 2.1).

    Parameters
    ----------
    gen, params : the generator and its parameters
    x : ``(n, *gen.out_shape)`` data
    step_size : float, or one float per latent group (top group first)
    n_steps : K
    sigma : observation noise σ
    seed : selects ``z0`` and the noise (same values on every backend)
    z0, noise : explicit ``z_0`` (tuple like z) and the noise, either ``[ξ_0, ..., ξ_{K−1}]``
        (K tuples like z) or stacked (one ``(K, n, d_l)`` array per group); override seed
    return_path : also return the whole chain

    Returns
    -------
    ``z_K`` (tuple like z); with ``return_path=True``, ``(z_K, path)`` where ``path`` is a
    tuple like z of ``(K + 1, n, d_l)`` arrays holding ``z_0..z_K``.

    Raises ``DivergenceError`` if ``z_K`` is not finite (the step size is too large).
    """
    xp, dtype, n, sigma, K, s = prepare_chain(gen, params, x, sigma=sigma, n_steps=n_steps, step_size=step_size,
                                              compiled_finite_test=True)
    if compiled.active(xp):  # JAX: one compiled scan over the stacked noise
        z0_in, noise_in = stacked_noise(gen, xp, x, n_steps=K, seed=seed, z0=z0, noise=noise, dtype=dtype, n=n,
                                        packed=True)  # z0_in None: the seed's noise, packed in noise_in
        zK, path, ok, inputs_finite = compiled.short_run(gen, params, x, z0_in, noise_in, s, sigma,
                                                         return_path=return_path)
        if not bool(ok):  # one host read per chain: data, parameters and given noise finite, z_K bounded
            if not bool(inputs_finite):
                raise_non_finite(gen, xp, params, x, z0=z0_in, noise=noise_in)
            check_chain(xp, zK, step_size=s, sigma=sigma, n_steps=K)
        return (zK, path) if return_path else zK
    z0, noise = resolve_noise(gen, xp, x, n_steps=K, seed=seed, z0=z0, noise=noise, dtype=dtype, n=n)
    zK, path = _short_run(xp, gen, params, x, z0, noise, s, sigma, return_path=return_path)
    check_chain(xp, zK, step_size=s, sigma=sigma, n_steps=K)
    if return_path:
        stacked = tuple(xp.stack([zk[l] for zk in path], axis=0) for l in range(len(gen.latent_dims)))
        return zK, stacked
    return zK
