"""Same code, same seed, same numbers on every backend (docs/math.md §6, §7).

Every §7 function runs on each usable backend in float32 and float64 and is compared with
NumPy float64. Native fast paths (torch convolutions and GELU, SciPy/torch ndtr) are
compared with the generic array-API code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import srl
import srl.backends
from srl import _backend as B

from .helpers import assert_array_kind, assert_tree_close, to_np

MLP = {"kind": "mlp", "latent_dims": [2, 3], "hidden": 6, "out_shape": [1, 4, 4]}
CONV = {"kind": "conv", "latent_dims": [2, 3], "out_shape": [2, 6, 6], "channels": 3, "proj_channels": 2,
        "proj_kernel": 3, "res_kernels": [3, 1], "inj_kernel": 2}

# float64 backends differ from NumPy only by summation order and libm: 1e-11 relative
# (docs/math.md §6: 1e-10 against the reference) with an absolute floor at 1e-11 of the scale.
RTOL64 = 1e-11
# float32 vs the float64 result: docs/math.md §6's 4·sqrt(eps32) ≈ 1.4e-3.
RTOL32 = 4 * math.sqrt(np.finfo(np.float32).eps)

SIGMA = 0.4


def _problem(config, backend, dtype, n=3):
    gen = srl.models.from_config(config)
    params = gen.init(seed=11, backend=backend, dtype=dtype)
    z = gen.prior(n, seed=12, backend=backend, dtype=dtype)
    xp, dev = B.namespace(backend)
    host = np.tanh(np.random.default_rng(13).standard_normal((n, *gen.out_shape)))
    x = B.from_numpy(xp, host, dtype=B.resolve_dtype(xp, dtype), device=dev)
    v = gen.prior(n, seed=14, backend=backend, dtype=dtype)
    return gen, params, x, z, v


def _all_outputs(config, backend, dtype):
    gen, p, x, z, v = _problem(config, backend, dtype)
    return {
        "forward": gen.forward(p, z),
        "energy": srl.energy(gen, p, x, z, sigma=SIGMA),
        "grad_z": srl.grad_z(gen, p, x, z, sigma=SIGMA),
        "grad_params": srl.grad_params(gen, p, x, z, sigma=SIGMA),
        "hvp_z": srl.hvp_z(gen, p, x, z, v, sigma=SIGMA),
        "short_run": srl.short_run(gen, p, x, step_size=(0.1, 0.2), n_steps=3, sigma=SIGMA, seed=5),
        "jacobian": srl.stepsize_objective(gen, p, x, step_size=(0.1, 0.2), n_steps=2, sigma=SIGMA, seed=5,
                                           kind="jacobian"),
        "reverse": srl.stepsize_objective(gen, p, x, step_size=(0.1, 0.2), n_steps=2, sigma=SIGMA, seed=5,
                                          kind="reverse"),
        "reverse, adjoint": srl.stepsize_objective(gen, p, x, step_size=(0.1, 0.2), n_steps=2, sigma=SIGMA,
                                                   seed=5, kind="reverse", gradient="adjoint"),
        "reverse, adjoint with the linearisation kept": srl.stepsize_objective(
            gen, p, x, step_size=(0.1, 0.2), n_steps=2, sigma=SIGMA, seed=5, kind="reverse", gradient="adjoint",
            keep_activations=True),
    }


def _leaves(tree):
    """The arrays of a dict, tuple or list of arrays, or ``[array]``."""
    if isinstance(tree, dict):
        return list(tree.values())
    return list(tree) if isinstance(tree, (tuple, list)) else [tree]


def _scale(tree):
    if isinstance(tree, dict):
        return max(_scale(v) for v in tree.values())
    if isinstance(tree, (tuple, list)):
        return max(_scale(v) for v in tree)
    return float(np.max(np.abs(to_np(tree))))


@pytest.fixture(scope="module")
def numpy_reference():
    return {name: _all_outputs(cfg, "numpy", "float64") for name, cfg in (("mlp", MLP), ("conv", CONV))}


@pytest.mark.parametrize("model", ["mlp", "conv"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_public_function_matches_numpy(backend, model, dtype, numpy_reference):
    cfg = MLP if model == "mlp" else CONV
    ref = numpy_reference[model]
    out = _all_outputs(cfg, backend.value, dtype)
    xp, dev = B.namespace(backend.value)
    want_dtype = B.resolve_dtype(xp, dtype)
    rtol = RTOL64 if dtype == "float64" else RTOL32
    for name, value in out.items():
        leaves, ref_leaves = _leaves(value), _leaves(ref[name])
        assert len(leaves) == len(ref_leaves), name
        for leaf, ref_leaf in zip(leaves, ref_leaves):  # namespace, dtype, shape and device of every array
            assert_array_kind(leaf, xp=xp, dtype=want_dtype, shape=ref_leaf.shape, device=dev, err=name)
        assert_tree_close(value, ref[name], rtol=rtol, atol=rtol * _scale(ref[name]), err=f"{backend.value} {name}")


def test_same_seed_same_values_everywhere(backend):
    gen = srl.models.from_config(CONV)
    for dtype, npdt in (("float64", np.float64), ("float32", np.float32)):
        p = gen.init(seed=3, backend=backend.value, dtype=dtype)
        p_ref = gen.init(seed=3, backend="numpy", dtype="float64")
        for k in p_ref:  # identical draws, then one rounding to the dtype
            np.testing.assert_array_equal(to_np(p[k]), p_ref[k].astype(npdt))
        z = gen.prior(4, seed=9, backend=backend.value, dtype=dtype)
        z_ref = gen.prior(4, seed=9, backend="numpy", dtype="float64")
        for a, b in zip(z, z_ref):
            np.testing.assert_array_equal(to_np(a), b.astype(npdt))


def test_explicit_noise_stacked_or_by_step_equals_the_seed(backend):
    """``z0=``/``noise=`` reproduce the seed's chain exactly, with the noise given as K
    z-like tuples or stacked (one ``(K, n, d_l)`` array per group, the layout of
    ``return_path``), for the chain and both objectives; a seed with stacked noise alone
    keeps the seed's z_0. Same values, same arithmetic: equal to the last bit."""
    gen, p, x, _, _ = _problem(MLP, backend.value, "float64")
    xp, dev = B.namespace(backend.value)
    K, n = 3, x.shape[0]
    z0, steps = srl.random.chain_noise(5, n, gen.latent_dims, K, xp=xp, dtype=x.dtype, device=dev)
    stacked = tuple(xp.stack([xi[l] for xi in steps], axis=0) for l in range(len(gen.latent_dims)))
    kw = dict(step_size=(0.1, 0.2), n_steps=K, sigma=SIGMA)
    want = srl.short_run(gen, p, x, seed=5, **kw)
    for given in (dict(z0=z0, noise=steps), dict(z0=z0, noise=stacked), dict(seed=5, noise=stacked),
                  dict(seed=5, noise=steps)):
        assert_tree_close(srl.short_run(gen, p, x, **given, **kw), want, rtol=0, err=f"chain {sorted(given)}")
    for kind in ("jacobian", "reverse"):
        want = srl.stepsize_objective(gen, p, x, seed=5, kind=kind, **kw)
        got = srl.stepsize_objective(gen, p, x, z0=z0, noise=stacked, kind=kind, **kw)
        assert_tree_close(got, want, rtol=0, err=f"{kind} with stacked noise")
    with pytest.raises(srl.ShapeError, match=r"noise\[1\] has shape \(1, 3, 3\), expected \(n_steps, n, d_l\) "
                                             r"= \(3, 3, 3\)"):
        srl.short_run(gen, p, x, noise=(stacked[0], stacked[1][:1, ...]), **kw)
    bad = (stacked[0], stacked[1] * float("nan"))
    with pytest.raises(srl.NonFiniteError, match="noise contains NaN or inf"):
        srl.short_run(gen, p, x, noise=bad, **kw)
    with pytest.raises(srl.NonFiniteError, match="noise contains NaN or inf"):
        srl.stepsize_objective(gen, p, x, noise=bad, kind="reverse", **kw)


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_native_fast_paths_equal_generic(backend, model):
    """With native kernels disabled the generic array-API code gives the same numbers."""
    if backend.module == "jax":
        pytest.skip("JAX compiles every function: its native ops are compared with the generic code op by "
                    "op (test_native_convolutions_equal_generic, test_jax_native_elementwise_ops_equal_generic) "
                    "and the generic code runs compiled in tests/test_jax.py::test_native_switch_retraces")
    cfg = MLP if model == "mlp" else CONV
    fast = _all_outputs(cfg, backend.value, "float64")
    with srl.backends.use_native(False):
        slow = _all_outputs(cfg, backend.value, "float64")
    for name in fast:
        assert_tree_close(fast[name], slow[name], rtol=RTOL64, atol=RTOL64 * _scale(slow[name]), err=name)


def test_native_ops_are_really_used_for_torch():
    """The torch backend registers native conv and GELU (so the comparison above is not vacuous)."""
    pytest.importorskip("torch")
    import array_api_compat.torch as xp

    ops = srl.backends.native(xp)
    assert ops is not None and ops.conv2d is not None and ops.gelu_vjp is not None
    with srl.backends.use_native(False):
        assert srl.backends.native(xp) is None


def test_native_ops_are_really_used_for_numpy():
    """NumPy registers native convolutions (so the model-level comparison above covers them)."""
    import array_api_compat.numpy as xp

    ops = srl.backends.native(xp)
    assert ops is not None and ops.conv2d is not None and ops.conv_transpose2d_vjp is not None


@pytest.mark.parametrize("n, dims, K", [(3, (2, 3), 4), (64, (4, 8), 25), (1, (5,), 0)])
def test_chain_noise_is_drawn_in_the_documented_order(n, dims, K):
    """One host draw split per group equals the documented draw order (z_0 group by group,
    then each ξ_k group by group, every draw ``rng.standard_normal((n, d_l))``), bit for bit."""
    from srl.random import host_chain_noise

    rng = np.random.default_rng(42)
    want = [tuple(rng.standard_normal((n, d)) for d in dims) for _ in range(K + 1)]
    z0, noise = host_chain_noise(42, n, dims, K)
    for l in range(len(dims)):
        np.testing.assert_array_equal(z0[l], want[0][l])
        assert noise[l].shape == (K, n, dims[l])
        for k in range(K):
            np.testing.assert_array_equal(noise[l][k], want[k + 1][l])


def test_jax_native_elementwise_ops_equal_generic():
    """JAX's Φ, GELU and GELU VJP against the generic array-API code (fdlibm erfc, x Φ(x),
    g ⊙ (Φ + x φ)) over the range where they differ most (tails and the erf branch points).
    JAX computes Φ by erf: absolute accuracy, which is all GELU needs (backends/jax.py)."""
    jax = pytest.importorskip("jax")
    from srl import elementwise, special

    with jax.enable_x64(True):
        xp = jax.numpy
        ops = srl.backends.native(xp)
        assert ops.ndtr is not None and ops.gelu is not None and ops.gelu_vjp is not None
        x = xp.asarray(np.concatenate([np.linspace(-30.0, 30.0, 2001), [-0.84375, 0.84375, -1.25, 1.25]]))
        g = xp.asarray(np.random.default_rng(0).standard_normal(x.shape))
        Phi = special.ndtr_generic(xp, x)
        # both are erf/erfc implementations accurate to a few ulp of Φ (absolute: Φ ≤ 1), and
        # GELU's x Φ(x) scales that by |x| ≤ 30
        np.testing.assert_allclose(ops.ndtr(x), Phi, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(ops.gelu(x), x * Phi, rtol=1e-14, atol=30 * 1e-15)
        want = elementwise._generic_gelu_vjp(xp, x, g, Phi)
        np.testing.assert_allclose(ops.gelu_vjp(x, g), want, rtol=1e-14, atol=30 * 1e-15 * float(xp.max(xp.abs(g))))


# Geometries (cin, cout, H, W, k, stride, pad): the paper model's (k5 p2, k3 p1, k5 p0 on a
# 16×16 grid; transposed k5 s1 p2 and k4 s2 p1), strides 2 and 3 with the rows a strided
# forward never reads, kernel 1, padding beyond k − 1, and non-square grids.
CONV_GEOMETRIES = [
    (3, 4, 16, 16, 5, 1, 2), (4, 3, 16, 16, 3, 1, 1), (3, 5, 16, 16, 5, 1, 0), (2, 3, 7, 9, 4, 2, 1),
    (2, 3, 8, 8, 4, 2, 1), (3, 2, 7, 6, 3, 3, 0), (2, 2, 5, 6, 1, 1, 0), (2, 3, 5, 7, 2, 2, 3),
    (1, 2, 6, 5, 3, 1, 4), (3, 2, 9, 9, 5, 2, 2),
]


# JAX (eager here: one XLA compilation per op and shape) on a subset: stride 1 with padding,
# strides 2 and 3, padding beyond k − 1.
JAX_CONV_GEOMETRIES = [CONV_GEOMETRIES[i] for i in (0, 4, 5, 7)]


@pytest.mark.parametrize("lib, geometry", [("numpy", g) for g in CONV_GEOMETRIES]
                         + [("jax", g) for g in JAX_CONV_GEOMETRIES],
                         ids=lambda v: v if isinstance(v, str) else "c{}-{}_{}x{}_k{}s{}p{}".format(*v))
def test_native_convolutions_equal_generic(lib, geometry):
    """Every native convolution kernel of NumPy and JAX (forward, input-VJP, weight and bias
    VJPs, both layer kinds) against the generic gather-matmul code, float64."""
    if lib == "jax":  # the XLA convolutions, used where JAX's default backend is not the CPU
        jax = pytest.importorskip("jax")
        from srl.backends.jax import lax_convolutions

        with jax.enable_x64(True):
            ops = srl.backends.NativeOps(name="jax", **lax_convolutions())
            _native_convolutions_equal_generic(jax.numpy, geometry, ops, put=jax.numpy.asarray)
        return
    import array_api_compat.numpy as xp

    _native_convolutions_equal_generic(xp, geometry, srl.backends.native(xp), put=lambda a: a)


def test_jax_convolutions_follow_the_default_backend():
    """XLA's convolutions serve JAX only off the CPU; on the CPU the generic gather-matmul
    is faster (docs/BENCHMARKS.md) and the conv fields are left empty."""
    jax = pytest.importorskip("jax")
    ops = srl.backends.native(jax.numpy)
    on_cpu = jax.default_backend() == "cpu"
    assert ops.ndtr is not None and ops.gelu is not None
    for field in ("conv2d", "conv2d_vjp", "conv_transpose2d", "conv_transpose2d_vjp", "conv2d_input_vjp",
                  "conv_transpose2d_input_vjp"):
        assert (getattr(ops, field) is None) == on_cpu, field


def _native_convolutions_equal_generic(xp, geometry, ops, *, put):
    from srl import conv

    cin, cout, H, W, k, s, p = geometry
    assert ops is not None and ops.conv2d is not None
    rng = np.random.default_rng(sum(geometry))

    def draw(shape):  # host draws, moved to the namespace
        return put(rng.standard_normal(shape))

    x = draw((2, cin, H, W))
    w, b = draw((cout, cin, k, k)), draw((cout,))
    # the same summands in another order: round-off only, relative to the result's scale
    tol = dict(rtol=1e-12, atol=1e-12 * k * k * max(cin, cout))
    y = conv.generic_conv2d(xp, x, w, b, stride=s, pad=p)[0]
    np.testing.assert_allclose(ops.conv2d(x, w, b, s, p), y, **tol)
    gy = draw(y.shape)
    gx = conv.generic_conv2d_vjp_input(xp, gy, w, (H, W), stride=s, pad=p)
    gw, gb = conv.generic_conv2d_vjp_params(xp, gy, x, None, w.shape, stride=s, pad=p, bias=True)
    got = ops.conv2d_vjp(gy, x, w, s, p, True)
    for a, want in zip(got, (gx, gw, gb)):
        np.testing.assert_allclose(a, want, **tol)
    np.testing.assert_allclose(ops.conv2d_input_vjp(gy, w, (H, W), s, p), gx, **tol)
    assert ops.conv2d_vjp(gy, x, w, s, p, False)[1:] == (None, None)

    wt = draw((cin, cout, k, k))
    if (H + 2 * p - k) % s == 0 and (W + 2 * p - k) % s == 0:  # x is then some transposed conv's output size
        xs = draw((2, cin, (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1))
        y = conv.generic_conv_transpose2d(xp, xs, wt, b, stride=s, pad=p)
        np.testing.assert_allclose(ops.conv_transpose2d(xs, wt, b, s, p), y, **tol)
        gy = draw(y.shape)
        want = conv.generic_conv_transpose2d_vjp(xp, gy, xs, wt, stride=s, pad=p, want_params=True, bias=True)
        for a, w_ in zip(ops.conv_transpose2d_vjp(gy, xs, wt, s, p, True), want):
            np.testing.assert_allclose(a, w_, **tol)
        np.testing.assert_allclose(ops.conv_transpose2d_input_vjp(gy, wt, s, p), want[0], **tol)


def test_ndtr_generic_matches_math_erfc():
    import array_api_compat.numpy as xp

    from srl import special

    x = np.concatenate([np.linspace(-37, 9, 20001), [0.0, -0.0, 0.84375, 1.25, 1 / 0.35, 28.0]])
    want = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])  # Φ ≥ 1e-300: no denormals
    got = special.ndtr_generic(xp, x)
    # fdlibm's erfc is accurate to ~1 ulp, but rounding x/√2 perturbs Φ by its condition
    # number |xφ(x)/Φ(x)| ≈ 1 + x² ulps in the lower tail: allow 4 eps (2 + x²) per point.
    rel = np.abs(got - want) / want
    assert np.all(rel <= 4 * np.finfo(float).eps * (2 + x**2)), rel.max()
    # and it keeps working in float32 (relative 1e-5 where Φ > 1e-30)
    got32 = special.ndtr_generic(xp, x.astype(np.float32))
    keep = want > 1e-30
    np.testing.assert_allclose(got32[keep], want[keep], rtol=2e-5)


@pytest.mark.parametrize("shape,k,pad", [((2, 3, 5, 4), 3, 1), ((1, 2, 4, 6), 5, 2), ((3, 1, 3, 3), 2, 0),
                                         ((2, 2, 4, 1), 3, 2), ((1, 2, 3, 4), 2, 3)])
def test_numpy_band_is_its_definition(shape, k, pad):
    """``B[c, b, r, n, j] = xpad[n, c, r, j + b]`` (backends/numpy.py), built entry by entry."""
    from backends.numpy import _band

    x = np.random.default_rng(0).standard_normal(shape)
    N, C, H, W = shape
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Wo = W + 2 * pad - k + 1
    want = np.empty((C, k, H + 2 * pad, N, Wo))
    for c, b, r, n, j in np.ndindex(*want.shape):
        want[c, b, r, n, j] = xpad[n, c, r, j + b]
    np.testing.assert_array_equal(_band(x, k, pad), want)  # copies only: exact
