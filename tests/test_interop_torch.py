"""Tests of srl.interop.torch: the plain-PyTorch export and the torch.autograd oracle.

Everything where derivatives are compared runs in float64.  The module under test must
stand alone (torch + numpy), so these tests import nothing else from srl.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from srl.interop.torch import (  # noqa: E402
    TorchGenerator,
    energy,
    grad_params,
    grad_z,
    hessian_z,
    hvp_z,
    iw_reverse_objective,
    short_run,
    state_dict_to_numpy,
    stepsize_objective,
    to_torch,
)

MLP = {"kind": "mlp", "latent_dims": [4, 8], "out_shape": [1, 8, 8], "hidden": 32}
SMALL_MLP = {"kind": "mlp", "latent_dims": [2, 3], "out_shape": [1, 4, 4], "hidden": 8}
CONV = {
    "kind": "conv", "latent_dims": [8, 16], "out_shape": [1, 8, 8], "channels": 16,
    "proj_channels": 4, "proj_kernel": 3, "res_kernels": [3, 3], "inj_kernel": 3,
}
SMALL_CONV = {
    "kind": "conv", "latent_dims": [2, 3], "out_shape": [1, 8, 8], "channels": 3,
    "proj_channels": 2, "proj_kernel": 3, "res_kernels": [3, 3], "inj_kernel": 3,
}
PAPER = {
    "kind": "conv", "latent_dims": [64, 64, 64, 96, 128], "out_shape": [3, 32, 32], "channels": 64,
    "proj_channels": 4, "proj_kernel": 5, "res_kernels": [5, 3], "inj_kernel": 5,
}


# ---- expected names/shapes, transcribed independently from the tables of docs/models.md ----

def _dense(prefix, fin, fout):
    return [(f"{prefix}.weight", (fout, fin)), (f"{prefix}.bias", (fout,))]


def _conv(prefix, cin, cout, k):
    return [(f"{prefix}.weight", (cout, cin, k, k)), (f"{prefix}.bias", (cout,))]


def expected_params(cfg):
    """(name, shape) in the documented evaluation order (inj{i}.mu, inj{i}.v, proj{i},
    res{i} for each group; then out; weight before bias)."""
    dims, out_shape = cfg["latent_dims"], cfg["out_shape"]
    D = math.prod(out_shape)
    out = []
    if cfg["kind"] == "mlp":
        H = cfg["hidden"]
        for i, d in enumerate(dims):
            if i >= 1:
                for head in ("mu", "v"):
                    out += _dense(f"inj{i}.{head}.dense1", H, H) + _dense(f"inj{i}.{head}.dense2", H, d)
            out += _dense(f"proj{i}.dense", d, H)
            out += _dense(f"res{i}.dense1", H, H) + _dense(f"res{i}.dense2", H, H)
        out += _dense("out.res.dense1", H, H) + _dense("out.res.dense2", H, H) + _dense("out.dense", H, D)
    else:
        C, Hh, Ww = out_shape
        c, q, kp, (k1, k2), ki = (cfg["channels"], cfg["proj_channels"], cfg["proj_kernel"],
                                  cfg["res_kernels"], cfg["inj_kernel"])
        gh, gw = Hh // 2, Ww // 2
        gph, gpw = gh - ki + 1, gw - ki + 1
        for i, d in enumerate(dims):
            if i >= 1:
                for head in ("mu", "v"):
                    out += _conv(f"inj{i}.{head}.conv", c, d, ki) + _dense(f"inj{i}.{head}.dense", d * gph * gpw, d)
            out += _dense(f"proj{i}.dense", d, q * gh * gw)
            out += [(f"proj{i}.convt.weight", (q, c, kp, kp))]  # ConvTranspose2d: (cin, cout, k, k), no bias
            out += _conv(f"res{i}.conv1", c, c, k1) + _conv(f"res{i}.conv2", c, c, k2)
        out += _conv("out.res.conv1", c, c, k1) + _conv("out.res.conv2", c, c, k2)
        out += [("out.convt.weight", (c, C, 4, 4)), ("out.convt.bias", (C,))]
    return out


@pytest.mark.parametrize("cfg", [MLP, CONV, PAPER], ids=["mlp", "conv", "paper"])
def test_state_dict_names_and_shapes(cfg):
    sd = TorchGenerator(cfg).state_dict()
    got = [(k, tuple(v.shape)) for k, v in sd.items()]
    # Exact list equality: names, shapes AND the documented order.
    assert got == expected_params(cfg)


def _numpy_params(cfg, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-0.5, 0.5, size=s) for k, s in expected_params(cfg)}


@pytest.mark.parametrize("cfg", [MLP, CONV], ids=["mlp", "conv"])
def test_to_torch_round_trip_exact(cfg):
    p = _numpy_params(cfg, 1)
    m = to_torch(cfg, p)
    assert next(m.parameters()).dtype == torch.float64  # dtype defaults to the params'
    back = state_dict_to_numpy(m)
    assert list(back) == list(p)
    for k in p:
        assert back[k].dtype == np.float64
        np.testing.assert_array_equal(back[k], p[k])  # float64 -> float64: bit-exact
    # an object with a .config attribute works too, and torch tensors as params
    class G:
        config = cfg
    m2 = to_torch(G(), {k: torch.as_tensor(v) for k, v in p.items()})
    for k, v in state_dict_to_numpy(m2).items():
        np.testing.assert_array_equal(v, p[k])
    # names are checked
    bad = dict(p)
    bad.pop("out.res.dense1.weight" if cfg["kind"] == "mlp" else "out.convt.bias")
    with pytest.raises(KeyError):
        to_torch(cfg, bad)


def test_seed_init_follows_documented_recipe():
    m = TorchGenerator(SMALL_MLP, seed=3, dtype=torch.float64)
    rng = np.random.default_rng(3)
    # first parameter in evaluation order is proj0.dense.weight, fan_in = d_0 = 2
    first = rng.uniform(-1 / math.sqrt(2), 1 / math.sqrt(2), size=(8, 2))
    np.testing.assert_array_equal(m.proj0.dense.weight.detach().numpy(), first)
    # float32 module: the same float64 draws, rounded once
    m32 = TorchGenerator(SMALL_MLP, seed=3)
    assert m32.proj0.dense.weight.dtype == torch.float32
    np.testing.assert_array_equal(m32.proj0.dense.weight.detach().numpy(), first.astype(np.float32))
    # every parameter lies within its documented bound b = 1/sqrt(fan_in)
    fan = {"proj0.dense": 2, "proj1.dense": 3, "out.dense": 8}
    for k, v in m.state_dict().items():
        b = 1 / math.sqrt(fan.get(k.rsplit(".", 1)[0], 8))
        assert v.abs().max() <= b


def _setup(cfg, n=2, seed=0, x_scale=0.5):
    torch.manual_seed(seed)
    m = TorchGenerator(cfg, seed=seed, dtype="float64")
    g = torch.Generator().manual_seed(seed + 100)
    x = x_scale * torch.randn(n, *cfg["out_shape"], dtype=torch.float64, generator=g)
    z = tuple(torch.randn(n, d, dtype=torch.float64, generator=g) for d in cfg["latent_dims"])
    return m, x, z


def test_energy_constants_and_forward_manual():
    """Eq. (1.1) value against a hand evaluation of the documented mlp forward pass."""
    m, x, z = _setup(SMALL_MLP)
    sigma = 0.3
    P = {k: v for k, v in m.state_dict().items()}
    gelu = lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))
    lin = lambda t, name: t @ P[name + ".weight"].T + P[name + ".bias"]
    res = lambda t, name: gelu(lin(gelu(lin(t, name + ".dense1")), name + ".dense2")) + t
    h = res(gelu(lin(z[0], "proj0.dense")), "res0")
    mu = lin(gelu(lin(h, "inj1.mu.dense1")), "inj1.mu.dense2")
    v = lin(gelu(lin(h, "inj1.v.dense1")), "inj1.v.dense2")
    v = torch.clamp(torch.log1p(torch.exp(v)) + 1e-8, 0, 10)
    u = mu + torch.exp(v / 2) * z[1]
    h = res(gelu(lin(u, "proj1.dense")), "res1") + h
    xhat = torch.tanh(lin(res(h, "out.res"), "out.dense")).reshape(2, 1, 4, 4)
    d, D = 5, 16
    e_manual = (0.5 * sum((zl**2).sum(1) for zl in z) + ((x - xhat) ** 2).sum((1, 2, 3)) / (2 * sigma**2)
                + d / 2 * math.log(2 * math.pi) + D / 2 * math.log(2 * math.pi * sigma**2))
    # Same float64 operations in a different order: agreement to ~1e-14 relative.
    torch.testing.assert_close(energy(m, x, z, sigma=sigma), e_manual, rtol=1e-12, atol=0)
    torch.testing.assert_close(m(*z), xhat, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(m(list(z)), xhat, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cfg", [SMALL_MLP, SMALL_CONV], ids=["mlp", "conv"])
def test_energy_gradcheck_gradgradcheck(cfg):
    m, x, z = _setup(cfg)
    zs = tuple(t.clone().requires_grad_(True) for t in z)
    f = lambda *zz: energy(m, x, zz, sigma=0.5)
    # gradcheck defaults for float64 (eps 1e-6, atol 1e-5, rtol 1e-3) compare central
    # differences with autograd; they are torch's calibrated float64 settings.
    assert torch.autograd.gradcheck(f, zs)
    assert torch.autograd.gradgradcheck(f, zs)


def test_grad_hvp_hessian_consistent():
    m, x, z = _setup(SMALL_MLP, n=3)
    sigma = 0.4
    g = grad_z(m, x, z, sigma=sigma)
    zc = tuple(t.clone().requires_grad_(True) for t in z)
    ref = torch.autograd.grad(energy(m, x, zc, sigma=sigma).sum(), zc)
    for a, b in zip(g, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # identical computation
    H = hessian_z(m, x, z, sigma=sigma)
    assert H.shape == (3, 5, 5)
    # Symmetry of an exact autograd Hessian: float64 rounding only.
    torch.testing.assert_close(H, H.transpose(1, 2), rtol=1e-12, atol=1e-12)
    # Per-example: example 1 alone gives the same Hessian (examples are independent).
    H1 = torch.autograd.functional.hessian(
        lambda zf: energy(m, x[1:2], torch.split(zf[None], [2, 3], dim=1), sigma=sigma).sum(),
        torch.cat([t[1] for t in z]))
    # float64 autograd Hessians of a 5-d problem with and without the batch: round-off only
    torch.testing.assert_close(H[1], H1, rtol=1e-12, atol=1e-12)
    v = tuple(torch.randn_like(t) for t in z)
    hv = torch.cat(hvp_z(m, x, z, v, sigma=sigma), dim=1)
    # HVP by forward-over-reverse vs the full Hessian times v (float64, d = 5): round-off only
    torch.testing.assert_close(hv, torch.einsum("nij,nj->ni", H, torch.cat(v, 1)), rtol=1e-12, atol=1e-12)
    gp = grad_params(m, x, z, sigma=sigma)
    assert list(gp) == list(m.state_dict())


def _noise(cfg, n, K, seed):
    g = torch.Generator().manual_seed(seed)
    mk = lambda: tuple(torch.randn(n, d, dtype=torch.float64, generator=g) for d in cfg["latent_dims"])
    return mk(), [mk() for _ in range(K)]


def test_short_run_matches_manual_update():
    m, x, _ = _setup(SMALL_MLP)
    z0, noise = _noise(SMALL_MLP, 2, 3, 7)
    s = [0.3, 0.2]
    zK, path = short_run(m, x, step_size=s, z0=z0, noise=noise, sigma=0.5)
    assert len(path) == 4
    z = z0
    for k in range(3):
        g = grad_z(m, x, z, sigma=0.5)
        z = tuple(zl - sl**2 / 2 * gl + sl * xl for zl, gl, sl, xl in zip(z, g, s, noise[k]))
        for a, b in zip(path[k + 1], z):
            # the chain's update written out in float64: the same operations, |z| ≲ 3, a few ulps
            torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
    # with the graph kept, values are the same
    zK2, _ = short_run(m, x, step_size=torch.tensor(s, dtype=torch.float64, requires_grad=True),
                       z0=z0, noise=noise, sigma=0.5, create_graph=True)
    for a, b in zip(zK, zK2):
        # keeping the graph must not change the float64 values (a few ulps at most)
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("kind", ["jacobian", "reverse"])
def test_stepsize_grad_vs_common_random_numbers(kind):
    m, x, _ = _setup(SMALL_MLP, n=3)
    z0, noise = _noise(SMALL_MLP, 3, 3, 11)
    sigma, s = 0.5, np.array([0.3, 0.2])
    vals, grad = stepsize_objective(m, x, step_size=s, z0=z0, noise=noise, sigma=sigma, kind=kind)
    assert vals.shape == (3,) and grad.shape == (2,)
    assert torch.isfinite(vals).all()
    h = 1e-5
    fd = []
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        fp = stepsize_objective(m, x, step_size=s + e, z0=z0, noise=noise, sigma=sigma, kind=kind)[0].sum()
        fm = stepsize_objective(m, x, step_size=s - e, z0=z0, noise=noise, sigma=sigma, kind=kind)[0].sum()
        fd.append(((fp - fm) / (2 * h)).item())
    fd = torch.tensor(fd, dtype=torch.float64)
    # Common random numbers make f(s) smooth, so the central difference has truncation
    # error O(h²·f''') ≈ 1e-10 and rounding error ≈ eps·|f|/h ≈ 1e-16·1e2/1e-5 = 1e-9;
    # docs/math.md §6's default float64 tolerance vs finite differences, rtol 1e-6, sits well
    # above both and far below any missing term (e.g. dropping the third-order term).
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)
    # a float step size: L equal values, gradient still one entry per group
    v1, g1 = stepsize_objective(m, x, step_size=0.25, z0=z0, noise=noise, sigma=sigma, kind=kind)
    v2, g2 = stepsize_objective(m, x, step_size=[0.25, 0.25], z0=z0, noise=noise, sigma=sigma, kind=kind)
    assert g1.shape == (2,)
    # exact: a float step size means L equal values, the same computation
    torch.testing.assert_close(v1, v2, rtol=0, atol=0)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)


def test_jacobian_value_manual():
    """J_jac (4.1) value against an assembly from the separately tested pieces."""
    m, x, _ = _setup(SMALL_MLP, n=2)
    z0, noise = _noise(SMALL_MLP, 2, 2, 5)
    s, sigma = [0.3, 0.2], 0.5
    vals, _ = stepsize_objective(m, x, step_size=s, z0=z0, noise=noise, sigma=sigma, kind="jacobian")
    zK, path = short_run(m, x, step_size=s, z0=z0, noise=noise, sigma=sigma)
    a = torch.tensor([s[0] ** 2 / 2] * 2 + [s[1] ** 2 / 2] * 3, dtype=torch.float64)
    z0f = torch.cat(z0, 1)
    ref = -0.5 * (z0f**2).sum(1) - 2.5 * math.log(2 * math.pi) + energy(m, x, zK, sigma=sigma)
    for k in range(2):
        H = hessian_z(m, x, path[k], sigma=sigma)
        ref = ref - torch.log(torch.abs(torch.det(torch.eye(5, dtype=torch.float64) - a[:, None] * H)))
    # Same quantities, det vs slogdet: float64 rounding only.
    torch.testing.assert_close(vals, ref, rtol=1e-12, atol=1e-12)


def test_iw_reverse_m1_equals_reverse():
    m, x, _ = _setup(SMALL_MLP, n=3)
    z0, noise = _noise(SMALL_MLP, 3, 3, 13)
    kw = dict(step_size=[0.3, 0.2], sigma=0.5)
    v, g = stepsize_objective(m, x, z0=z0, noise=noise, kind="reverse", **kw)
    vi, gi = iw_reverse_objective(m, x, z0s=[z0], noises=[noise], **kw)
    # logsumexp over one term minus log 1 is the identity up to one rounding.
    torch.testing.assert_close(vi, v, rtol=1e-14, atol=1e-12)
    torch.testing.assert_close(gi, g, rtol=1e-12, atol=1e-12)
    # M = 2: -log mean(w) <= mean(-log w) (Jensen), per example
    z0b, noiseb = _noise(SMALL_MLP, 3, 3, 14)
    vb, _ = stepsize_objective(m, x, z0=z0b, noise=noiseb, kind="reverse", **kw)
    v2, _ = iw_reverse_objective(m, x, z0s=[z0, z0b], noises=[noise, noiseb], **kw)
    assert (v2 <= 0.5 * (v + vb) + 1e-12).all()
    ref = -(torch.logaddexp(-v, -vb) - math.log(2))
    # log-mean-exp of two values, computed by two float64 formulas: ulps
    torch.testing.assert_close(v2, ref, rtol=1e-14, atol=1e-12)


def test_paper_output_shape():
    m = TorchGenerator(PAPER)
    z = tuple(torch.randn(2, d) for d in PAPER["latent_dims"])
    with torch.no_grad():
        x = m(*z)
    assert x.shape == (2, 3, 32, 32)
    assert (x.abs() <= 1).all()
