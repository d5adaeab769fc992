"""Compiled public functions on the JAX backend (docs/math.md §7).

On JAX arrays the public functions validate their inputs once, outside any trace, and
then call one ``jax.jit``-compiled function built from the same array-API core as every
other backend (hand-written derivatives, no JAX autodiff):

* ``energy``, ``grad_z``, ``grad_params``, ``hvp_z``: one compiled forward/reverse pass;
* ``short_run``: the whole chain of eq. (2.1) as one ``lax.scan`` over the stacked noise
  ``(K, n, d_l)`` (compiled once per shape, not K traced Python steps); the test of the
  data and parameters for NaN/inf and the divergence check on ``z_K`` are outputs of the
  same program, read once after the call;
* ``objective`` (``stepsize_objective``/``objective_values``, both kinds, exact or
  Hutchinson log-det, forward or adjoint gradient): the K steps are one ``lax.scan``
  through ``srl.loop.fold`` (the adjoint sweep a reversed one); every check the core makes
  (chain divergence, singular ``I − A H_k``, finiteness of the result, and of the data and
  parameters) becomes an output, read once;
* ``train_iteration``: a training iteration of θ — the chain, the mean ``∇_θ E`` at ``z_K``
  and Adam's update.

Seeded noise is drawn on the host (``srl.random``) and moved as one array that the
compiled function splits (``packed_chain_noise``); ``all_finite`` is validation's
finiteness test as one compiled reduction.

Compiled functions are cached by ``jax.jit`` per generator, array shapes and dtypes, and
static options (σ, ``return_path``); step sizes are traced values, so changing them does
not recompile. ``use_jit(False)`` runs the same core eagerly (used by the tests to show
both give the same numbers).
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import _backend
from .random import host_chain_noise, host_chain_noise_flat

_enabled = True


def active(xp) -> bool:
    """True when ``xp`` is JAX and compilation is on."""
    return _enabled and xp.__name__ == "jax.numpy"


@contextlib.contextmanager
def use_jit(enabled: bool = True):
    """Temporarily switch the compiled JAX path on or off (off: the eager core)."""
    global _enabled
    old = _enabled
    _enabled = bool(enabled)
    try:
        yield
    finally:
        _enabled = old


def _jit(fn, static):
    """``jax.jit`` with the static options plus ``switches``: global settings read while
    tracing (the native-kernel switch) are part of the cache key, so flipping them retraces."""
    import jax

    return jax.jit(fn, static_argnames=(*static, "switches"))


def _switches():
    from srl.backends import native_enabled

    return (native_enabled(),)


_cache: dict = {}
_deferred = None  # while tracing: [(what, 0-d bool array)] from check_chain and the objectives


def clear_cache():
    """Forget every compiled function (the next calls compile again)."""
    _cache.clear()


def tracing() -> bool:
    """True while a compiled objective is being traced (``srl.loop.fold`` then emits one
    ``lax.scan`` instead of a Python loop)."""
    return _deferred is not None


def defer(ok, what: str) -> bool:
    """Inside a compiled trace, record the check ``ok()`` (a 0-d boolean array) as an output
    and return True; outside, return False (the caller checks eagerly)."""
    if _deferred is None:
        return False
    _deferred.append((what, ok()))
    return True


def _with_checks(fn):
    """Run ``fn`` (while tracing) collecting its deferred checks: ``(out, whats, oks)``."""
    global _deferred
    outer, _deferred = _deferred, []
    try:
        out = fn()
        checks = _deferred
    finally:
        _deferred = outer
    return out, tuple(w for w, _ in checks), tuple(ok for _, ok in checks)


def _compiled(name):
    """The jitted function ``name``, built on first use: importing srl never imports JAX, and
    the core modules (which import this one) are fully loaded by then."""
    if name not in _cache:
        _cache[name] = _BUILDERS[name]()
    return _cache[name]


# ------------------------------------------------------------------ energy and derivatives
def _build_energy():
    import jax.numpy as jnp

    from .energy import _energy

    return _jit(lambda gen, params, x, z, sigma, switches: _energy(jnp, gen, params, x, z, sigma), ("gen", "sigma"))


def _build_grad_z():
    import jax.numpy as jnp

    from .energy import _grad_z

    return _jit(lambda gen, params, x, z, sigma, switches: _grad_z(jnp, gen, params, x, z, sigma), ("gen", "sigma"))


def _build_grad_params():
    import jax.numpy as jnp

    from .energy import _value_and_grad

    def f(gen, params, x, z, sigma, switches):
        return _value_and_grad(jnp, gen, params, x, z, sigma, want_params=True, want_energy=False)[2]

    return _jit(f, ("gen", "sigma"))


def _build_hvp_z():
    import jax.numpy as jnp

    from .energy import _hvp

    def f(gen, params, x, z, v, sigma, switches):
        _, hv = _hvp(jnp, gen, params, x, z, tuple(vl[None, ...] for vl in v), sigma)  # (1, n, d_l)
        return tuple(h[0, ...] for h in hv)

    return _jit(f, ("gen", "sigma"))


# ------------------------------------------------------------------ the chain (eq. 2.1)
def _scan_chain(gen, params, x, z0, noise, s, sigma, return_path):
    """Eq. (2.1) as one ``lax.scan``: z0 tuple of (n, d_l), noise tuple of (K, n, d_l),
    s tuple of 0-d arrays → ``(z_K, path or None, ok)``."""
    import jax.numpy as jnp
    from jax import lax

    from .energy import _grad_z
    from .langevin import chain_ok, langevin_update

    def step(z, xi):
        g = _grad_z(jnp, gen, params, x, z, sigma)  # ∇_z E(z_k)
        z = langevin_update(z, g, xi, s)  # eq. (2.1)
        return z, (z if return_path else None)

    zK, path = lax.scan(step, z0, noise)
    if return_path:  # (K + 1, n, d_l): z_0 .. z_K
        path = tuple(jnp.concat([a[None, ...], p], axis=0) for a, p in zip(z0, path))
    return zK, path, chain_ok(jnp, zK)


def _inputs_finite(params, x, z0=None, noise=None):
    """0-d boolean, inside a trace: the data, every parameter and explicit chain noise
    (``z0`` not None; packed seeded noise is finite by construction) are free of NaN/inf:
    the public functions' finiteness validation, computed in the same program as the result."""
    given = () if z0 is None else (*z0, *noise)
    return _traced_all_finite((x, *params.values(), *given))


def _build_short_run():
    import jax.numpy as jnp

    def f(gen, params, x, z0, noise, s, sigma, return_path, switches):
        zK, path, chain_good = _scan_chain(gen, params, x, *_unpacked(gen, z0, noise), s, sigma, return_path)
        finite = _inputs_finite(params, x, z0, noise)
        return zK, path, jnp.logical_and(chain_good, finite), finite

    return _jit(f, ("gen", "sigma", "return_path"))


def _build_train_iteration():
    import jax.numpy as jnp

    from .energy import _value_and_grad
    from .optim import adam_arithmetic

    def f(gen, params, m, v, x, noise, s, lr_c1, c2, sigma, betas, eps, switches):
        zK, _, ok = _scan_chain(gen, params, x, *_unpacked(gen, None, noise), s, sigma, False)
        energy, _, grads, residual = _value_and_grad(jnp, gen, params, x, zK, sigma, want_params=True,
                                                     want_residual=True)  # eq. (3.1) at z_K
        n = x.shape[0]
        grads = {k: g * (1.0 / n) for k, g in grads.items()}
        new, ms, vs = adam_arithmetic(params, grads, m, v, lr_c1=lr_c1, c2=c2, betas=betas, eps=eps)
        return new, ms, vs, jnp.mean(energy), jnp.mean(residual * residual), ok, _traced_all_finite(new.values())

    return _jit(f, ("gen", "sigma", "betas", "eps"))


def train_iteration(gen, params, adam_state, x, *, adam, lr, step_size, n_steps, sigma, seed):
    """One training iteration of θ (docs/math.md eq. 3.1) as one compiled call: the chain
    from the noise of ``seed``, the mean ``∇_θ E`` at ``z_K`` and ``adam``'s update
    (``srl.optim.adam_arithmetic``, the same code as the eager update), with the learning
    rate, bias corrections and step sizes traced. Returns ``(params, AdamState, energy, mse,
    chain_ok, params_finite)``, the last four as 0-d arrays for the caller to read once.
    Inputs are not validated (the training loop's own state)."""
    import jax.numpy as jnp

    from .optim import AdamState

    dtype = np.dtype(x.dtype)
    noise = packed_chain_noise(gen, seed=seed, n=x.shape[0], n_steps=n_steps, dtype=x.dtype)
    s = tuple(np.asarray(v, dtype=dtype) for v in step_size)
    t = adam_state.t + 1
    lr_c1, c2 = adam.bias_corrections(t, lr)
    # Before the first step the moments are absent (they start from the first gradient); zeros
    # give the same values (0·β + x = x) and keep one compiled program for every step.
    first = not adam_state.m
    m = {k: jnp.zeros_like(p) for k, p in params.items()} if first else adam_state.m
    v = {k: jnp.zeros_like(p) for k, p in params.items()} if first else adam_state.v
    new, ms, vs, energy, mse, ok, finite = _compiled("train_iteration")(
        gen, params, m, v, x, noise, s, np.asarray(lr_c1, dtype=dtype), np.asarray(c2, dtype=dtype), float(sigma),
        tuple(adam.betas), float(adam.eps), switches=_switches())
    return (_in_key_order(params, new), AdamState(t, _in_key_order(params, ms), _in_key_order(params, vs)),
            energy, mse, ok, finite)


# ------------------------------------------------------------------ step-size objectives
def _traced_chain_constants(gen, s, dtype, device):
    """``srl.sensitivity.ChainConstants`` with traced step sizes ``s`` (tuple of 0-d arrays),
    so that new step sizes do not recompile: A = diag(s²/2) and ∂A/∂s_j = s_j 1_{group j}."""
    import jax.numpy as jnp

    from .sensitivity import ChainConstants

    ch = ChainConstants(jnp, gen, (1.0,) * len(gen.latent_dims), dtype, device)  # masks and shapes
    ch.s = tuple(s)
    ones = [jnp.ones((dl,), dtype=dtype) for dl in ch.dims]
    ch.A_vec = jnp.concat([(0.5 * sl * sl) * o for sl, o in zip(s, ones)])  # (d,)
    ch.dA = jnp.stack([jnp.concat([(sj if l == j else 0.0) * o for l, o in enumerate(ones)])
                       for j, sj in enumerate(s)])  # (L, d)
    return ch


def _build_objective():
    import jax
    import jax.numpy as jnp

    from .objectives import _objective

    def f(gen, params, x, z0, noise, s, probes, sigma, kind, want_grad, n_chains, gradient, keep_activations,
          logdet, series_terms, switches):
        def run():
            z0_, noise_ = _unpacked(gen, z0, noise)
            ch = _traced_chain_constants(gen, s, x.dtype, _backend.device(x))
            opts = {"gradient": gradient, "keep_activations": keep_activations}
            if kind == "jacobian":
                opts.update(logdet=logdet, probes=probes, series_terms=series_terms)
            return _objective(ch, params, x, z0_, noise_, sigma, kind=kind, want_grad=want_grad,
                              n_chains=n_chains, **opts)

        (values, grad), _, oks = _with_checks(run)  # every chain check and the finiteness test
        finite = _inputs_finite(params, x, z0, noise)
        ok = jnp.all(jnp.stack([*oks, finite]))
        return values, grad, ok, finite

    return jax.jit(f, static_argnames=("gen", "sigma", "kind", "want_grad", "n_chains", "gradient",
                                       "keep_activations", "logdet", "series_terms", "switches"))


def objective(gen, params, x, z0, noise, step_size, sigma, *, kind, want_grad, n_chains, gradient,
              keep_activations=False, logdet="exact", probes=None, series_terms=8):
    """Values ``(n,)`` and per-example s-gradients ``(n, L)`` (or None) of
    ``srl.objectives._objective`` compiled as one function: the K steps are one ``lax.scan``
    (``srl.loop.fold``) over the stacked ``noise`` (tuple of ``(K, n, d_l)``) and, for the
    Hutchinson log-det, ``probes (K, P, n, d)``; step sizes are traced, so changing them does
    not recompile. The chain's divergence checks are read once after the call.
    """
    import jax.numpy as jnp

    from .errors import DivergenceError
    from .validate import raise_non_finite

    s = tuple(np.asarray(v, dtype=np.dtype(x.dtype)) for v in step_size)
    values, grad, ok, inputs_finite = _compiled("objective")(
        gen, params, x, _tuple(z0), _tuple(noise), s, probes, sigma, kind, bool(want_grad), int(n_chains),
        gradient, bool(keep_activations), logdet, int(series_terms), switches=_switches())
    if not bool(ok):  # one host read per objective evaluation
        if not bool(inputs_finite):  # the public call's validation error (data, parameters or given noise)
            raise_non_finite(gen, jnp, params, x, z0=z0, noise=noise)
        raise DivergenceError(
            f"step-size objective ({kind}) is not finite with step_size={tuple(float(v) for v in step_size)}: "
            "the chain diverged (z_K not finite or beyond 1e6 in magnitude); use a smaller step size"
        )
    return values, grad


def _traced_all_finite(arrays):
    """0-d boolean, inside a trace: every array is free of NaN/inf."""
    import jax.numpy as jnp

    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


def _build_all_finite():
    import jax

    return jax.jit(_traced_all_finite)


def all_finite(arrays):
    """0-d boolean: every array in the tuple is free of NaN/inf (one compiled call)."""
    return _compiled("all_finite")(tuple(arrays))


_BUILDERS = {
    "all_finite": _build_all_finite,
    "energy": _build_energy,
    "grad_z": _build_grad_z,
    "grad_params": _build_grad_params,
    "hvp_z": _build_hvp_z,
    "short_run": _build_short_run,
    "train_iteration": _build_train_iteration,
    "objective": _build_objective,
}


def energy(gen, params, x, z, sigma):
    return _compiled("energy")(gen, params, x, tuple(z), sigma, switches=_switches())


def grad_z(gen, params, x, z, sigma):
    return _compiled("grad_z")(gen, params, x, tuple(z), sigma, switches=_switches())


def _in_key_order(params, grads):
    """JAX returns dicts with sorted keys; give them back in the order of ``params``."""
    return {k: grads[k] for k in params}


def grad_params(gen, params, x, z, sigma):
    return _in_key_order(params, _compiled("grad_params")(gen, params, x, tuple(z), sigma, switches=_switches()))


def hvp_z(gen, params, x, z, v, sigma):
    return _compiled("hvp_z")(gen, params, x, tuple(z), tuple(v), sigma, switches=_switches())


# ------------------------------------------------------------------ noise as stacked arrays
def stacked_chain_noise(gen, xp, *, seed, n, n_steps, dtype, device):
    """``srl.random.chain_noise`` drawn on the host, stacked there and moved in one
    transfer per group: ``(z0 tuple of (n, d_l), noise tuple of (K, n, d_l))``.

    Same draws in the same order as ``chain_noise`` (so the same values as every other
    backend).
    """
    z0, noise = host_chain_noise(seed, n, gen.latent_dims, n_steps)
    put = lambda a: _backend.from_numpy(xp, a, dtype=dtype, device=device)  # noqa: E731
    return tuple(put(a) for a in z0), tuple(put(a) for a in noise)


def packed_chain_noise(gen, *, seed, n, n_steps, dtype):
    """The chain noise of ``seed`` as ONE host array ``(K + 1, n·d)`` (z_0, then ξ_0..ξ_{K−1},
    each a z-like draw flattened group by group), rounded to ``dtype`` on the host; the
    compiled functions take it as an argument, which moves it with the call's other inputs
    (on a 2-core x86 CPU about 10 µs, against about 130 µs for a separate ``jax.device_put``
    of the same 80 kB), and split it (``_unpacked``). Same values as ``chain_noise``."""
    if np.dtype(dtype) == np.float64:
        _backend.require_jax_x64()
    flat = host_chain_noise_flat(seed, n, gen.latent_dims, n_steps)  # (K + 1, n·d), already in this order
    return np.asarray(flat, dtype=np.dtype(dtype))


def _unpacked(gen, z0, noise):
    """``(z0 tuple of (n, d_l), noise tuple of (K, n, d_l))`` from explicit stacks, or from
    ``packed_chain_noise``'s array when ``z0`` is None (inside the trace: free slicing)."""
    if z0 is not None:
        return tuple(z0), tuple(noise)
    n = noise.shape[1] // gen.d
    z0, stacks, off = [], [], 0
    for d in gen.latent_dims:
        block = noise[:, off:off + n * d]  # (K + 1, n·d_l)
        z0.append(block[0].reshape(n, d))
        stacks.append(block[1:].reshape(noise.shape[0] - 1, n, d))
        off += n * d
    return tuple(z0), tuple(stacks)


def _tuple(a):
    return tuple(a) if isinstance(a, (tuple, list)) else a


def stack_noise(xp, noise, latent_dims, n, *, dtype, device):
    """Validated ``[ξ_0, ..., ξ_{K−1}]`` (tuples) → one ``(K, n, d_l)`` array per group."""
    if not noise:
        return tuple(xp.zeros((0, n, d), dtype=dtype, device=device) for d in latent_dims)
    return tuple(xp.stack([xi[l] for xi in noise], axis=0) for l in range(len(latent_dims)))


def short_run(gen, params, x, z0, noise, step_size, sigma, *, return_path):
    """The compiled chain: ``(z_K, path or None, ok, inputs_finite)`` for stacked ``noise``;
    ``ok`` is a 0-d boolean array (data, parameters and explicit noise finite, z_K finite and
    bounded), read once by the caller, and ``inputs_finite`` tells which part failed."""
    dtype = x.dtype
    s = tuple(np.asarray(v, dtype=np.dtype(dtype)) for v in step_size)  # traced, not static
    return _compiled("short_run")(gen, params, x, _tuple(z0), _tuple(noise), s, sigma, bool(return_path),
                                  switches=_switches())
