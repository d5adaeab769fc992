"""``srl.interop.jax.crosscheck``: a user's own pure-JAX implementation against srl.

The example (``tests/crosscheck_example_jax.py``) keeps its parameters in a nested dict
with Flax-like layouts; it must pass every check, and each deliberate bug (a one-line edit
of a copy) must be caught and localised through the jaxpr.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import srl  # noqa: E402
from srl.interop.crosscheck import CrosscheckError, load_build  # noqa: E402
from srl.interop.jax import crosscheck  # noqa: E402

EXAMPLE = Path(__file__).with_name("crosscheck_example_jax.py")


def example_copy(tmp_path, old=None, new=None, name="example_jax"):
    src = EXAMPLE.read_text()
    if old is not None:
        assert src.count(old) == 1, f"{old!r} must occur exactly once in the example"
        src = src.replace(old, new)
    path = tmp_path / f"{name}.py"
    path.write_text(src)
    return path


def check(kwargs, **override):
    kw = {**kwargs, **override}
    return crosscheck(kw.pop("apply_fn"), kw.pop("variables"), kw.pop("gen"), **kw)


@pytest.fixture(scope="module")
def example():
    return load_build(EXAMPLE)


# JAX runs these eagerly and compiles every new primitive once per process: the default
# run compares the reverse-kernel objective only; the slow test adds J_jac's third-order
# autodiff (one more long first-time compilation).
def test_worked_example_passes_every_check(example):
    x64_before = jax.config.jax_enable_x64
    report = check(example, objectives=("reverse",))
    assert jax.config.jax_enable_x64 == x64_before, "the global x64 setting must be left alone"
    quantities = [r.quantity for r in report.rows]
    for q in ("forward", "energy", "grad_z", "grad_params", "hvp_z", "z_K (chain)", "-log w", "d(-log w)/ds"):
        assert q in quantities
    # the jaxpr gives every parameter-owning layer's input and output, and x̂
    n_layers = len({name.rsplit(".", 1)[0] for name in example["gen"].param_shapes()})
    assert f"layers ({2 * n_layers + 1} activations)" in quantities, str(report)
    assert report.ok, str(report)
    assert report.first_mismatch is None
    assert max(r.max_rel_err for r in report.rows) < 1e-12  # really float64


@pytest.mark.slow
def test_worked_example_jacobian_objective(example):
    report = check(example, objectives=("jacobian",))
    assert report.ok, str(report)
    assert {"J_jac", "dJ_jac/ds"} <= {r.quantity for r in report.rows}


def test_worked_example_float32(example):
    report = check(example, dtype="float32", objectives=())
    assert report.ok, str(report)
    assert max(r.max_rel_err for r in report.rows) > 1e-9  # float32 round-off: it ran in float32


BUGS = {
    "swapped μ/v heads": ('mean = head(level["heads"]["mean"], h)', 'mean = head(level["heads"]["var"], h)', "inj1"),
    "missing skip connection": ("h = r if h is None else r + h", "h = r", "res1"),
    "tanh GELU": ("jax.nn.gelu(t, approximate=False)", "jax.nn.gelu(t, approximate=True)", "proj0"),
    "missing + 1e-8": ('head(level["heads"]["var"], h)) + 1e-8', 'head(level["heads"]["var"], h))', "inj1"),
    "flipped transposed-convolution kernel": ('act(up(lift["up"], t', 'act(up(lift["up"][:, :, ::-1, ::-1], t',
                                              "proj0.convt"),
    "chain without the prior term": ("(g + e)", "g", "chain"),
    "chain with s instead of s²/2": ("0.5 * step ** 2 *", "step *", "chain"),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_deliberate_bug_is_caught_and_localised(tmp_path, bug):
    old, new, layer = BUGS[bug]
    kwargs = load_build(example_copy(tmp_path, old, new))
    report = check(kwargs, objectives=(), chain=kwargs["chain"] if layer == "chain" else None)
    assert not report.ok, str(report)
    assert report.first_mismatch == layer, str(report)


def test_wrong_clamp_bound_is_caught_when_the_bound_is_reached(tmp_path, example):
    buggy = load_build(example_copy(tmp_path, "0.0, 10.0)", "0.0, 20.0)"))
    assert check(buggy, objectives=(), chain=None).ok  # srl's initialisation keeps v far below 10
    params = buggy["gen"].init(seed=0)
    for name in params:
        if name.startswith("inj") and name.endswith(".v.dense.bias"):
            params[name] = np.full_like(params[name], 12.0)  # softplus(v) ≈ 12: srl clamps to 10
    assert check(example, params=params, objectives=(), chain=None).ok
    report = check(buggy, params=params, objectives=(), chain=None)
    assert not report.ok and report.first_mismatch == "inj1", str(report)


def test_refusals_name_the_parameters(example):
    def partial(name):
        return None if name.startswith("out.") else example["mapping"](name)

    with pytest.raises(CrosscheckError) as err:
        check(example, mapping=partial)
    msg = str(err.value)
    assert "out.convt.weight" in msg and "out/up/kernel" in msg  # unmapped, and so unloaded

    def untransposed(name):
        target = example["mapping"](name)
        return target[0] if name == "proj0.dense.weight" else target  # (in, out) kernel loaded as (out, in)

    with pytest.raises(CrosscheckError, match=r"shape mismatch .*proj0\.dense\.weight \(32, 2\) -> "
                                              r"levels/0/lift/fc/kernel \(2, 32\)"):
        check(example, mapping=untransposed)


def test_identity_mapping_with_a_flat_dict():
    """A tree with srl's names, and the torch export's layouts, needs no mapping."""
    import jax.numpy as jnp

    gen = srl.models.mlp(latent_dims=(2, 3), hidden=5, out_shape=(1, 2, 2))

    def apply_fn(p, z):
        gelu = lambda t: jax.nn.gelu(t, approximate=False)  # noqa: E731
        lin = lambda name, t: t @ p[f"{name}.weight"].T + p[f"{name}.bias"]  # noqa: E731
        res = lambda name, t: t + gelu(lin(f"{name}.dense2", gelu(lin(f"{name}.dense1", t))))  # noqa: E731
        h = res("res0", gelu(lin("proj0.dense", z[0])))
        mu = lin("inj1.mu.dense2", gelu(lin("inj1.mu.dense1", h)))
        v = jnp.clip(jax.nn.softplus(lin("inj1.v.dense2", gelu(lin("inj1.v.dense1", h)))) + 1e-8, 0.0, 10.0)
        h = res("res1", gelu(lin("proj1.dense", mu + jnp.exp(v / 2) * z[1]))) + h
        return jnp.tanh(lin("out.dense", res("out.res", h))).reshape(-1, 1, 2, 2)

    variables = {k: np.zeros(s) for k, s in gen.param_shapes().items()}
    report = crosscheck(apply_fn, variables, gen, objectives=())
    assert report.ok, str(report)


@pytest.mark.slow
def test_cli_runs_the_jax_example(capsys):
    from srl.cli import main

    assert main(["crosscheck", str(EXAMPLE)]) == 0
    assert "11/11 within tolerance" in capsys.readouterr().out
