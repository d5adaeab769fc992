"""Tests of the independent NumPy oracle ``srl.reference`` (docs/math.md §6).

Everything is float64.  The oracle is checked against
* torch.nn.functional (conv2d / conv_transpose2d forward only -- torch is used
  nowhere else, and never inside reference/),
* exact identities (adjointness of VJPs, Hessian symmetry, K = 0 objectives, M = 1),
* central finite differences along random directions (docs/math.md §6: rtol 1e-6),
* a hand-built linear-Gaussian model where log p(x) and E[J_jac] are known in closed form.
"""

import math

import numpy as np
import pytest

from srl import reference as ref
from srl.reference import chain as refchain
from srl.reference import network as refnet

SIGMA = 0.3

MLP = {"kind": "mlp", "latent_dims": [2, 3], "out_shape": [1, 8, 8], "hidden": 8}
CONV = {"kind": "conv", "latent_dims": [2, 3], "out_shape": [1, 8, 8], "channels": 4,
        "proj_channels": 4, "proj_kernel": 3, "res_kernels": [3, 3], "inj_kernel": 3}
# A second conv geometry: 3 output channels, 5x5 residual/projection kernels, 10x10 images.
CONV2 = {"kind": "conv", "latent_dims": [2, 1, 2], "out_shape": [3, 10, 10], "channels": 3,
         "proj_channels": 2, "proj_kernel": 5, "res_kernels": [5, 3], "inj_kernel": 3}
CONFIGS = {"mlp": MLP, "conv": CONV, "conv2": CONV2}
# Scale applied to the documented init: large enough that GELU/tanh are clearly nonlinear
# (Hessians far from the identity, |x_hat| up to ~0.9), small enough that tanh does not saturate.
SCALE = {"mlp": 1.0, "conv": 1.5, "conv2": 1.5}


def make_problem(name, n=3, seed=0):
    """Config, params, x, z for a small model.

    Parameters are the documented init scaled by SCALE[name]; the variance heads' last
    biases are pushed so that one coordinate of every injected group sits in the clamp's
    flat region (softplus > 10 -> v = 10) and one near its floor (softplus ~ 1e-13,
    v ~ 1e-8): both branches of the clamp are then on the tested path. The clamped
    coordinate is multiplied by exp(5) ~ 148, so its column of proj{i}.dense.weight is
    scaled by 0.01 to keep tanh out of saturation.
    """
    cfg = CONFIGS[name]
    params = {k: SCALE[name] * v for k, v in ref.init_params(cfg, seed=seed).items()}
    for key in params:
        if key.startswith("inj") and ".v." in key and key.endswith("dense2.bias" if name == "mlp" else "dense.bias"):
            params[key] = params[key].copy()
            params[key][0] = 30.0
            if params[key].shape[0] > 1:
                params[key][1] = -30.0
            proj = key.split(".")[0].replace("inj", "proj") + ".dense.weight"
            params[proj] = params[proj].copy()
            params[proj][:, 0] *= 0.01
    rng = np.random.default_rng(seed + 100)
    x = rng.uniform(-1.0, 1.0, size=(n,) + tuple(cfg["out_shape"]))
    z = tuple(rng.standard_normal((n, d)) for d in cfg["latent_dims"])
    return cfg, params, x, z


def rand_like_tuple(z, rng):
    return tuple(rng.standard_normal(zl.shape) for zl in z)


def tdot(a, b):
    """Inner product of two tuples of arrays."""
    return sum(float(np.sum(x * y)) for x, y in zip(a, b))


def tadd(a, b, c=1.0):
    return tuple(x + c * y for x, y in zip(a, b))


# --------------------------------------------------------------------------- #
# Convolutions vs torch.nn.functional
# --------------------------------------------------------------------------- #

# (cin, cout, H, W, k, stride, padding)
CONV_GEOMS = [
    (3, 4, 6, 6, 3, 1, 1),     # k3 pad 1 ("same")
    (2, 5, 9, 7, 5, 1, 0),     # k5 pad 0, non-square input
    (4, 3, 8, 8, 5, 1, 2),     # k5 pad 2 ("same")
    (2, 3, 9, 8, 3, 2, 1),     # stride 2
]
CONVT_GEOMS = [
    (4, 3, 4, 4, 4, 2, 1),     # k4 stride 2 pad 1 (the output layer: doubles the grid)
    (3, 5, 5, 6, 5, 1, 2),     # k5 stride 1 pad 2 ("same", projection layer)
    (2, 4, 4, 4, 3, 1, 1),     # k3 stride 1 pad 1
    (2, 2, 3, 5, 3, 2, 0),     # k3 stride 2 pad 0, non-square
]


@pytest.mark.parametrize("geom", CONV_GEOMS)
def test_conv2d_matches_torch(geom):
    torch = pytest.importorskip("torch")   # test-only: never used inside reference/
    cin, cout, H, W, k, s, p = geom
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, cin, H, W))
    w = rng.standard_normal((cout, cin, k, k))
    b = rng.standard_normal(cout)
    y = ref.conv2d(x, w, b, stride=s, padding=p)
    yt = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                    stride=s, padding=p).numpy()
    assert y.shape == yt.shape
    # Same sums of O(cin*k*k) float64 products in a different order: ~1e-15 relative.
    np.testing.assert_allclose(y, yt, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geom", CONVT_GEOMS)
def test_conv_transpose2d_matches_torch(geom):
    torch = pytest.importorskip("torch")   # test-only: never used inside reference/
    cin, cout, H, W, k, s, p = geom
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, cin, H, W))
    w = rng.standard_normal((cin, cout, k, k))
    b = rng.standard_normal(cout)
    y = ref.conv_transpose2d(x, w, b, stride=s, padding=p)
    yt = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w),
                                              torch.from_numpy(b), stride=s, padding=p).numpy()
    assert y.shape == yt.shape == (2, cout, (H - 1) * s - 2 * p + k, (W - 1) * s - 2 * p + k)
    # Same reasoning as for conv2d: only summation order differs.
    np.testing.assert_allclose(y, yt, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("geom_index", range(4))
def test_conv_vjp_is_adjoint(transposed, geom_index):
    """<y(x, w, b), gy> is linear in each of x, w, b separately, so the VJP must satisfy
    <y(x, w, 0), gy> = <x, gx> = <w, gw> and <b-part, gy> = <b, gb> exactly."""
    cin, cout, H, W, k, s, p = (CONVT_GEOMS if transposed else CONV_GEOMS)[geom_index]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, cin, H, W))
    if transposed:
        w = rng.standard_normal((cin, cout, k, k))
        fwd, vjp = ref.conv_transpose2d, ref.conv_transpose2d_vjp
    else:
        w = rng.standard_normal((cout, cin, k, k))
        fwd, vjp = ref.conv2d, ref.conv2d_vjp
    b = rng.standard_normal(cout)
    y = fwd(x, w, None, stride=s, padding=p)
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = vjp(x, w, gy, stride=s, padding=p)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    lhs = np.sum(y * gy)
    # Rounding only (sums of a few hundred O(1) products): 1e-12 relative.
    np.testing.assert_allclose(np.sum(x * gx), lhs, rtol=1e-12)
    np.testing.assert_allclose(np.sum(w * gw), lhs, rtol=1e-12)
    yb = fwd(x, w, b, stride=s, padding=p) - y
    np.testing.assert_allclose(np.sum(b * gb), np.sum(yb * gy), rtol=1e-12)


# --------------------------------------------------------------------------- #
# Elementwise derivatives
# --------------------------------------------------------------------------- #

def _elementwise_nodes():
    return [refnet.gelu_node(), refnet.tanh_node(), refnet.variance_node()]


@pytest.mark.parametrize("node", _elementwise_nodes(), ids=lambda n: n.label)
def test_elementwise_derivatives(node):
    # Points away from the clamp kinks (softplus(x)+1e-8 = 10 at x ~ 9.99995).
    x = np.concatenate([np.linspace(-6, 6, 61), [-30.0, 15.0, 25.0]])
    h = 1e-5
    d1_fd = (node.f(x + h) - node.f(x - h)) / (2 * h)
    d2_fd = (node.d1(x + h) - node.d1(x - h)) / (2 * h)
    # Central differences: truncation O(h^2 f''') ~ 1e-10, rounding O(eps |f| / h) ~ 1e-10
    # (|f| <= 30); 1e-8 absolute leaves margin while a wrong formula is off by O(0.1).
    np.testing.assert_allclose(node.d1(x), d1_fd, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(node.d2(x), d2_fd, rtol=1e-7, atol=1e-8)


def test_gelu_values():
    # GELU(x) = x Phi(x); Phi(1) = 0.841344746068542948... (tabulated), Phi(-2) = 0.0227501319481792...
    np.testing.assert_allclose(ref.gelu(np.array([1.0, -2.0, 0.0])),
                               [0.8413447460685429, -2 * 0.022750131948179207, 0.0], rtol=1e-14)


# --------------------------------------------------------------------------- #
# Architecture contract
# --------------------------------------------------------------------------- #

def test_param_shapes_order_and_paper_size():
    names = list(ref.param_shapes(CONV))
    # documented order: group 0: proj0, res0; group 1: inj1.mu, inj1.v, proj1, res1; then out
    assert names[:7] == ["proj0.dense.weight", "proj0.dense.bias", "proj0.convt.weight",
                         "res0.conv1.weight", "res0.conv1.bias", "res0.conv2.weight", "res0.conv2.bias"]
    assert names[7:15] == ["inj1.mu.conv.weight", "inj1.mu.conv.bias", "inj1.mu.dense.weight", "inj1.mu.dense.bias",
                           "inj1.v.conv.weight", "inj1.v.conv.bias", "inj1.v.dense.weight", "inj1.v.dense.bias"]
    assert names[-6:] == ["out.res.conv1.weight", "out.res.conv1.bias", "out.res.conv2.weight",
                          "out.res.conv2.bias", "out.convt.weight", "out.convt.bias"]
    paper = {"kind": "conv", "latent_dims": [64, 64, 64, 96, 128], "out_shape": [3, 32, 32],
             "channels": 64, "proj_channels": 4, "proj_kernel": 5, "res_kernels": [5, 3], "inj_kernel": 5}
    shapes = ref.param_shapes(paper)
    assert shapes["proj0.dense.weight"] == (4 * 16 * 16, 64)
    assert shapes["proj0.convt.weight"] == (4, 64, 5, 5)
    assert shapes["inj4.mu.dense.weight"] == (128, 128 * 12 * 12)
    assert shapes["out.convt.weight"] == (64, 3, 4, 4)
    mlp_names = list(ref.param_shapes(MLP))
    assert mlp_names[:6] == ["proj0.dense.weight", "proj0.dense.bias", "res0.dense1.weight",
                             "res0.dense1.bias", "res0.dense2.weight", "res0.dense2.bias"]
    assert mlp_names[6:16] == ["inj1.mu.dense1.weight", "inj1.mu.dense1.bias", "inj1.mu.dense2.weight",
                               "inj1.mu.dense2.bias", "inj1.v.dense1.weight", "inj1.v.dense1.bias",
                               "inj1.v.dense2.weight", "inj1.v.dense2.bias", "proj1.dense.weight",
                               "proj1.dense.bias"]
    assert mlp_names[-6:] == ["out.res.dense1.weight", "out.res.dense1.bias", "out.res.dense2.weight",
                              "out.res.dense2.bias", "out.dense.weight", "out.dense.bias"]
    assert ref.param_shapes(MLP)["out.dense.weight"] == (64, 8)


def test_init_follows_documented_rng_order():
    cfg = MLP
    p = ref.init_params(cfg, seed=5)
    rng = np.random.default_rng(5)
    for name, shape, fan_in in ref.param_specs(cfg):
        expect = rng.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), size=shape)
        np.testing.assert_array_equal(p[name], expect)


def naive_forward(cfg, p, z):
    """A second, straight-line transcription of docs/models.md "Generator" (no graph), built
    from the torch-checked conv primitives, to cross-check the wiring of the oracle's graph."""
    act = ref.gelu
    if cfg["kind"] == "mlp":
        def lin(name, x):
            return x @ p[name + ".weight"].T + p[name + ".bias"]

        def res(pre, x):
            return act(lin(pre + ".dense2", act(lin(pre + ".dense1", x)))) + x

        def head(pre, x):
            return lin(pre + ".dense2", act(lin(pre + ".dense1", x)))

        def proj(i, u):
            return act(lin(f"proj{i}.dense", u))

        def out(h):
            y = lin("out.dense", res("out.res", h))
            return np.tanh(y.reshape((len(y),) + tuple(cfg["out_shape"])))
    else:
        C, Hh, Ww = cfg["out_shape"]
        q, kp = cfg["proj_channels"], cfg["proj_kernel"]
        k1, k2 = cfg["res_kernels"]

        def conv(name, x, pad):
            return ref.conv2d(x, p[name + ".weight"], p[name + ".bias"], stride=1, padding=pad)

        def res(pre, x):
            y = act(conv(pre + ".conv1", x, (k1 - 1) // 2))
            return act(conv(pre + ".conv2", y, (k2 - 1) // 2)) + x

        def head(pre, x):
            y = act(conv(pre + ".conv", x, 0)).reshape(len(x), -1)
            return y @ p[pre + ".dense.weight"].T + p[pre + ".dense.bias"]

        def proj(i, u):
            y = act(u @ p[f"proj{i}.dense.weight"].T + p[f"proj{i}.dense.bias"])
            y = y.reshape(len(u), q, Hh // 2, Ww // 2)
            return act(ref.conv_transpose2d(y, p[f"proj{i}.convt.weight"], None, stride=1, padding=(kp - 1) // 2))

        def out(h):
            return np.tanh(ref.conv_transpose2d(res("out.res", h), p["out.convt.weight"],
                                                p["out.convt.bias"], stride=2, padding=1))
    h = res("res0", proj(0, z[0]))
    for i in range(1, len(z)):
        mu = head(f"inj{i}.mu", h)
        v = np.clip(np.logaddexp(0, head(f"inj{i}.v", h)) + 1e-8, 0, 10)
        u = mu + np.exp(v / 2) * z[i]
        h = res(f"res{i}", proj(i, u)) + h
    return out(h)


@pytest.mark.parametrize("name", ["mlp", "conv", "conv2"])
def test_forward_matches_straight_line_transcription(name):
    cfg, params, x, z = make_problem(name)
    # identical operations, possibly regrouped: rounding only
    np.testing.assert_allclose(ref.forward(cfg, params, z), naive_forward(cfg, params, z), rtol=1e-13, atol=1e-14)


def test_forward_paper_config_shape():
    paper = {"kind": "conv", "latent_dims": [64, 64, 64, 96, 128], "out_shape": [3, 32, 32],
             "channels": 64, "proj_channels": 4, "proj_kernel": 5, "res_kernels": [5, 3], "inj_kernel": 5}
    params = ref.init_params(paper, seed=0)
    z = ref.prior(paper, 1, seed=0)
    xh = ref.forward(paper, params, z)
    assert xh.shape == (1, 3, 32, 32)
    # loop-based vs vectorised convolutions of the paper model in float64: summation order only
    np.testing.assert_allclose(xh, naive_forward(paper, params, z), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["mlp", "conv", "conv2"])
def test_energy_is_negative_log_joint(name):
    """E = −log N(z; 0, I) − log N(x; g(z), σ² I), written here with explicit Gaussian log densities."""
    cfg, params, x, z = make_problem(name)
    xh = ref.forward(cfg, params, z)
    assert xh.shape == x.shape and np.all(np.abs(xh) < 1)
    zc = np.concatenate(z, axis=1)
    log_prior = np.sum(-0.5 * zc ** 2 - 0.5 * math.log(2 * math.pi), axis=1)
    r = (x - xh).reshape(len(x), -1)
    log_lik = np.sum(-0.5 * r ** 2 / SIGMA ** 2 - 0.5 * math.log(2 * math.pi * SIGMA ** 2), axis=1)
    # Same quantities summed in a different order: rounding only.
    np.testing.assert_allclose(ref.energy(cfg, params, x, z, SIGMA), -(log_prior + log_lik), rtol=1e-13)


# --------------------------------------------------------------------------- #
# First derivatives vs central finite differences (docs/math.md §6)
# --------------------------------------------------------------------------- #

FD_H = 1e-5
# Central differences with h = 1e-5: truncation ~ h^2 |E'''| / 6 ~ 1e-10 relative, rounding
# ~ eps |E| / h ~ 1e-9 relative (|E| ~ 1e2..1e3); docs/math.md §6's 1e-6 has ample margin, while any
# missing or wrong term changes the derivative at O(1e-2) or more.
FD_RTOL = 1e-6


@pytest.mark.parametrize("name", ["mlp", "conv", "conv2"])
def test_grad_z_vs_finite_differences(name):
    cfg, params, x, z = make_problem(name)
    rng = np.random.default_rng(7)
    g = ref.grad_z(cfg, params, x, z, SIGMA)
    assert [gl.shape for gl in g] == [zl.shape for zl in z]
    for _ in range(3):
        v = rand_like_tuple(z, rng)
        fd = (ref.energy(cfg, params, x, tadd(z, v, FD_H), SIGMA).sum()
              - ref.energy(cfg, params, x, tadd(z, v, -FD_H), SIGMA).sum()) / (2 * FD_H)
        np.testing.assert_allclose(tdot(g, v), fd, rtol=FD_RTOL)
    # per-group check as well: a direction confined to one group
    for l in range(len(z)):
        v = tuple(rng.standard_normal(zl.shape) if j == l else np.zeros_like(zl) for j, zl in enumerate(z))
        fd = (ref.energy(cfg, params, x, tadd(z, v, FD_H), SIGMA).sum()
              - ref.energy(cfg, params, x, tadd(z, v, -FD_H), SIGMA).sum()) / (2 * FD_H)
        np.testing.assert_allclose(tdot(g, v), fd, rtol=FD_RTOL)


@pytest.mark.parametrize("name", ["mlp", "conv", "conv2"])
def test_grad_params_vs_finite_differences(name):
    cfg, params, x, z = make_problem(name)
    rng = np.random.default_rng(8)
    g = ref.grad_params(cfg, params, x, z, SIGMA)
    assert list(g) == list(ref.param_shapes(cfg))
    assert all(g[k].shape == params[k].shape for k in params)

    def shifted(V, c):
        return {k: params[k] + c * V[k] for k in params}

    def rel_direction(p):
        # Elementwise relative perturbation: the fixture scales one column of each
        # proj{i}.dense.weight by 0.01 (it multiplies exp(10/2) z); an O(1) perturbation of
        # those entries makes E''' so large that the h^2 truncation error of central
        # differences reaches ~3e-5 (measured: it falls 100x per 10x smaller h).
        return rng.standard_normal(p.shape) * (np.abs(p) + 1e-3)

    for _ in range(2):
        V = {k: rel_direction(p) for k, p in params.items()}
        fd = (ref.energy(cfg, shifted(V, FD_H), x, z, SIGMA).sum()
              - ref.energy(cfg, shifted(V, -FD_H), x, z, SIGMA).sum()) / (2 * FD_H)
        np.testing.assert_allclose(sum(np.sum(g[k] * V[k]) for k in params), fd, rtol=FD_RTOL)
    # one block at a time, so that a wrong gradient of a small block cannot hide in the sum
    for prefix in ["proj0.", "inj1.mu.", "inj1.v.", "out."]:
        V = {k: (rel_direction(p) if k.startswith(prefix) else np.zeros_like(p))
             for k, p in params.items()}
        fd = (ref.energy(cfg, shifted(V, FD_H), x, z, SIGMA).sum()
              - ref.energy(cfg, shifted(V, -FD_H), x, z, SIGMA).sum()) / (2 * FD_H)
        np.testing.assert_allclose(sum(np.sum(g[k] * V[k]) for k in params), fd, rtol=FD_RTOL)


# --------------------------------------------------------------------------- #
# Second derivatives
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("name", ["mlp", "conv", "conv2"])
def test_hvp_vs_finite_differences_of_grad(name):
    cfg, params, x, z = make_problem(name)
    rng = np.random.default_rng(9)
    for _ in range(2):
        v = rand_like_tuple(z, rng)
        hv = ref.hvp_z(cfg, params, x, z, v, SIGMA)
        gp = ref.grad_z(cfg, params, x, tadd(z, v, FD_H), SIGMA)
        gm = ref.grad_z(cfg, params, x, tadd(z, v, -FD_H), SIGMA)
        fd = tuple((a - b) / (2 * FD_H) for a, b in zip(gp, gm))
        # per-example (each row of each group); same FD error budget as above, the scale of
        # H v entries being O(1..1e2) -- atol covers entries that happen to be near zero.
        for a, b in zip(hv, fd):
            np.testing.assert_allclose(a, b, rtol=FD_RTOL, atol=FD_RTOL * np.abs(np.concatenate(fd, 1)).max())


@pytest.mark.parametrize("name", ["mlp", "conv", "conv2"])
def test_hessian_symmetric_and_consistent_with_hvp(name):
    cfg, params, x, z = make_problem(name)
    H = ref.hessian_z(cfg, params, x, z, SIGMA)
    n, d = z[0].shape[0], sum(zl.shape[1] for zl in z)
    assert H.shape == (n, d, d)
    scale = np.abs(H).max()
    # Exact forward-over-reverse: symmetry holds up to rounding (~1e-15 relative).
    np.testing.assert_allclose(H, np.transpose(H, (0, 2, 1)), rtol=0, atol=1e-12 * scale)
    offsets = np.cumsum([0] + [zl.shape[1] for zl in z])

    def split(a):
        return tuple(a[:, offsets[l]:offsets[l + 1]] for l in range(len(z)))

    for j in range(d):
        e = np.zeros((n, d))
        e[:, j] = 1.0
        col = np.concatenate(ref.hvp_z(cfg, params, x, z, split(e), SIGMA), axis=1)
        # the batched Hessian's column j is the HVP with e_j: the same jet pass, round-off only
        np.testing.assert_allclose(H[:, :, j], col, rtol=1e-13, atol=1e-13 * scale)
    # linearity: a random direction, different per example
    v = np.random.default_rng(10).standard_normal((n, d))
    hv = np.concatenate(ref.hvp_z(cfg, params, x, z, split(v), SIGMA), axis=1)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", H, v), hv, rtol=1e-12, atol=1e-12 * scale)
    # the prior contributes I; the likelihood part J^T J / sigma^2 + ... is not PSD in general,
    # so only check that H is not trivially the identity
    assert np.abs(H - np.eye(d)).max() > 1e-3


@pytest.mark.parametrize("name", ["mlp", "conv", "conv2"])
def test_derivatives_exact_to_1e9_with_fourth_order_differences(name):
    """The oracle must be exact, not just right to 1e-6: with the 5-point stencil
    f'(0) ~ [8(f(h) − f(−h)) − (f(2h) − f(−2h))] / 12h the truncation error is O(h^4).
    At h = 3e-4 it is ~1e-13 relative and rounding is ~eps |E| / h ~ 2e-10 absolute on a
    directional derivative of size 1e2..1e3; measured agreement is 1e-12..5e-11, so rtol
    1e-9 keeps a 20x margin and would catch any approximation (e.g. tanh-GELU, an
    approximate erf, a dropped small term) down to that level."""
    cfg, params, x, z = make_problem(name)
    rng = np.random.default_rng(17)
    v = rand_like_tuple(z, rng)
    h = 3e-4

    def five_point(f):
        return (8 * (f(1) - f(-1)) - (f(2) - f(-2))) / (12 * h)

    g = ref.grad_z(cfg, params, x, z, SIGMA)
    fd = five_point(lambda c: ref.energy(cfg, params, x, tadd(z, v, c * h), SIGMA).sum())
    # five-point differences with h = 3e-4: truncation O(h⁴) ≈ 1e-14, round-off eps·|E|/h ≈ 1e-12·|E|
    np.testing.assert_allclose(tdot(g, v), fd, rtol=1e-9)
    hv = np.concatenate(ref.hvp_z(cfg, params, x, z, v, SIGMA), axis=1)
    fdh = five_point(lambda c: np.concatenate(ref.grad_z(cfg, params, x, tadd(z, v, c * h), SIGMA), axis=1))
    np.testing.assert_allclose(hv, fdh, rtol=0, atol=1e-9 * np.abs(hv).max())


def test_hvp_is_per_example():
    """Row i of hvp_z depends only on (x_i, z_i, v_i): compare a batch with single rows."""
    cfg, params, x, z = make_problem("conv", n=3)
    v = rand_like_tuple(z, np.random.default_rng(11))
    hv = ref.hvp_z(cfg, params, x, z, v, SIGMA)
    for i in range(3):
        hv_i = ref.hvp_z(cfg, params, x[i:i + 1], tuple(zl[i:i + 1] for zl in z),
                         tuple(vl[i:i + 1] for vl in v), SIGMA)
        for a, b in zip(hv, hv_i):
            # one example alone or in a batch of 3: BLAS may sum in another order, ulps
            np.testing.assert_allclose(a[i:i + 1], b, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- #
# Short run and objectives on the generator
# --------------------------------------------------------------------------- #

def test_short_run_descends_with_zero_noise():
    cfg, params, x, z = make_problem("conv")
    K = 5
    noise = [tuple(np.zeros_like(zl) for zl in z)] * K
    zK, path = ref.short_run(cfg, params, x, 0.05, z, noise, SIGMA)
    assert len(path) == K + 1
    for a, b in zip(path[0], z):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(path[-1], zK):
        np.testing.assert_array_equal(a, b)
    E = [ref.energy(cfg, params, x, zk, SIGMA) for zk in path]
    # gradient descent with a small step must lower every example's energy at every step
    for k in range(K):
        assert np.all(E[k + 1] < E[k])


def test_short_run_one_step_per_group_step_sizes():
    """docs/math.md eq. (2.1) with A = diag(s^2/2), s broadcast over each group's coordinates."""
    cfg, params, x, z = make_problem("mlp")
    rng = np.random.default_rng(12)
    xi = rand_like_tuple(z, rng)
    s = (0.07, 0.02)
    z1, _ = ref.short_run(cfg, params, x, s, z, [xi], SIGMA)
    g = ref.grad_z(cfg, params, x, z, SIGMA)
    for l in range(2):
        # eq. (2.1) written out: the same float64 operations, at most reassociated
        np.testing.assert_allclose(z1[l], z[l] - 0.5 * s[l] ** 2 * g[l] + s[l] * xi[l], rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError):
        ref.short_run(cfg, params, x, (0.1, 0.1, 0.1), z, [xi], SIGMA)


def _log_std_normal(z):
    zc = np.concatenate(z, axis=1)
    return -0.5 * np.sum(zc ** 2, axis=1) - 0.5 * zc.shape[1] * math.log(2 * math.pi)


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_objectives_with_no_steps(name):
    cfg, params, x, z = make_problem(name)
    E0 = ref.energy(cfg, params, x, z, SIGMA)
    lp = _log_std_normal(z)
    # K = 0: no log-det terms and no kernel terms; only rounding differences.
    np.testing.assert_allclose(ref.jacobian_objective(cfg, params, x, 0.1, z, [], SIGMA), lp + E0, rtol=1e-13)
    np.testing.assert_allclose(ref.reverse_objective(cfg, params, x, 0.1, z, [], SIGMA), lp + E0, rtol=1e-13)


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_objectives_finite_and_iw_m1(name):
    cfg, params, x, z = make_problem(name)
    n = x.shape[0]
    z0, noise = ref.chain_noise(cfg, n, 3, seed=13)
    s = (0.05, 0.03)
    jj = ref.jacobian_objective(cfg, params, x, s, z0, noise, SIGMA)
    rv = ref.reverse_objective(cfg, params, x, s, z0, noise, SIGMA)
    assert jj.shape == rv.shape == (n,)
    assert np.all(np.isfinite(jj)) and np.all(np.isfinite(rv))
    iw1 = ref.iw_reverse_objective(cfg, params, x, s, [z0], [noise], SIGMA)
    # log-sum-exp of one term minus log 1: exact up to one rounding
    np.testing.assert_allclose(iw1, rv, rtol=1e-14)
    # M = 2 with the same chain twice is again the same value
    iw2 = ref.iw_reverse_objective(cfg, params, x, s, [z0, z0], [noise, noise], SIGMA)
    np.testing.assert_allclose(iw2, rv, rtol=1e-14)
    # and with two different chains it lies between their two values (a log-mean-exp)
    z0b, noiseb = ref.chain_noise(cfg, n, 3, seed=14)
    rvb = ref.reverse_objective(cfg, params, x, s, z0b, noiseb, SIGMA)
    iw = ref.iw_reverse_objective(cfg, params, x, s, [z0, z0b], [noise, noiseb], SIGMA)
    assert np.all(iw <= np.maximum(rv, rvb) + 1e-12) and np.all(iw >= np.minimum(rv, rvb) - 1e-12)


def test_reverse_objective_matches_formula():
    """−log w of eq. (5.1) assembled by hand from short_run, grad_z and energy."""
    cfg, params, x, z = make_problem("conv")
    z0, noise = ref.chain_noise(cfg, x.shape[0], 2, seed=15)
    s = (0.06, 0.04)
    zK, path = ref.short_run(cfg, params, x, s, z0, noise, SIGMA)
    g = [np.concatenate(ref.grad_z(cfg, params, x, zk, SIGMA), axis=1) for zk in path]
    svec = np.concatenate([np.full(d, sl) for d, sl in zip(cfg["latent_dims"], s)])
    log_w = -ref.energy(cfg, params, x, zK, SIGMA) - _log_std_normal(z0)
    for k, xi in enumerate(noise):
        xic = np.concatenate(xi, axis=1)
        log_w += 0.5 * np.sum(xic ** 2, 1) - 0.5 * np.sum((xic - 0.5 * svec * (g[k] + g[k + 1])) ** 2, 1)
    # identical operations up to ordering: rounding only
    np.testing.assert_allclose(ref.reverse_objective(cfg, params, x, s, z0, noise, SIGMA), -log_w, rtol=1e-12)


def test_jacobian_logdet_matches_finite_difference_jacobian_of_chain():
    """docs/math.md §4: with the noise fixed, z_K = F(z_0) has Jacobian prod_k (I − A H_k). Its
    log|det| from central differences of short_run must equal the sum used in J_jac."""
    cfg, params, x, z = make_problem("mlp", n=2)
    n = x.shape[0]
    z0, noise = ref.chain_noise(cfg, n, 3, seed=16)
    s = (0.15, 0.1)
    dims = cfg["latent_dims"]
    d = sum(dims)
    offsets = np.cumsum([0] + list(dims))

    def split(a):
        return tuple(a[:, offsets[l]:offsets[l + 1]] for l in range(len(dims)))

    z0c = np.concatenate(z0, 1)
    Jfd = np.zeros((n, d, d))
    for j in range(d):
        e = np.zeros((n, d))
        e[:, j] = FD_H
        zp = np.concatenate(ref.short_run(cfg, params, x, s, split(z0c + e), noise, SIGMA)[0], 1)
        zm = np.concatenate(ref.short_run(cfg, params, x, s, split(z0c - e), noise, SIGMA)[0], 1)
        Jfd[:, :, j] = (zp - zm) / (2 * FD_H)
    # Product of the exact per-step Jacobians I − A H_k, latest step on the left.
    _, path = ref.short_run(cfg, params, x, s, z0, noise, SIGMA)
    a = np.concatenate([np.full(dl, 0.5 * sl ** 2) for dl, sl in zip(dims, s)])
    J = np.broadcast_to(np.eye(d), (n, d, d)).copy()
    logdet_sum = np.zeros(n)
    for k in range(len(noise)):
        M = np.eye(d) - a[:, None] * ref.hessian_z(cfg, params, x, path[k], SIGMA)
        J = M @ J
        logdet_sum += np.linalg.slogdet(M)[1]
    # FD error budget as for the gradients (entries O(1)).
    np.testing.assert_allclose(J, Jfd, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.slogdet(Jfd)[1], logdet_sum, rtol=1e-6, atol=1e-7)
    jj = ref.jacobian_objective(cfg, params, x, s, z0, noise, SIGMA)
    expect = _log_std_normal(z0) - logdet_sum + ref.energy(cfg, params, x, path[-1], SIGMA)
    # same quantities computed the same way: rounding only
    np.testing.assert_allclose(jj, expect, rtol=1e-12)


# --------------------------------------------------------------------------- #
# Linear-Gaussian sanity case (hand-built Target; log p(x) known exactly)
# --------------------------------------------------------------------------- #

def linear_gaussian(seed=0, dims=(1, 2), D=4, sigma=0.5, scale=0.6):
    """x = W z + σ ε, z ~ N(0, I): E(z) = ½ zᵀPz − bᵀz + c with P = I + WᵀW/σ², b = Wᵀx/σ²,
    c = ‖x‖²/(2σ²) + (d/2) log 2π + (D/2) log 2πσ² -- eq. (1.1) with g(z) = W z."""
    rng = np.random.default_rng(seed)
    d = sum(dims)
    W = scale * rng.standard_normal((D, d))
    x = rng.standard_normal(D)
    P = np.eye(d) + W.T @ W / sigma ** 2
    b = W.T @ x / sigma ** 2
    c = x @ x / (2 * sigma ** 2) + 0.5 * d * math.log(2 * math.pi) + 0.5 * D * math.log(2 * math.pi * sigma ** 2)
    target = ref.Target(
        dims,
        energy=lambda z: 0.5 * np.einsum("ni,ij,nj->n", z, P, z) - z @ b + c,
        grad=lambda z: z @ P - b,
        hessian=lambda z: np.broadcast_to(P, (z.shape[0], d, d)),
    )
    # −log p(x) = −log N(x; 0, WWᵀ + σ²I)
    S = W @ W.T + sigma ** 2 * np.eye(D)
    nlp = 0.5 * x @ np.linalg.solve(S, x) + 0.5 * np.linalg.slogdet(2 * math.pi * S)[1]
    return target, P, b, c, nlp


def test_linear_gaussian_log_evidence_identity():
    target, P, b, c, nlp = linear_gaussian()
    d = P.shape[0]
    # log p(x) = log ∫ exp(−E) dz for the quadratic energy; exact linear algebra: 1e-12.
    nlp_from_E = c - 0.5 * b @ np.linalg.solve(P, b) - 0.5 * d * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(P)[1]
    np.testing.assert_allclose(nlp_from_E, nlp, rtol=1e-12)


def _expected_jjac(P, b, c, s_vec, K):
    """E[J_jac] in closed form: the chain is linear, z_k ~ N(μ_k, C_k) with
    μ_{k+1} = T μ_k + A b, C_{k+1} = T C_k Tᵀ + diag(s²), T = I − A P."""
    d = P.shape[0]
    A = np.diag(0.5 * s_vec ** 2)
    T = np.eye(d) - A @ P
    mu, C = np.zeros(d), np.eye(d)
    for _ in range(K):
        mu, C = T @ mu + A @ b, T @ C @ T.T + np.diag(s_vec ** 2)
    e_log_q0 = -0.5 * d * math.log(2 * math.pi) - 0.5 * d
    e_energy = 0.5 * np.trace(P @ C) + 0.5 * mu @ P @ mu - b @ mu + c
    return e_log_q0 - K * np.linalg.slogdet(T)[1] + e_energy


def test_linear_gaussian_jacobian_objective_expectation_and_bound():
    target, P, b, c, nlp = linear_gaussian()
    d, K, n = P.shape[0], 4, 20000
    s = (0.3, 0.2)                              # per-group step sizes
    s_vec = ref.step_vector(target.dims, s)
    rng = np.random.default_rng(20)
    z0 = rng.standard_normal((n, d))
    noise = [rng.standard_normal((n, d)) for _ in range(K)]
    jj = refchain.jacobian_objective_target(target, s, z0, noise)
    expected = _expected_jjac(P, b, c, s_vec, K)
    se = jj.std() / math.sqrt(n)
    # Monte Carlo mean vs exact expectation: 4 standard errors (false-alarm rate ~6e-5;
    # a wrong log-det, constant or step convention shifts the mean by far more than 4 SE).
    assert abs(jj.mean() - expected) < 4 * se, (jj.mean(), expected, se)
    # docs/math.md §4: E[J_jac] >= −log p(x) for any s (exact arithmetic, checked on a grid of s)
    for s_try in [0.05, 0.2, (0.4, 0.1), 0.5]:
        assert _expected_jjac(P, b, c, ref.step_vector(target.dims, s_try), K) >= nlp
    assert expected - nlp < 5.0                # and the bound is not vacuous here


def test_linear_gaussian_reverse_weights_are_unbiased():
    """docs/math.md §5: E_q[w] = p(x) exactly for any s, so the mean of w over many chains must
    recover p(x); E[−log w] >= −log p(x); importance weighting tightens the bound."""
    target, P, b, c, nlp = linear_gaussian()
    d, K, n = P.shape[0], 6, 40000
    s = (0.3, 0.2)
    rng = np.random.default_rng(21)
    z0 = rng.standard_normal((n, d))
    noise = [rng.standard_normal((n, d)) for _ in range(K)]
    log_w = refchain.log_weight_target(target, s, z0, noise)
    w_rel = np.exp(log_w - log_w.max())
    est = -(log_w.max() + math.log(w_rel.mean()))          # −log of the sample mean of w
    rel_se = w_rel.std() / w_rel.mean() / math.sqrt(n)       # standard error of log(mean w)
    # 5 standard errors of the log-mean (plus a small delta-method bias allowance rel_se^2).
    assert abs(est - nlp) < 5 * rel_se + rel_se ** 2, (est, nlp, rel_se)
    assert rel_se < 0.02                                     # the check has power
    # Jensen: E[−log w] >= −log p(x), with a clear gap for these short chains
    assert -log_w.mean() > nlp
    # importance-weighted bound with M = 50 chains per row (800 rows): between the two
    M, rows = 50, n // 50
    z0s = [z0[m * rows:(m + 1) * rows] for m in range(M)]
    noises = [[xi[m * rows:(m + 1) * rows] for xi in noise] for m in range(M)]
    iw = refchain.iw_objective_target(target, s, z0s, noises)
    assert iw.shape == (rows,)
    assert nlp - 0.01 < iw.mean() < -log_w.mean()


def test_iw_objective_is_stable_for_large_energies():
    """log-sum-exp: adding 5000 to E shifts −log mean w by exactly 5000 (naive exp underflows)."""
    target, P, b, c, nlp = linear_gaussian()
    shifted = ref.Target(target.dims, lambda z: target.energy(z) + 5000.0, target.grad, target.hessian)
    rng = np.random.default_rng(22)
    z0s = [rng.standard_normal((5, 3)) for _ in range(4)]
    noises = [[rng.standard_normal((5, 3)) for _ in range(2)] for _ in range(4)]
    base = refchain.iw_objective_target(target, 0.2, z0s, noises)
    big = refchain.iw_objective_target(shifted, 0.2, z0s, noises)
    assert np.all(np.isfinite(big))
    # 5000 + O(10) in float64: absolute rounding ~1e-12
    np.testing.assert_allclose(big - base, 5000.0, rtol=0, atol=1e-9)
