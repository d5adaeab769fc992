"""``srl check`` and the torch export: srl against the reference and torch.autograd,
and ``srl check`` failing when a derivative is perturbed."""

from __future__ import annotations

import numpy as np
import pytest


from srl import check

torch = pytest.importorskip("torch")
from srl.interop import torch as ti  # noqa: E402

from .helpers import make_problem  # noqa: E402


@pytest.mark.parametrize("config", [
    {"kind": "mlp", "latent_dims": [2, 3], "hidden": 5, "out_shape": [1, 3, 3]},
    {"kind": "conv", "latent_dims": [2, 2], "out_shape": [2, 6, 6], "channels": 3, "proj_channels": 2,
     "proj_kernel": 3, "res_kernels": [3, 1], "inj_kernel": 2},
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_srl_torch_srl_is_exact(config, dtype):
    gen, p, x, z = make_problem(config, n=3, seed=2, dtype=dtype)
    module = ti.to_torch(gen, p)
    gen2, p2 = ti.from_torch(module)
    assert gen2.config == gen.config and list(p2) == list(p)
    for k in p:  # bit-identical parameters
        assert p2[k].dtype == p[k].dtype
        np.testing.assert_array_equal(p2[k], p[k])
    np.testing.assert_array_equal(gen2.forward(p2, z), gen.forward(p, z))
    with torch.no_grad():  # and the exported module computes the same function
        out = module(*[torch.as_tensor(a) for a in z]).numpy()
    rtol = 1e-12 if dtype == "float64" else 1e-5  # different summation order only
    np.testing.assert_allclose(out, gen.forward(p, z), rtol=rtol, atol=rtol)
    gen3, p3 = ti.from_torch(module.state_dict(), gen.config, backend="numpy")
    for k in p:
        np.testing.assert_array_equal(p3[k], p[k])
    with pytest.raises(ValueError, match="needs the generator config"):
        ti.from_torch(module.state_dict())


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax", "array_api_strict"])
def test_check_passes_on_every_cpu_backend(backend, capsys):
    pytest.importorskip(backend)
    assert check.run_check(backend=backend, dtype="float64") == 0
    out = capsys.readouterr().out
    assert "22/22 within tolerance" in out  # 11 quantities × (mlp, conv)


def test_check_float32_within_documented_tolerance():
    rows = check.compare(backend="numpy", dtype="float32", model="mlp")
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    assert max(r["ref_rel"] for r in rows if "ref_rel" in r) > 1e-9  # really float32


@pytest.mark.parametrize("target,quantities", [
    ("dense_input_vjp", {"grad_z", "hvp_z", "z_K", "J_jac", "dJ_jac/ds", "-log w", "d(-log w)/ds",
                         "d(-log w)/ds adjoint", "d(-log w)/ds adjoint kept"}),
    ("gelu_third_derivative", {"dJ_jac/ds"}),
])
def test_check_fails_when_a_derivative_is_perturbed(monkeypatch, capsys, target, quantities):
    """A 1e-6 relative error in one hand-written derivative is caught and named."""
    from srl import elementwise, layers

    if target == "dense_input_vjp":
        original = layers.Dense.backward

        def perturbed(self, xp, p, gy, x, grads, tape=None):
            return original(self, xp, p, gy, x, grads, tape) * (1.0 + 1e-6)

        monkeypatch.setattr(layers.Dense, "backward", perturbed)
    else:
        original = elementwise._GELU.tower

        def tower(self, xp, a, k0, n):
            out = original(self, xp, a, k0, n)
            return [d * (1.0 + 1e-3) if k0 + i == 3 else d for i, d in enumerate(out)]

        monkeypatch.setattr(elementwise._GELU, "tower", tower)
    assert check.run_check(backend="numpy", dtype="float64", model="mlp") == 1
    assert "FAILED" in capsys.readouterr().out
    failed = {r["quantity"] for r in check.compare(backend="numpy", dtype="float64", model="mlp") if not r["ok"]}
    assert quantities <= failed, (quantities, failed)
    assert "energy" not in failed  # values that do not use the perturbed code still agree


def test_check_cli_exit_status(capsys):
    from srl.cli import main

    assert main(["check", "--backend", "numpy", "--model", "mlp", "--json"]) == 0
    assert '"rows"' in capsys.readouterr().out
