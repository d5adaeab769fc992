"""Input checks for the public functions: errors that name the problem.

The hot loops call the private functions directly; these checks run once per public call.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend, compiled
from .errors import DTypeError, NonFiniteError, ShapeError


def _shape(a):
    return tuple(int(s) for s in a.shape)


def check_params(gen, params) -> None:
    if not isinstance(params, dict):
        raise TypeError(f"params must be the dict returned by gen.init(), got {type(params).__name__}")
    expected = gen.param_shapes()
    if len(params) != len(expected) or not all(k in params for k in expected):
        missing = sorted(set(expected) - set(params))
        extra = sorted(set(params) - set(expected))
        raise ShapeError(
            f"params do not match {gen!r}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}"
        )
    first = next(iter(params.values()))
    kind, dtype = type(first), first.dtype
    check_float_dtype("parameters", first)
    for name, shape in expected.items():
        a = params[name]
        if tuple(a.shape) != shape:
            raise ShapeError(f"parameter {name!r} has shape {_shape(a)}, expected {shape}")
        if a.dtype != dtype:
            raise DTypeError(f"parameters mix dtypes ({first.dtype} and {a.dtype} for {name!r}); "
                             "use one of float32/float64")
        if type(a) is not kind:
            raise TypeError(f"parameters mix array libraries ({kind.__module__} and {type(a).__module__} "
                            f"for {name!r})")


def check_float_dtype(what, a) -> str:
    """``"float32"`` or ``"float64"`` for the dtype of array ``a``; DTypeError for any other
    (float16 and bfloat16 lack the range and precision the chains and their derivatives need)."""
    try:
        return _backend.dtype_name(_backend.array_namespace(a), a.dtype)
    except DTypeError:
        raise DTypeError(f"{what} have dtype {a.dtype}; srl computes in float32 or float64: convert the arrays "
                         "(e.g. .astype('float32'))") from None


def _dtype_check(what, a, dtype):
    if dtype is not None and a.dtype != dtype:
        raise DTypeError(f"{what} has dtype {a.dtype} but the parameters have dtype {dtype}")


def check_x(gen, x, *, dtype=None, finite: bool = True) -> int:
    """Check data ``x (n, *out_shape)``; returns n."""
    shape = _shape(x)
    if len(shape) != 1 + len(gen.out_shape) or shape[1:] != gen.out_shape:
        raise ShapeError(f"x has shape {shape}, expected (n, {', '.join(map(str, gen.out_shape))})")
    if shape[0] < 1:
        raise ShapeError("x is empty (n = 0)")
    _dtype_check("x", x, dtype)
    if finite:
        xp = _backend.array_namespace(x)
        if not bool(xp.all(xp.isfinite(x))):
            raise NonFiniteError("x contains NaN or inf values; clean the data before inference")
    return shape[0]


def check_z(gen, z, *, dtype=None, n=None, what="z") -> int:
    """Check a latent tuple like ``gen.prior(n)``; returns n."""
    if not isinstance(z, (tuple, list)):
        raise TypeError(f"{what} must be a tuple with one (n, d_l) array per latent group, got {type(z).__name__}")
    if len(z) != len(gen.latent_dims):
        raise ShapeError(f"{what} has {len(z)} groups, the generator has {len(gen.latent_dims)} {gen.latent_dims}")
    for l, (a, d) in enumerate(zip(z, gen.latent_dims)):
        shape = _shape(a)
        if len(shape) != 2 or shape[1] != d or (n is not None and shape[0] != n):
            want = f"({n if n is not None else 'n'}, {d})"
            raise ShapeError(f"{what}[{l}] has shape {shape}, expected {want}")
        if n is None:
            n = shape[0]
        _dtype_check(f"{what}[{l}]", a, dtype)
    return n


def is_noise_stack(gen, noise) -> bool:
    """Whether explicit chain noise is *stacked*: one ``(K, n, d_l)`` array per latent group
    (the layout of ``lax.scan`` and of ``short_run(..., return_path=True)``), rather than a
    sequence of K z-like tuples."""
    return (isinstance(noise, (tuple, list)) and len(noise) == len(gen.latent_dims)
            and all(hasattr(a, "shape") and len(a.shape) == 3 for a in noise))


def check_noise_stack(gen, noise, *, dtype, n, n_steps) -> None:
    """Check stacked chain noise: group l is a ``(K, n, d_l)`` array of ``dtype``."""
    for l, (a, d) in enumerate(zip(noise, gen.latent_dims)):
        shape = _shape(a)
        if shape != (n_steps, n, d):
            raise ShapeError(f"noise[{l}] has shape {shape}, expected (n_steps, n, d_l) = ({n_steps}, {n}, {d})")
        _dtype_check(f"noise[{l}]", a, dtype)


def all_finite(xp, arrays) -> bool:
    """Whether every array is free of NaN/inf, with one host synchronisation for all of them."""
    arrays = list(arrays)
    if not arrays:
        return True
    if compiled.active(xp):  # JAX: one compiled reduction, not one dispatch per array
        return bool(compiled.all_finite(tuple(arrays)))
    return bool(xp.all(xp.stack([xp.all(xp.isfinite(a)) for a in arrays])))


def check_finite_params(xp, params) -> None:
    """NonFiniteError naming the first parameter that holds NaN/inf (e.g. after a θ update
    with too large a learning rate), so that it is not mistaken for a chain divergence."""
    if all_finite(xp, params.values()):
        return
    name = next(k for k, a in params.items() if not bool(xp.all(xp.isfinite(a))))
    raise NonFiniteError(f"parameter {name!r} contains NaN or inf; the model itself is broken (e.g. θ was "
                         "trained with too large a learning rate): restore finite parameters")


def check_sigma(sigma, dtype: str = "float64") -> float:
    """σ as a float: positive, finite, and large enough that 1/σ² (eq. 1.1) is finite in ``dtype``."""
    if isinstance(sigma, (str, bytes)):
        raise TypeError(f"sigma must be a positive number, got the string {sigma!r}")
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"sigma must be a positive number, got {sigma!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be a positive finite number (observation noise std), got {sigma!r}")
    # 1/σ² must leave 1/eps of headroom below the largest float, so that sums of squared
    # residuals over the pixels times 1/σ² (eq. 1.1) stay finite
    info = np.finfo(dtype)
    smallest = 1.0 / math.sqrt(float(info.max) * float(info.eps))
    if s < smallest:
        raise ValueError(f"sigma={s:g} is too small for {dtype}: 1/σ² in the energy (eq. 1.1) would overflow; "
                         f"use sigma >= {smallest:.2g}")
    return s


def check_step_size(step_size, n_groups: int) -> tuple:
    """A float (or 0-d array) or one value per group → a tuple of ``n_groups`` positive floats."""
    if isinstance(step_size, (str, bytes)):
        raise TypeError(f"step_size must be a float or one float per group, got the string {step_size!r}")
    if hasattr(step_size, "shape"):  # an array of any library: a 0-d one is a float
        step_size = _backend.to_numpy(step_size)
        step_size = step_size.reshape(-1).tolist() if step_size.ndim else step_size.item()
    try:
        if hasattr(step_size, "__len__"):
            values = [float(v) for v in step_size]
            if len(values) != n_groups:
                raise ShapeError(f"step_size has {len(values)} values but the generator has {n_groups} latent groups")
        else:
            values = [float(step_size)] * n_groups
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ShapeError):
            raise
        raise TypeError(f"step_size must be a float or one float per group, got {step_size!r}") from None
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"step_size must be positive and finite, got {step_size!r}")
    return tuple(values)


def check_n_steps(n_steps) -> int:
    if int(n_steps) != n_steps or int(n_steps) < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    return int(n_steps)


def check_finite_noise(xp, z0, noise) -> None:
    """NonFiniteError for chain noise holding NaN/inf: ``z0`` (a z-like tuple) and ``noise``
    (stacked, a sequence of z-like tuples, or one packed array), each tested only if given."""
    for what, value in (("z0", z0), ("noise", noise)):
        if value is None:
            continue
        if hasattr(value, "shape"):  # the compiled calls' packed seeded noise
            value = (value,)
        arrays = [a for item in value for a in (item if isinstance(item, (tuple, list)) else (item,))]
        if not all_finite(xp, arrays):
            raise NonFiniteError(f"{what} contains NaN or inf; pass finite values (or a seed instead)")


def raise_non_finite(gen, xp, params, x, *, z0=None, noise=None) -> None:
    """The NonFiniteError for data, parameters or explicit chain noise holding NaN/inf (the
    first culprit in that order); returns quietly when all are finite."""
    check_x(gen, x, finite=True)
    check_finite_params(xp, params)
    check_finite_noise(xp, z0, noise)


def prepare(gen, params, x, *, sigma, compiled_finite_test: bool = False):
    """Validate params, data and σ once per public call: ``(xp, dtype, n, sigma)``.

    ``compiled_finite_test``: on JAX the caller's compiled function tests the data and
    parameters for NaN/inf itself (``srl.compiled``) and calls ``raise_non_finite`` when
    that test fails, so no separate test runs here.
    """
    check_params(gen, params)  # one library, one dtype, the right names and shapes
    first = next(iter(params.values()))
    xp = _backend.array_namespace(x, first)
    if compiled.active(xp):  # JAX: data and parameters in one compiled finiteness test
        n = check_x(gen, x, dtype=first.dtype, finite=False)
        if not compiled_finite_test and not all_finite(xp, (x, *params.values())):
            raise_non_finite(gen, xp, params, x)
    else:
        n = check_x(gen, x, dtype=first.dtype)
        check_finite_params(xp, params)
    return xp, first.dtype, n, check_sigma(sigma, _backend.dtype_name(xp, first.dtype))


def prepare_chain(gen, params, x, *, sigma, n_steps, step_size, compiled_finite_test: bool = False):
    """``prepare`` plus the chain settings: ``(xp, dtype, n, sigma, K, step sizes)``."""
    xp, dtype, n, sigma = prepare(gen, params, x, sigma=sigma, compiled_finite_test=compiled_finite_test)
    return xp, dtype, n, sigma, check_n_steps(n_steps), check_step_size(step_size, len(gen.latent_dims))
