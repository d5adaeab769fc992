"""Test helpers: array assertions, finite differences, random models.

``assert_close`` checks namespace, dtype, shape and device *before* values, in the style
of array-api-extra's test helpers. Finite differences follow jax's ``check_grads``:
central differences along random directions, compared with the analytic directional
derivative.
"""

from __future__ import annotations


import numpy as np
from hypothesis import strategies as st

import srl
from srl import _backend as B

# Central differences in float64: truncation O(h²·f''') ≈ 1e-10·scale and round-off
# O(eps·|f|/h) ≈ 1e-11·|f| for h = 1e-5, so 1e-6 relative (docs/math.md §6) leaves >100× margin
# while any wrong factor or missing term gives O(1) errors.
FD_STEP = 1e-5
FD_RTOL = 1e-6


def to_np(a):
    return B.to_numpy(a)


def assert_array_kind(actual, *, xp=None, dtype=None, shape=None, device=None, err=""):
    """Namespace, dtype, shape and device of ``actual`` (each checked when given)."""
    if xp is not None:
        got_ns = B.array_namespace(actual)
        assert got_ns.__name__ == xp.__name__, f"{err}: namespace {got_ns.__name__} != {xp.__name__}"
    if dtype is not None:
        assert actual.dtype == dtype, f"{err}: dtype {actual.dtype} != {dtype}"
    if shape is not None:
        assert tuple(actual.shape) == tuple(shape), f"{err}: shape {tuple(actual.shape)} != {tuple(shape)}"
    if device is not None:
        assert str(B.device(actual)) == str(device), f"{err}: device {B.device(actual)} != {device}"


def assert_close(actual, desired, *, rtol, atol=0.0, xp=None, dtype=None, shape=None, device=None, err=""):
    """Namespace, dtype, shape and device first, then values (desired: NumPy)."""
    assert_array_kind(actual, xp=xp, dtype=dtype, shape=shape, device=device, err=err)
    np.testing.assert_allclose(to_np(actual), np.asarray(desired), rtol=rtol, atol=atol, err_msg=err)


def assert_tree_close(actual, desired, *, rtol, atol=0.0, err=""):
    """Tuples/lists/dicts of arrays, compared leaf by leaf (desired converted too)."""
    if isinstance(actual, dict):
        assert set(actual) == set(desired), f"{err}: keys differ"
        for k in actual:
            assert_tree_close(actual[k], desired[k], rtol=rtol, atol=atol, err=f"{err}[{k}]")
        return
    if isinstance(actual, (tuple, list)):
        assert len(actual) == len(desired), f"{err}: lengths differ"
        for i, (a, d) in enumerate(zip(actual, desired)):
            assert_tree_close(a, d, rtol=rtol, atol=atol, err=f"{err}[{i}]")
        return
    np.testing.assert_allclose(to_np(actual), to_np(desired), rtol=rtol, atol=atol, err_msg=err)


def tree_axpy(a, x, y):
    """``y + a·x`` for tuples/dicts of arrays."""
    if isinstance(x, dict):
        return {k: y[k] + a * x[k] for k in x}
    return tuple(yi + a * xi for xi, yi in zip(x, y))


def like(rng, tree):
    """Standard normal arrays shaped like a tuple/dict of NumPy arrays."""
    if isinstance(tree, dict):
        return {k: rng.standard_normal(np.shape(v)) for k, v in tree.items()}
    return tuple(rng.standard_normal(np.shape(v)) for v in tree)


def central_difference(f, x, v, h=FD_STEP):
    """``(f(x + h v) − f(x − h v)) / 2h`` for scalar- or array-valued f and tree x."""
    fp, fm = f(tree_axpy(h, v, x)), f(tree_axpy(-h, v, x))
    if isinstance(fp, (tuple, list)):
        return tuple((to_np(a) - to_np(b)) / (2 * h) for a, b in zip(fp, fm))
    return (to_np(fp) - to_np(fm)) / (2 * h)


def assert_directional(fd, analytic, *, scale, rtol=FD_RTOL, err=""):
    """|fd − analytic| ≤ rtol·(|analytic| + scale), scale = typical size of the terms."""
    fd, analytic = np.asarray(fd, dtype=float), np.asarray(analytic, dtype=float)
    bound = rtol * (np.abs(analytic) + scale)
    bad = np.abs(fd - analytic) > bound
    assert not np.any(bad), (
        f"{err}: finite differences disagree: fd={fd[bad][:4]} analytic={analytic[bad][:4]} "
        f"(rtol {rtol}, scale {scale:.3g})"
    )


# ------------------------------------------------------------------ random models
@st.composite
def mlp_configs(draw):
    L = draw(st.integers(1, 3))
    return {
        "kind": "mlp",
        "latent_dims": [draw(st.integers(1, 4)) for _ in range(L)],
        "hidden": draw(st.integers(2, 9)),
        "out_shape": [draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.integers(2, 4))],
    }


@st.composite
def conv_configs(draw):
    L = draw(st.integers(1, 3))
    H = draw(st.sampled_from([4, 6, 8]))
    W = draw(st.sampled_from([4, 6, 8]))
    grid = min(H, W) // 2
    return {
        "kind": "conv",
        "latent_dims": [draw(st.integers(1, 3)) for _ in range(L)],
        "out_shape": [draw(st.integers(1, 2)), H, W],
        "channels": draw(st.integers(1, 3)),
        "proj_channels": draw(st.integers(1, 3)),
        "proj_kernel": draw(st.sampled_from([1, 3])),
        "res_kernels": [draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 3]))],
        "inj_kernel": draw(st.integers(1, grid)),
    }


configs = st.one_of(mlp_configs(), conv_configs())


def make_problem(config, *, n, seed, backend="numpy", dtype="float64", sigma=0.3):
    """Generator, params, data x in (−1, 1), latents z — all seeded."""
    gen = srl.models.from_config(config)
    params = gen.init(seed=seed, backend=backend, dtype=dtype)
    z = gen.prior(n, seed=seed + 1, backend=backend, dtype=dtype)
    xp, dev = B.namespace(backend)
    host = np.tanh(np.random.default_rng(seed + 2).standard_normal((n, *gen.out_shape)))
    x = B.from_numpy(xp, host, dtype=B.resolve_dtype(xp, dtype), device=dev)
    return gen, params, x, z


def energy_scale(E) -> float:
    return float(np.max(np.abs(to_np(E)))) + 1.0
