"""The JAX backend: 64-bit mode, devices, and the compiled public functions (srl.compiled).

Agreement of every public function with NumPy on JAX is in test_backends.py (the ``jax``
backend of the shared fixture); here: compiled == eager on the same core, the chain is one
compiled loop that does not retrace for new step sizes, and errors match other backends.
"""

from __future__ import annotations

import numpy as np
import pytest

import srl
from srl import _backend as B

jax = pytest.importorskip("jax")
jnp = jax.numpy
from srl import compiled  # noqa: E402

from .helpers import assert_tree_close, make_problem  # noqa: E402

MLP = {"kind": "mlp", "latent_dims": [2, 3], "hidden": 6, "out_shape": [1, 4, 4]}
CONV = {"kind": "conv", "latent_dims": [2, 3], "out_shape": [2, 6, 6], "channels": 3, "proj_channels": 2,
        "proj_kernel": 3, "res_kernels": [3, 1], "inj_kernel": 2}
SIGMA = 0.4
# Same core, same float64 arithmetic; XLA may fuse and reorder sums: round-off only.
RTOL = 1e-12
# Against NumPy: summation order and libm differ too (as in test_backends.py): 1e-11 relative,
# with an absolute floor at 1e-11 of the result's scale.
RTOL64 = 1e-11


def _scale(tree):
    return max(float(np.max(np.abs(np.asarray(a)))) for a in (tree if isinstance(tree, tuple) else (tree,)))


def _problem_on(backend, config, **kw):
    """The same seeded problem on ``backend`` (float64)."""
    return make_problem(config, backend=backend, dtype="float64", sigma=SIGMA, **kw)


def test_compiled_chain_path_equals_numpy():
    """``return_path`` of the compiled chain (one ``lax.scan``): z_0..z_K as NumPy computes them."""
    kw = dict(step_size=(0.1, 0.2), n_steps=4, sigma=SIGMA, seed=5, return_path=True)
    gen, p, x, _ = _problem_on("numpy", MLP, n=3, seed=4)
    want = srl.short_run(gen, p, x, **kw)
    with jax.enable_x64(True):
        gen, p, x, _ = _problem_on("jax", MLP, n=3, seed=4)
        zK, path = srl.short_run(gen, p, x, **kw)
    assert_tree_close((zK, path), want, rtol=RTOL64, atol=RTOL64, err="chain")
    assert all(a.shape == (5, 3, d) for a, d in zip(path, gen.latent_dims))  # z_0 .. z_K
    assert_tree_close(tuple(a[-1] for a in path), zK, rtol=0, err="path ends at z_K")


def test_chain_is_one_compiled_loop_and_step_sizes_do_not_retrace():
    gen, p, x, z = make_problem(MLP, n=2, seed=1, backend="jax", dtype="float32", sigma=SIGMA)
    fn = compiled._compiled("short_run")
    sizes = []
    for i in range(3):
        srl.short_run(gen, p, x, step_size=(0.1 + 0.01 * i, 0.05), n_steps=30, sigma=SIGMA, seed=i)
        sizes.append(fn._cache_size())
    assert sizes[1] == sizes[2] == sizes[0]  # new step sizes and noise: same executable
    s = (np.float32(0.1), np.float32(0.05))

    def primitives(n_steps):
        z0, noise = compiled.stacked_chain_noise(gen, jnp, seed=0, n=2, n_steps=n_steps, dtype=jnp.float32,
                                                 device=B.device(x))
        traced = fn.trace(gen, p, x, z0, noise, s, SIGMA, False, switches=compiled._switches())
        return [e.primitive.name for e in traced.jaxpr.eqns]

    prims = primitives(30)
    assert prims.count("scan") == 1, prims  # one loop ...
    assert prims == primitives(3)  # ... and the program does not grow with K (no traced steps)


def test_native_switch_retraces():
    """use_native(False) must not reuse a trace made with the native kernels; the generic code
    (gather convolutions, fdlibm Φ) compiles too, in several traces one after another (host
    index maps cached by one trace must not leak into the next), with the native numbers."""
    with jax.enable_x64(True):
        gen, p, x, z = make_problem(CONV, n=2, seed=1, backend="jax", dtype="float64", sigma=SIGMA)
        fast = srl.grad_z(gen, p, x, z, sigma=SIGMA), srl.energy(gen, p, x, z, sigma=SIGMA)
        before = compiled._compiled("grad_z")._cache_size()
        with srl.backends.use_native(False):
            slow = srl.grad_z(gen, p, x, z, sigma=SIGMA), srl.energy(gen, p, x, z, sigma=SIGMA)
        assert compiled._compiled("grad_z")._cache_size() == before + 1
    assert_tree_close(slow, fast, rtol=RTOL64, atol=RTOL64 * _scale(fast[1]), err="generic vs native")


OBJECTIVES = {
    "jacobian": dict(kind="jacobian"),
    "jacobian hutchinson": dict(kind="jacobian", logdet="hutchinson", n_probes=3, series_terms=4),
    "reverse forward": dict(kind="reverse", gradient="forward", n_chains=2),
    "reverse adjoint": dict(kind="reverse", gradient="adjoint"),
    "reverse adjoint, activations kept": dict(kind="reverse", gradient="adjoint", keep_activations=True),
}


def test_compiled_objectives_equal_numpy():
    """Both kinds, exact and Hutchinson log-det, forward and adjoint gradients, importance-weighted
    chains and values only: the compiled loop gives NumPy's float64 numbers (same noise and probes)."""
    common = dict(step_size=(0.1, 0.2), n_steps=3, sigma=SIGMA, seed=3)
    gen, p, x, _ = _problem_on("numpy", MLP, n=2, seed=4)
    want = {name: srl.stepsize_objective(gen, p, x, **common, **kw) for name, kw in OBJECTIVES.items()}
    want["values"] = srl.objective_values(gen, p, x, **common, kind="reverse")
    with jax.enable_x64(True):
        gen, p, x, _ = _problem_on("jax", MLP, n=2, seed=4)
        got = {name: srl.stepsize_objective(gen, p, x, **common, **kw) for name, kw in OBJECTIVES.items()}
        got["values"] = srl.objective_values(gen, p, x, **common, kind="reverse")
    for name in want:
        assert_tree_close(got[name], want[name], rtol=RTOL64, atol=RTOL64 * _scale(want[name]), err=name)


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_compiled_objective_is_one_loop_whatever_k(name):
    """The objectives' K steps are one ``lax.scan``: the traced program of K = 40 is the
    program of K = 2 (same equations), not 40 traced steps."""
    kw = dict(OBJECTIVES[name])
    gen, p, x, _ = make_problem(MLP, n=2, seed=1, backend="jax", dtype="float32", sigma=SIGMA)
    fn = compiled._compiled("objective")
    kind, gradient, M = kw.pop("kind"), kw.pop("gradient", "auto"), kw.pop("n_chains", 1)
    keep = kw.pop("keep_activations", False)
    opts = dict(logdet=kw.get("logdet", "exact"), series_terms=kw.get("series_terms", 8))

    def program(K):
        z0, noise = compiled.stacked_chain_noise(gen, jnp, seed=0, n=2 * M, n_steps=K, dtype=jnp.float32,
                                                 device=B.device(x))
        probes = None
        if opts["logdet"] == "hutchinson":
            probes = jnp.ones((K, kw["n_probes"], 2 * M, gen.d), dtype=jnp.float32)
        s = (np.float32(0.1), np.float32(0.05))
        traced = fn.trace(gen, p, x, z0, noise, s, probes, SIGMA, kind, True, M, gradient, keep, opts["logdet"],
                          opts["series_terms"], switches=compiled._switches())
        return [e.primitive.name for e in traced.jaxpr.eqns]

    few, many = program(2), program(40)
    assert few == many
    assert many.count("scan") == (2 if "adjoint" in name else 1), many  # the chain (and the reverse sweep)


def test_new_step_sizes_do_not_recompile_the_objective():
    gen, p, x, z = make_problem(MLP, n=2, seed=1, backend="jax", dtype="float32", sigma=SIGMA)
    fn = compiled._compiled("objective")
    sizes = []
    for s in (0.1, 0.12, 0.15):
        srl.stepsize_objective(gen, p, x, step_size=s, n_steps=2, sigma=SIGMA, kind="reverse", gradient="forward")
        sizes.append(fn._cache_size())
    assert sizes[0] == sizes[1] == sizes[2]


def test_compiled_training_iteration_equals_eager():
    """A whole training iteration of θ (chain, mean ∇_θ E at z_K, Adam) runs as one compiled
    call and gives the eager iteration's parameters, moments and metrics; three iterations
    cover Adam's first step (moments from zero) and later ones, and the learning rate
    changes every iteration without a new compilation."""
    from srl import learning
    from srl.train import TrainConfig

    cfg = TrainConfig(model="mlp", latent_dims=(2, 3), hidden=6, n_steps=3, sigma=SIGMA, backend="jax",
                      dtype="float64", step_method="fixed")
    with jax.enable_x64(True):
        gen, p, x, z = make_problem(MLP, n=4, seed=2, backend="jax", dtype="float64", sigma=SIGMA)
        opt = learning.make_optimisers(cfg)
        runs = {}
        for jit in (True, False):
            compiled.clear_cache()
            state = learning.TrainState(p, opt.theta.init(p), None, (0.1, 0.2), 0)
            history = []
            with compiled.use_jit(jit):
                for lr in (3e-3, 2e-3, 1e-3):
                    state, metrics = learning.train_step(state, x, cfg=cfg, gen=gen, opt=opt, lr=lr)
                    history.append(metrics)
            runs[jit] = (state, history)
            if jit:  # one program for the three iterations
                assert compiled._cache["train_iteration"]._cache_size() == 1
    (fast, fh), (eager, eh) = runs[True], runs[False]
    assert fast.adam.t == eager.adam.t == 3
    assert_tree_close(fast.params, eager.params, rtol=RTOL, atol=RTOL, err="params")
    assert_tree_close(fast.adam.m, eager.adam.m, rtol=RTOL, atol=RTOL, err="m")
    assert_tree_close(fast.adam.v, eager.adam.v, rtol=RTOL, atol=RTOL, err="v")
    for a, b in zip(fh, eh):
        for k in ("energy", "mse"):
            assert a[k] == pytest.approx(b[k], rel=RTOL)


def test_theta_overflow_is_named_by_the_compiled_iteration(tmp_path):
    from srl.train import TrainConfig, train

    cfg = TrainConfig(limit=100, model="mlp", latent_dims=(2, 3), hidden=6, n_steps=3, batch_size=50, epochs=1,
                      backend="jax", lr=1e308, step_method="fixed", out=str(tmp_path / "run"))
    with pytest.raises(srl.DivergenceError, match=r"θ became NaN or inf in the update of iteration 1 .* lower --lr"):
        train(cfg, progress=False, evaluate_at_end=False)


def test_divergence_is_reported_after_the_compiled_chain():
    gen, p, x, z = make_problem(MLP, n=2, seed=1, backend="jax", dtype="float32", sigma=0.05)
    with pytest.raises(srl.DivergenceError, match="use a smaller step size"):
        srl.short_run(gen, p, x, step_size=1e3, n_steps=25, sigma=0.05)
    with pytest.raises(srl.DivergenceError, match="use a smaller step size"):
        srl.stepsize_objective(gen, p, x, step_size=1e3, n_steps=4, sigma=0.05, kind="reverse")


def test_float64_needs_64_bit_mode_and_says_how():
    gen = srl.models.from_config(MLP)
    if jax.config.jax_enable_x64:
        pytest.skip("64-bit mode is enabled globally in this process")
    with pytest.raises(srl.DTypeError, match=r"jax.config.update\('jax_enable_x64', True\).*enable_x64"):
        gen.init(seed=0, backend="jax", dtype="float64")
    p = gen.init(seed=0, backend="jax", dtype="float32")  # float32 needs nothing
    assert p["out.dense.weight"].dtype == jnp.float32
    with jax.enable_x64(True):  # scoped: float64 inside the block only
        assert gen.init(seed=0, backend="jax", dtype="float64")["out.dense.weight"].dtype == jnp.float64
    assert not jax.config.jax_enable_x64


def test_devices():
    xp, dev = B.namespace("jax:cpu")
    assert xp is jnp and dev.platform == "cpu"
    assert B.namespace("jax", device="cpu")[1] == dev
    try:
        has_gpu = len(jax.devices("gpu")) > 0
    except RuntimeError:
        has_gpu = False
    if not has_gpu:
        with pytest.raises(srl.BackendUnavailableError, match="jax device 'gpu'"):
            B.namespace("jax:gpu")
    with pytest.raises(srl.BackendUnavailableError, match="only 1 cpu device"):
        B.namespace("jax", device="cpu:7")


@pytest.mark.parametrize("config", [MLP, CONV], ids=["mlp", "conv"])
def test_plain_jax_model_computes_the_srl_generator(config):
    """srl.interop.jax_model (the JAX-autodiff oracle of srl check) is the same function."""
    from srl.interop import jax_model as jm

    gen, p, x, z = make_problem(config, n=3, seed=6, dtype="float64", sigma=SIGMA)
    with jax.enable_x64(True):
        got = np.asarray(jm.forward(config, p, tuple(jnp.asarray(a) for a in z)))
        e = np.asarray(jm.energy(config, p, x, z, sigma=SIGMA))
    # independent float64 implementations: summation order only
    np.testing.assert_allclose(got, gen.forward(p, z), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(e, srl.energy(gen, p, x, z, sigma=SIGMA), rtol=1e-12)


def test_check_adds_the_jax_autodiff_column():
    from srl import check

    rows = check.compare(backend="numpy", dtype="float64", model="mlp")
    names = {r["quantity"] for r in rows if "jax_rel" in r}
    assert names == {"energy", "grad_z", "grad_params", "hvp_z", "z_K", "J_jac", "dJ_jac/ds", "-log w",
                     "d(-log w)/ds", "d(-log w)/ds adjoint", "d(-log w)/ds adjoint kept"}
    assert all(r["ok"] and r["jax_rel"] <= r["tol"] for r in rows)


def test_validation_names_the_non_finite_input():
    """On JAX data and parameters are tested for NaN/inf in one compiled reduction (for the
    chain and the objectives, inside their own compiled program); the error still names the
    culprit, the data first, and is not mistaken for a divergence."""
    gen, p, x, z = make_problem(MLP, n=2, seed=1, backend="jax", dtype="float32", sigma=SIGMA)
    bad_x = x.at[0, 0, 0, 0].set(jnp.nan)
    bad_p = dict(p, **{"out.dense.bias": p["out.dense.bias"].at[0].set(jnp.inf)})
    data_error, param_error = "x contains NaN or inf", "parameter 'out.dense.bias' contains NaN or inf"
    for params, data, match in ((p, bad_x, data_error), (bad_p, x, param_error), (bad_p, bad_x, data_error)):
        with pytest.raises(srl.NonFiniteError, match=match):
            srl.short_run(gen, params, data, step_size=0.1, n_steps=3, sigma=SIGMA)
        for kind in ("jacobian", "reverse"):
            with pytest.raises(srl.NonFiniteError, match=match):
                srl.stepsize_objective(gen, params, data, step_size=0.1, n_steps=3, sigma=SIGMA, kind=kind)
        with pytest.raises(srl.NonFiniteError, match=match):
            srl.grad_z(gen, params, data, z, sigma=SIGMA)
    # finite inputs, an unstable step size: the divergence error, not a validation error
    with pytest.raises(srl.DivergenceError, match="diverged"):
        srl.short_run(gen, p, x, step_size=50.0, n_steps=25, sigma=SIGMA)


def test_explicit_noise_is_tested_inside_the_compiled_program(monkeypatch):
    """Noise handed in (stacked, as a JAX user holds it) is tested for NaN/inf by the chain's
    and the objectives' own compiled programs: no separate test runs before them. The
    error still names the culprit, the data and parameters before the noise."""
    gen, p, x, z = make_problem(MLP, n=2, seed=1, backend="jax", dtype="float32", sigma=SIGMA)
    K = 3
    z0, steps = srl.random.chain_noise(4, 2, gen.latent_dims, K, xp=jnp, dtype=x.dtype, device=B.device(x))
    stacked = tuple(jnp.stack([xi[l] for xi in steps]) for l in range(len(gen.latent_dims)))
    kw = dict(step_size=0.1, n_steps=K, sigma=SIGMA)
    want = srl.short_run(gen, p, x, seed=4, **kw)

    def no_separate_test(arrays):
        raise AssertionError("a separate finiteness test ran before the compiled call")

    with monkeypatch.context() as m:
        m.setattr(compiled, "all_finite", no_separate_test)
        assert_tree_close(srl.short_run(gen, p, x, z0=z0, noise=stacked, **kw), want, rtol=0, err="stacked noise")
        srl.stepsize_objective(gen, p, x, z0=z0, noise=stacked, kind="reverse", **kw)
    bad_noise = (stacked[0], stacked[1].at[1, 0, 0].set(jnp.nan))
    bad_z0 = (z0[0].at[0, 0].set(jnp.inf), z0[1])
    bad_x = x.at[0, 0, 0, 0].set(jnp.nan)
    cases = ((x, z0, bad_noise, "noise contains NaN or inf"), (x, bad_z0, stacked, "z0 contains NaN or inf"),
             (bad_x, bad_z0, bad_noise, "x contains NaN or inf"))
    for data, z0_, noise, match in cases:
        with pytest.raises(srl.NonFiniteError, match=match):
            srl.short_run(gen, p, data, z0=z0_, noise=noise, **kw)
        for kind in ("jacobian", "reverse"):
            with pytest.raises(srl.NonFiniteError, match=match):
                srl.stepsize_objective(gen, p, data, z0=z0_, noise=noise, kind=kind, **kw)
