"""Bad input raises an error that names the problem and the fix (docs/math.md §7)."""

from __future__ import annotations

import numpy as np
import pytest

import srl
from srl import _backend as B

from .helpers import make_problem

CFG = {"kind": "mlp", "latent_dims": [2, 3], "hidden": 4, "out_shape": [1, 3, 3]}


@pytest.fixture
def problem():
    return make_problem(CFG, n=2, seed=0)


def test_wrong_x_shape(problem):
    gen, p, x, z = problem
    with pytest.raises(srl.ShapeError, match=r"x has shape \(2, 9\), expected \(n, 1, 3, 3\)"):
        srl.energy(gen, p, x.reshape(2, 9), z, sigma=0.3)


def test_wrong_z_shapes(problem):
    gen, p, x, z = problem
    with pytest.raises(srl.ShapeError, match=r"z\[1\] has shape \(2, 4\), expected \(2, 3\)"):
        srl.grad_z(gen, p, x, (z[0], np.zeros((2, 4))), sigma=0.3)
    with pytest.raises(srl.ShapeError, match="z has 1 groups"):
        srl.grad_z(gen, p, x, (z[0],), sigma=0.3)
    with pytest.raises(srl.ShapeError, match=r"z\[0\] has shape \(3, 2\), expected \(2, 2\)"):
        srl.grad_z(gen, p, x, (np.zeros((3, 2)), z[1]), sigma=0.3)


def test_dtype_mismatch(problem):
    gen, p, x, z = problem
    with pytest.raises(srl.DTypeError, match="x has dtype float32 but the parameters have dtype float64"):
        srl.energy(gen, p, x.astype(np.float32), z, sigma=0.3)
    with pytest.raises(srl.DTypeError, match="float16"):
        gen.init(seed=0, dtype="float16")


def test_params_mismatch(problem):
    gen, p, x, z = problem
    q = dict(p)
    q.pop("out.dense.bias")
    with pytest.raises(srl.ShapeError, match="missing \\['out.dense.bias'\\]"):
        srl.energy(gen, q, x, z, sigma=0.3)
    q = dict(p)
    q["out.dense.bias"] = np.zeros(5)
    with pytest.raises(srl.ShapeError, match="'out.dense.bias' has shape \\(5,\\), expected \\(9,\\)"):
        srl.energy(gen, q, x, z, sigma=0.3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data(problem, bad):
    gen, p, x, z = problem
    x = x.copy()
    x[1, 0, 2, 2] = bad
    with pytest.raises(srl.NonFiniteError, match="x contains NaN or inf"):
        srl.short_run(gen, p, x, step_size=0.1, n_steps=2, sigma=0.3)


@pytest.mark.parametrize("sigma", [0.0, -1.0, np.nan, np.inf])
def test_bad_sigma(problem, sigma):
    gen, p, x, z = problem
    with pytest.raises(ValueError, match="sigma must be a positive finite number"):
        srl.energy(gen, p, x, z, sigma=sigma)


@pytest.mark.parametrize("step", [0.0, -0.1, np.nan, (0.1, 0.0), (0.1, -2.0)])
def test_bad_step_size(problem, step):
    gen, p, x, z = problem
    with pytest.raises(ValueError, match="step_size must be positive and finite"):
        srl.short_run(gen, p, x, step_size=step, n_steps=2, sigma=0.3)


def test_step_size_per_group_count(problem):
    gen, p, x, z = problem
    with pytest.raises(srl.ShapeError, match="step_size has 3 values but the generator has 2 latent groups"):
        srl.stepsize_objective(gen, p, x, step_size=(0.1, 0.1, 0.1), n_steps=2, sigma=0.3)


def test_unknown_backend():
    gen = srl.models.from_config(CFG)
    with pytest.raises(ValueError, match="unknown backend 'mxnet'; choose one of numpy, torch, jax, cupy, array_api_strict"):
        gen.init(seed=0, backend="mxnet")


def test_missing_backend_or_device():
    gen = srl.models.from_config(CFG)
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(srl.BackendUnavailableError, match="backend 'cupy' is not installed"):
            gen.init(seed=0, backend="cupy")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(srl.BackendUnavailableError, match="torch.cuda.is_available\\(\\) is False"):
            gen.prior(2, seed=0, backend="torch:cuda")
    with pytest.raises(srl.BackendUnavailableError, match="numpy backend only has device 'cpu'"):
        gen.prior(2, seed=0, backend="numpy", device="cuda")


def test_mixed_backends(problem):
    torch = pytest.importorskip("torch")
    gen, p, x, z = problem
    with pytest.raises(TypeError, match="one array library"):
        srl.energy(gen, p, torch.as_tensor(x), z, sigma=0.3)


def test_divergence_is_reported(problem):
    gen, p, x, z = problem
    with pytest.raises(srl.DivergenceError, match="use a smaller step size"), np.errstate(all="ignore"):
        srl.short_run(gen, p, x, step_size=1e3, n_steps=25, sigma=0.05)
    with pytest.raises(srl.DivergenceError), np.errstate(all="ignore"):
        srl.stepsize_objective(gen, p, x, step_size=1e3, n_steps=4, sigma=0.05, kind="reverse")
    # J_jac checks its log-determinants once per chain: a chain that overflows makes H_k
    # non-finite, reported as such with and without the gradient
    for objective in (srl.stepsize_objective, srl.objective_values):
        with pytest.raises(srl.DivergenceError, match="singular or non-finite"), np.errstate(all="ignore"):
            objective(gen, p, x, step_size=1e3, n_steps=40, sigma=0.05, kind="jacobian")


def test_noise_length_and_shapes(problem):
    gen, p, x, z = problem
    with pytest.raises(ValueError, match="noise has 1 steps but n_steps=2"):
        srl.short_run(gen, p, x, step_size=0.1, n_steps=2, sigma=0.3, z0=z, noise=[z])
    with pytest.raises(srl.ShapeError, match=r"noise\[0\]\[1\] has shape"):
        srl.short_run(gen, p, x, step_size=0.1, n_steps=1, sigma=0.3, z0=z, noise=[(z[0], z[0])])


def test_bad_model_configs():
    with pytest.raises(ValueError, match="even image height and width"):
        srl.models.conv(latent_dims=(2,), out_shape=(1, 7, 8))
    with pytest.raises(ValueError, match="inj_kernel=5 is larger than the 4×4 feature grid"):
        srl.models.conv(latent_dims=(2, 2), out_shape=(1, 8, 8), inj_kernel=5)
    with pytest.raises(ValueError, match="latent_dims must be non-empty positive integers"):
        srl.models.mlp(latent_dims=(0, 2))
    with pytest.raises(ValueError, match="unknown generator kind"):
        srl.models.from_config({"kind": "vae"})


def test_backend_names_with_devices():
    xp, dev = B.namespace("numpy")
    assert str(dev) == "cpu"
    with pytest.raises(ValueError, match="names device"):
        B.namespace("torch:cpu", device="cuda")
