"""Every argument of the public API is validated where it enters, and the error names it."""

from __future__ import annotations

import numpy as np
import pytest

import srl
from srl.evaluate import evaluate, sample
from srl.stepsize import AdamLogStep

from .helpers import make_problem

CFG = {"kind": "mlp", "latent_dims": [2, 3], "hidden": 4, "out_shape": [1, 3, 3]}


@pytest.fixture
def problem():
    return make_problem(CFG, n=2, seed=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigma_whose_square_underflows_is_refused(problem, dtype):
    gen, p, x, z = problem
    p = {k: v.astype(dtype) for k, v in p.items()}
    x, z = x.astype(dtype), tuple(a.astype(dtype) for a in z)
    tiny = float(np.sqrt(np.finfo(dtype).tiny) / 2)  # σ² below the smallest normal number
    with pytest.raises(ValueError, match=rf"sigma={tiny:g} is too small for {dtype}: .*use sigma >= "):
        srl.energy(gen, p, x, z, sigma=tiny)
    # the smallest accepted σ gives a finite energy and gradient
    smallest = float(np.sqrt(1 / (np.finfo(dtype).max * np.finfo(dtype).eps))) * 1.0001
    assert np.all(np.isfinite(srl.energy(gen, p, x, z, sigma=smallest)))


def test_half_precision_arrays_are_refused(problem):
    gen, p, x, z = problem
    p16 = {k: v.astype(np.float16) for k, v in p.items()}
    with pytest.raises(srl.DTypeError, match="parameters have dtype float16; srl computes in float32 or float64"):
        srl.energy(gen, p16, x.astype(np.float16), z, sigma=0.3)
    torch = pytest.importorskip("torch")
    pb = {k: torch.as_tensor(v).to(torch.bfloat16) for k, v in p.items()}
    with pytest.raises(srl.DTypeError, match="parameters have dtype torch.bfloat16"):
        srl.short_run(gen, pb, torch.as_tensor(x).to(torch.bfloat16), step_size=0.1, n_steps=1, sigma=0.3)


def test_zero_dimensional_array_step_size_is_a_float(problem):
    gen, p, x, z = problem
    want = srl.short_run(gen, p, x, step_size=0.1, n_steps=2, sigma=0.3)
    for s in (np.float64(0.1), np.array(0.1)):
        got = srl.short_run(gen, p, x, step_size=s, n_steps=2, sigma=0.3)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    v1, g1 = srl.stepsize_objective(gen, p, x, step_size=np.array(0.1), n_steps=2, sigma=0.3)
    v2, g2 = srl.stepsize_objective(gen, p, x, step_size=0.1, n_steps=2, sigma=0.3)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("step", ["0.05", b"0.05", ["0.1", "x"], None, {"a": 1}])
def test_non_numeric_step_size_is_refused(problem, step):
    gen, p, x, z = problem
    with pytest.raises(TypeError, match="step_size must be a float or one float per group, got"):
        srl.short_run(gen, p, x, step_size=step, n_steps=2, sigma=0.3)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, [0, -3]])
def test_bad_seeds_are_named(problem, seed):
    gen, p, x, z = problem
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer \(or a sequence of them\), got"):
        gen.init(seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        srl.short_run(gen, p, x, step_size=0.1, n_steps=2, sigma=0.3, seed=seed)


def test_non_finite_parameters_are_not_called_divergence(problem):
    gen, p, x, z = problem
    q = dict(p)
    q["out.dense.bias"] = p["out.dense.bias"].copy()
    q["out.dense.bias"][0] = np.nan
    with pytest.raises(srl.NonFiniteError, match="parameter 'out.dense.bias' contains NaN or inf"):
        srl.short_run(gen, q, x, step_size=0.1, n_steps=2, sigma=0.3)
    with pytest.raises(srl.NonFiniteError, match="parameter 'out.dense.bias'"):
        srl.stepsize_objective(gen, q, x, step_size=0.1, n_steps=2, sigma=0.3, kind="reverse")


def test_non_finite_z0_or_noise_is_reported_as_such(problem):
    gen, p, x, z = problem
    z0 = (z[0].copy(), z[1])
    z0[0][1, 0] = np.inf
    noise = [z, z]
    with pytest.raises(srl.NonFiniteError, match="z0 contains NaN or inf"):
        srl.short_run(gen, p, x, step_size=0.1, n_steps=2, sigma=0.3, z0=z0, noise=noise)
    with pytest.raises(srl.NonFiniteError, match="noise contains NaN or inf"):
        srl.short_run(gen, p, x, step_size=0.1, n_steps=2, sigma=0.3, z0=z, noise=[z, z0])


@pytest.mark.parametrize("lr", [0.0, -0.05, np.nan, np.inf, "0.1"])
def test_step_size_learning_rate_must_be_positive(lr):
    with pytest.raises(ValueError, match=r"lr \(the step-size learning rate\) must be a positive finite number"):
        AdamLogStep(lr=lr)


@pytest.mark.parametrize("option, value", [("n_bound", 0), ("n_bound", -3), ("iw_chains", 0),
                                           ("batch_size", 0), ("n_samples", 0), ("n_bound", 2.5)])
def test_evaluation_sizes_must_be_positive(problem, option, value):
    gen, p, x, z = problem
    with pytest.raises(ValueError, match=rf"{option} must be a positive integer"):
        evaluate(gen, p, x, step_size=0.1, n_steps=1, sigma=0.3, **{option: value})


def test_evaluation_needs_test_images(problem):
    gen, p, x, z = problem
    with pytest.raises(ValueError, match="x_test holds no images"):
        evaluate(gen, p, x[:0], step_size=0.1, n_steps=1, sigma=0.3)


@pytest.mark.parametrize("n", [0, -1])
def test_sample_count_must_be_positive(problem, n):
    gen, p, x, z = problem
    with pytest.raises(ValueError, match=rf"n must be a positive integer, got {n}"):
        sample(gen, p, n)


def test_tied_step_sizes_must_start_equal(problem):
    gen, p, x, z = problem
    opt = AdamLogStep(tied=True)
    with pytest.raises(ValueError, match=r"tied step sizes must start equal, got \(0.1, 0.2\)"):
        opt.update(opt.init(), gen, p, x, (0.1, 0.2), n_steps=2, sigma=0.3)


def test_non_finite_parameters_reach_the_caller_of_a_step_size_optimiser(problem):
    """The optimiser backs off on chain divergence, but not over broken parameters."""
    gen, p, x, z = problem
    q = dict(p, **{"out.dense.bias": np.full_like(p["out.dense.bias"], np.inf)})
    opt = AdamLogStep()
    with pytest.raises(srl.NonFiniteError, match="parameter 'out.dense.bias'"):
        opt.update(opt.init(), gen, q, x, (0.1, 0.1), n_steps=2, sigma=0.3)
