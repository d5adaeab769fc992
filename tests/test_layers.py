"""Every layer's hand-written derivatives against finite differences (docs/math.md §6).

For each layer f with cotangent u and directions v, t (float64, NumPy):

* VJP (input and parameters):  ⟨fᵀu, v⟩  vs  central differences of ⟨f(x), u⟩ along v
* JVP (first-order jet):       J v       vs  central differences of f along v
* inner-product identity:      ⟨J v, u⟩ = ⟨v, Jᵀ u⟩ (exact up to round-off)
* tangent of the VJP (HVP):    d/dε Jᵀ(x + εv) u  vs  central differences of the VJP
* second-order jet:            D²f[v, t] and the second tangent of the VJP  vs
                               central differences of the first-order jet along t
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import array_api_compat.numpy as xp
from srl import layers as Ly
from srl.jet import Jet

from .helpers import assert_directional, central_difference

# float64 round-off in a handful of sums of O(1) terms: 1e-12 relative is ~10⁴ ulps.
IDENTITY_RTOL = 1e-12


def _params(rng, layer):
    return {s.name: rng.standard_normal(s.shape) * 0.7 for s in layer.param_specs()}


def _input(rng, layer_case, n):
    return rng.standard_normal((n, *layer_case["in_shape"])) * layer_case.get("scale", 1.0)


LAYER_KINDS = ["dense", "conv", "convt", "gelu", "softplus", "tanh", "clamp", "exp", "shift", "reshape",
               "residual", "seq"]


@st.composite
def layer_cases(draw, kind):
    if kind == "dense":
        a, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        return {"layer": Ly.Dense("l", a, b, bias=draw(st.booleans())), "in_shape": (a,)}
    if kind in ("conv", "convt"):
        k = draw(st.integers(1, 5))
        stride = draw(st.sampled_from([1, 2]))
        pad = draw(st.integers(0, k - 1))
        cin, cout = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        H, W = draw(st.integers(k, 7)), draw(st.integers(k, 7))
        bias = draw(st.booleans())
        if kind == "conv":
            layer = Ly.Conv2d("l", cin, cout, k, stride=stride, pad=pad, bias=bias)
        else:
            layer = Ly.ConvTranspose2d("l", cin, cout, k, stride=stride, pad=pad, bias=bias)
            H, W = draw(st.integers(1, 5)), draw(st.integers(1, 5))
            if (H - 1) * stride - 2 * pad + k < 1 or (W - 1) * stride - 2 * pad + k < 1:
                pad = 0
                layer = Ly.ConvTranspose2d("l", cin, cout, k, stride=stride, pad=0, bias=bias)
        return {"layer": layer, "in_shape": (cin, H, W)}
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    if kind == "gelu":
        return {"layer": Ly.GELU(), "in_shape": shape, "scale": 2.0}
    if kind == "softplus":
        return {"layer": Ly.Softplus(), "in_shape": shape, "scale": 3.0}
    if kind == "tanh":
        return {"layer": Ly.Tanh(), "in_shape": shape}
    if kind == "clamp":
        # kinks at ±0.5; random inputs avoid them with probability 1 (measure zero)
        return {"layer": Ly.Clamp(-0.5, 0.5), "in_shape": shape}
    if kind == "exp":
        from srl import elementwise as ew

        return {"layer": Ly.Activation(ew.EXP), "in_shape": shape}
    if kind == "shift":
        return {"layer": Ly.Shift(1e-8), "in_shape": shape}
    if kind == "reshape":
        return {"layer": Ly.Reshape(shape, (shape[0] * shape[1],)), "in_shape": shape}
    if kind == "residual":
        d = draw(st.integers(1, 4))
        body = Ly.Sequential(Ly.Dense("r1", d, d), Ly.GELU(), Ly.Dense("r2", d, d), Ly.GELU())
        return {"layer": Ly.Residual(body, name="r"), "in_shape": (d,)}
    d = draw(st.integers(1, 4))
    seq = Ly.Sequential(Ly.Dense("s1", d, 6), Ly.Softplus(), Ly.Reshape((6,), (1, 2, 3)),
                        Ly.Conv2d("s2", 1, 2, 1), Ly.Tanh())
    return {"layer": seq, "in_shape": (d,)}


def _fwd(layer, p, x):
    return layer.forward(xp, p, x)[0]


def _vjp(layer, p, x, u, grads=None):
    y, cache = layer.forward(xp, p, x)
    return layer.backward(xp, p, u, cache, grads)


def _zero_jet(u, like):
    if like.order == 1:
        return Jet(u, np.zeros((like.b.shape[0], *u.shape)))
    return Jet(u, np.zeros((like.b.shape[0], *u.shape)), np.zeros((like.c.shape[0], *u.shape)),
               np.zeros((like.b.shape[0], like.c.shape[0], *u.shape)))


@pytest.mark.parametrize("kind", LAYER_KINDS)
@given(data=st.data(), n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_layer_vjp_jvp_and_second_order(kind, data, n, seed):
    case = data.draw(layer_cases(kind))
    rng = np.random.default_rng(seed)
    layer = case["layer"]
    p = _params(rng, layer)
    x = _input(rng, case, n)
    y = _fwd(layer, p, x)
    u = rng.standard_normal(y.shape)
    v = rng.standard_normal(x.shape)
    t = rng.standard_normal(x.shape)
    scale = float(np.abs(y).max() * np.abs(u).max() * x.size + 1.0)

    # VJP w.r.t. the input
    grads = {}
    gx = _vjp(layer, p, x, u, grads)
    fd = central_difference(lambda xx: np.sum(_fwd(layer, p, xx[0]) * u), (x,), (v,))
    assert_directional(fd, np.sum(gx * v), scale=scale, err=f"{layer.name} input VJP")

    # VJP w.r.t. every parameter
    for name in p:
        dp = rng.standard_normal(p[name].shape)

        def f_p(q, name=name):
            pp = dict(p)
            pp[name] = q[0]
            return np.sum(_fwd(layer, pp, x) * u)

        fd = central_difference(f_p, (p[name],), (dp,))
        assert_directional(fd, np.sum(grads[name] * dp), scale=scale, err=f"{layer.name} VJP {name}")

    # JVP by a first-order jet, and the inner-product identity ⟨Jv, u⟩ = ⟨v, Jᵀu⟩
    yj = _fwd(layer, p, Jet(x, v[None, ...]))
    fd = central_difference(lambda xx: _fwd(layer, p, xx[0]), (x,), (v,))
    assert_directional(fd, yj.b[0], scale=float(np.abs(yj.b).max() + 1), err=f"{layer.name} JVP")
    np.testing.assert_allclose(np.sum(yj.b[0] * u), np.sum(v * gx), rtol=IDENTITY_RTOL,
                               atol=IDENTITY_RTOL * scale, err_msg=f"{layer.name} inner-product identity")
    # the jet's primal part runs the forward operations (at most one reassociation: ≤ 1 ulp)
    np.testing.assert_allclose(yj.a, y, rtol=1e-15, atol=0, err_msg="jet primal must equal forward")

    # tangent of the VJP along v (a layer's "HVP" contribution) vs differences of the VJP
    xj = Jet(x, v[None, ...])
    gj = _vjp(layer, p, xj, _zero_jet(u, xj))
    fd = central_difference(lambda xx: _vjp(layer, p, xx[0], u), (x,), (v,))
    assert_directional(fd, gj.b[0], scale=float(np.abs(gx).max() + 1), err=f"{layer.name} VJP tangent")

    # second order: D²f[v, t] and the second tangent of the VJP, both from one hyper-dual
    x2 = Jet(x, v[None, ...], t[None, ...], np.zeros((1, 1, *x.shape)))
    y2 = _fwd(layer, p, x2)
    g2 = _vjp(layer, p, x2, _zero_jet(u, x2))
    fd_y = central_difference(lambda xx: _fwd(layer, p, Jet(xx[0], v[None, ...])).b, (x,), (t,))
    fd_g = central_difference(lambda xx: _vjp(layer, p, Jet(xx[0], v[None, ...]),
                                              _zero_jet(u, Jet(xx[0], v[None, ...]))).b, (x,), (t,))
    assert_directional(fd_y, y2.d[:, 0], scale=float(np.abs(y2.b).max() + 1), err=f"{layer.name} D²f")
    assert_directional(fd_g, g2.d[:, 0], scale=float(np.abs(g2.b).max() + 1), err=f"{layer.name} D²(VJP)")
    # the δ-part of a second-order jet is the first-order JVP along t: the same products
    # in another association order (float64 round-off)
    np.testing.assert_allclose(y2.c, _fwd(layer, p, Jet(x, t[None, ...])).b, rtol=1e-13, atol=1e-13)


@given(n=st.integers(1, 3), d=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_injection_derivatives(n, d, seed):
    """u = μ + exp(v/2) ⊙ z: VJPs in μ, v, z and the jet tangents against differences."""
    rng = np.random.default_rng(seed)
    inj = Ly.Injection()
    mu, v, z = (rng.standard_normal((n, d)) for _ in range(3))
    gu = rng.standard_normal((n, d))
    gmu, gv, gz = inj.backward(xp, gu, inj.forward(xp, mu, v, z)[1])
    dirs = [rng.standard_normal((n, d)) for _ in range(3)]

    def f(args):
        return np.sum(inj.forward(xp, *args)[0] * gu)

    fd = central_difference(f, (mu, v, z), tuple(dirs))
    analytic = np.sum(gmu * dirs[0]) + np.sum(gv * dirs[1]) + np.sum(gz * dirs[2])
    assert_directional(fd, analytic, scale=float(np.abs(gu).sum() * 10), err="injection VJP")
    # tangent of the VJP when μ, v, z move along the directions together
    jets = [Jet(a, b[None, ...]) for a, b in zip((mu, v, z), dirs)]
    out = inj.backward(xp, Jet(gu, np.zeros((1, n, d))), inj.forward(xp, *jets)[1])

    def vjp(args):
        return inj.backward(xp, gu, inj.forward(xp, *args)[1])

    fd = central_difference(vjp, (mu, v, z), tuple(dirs))
    for name, a, b in zip(("mu", "v", "z"), fd, out):
        assert_directional(a, b.b[0], scale=float(np.abs(b.a).max() + 1), err=f"injection VJP tangent {name}")


def test_fd_helper_can_fail():
    """The finite-difference assertion rejects a derivative that is off by 1% and accepts the exact one."""
    x = np.array([0.3, -1.2])
    analytic = np.cos(x) * 1.01
    fd = central_difference(lambda a: np.sin(a[0]), (x,), (np.ones(2),))
    with pytest.raises(AssertionError):
        assert_directional(fd, analytic, scale=1.0)
    assert_directional(fd, np.cos(x), scale=1.0)  # and accepts the right one
