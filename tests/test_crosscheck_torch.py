"""``srl.interop.torch.crosscheck``: a user's own PyTorch implementation against srl.

The worked example (``tests/crosscheck_example.py``, also shown in docs/crosscheck.md) is
written in a style unlike srl's; it must pass every check. Each deliberate bug is a
one-line edit of a copy of that file and must be caught and localised.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import srl  # noqa: E402
from srl.interop.crosscheck import CrosscheckError, load_build, srl_probes  # noqa: E402
from srl.interop.torch import crosscheck, prescribed_noise, to_torch  # noqa: E402

EXAMPLE = Path(__file__).with_name("crosscheck_example.py")
ROOT = Path(__file__).resolve().parents[1]


def example_copy(tmp_path, old=None, new=None, name="example"):
    """A copy of the worked example with ``old`` replaced by ``new`` (which must occur once)."""
    src = EXAMPLE.read_text()
    if old is not None:
        assert src.count(old) == 1, f"{old!r} must occur exactly once in the example"
        src = src.replace(old, new)
    path = tmp_path / f"{name}.py"
    path.write_text(src)
    return path


def check(kwargs, **override):
    kw = {**kwargs, **override}
    return crosscheck(kw.pop("module"), kw.pop("gen"), **kw)


@pytest.fixture(scope="module")
def example():
    return load_build(EXAMPLE)


def test_worked_example_passes_every_check(example):
    report = check(example)
    quantities = [r.quantity for r in report.rows]
    for q in ("forward", "energy", "grad_z", "grad_params", "hvp_z", "z_K (chain)", "J_jac", "dJ_jac/ds", "-log w",
              "d(-log w)/ds"):
        assert q in quantities
    assert any(q.startswith("layers (") for q in quantities), "the forward hooks compared no activation"
    assert report.ok, str(report)
    assert report.first_mismatch is None
    assert "MISMATCH" not in str(report)


def test_worked_example_float32(example):
    report = check(example, dtype="float32", objectives=("reverse",))
    assert report.ok, str(report)
    # float32 round-off is visible: the comparison really ran in float32
    assert max(r.max_rel_err for r in report.rows) > 1e-9
    assert all(r.tolerance == pytest.approx(4 * np.sqrt(np.finfo(np.float32).eps)) for r in report.rows)


def test_user_module_is_not_modified(example):
    module = example["module"]
    before = {k: v.clone() for k, v in module.state_dict().items()}
    check(example, objectives=(), chain=None)
    after = module.state_dict()
    # exactly equal, NaN where NaN was: the example's transposed-convolution kernels come from
    # torch.empty, whose uninitialised memory may hold a few NaNs (torch.equal is then False)
    assert all(torch.allclose(before[k], after[k], rtol=0.0, atol=0.0, equal_nan=True) for k in before)


BUGS = {
    "swapped μ/v heads": ("mean, var = self.mean_heads[i - 1](h), self.var_heads[i - 1](h)",
                          "mean, var = self.var_heads[i - 1](h), self.mean_heads[i - 1](h)", "inj1"),
    "missing skip connection": ("h = self.blocks[i](self.lifts[i](u)) + h", "h = self.blocks[i](self.lifts[i](u))",
                                "res1"),
    "tanh GELU": ("return F.gelu(t)", 'return F.gelu(t, approximate="tanh")', "proj0"),
    "missing + 1e-8": ("F.softplus(super().forward(h)) + 1e-8", "F.softplus(super().forward(h))", "inj1.v"),
    "flipped transposed-convolution kernel": ("F.conv_transpose2d(t, self.kernel, padding",
                                              "F.conv_transpose2d(t, self.kernel.flip(2, 3), padding", "proj0.convt"),
    "chain without the prior term": ("(g + e)", "g", "chain"),
    "chain with s instead of s²/2": ("0.5 * step ** 2 *", "step *", "chain"),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_deliberate_bug_is_caught_and_localised(tmp_path, bug):
    old, new, layer = BUGS[bug]
    report = check(load_build(example_copy(tmp_path, old, new)), objectives=("reverse",))
    assert not report.ok, str(report)
    assert report.first_mismatch == layer, str(report)
    assert f"first mismatch: {layer}" in str(report)


def test_chain_bugs_are_named(tmp_path):
    for (old, new), words in ((BUGS["chain without the prior term"][:2], "drops the prior term"),
                              (BUGS["chain with s instead of s²/2"][:2], "s instead of s²/2")):
        report = check(load_build(example_copy(tmp_path, old, new)), objectives=())
        assert any(words in note for note in report.notes), str(report)
        bad = {r.quantity for r in report.rows if not r.ok}
        assert bad == {"z_K (chain)"}, str(report)


def _saturating_params(gen, bias):
    """gen.init(0) with every variance head's final bias set to ``bias``, so that
    softplus(v) + 1e-8 is near ``bias`` for every example."""
    params = gen.init(seed=0)
    for name in params:
        if re.fullmatch(r"inj\d+\.v\.dense\.bias", name):
            params[name] = np.full_like(params[name], bias)
    return params


def test_wrong_clamp_bound_is_caught_when_the_bound_is_reached(tmp_path, example):
    path = example_copy(tmp_path, "0.0, 10.0)", "0.0, 20.0)")
    buggy = load_build(path)
    # With srl's initialisation v stays far below 10: the wrong bound is invisible there.
    assert check(buggy, objectives=(), chain=None).ok
    # Engineered weights push v above 10, where srl clamps.
    params = _saturating_params(buggy["gen"], 12.0)
    probes = {p.key: p.value for p in srl_probes(buggy["gen"], params, buggy["gen"].prior(3, seed=0))}
    assert np.all(probes[("block", "inj1.v")] == 10.0), "the inputs must reach the clamp bound"
    # the correct example agrees with srl there too (the chain would diverge at this scale)
    assert check(example, params=params, objectives=(), chain=None).ok
    report = check(buggy, params=params, objectives=(), chain=None)
    assert not report.ok
    assert report.first_mismatch == "inj1.v", str(report)


def test_gradient_only_bug_is_localised():
    """A layer whose backward is wrong (forward right) is named from the parameter gradients."""
    gen = srl.models.conv(latent_dims=(2, 3), out_shape=(1, 6, 6), channels=3, proj_channels=2, inj_kernel=2)
    module = to_torch(gen, gen.init(seed=0))

    class HalfGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.clone()

        @staticmethod
        def backward(ctx, g):
            return 0.5 * g

    conv = module.res1.conv2
    conv.register_forward_hook(lambda mod, args, out: HalfGradient.apply(out))
    report = crosscheck(module, gen, objectives=())
    assert not report.ok
    assert {r.quantity for r in report.rows if not r.ok} >= {"grad_z", "grad_params"}
    assert report.first_mismatch == "res1.conv2", str(report)


# ------------------------------------------------------------------------- refusals
def test_identity_mapping_for_srls_own_export():
    gen = srl.models.mlp(latent_dims=(2, 3), hidden=5, out_shape=(1, 2, 2))
    report = crosscheck(to_torch(gen, gen.init(seed=3)), gen)
    assert report.ok, str(report)


def test_unmapped_parameters_are_refused_by_name(example):
    def partial(name):
        return None if name.startswith("inj2.v.") else example["mapping"](name)

    with pytest.raises(CrosscheckError) as err:
        check(example, mapping=partial)
    msg = str(err.value)
    assert "inj2.v.conv.weight" in msg and "inj2.v.dense.bias" in msg
    assert "var_heads.1.conv.weight" in msg  # the module parameters then left unloaded


def test_unknown_and_misshaped_names_are_refused(example):
    def wrong(name):
        if name == "res0.conv1.weight":
            return "blocks.0.b.weight"  # conv2's slot: loaded twice, and conv1's left unloaded
        if name == "proj1.dense.weight":
            return "lifts.1.fc.kernel"  # no such parameter
        return example["mapping"](name)

    with pytest.raises(CrosscheckError) as err:
        check(example, mapping=wrong)
    msg = str(err.value)
    assert "proj1.dense.weight -> lifts.1.fc.kernel" in msg
    assert "blocks.0.b.weight <- res0.conv1.weight and res0.conv2.weight" in msg
    assert "blocks.0.a.weight" in msg

    gen = srl.models.mlp(latent_dims=(2, 3), hidden=5, out_shape=(1, 2, 2))
    other = srl.models.mlp(latent_dims=(2, 4), hidden=5, out_shape=(1, 2, 2))
    with pytest.raises(CrosscheckError, match=r"shape mismatch .*proj1\.dense\.weight \(5, 3\) -> proj1\.dense\.weight "
                                              r"\(5, 4\)"):
        crosscheck(to_torch(other, other.init(seed=0)), gen)


def test_unloaded_buffers_are_nan(example):
    class Scaled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.register_buffer("scale", torch.ones(()))

        def forward(self, eps):
            return self.inner(eps) * self.scale

    kw = {**example, "module": Scaled(example["module"]), "mapping": lambda s: "inner." + example["mapping"](s),
          "objectives": (), "chain": None, "energy": None}
    report = check(kw)
    assert not report.ok and report.first_mismatch == "out", str(report)  # x̂ is NaN, every layer before fine
    assert check(kw, keep_buffers=("scale",)).ok


def test_energy_with_constants_is_explained(example):
    from srl.energy import log_constant

    gen = example["gen"]

    def with_constants(m, x, z, sigma):
        return example["energy"](m, x, z, sigma) + log_constant(gen, sigma)

    report = check(example, energy=with_constants, objectives=(), chain=None)
    assert not report.ok and report.first_mismatch == "energy"
    assert any("energy_constants=True" in n for n in report.notes)
    assert check(example, energy=with_constants, energy_constants=True, objectives=(), chain=None).ok


def test_energy_summed_over_the_batch_is_refused(example):
    def batch_sum(m, x, z, sigma):
        return example["energy"](m, x, z, sigma).sum()

    with pytest.raises(CrosscheckError, match=r"one value per example, shape \(3,\)"):
        check(example, energy=batch_sum, objectives=(), chain=None)


README_EDITS = {None: None, "F.softplus(self.logvar(h)) + 1e-8": "inj1", "h = self.res[1](self.lift[1](u)) + h": "res1",
                "step**2 / 2 * gt": "chain"}


@pytest.mark.parametrize("edit", list(README_EDITS), ids=lambda e: e or "as written")
def test_readme_example(edit, capsys):
    """The README's complete example passes as written; its three suggested edits fail as it says."""
    code = re.search(r"```python\n(import torch\nimport torch.nn.functional.*?)```",
                     (ROOT / "README.md").read_text(), re.S).group(1)
    if edit is not None:
        new = {"F.softplus(self.logvar(h)) + 1e-8": "F.softplus(self.logvar(h))",
               "h = self.res[1](self.lift[1](u)) + h": "h = self.res[1](self.lift[1](u))",
               "step**2 / 2 * gt": "step * gt"}[edit]
        assert code.count(edit) == 1
        code = code.replace(edit, new).replace("assert report.ok", "")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert report.ok == (edit is None), str(report)
    assert report.first_mismatch == README_EDITS[edit], str(report)


# -------------------------------------------------------------- prescribed noise
def test_prescribed_noise_in_order_with_dtype():
    draws = [torch.arange(6, dtype=torch.float64).reshape(2, 3), [torch.ones(2, 1, 1), torch.zeros(4)]]
    with prescribed_noise(draws):
        a = torch.randn(2, 3)
        b = torch.randn_like(torch.empty(2, 1, 1, dtype=torch.float16))
        c = torch.randn((4,), dtype=torch.float32, requires_grad=True)
    assert torch.equal(a, draws[0]) and a.dtype == torch.float64  # kept, not rounded to float32
    assert b.dtype == torch.float16 and torch.all(b == 1)
    assert c.dtype == torch.float32 and c.requires_grad and torch.all(c == 0)
    assert torch.randn(3).shape == (3,)  # restored afterwards


def test_prescribed_noise_checks_shapes_and_consumption():
    with pytest.raises(CrosscheckError, match=r"draw #2\) asks for shape \(2, 3, 1, 1\) but .* shape \(2, 3\)"):
        with prescribed_noise([torch.zeros(2), torch.zeros(2, 3)]):
            torch.randn(2)
            torch.randn(2, 3, 1, 1)
    with pytest.raises(CrosscheckError, match="drew 1 of the 2"):
        with prescribed_noise([torch.zeros(2), torch.zeros(2)]):
            torch.randn(2)
    with pytest.raises(CrosscheckError, match="draw #2 but only 1"):
        with prescribed_noise([torch.zeros(2)]):
            torch.randn(2)
            torch.randn(2)
    assert torch.randn(5).std() > 0  # the real functions are back after an error


# ---------------------------------------------------------------------- command line
def _srl(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the suite's own processes (tests/conftest.py)
    return subprocess.run([sys.executable, "-m", "srl.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env=env)


def test_cli_passes_the_worked_example():
    good = _srl("crosscheck", str(EXAMPLE))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "11/11 within tolerance" in good.stdout


def test_cli_exit_status_on_mismatch_and_bad_files(tmp_path, capsys):
    from srl.cli import main

    old, new, _ = BUGS["missing skip connection"]
    assert main(["crosscheck", str(example_copy(tmp_path, old, new, name="noskip"))]) == 1
    assert "first mismatch: res1" in capsys.readouterr().out

    broken = tmp_path / "broken.py"
    broken.write_text("def build():\n    return {'module': None}\n")
    raises = tmp_path / "raises.py"
    raises.write_text("def build():\n    raise RuntimeError('no weights here')\n")
    for path in (broken, raises, tmp_path / "missing.py", example_copy(tmp_path, "def build():", "def built():", "nb")):
        assert main(["crosscheck", str(path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert path.name in err
    with pytest.raises(RuntimeError, match="no weights here"):  # --debug: the exception itself, with its traceback
        main(["crosscheck", "--debug", str(raises)])


@pytest.mark.slow
def test_paper_model_example_from_the_docs(tmp_path):
    """The docs' worked example (the paper model) passes."""
    text = (ROOT / "docs" / "crosscheck.md").read_text()
    code = re.search(r"```python\n(\"\"\"A PyTorch implementation.*?)```", text, re.S).group(1)
    path = tmp_path / "paper_example.py"
    path.write_text(code)
    kwargs = load_build(path)
    assert kwargs["gen"].config == srl.models.paper().config
    # two examples and two chain steps, no objectives: the layers, derivatives and the chain
    # of the paper model at a fraction of the docs' full run (whose output the docs show)
    report = check(kwargs, n=2, n_steps=2, objectives=())
    assert report.ok, str(report)
    assert any(r.quantity == "layers (79 activations)" for r in report.rows)


def test_docs_example_is_the_tested_example():
    """docs/crosscheck.md shows this file, with the paper model in place of the small one."""
    text = (ROOT / "docs" / "crosscheck.md").read_text()
    code = re.search(r"```python\n(\"\"\"A PyTorch implementation.*?)```", text, re.S).group(1)
    gen_line = re.compile(r"^GEN = .*?\)\n", re.S | re.M)
    assert gen_line.sub("", code) == gen_line.sub("", EXAMPLE.read_text())
    assert "GEN = srl.models.paper()" in code
