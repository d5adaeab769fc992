"""Initialisation of srl's generators against PyTorch's own default initialisation of the
same layer types (``reset_parameters`` of Linear, Conv2d, ConvTranspose2d): the bound
``b = 1/sqrt(fan_in)`` of every parameter must be the one torch draws from, so a model
trained by srl starts where the authors' PyTorch code starts (docs/models.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from srl import models

torch = pytest.importorskip("torch")
from srl.interop.torch import TorchGenerator  # noqa: E402

# Max |u| of m draws of U(-b, b) falls below (1 - TOL) b with probability (1 - TOL)^m:
# 0.95^300 < 2e-7, so only parameters with >= 300 drawn values get the lower check.
TOL, MIN_DRAWS = 0.05, 300

CONFIGS = {
    "conv-8x8": models.conv(),
    "conv-32x32": models.conv(latent_dims=(8, 16), out_shape=(1, 32, 32), channels=16),
    "paper": models.paper(),
}


def _torch_max_abs(config, n_draws):
    """Per parameter: max |value| over ``n_draws`` of torch's default initialisation."""
    out, count = {}, {}
    for k in range(n_draws):
        torch.manual_seed(k)
        m = TorchGenerator(config, dtype=torch.float64)  # no seed: torch's reset_parameters
        for name, p in m.state_dict().items():
            out[name] = max(out.get(name, 0.0), float(p.abs().max()))
            count[name] = count.get(name, 0) + p.numel()
    return out, count


@pytest.mark.parametrize("name", list(CONFIGS))
def test_srl_bounds_are_torchs_default_bounds(name):
    gen = CONFIGS[name]
    torch_max, count = _torch_max_abs(gen.config, 2 if name == "paper" else 20)
    specs = gen.param_specs()
    assert sorted(torch_max) == sorted(s.name for s in specs)
    checked = 0
    for s in specs:
        b = 1.0 / math.sqrt(s.fan_in)
        # torch draws in float32 before the cast to float64: one float32 rounding of b
        assert torch_max[s.name] <= b * (1 + 2.0 ** -23), (s.name, torch_max[s.name], b)
        if count[s.name] >= MIN_DRAWS:
            assert torch_max[s.name] >= b * (1 - TOL), (s.name, torch_max[s.name], b)
            checked += 1
    assert checked >= len(specs) // 2  # the lower check is not vacuous


def test_transposed_convolution_fan_in_is_weight_size_1():
    """paper(): proj{i}.convt (4 -> 64, k5) and out.convt (64 -> 3, k4): fan-in from the
    output channels (weight.size(1)), i.e. bounds 1/40 and 1/sqrt(48), not 1/10 and 1/32."""
    specs = {s.name: s for s in models.paper().param_specs()}
    assert specs["proj0.convt.weight"].shape == (4, 64, 5, 5) and specs["proj0.convt.weight"].fan_in == 64 * 25
    assert specs["out.convt.weight"].shape == (64, 3, 4, 4) and specs["out.convt.weight"].fan_in == 3 * 16
    assert specs["out.convt.bias"].fan_in == 3 * 16
    assert specs["res0.conv1.weight"].fan_in == 64 * 25  # Conv2d: cin·k·k


@pytest.mark.parametrize("name", ["conv-32x32", "paper"])
def test_srl_init_draws_fill_those_bounds(name):
    gen = CONFIGS[name]
    p = gen.init(seed=0)
    for s in gen.param_specs():
        b = 1.0 / math.sqrt(s.fan_in)
        m = float(np.max(np.abs(p[s.name])))
        assert m <= b
        if math.prod(s.shape) >= MIN_DRAWS:
            assert m >= b * (1 - TOL)


def test_torch_export_seeded_init_equals_srl_init():
    gen = CONFIGS["conv-32x32"]
    m = TorchGenerator(gen.config, seed=3, dtype=torch.float64)
    p = gen.init(seed=3)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), p[k])  # same float64 draws in the same order
