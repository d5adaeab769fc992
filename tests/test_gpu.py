"""The same code on a GPU as on the CPU (docs/math.md §6, §7).

``tests/test_backends.py`` compares every public function on every backend with NumPy.
This file adds what a user of a GPU runs next: ``srl check`` (the float64 oracle
comparison) on the GPU backends, and whole training runs — chain, θ-gradient, Adam,
step-size optimisation and its stability check, checkpoint — compared with the same run in
NumPy. The training comparison runs on every installed backend, so the CPU backends
exercise it in the default run; the GPU ones carry the ``gpu`` marker and skip without a
CUDA device.
"""

from __future__ import annotations

import numpy as np
import pytest

from srl import check
from srl.train import TrainConfig, train

from .conftest import ALL_BACKENDS, Backend, _params, _scoped, require
from .helpers import to_np

GPU_BACKENDS = [Backend.TORCH_CUDA, Backend.CUPY, Backend.JAX_GPU]
# those selected by $SRL_TEST_BACKENDS (tests/conftest.py), like every backend-parametrized test
TRAIN_BACKENDS = [b for b in (Backend.TORCH, Backend.JAX, *GPU_BACKENDS) if b in ALL_BACKENDS]
GPU_BACKENDS = [b for b in GPU_BACKENDS if b in ALL_BACKENDS]

# 200 digits, batch 50: 8 iterations in 2 epochs; s is optimised (reverse-kernel gradient,
# with the stability check) on iterations 2, 4, 6, 8.
RUN = dict(limit=200, model="mlp", latent_dims=(2, 3), hidden=16, batch_size=50, n_steps=5, step_every=2,
           step_subset=8, lr=3e-3, lr_schedule="constant", epochs=2, step_method="gradient",
           step_objective="reverse", dtype="float64")


def _config(tmp_path, backend: Backend, **kw) -> TrainConfig:
    lib, _, dev = backend.value.partition(":")
    return TrainConfig(**{**RUN, "backend": lib, "device": dev or None, "out": str(tmp_path / lib), **kw})


@pytest.fixture(params=_params(GPU_BACKENDS))
def gpu_backend(request):
    b = require(request.param)
    with _scoped(b):
        yield b


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("numpy")
    return train(_config(tmp, Backend.NUMPY), progress=False, evaluate_at_end=False)


def test_check_passes_on_the_gpu(gpu_backend, capsys):
    assert check.run_check(backend=gpu_backend.value, dtype="float64", model="mlp") == 0
    assert "within tolerance" in capsys.readouterr().out


@pytest.mark.parametrize("backend", _params(TRAIN_BACKENDS))
def test_training_equals_numpy_training(backend, numpy_run, tmp_path):
    """Eight float64 training iterations give NumPy's parameters, step sizes and losses.

    Backends differ from NumPy only in summation order (≈1e-16 relative per operation);
    Adam's first updates are ±lr·m/√v, whose sign and size do not amplify such round-off
    unless a gradient component is ~1e-16 of its scale, which an mlp with random weights
    does not have. Measured on the CPU backends: 4e-16 of the largest parameter. 1e-9
    relative leaves room for a GPU's other reduction orders and fused multiply-adds and is
    still 10⁵ below a single wrong step (whose effect is lr = 3e-3 on some parameter).
    """
    b = require(backend)
    with _scoped(b):
        res = train(_config(tmp_path, b), progress=False, evaluate_at_end=False)
    _assert_same_run(res, numpy_run)


def _assert_same_run(res, ref):
    """Parameters, step sizes, energies and MSEs equal to 1e-9 relative (see the test above)."""
    assert res.history[-1]["iteration"] == ref.history[-1]["iteration"] == 8
    np.testing.assert_allclose(res.step_size, ref.step_size, rtol=1e-9)
    for k in ref.params:
        np.testing.assert_allclose(to_np(res.params[k]), ref.params[k], rtol=1e-9, atol=1e-9 * np.abs(ref.params[k]).max(),
                                   err_msg=k)
    for key in ("energy", "mse"):
        np.testing.assert_allclose([h[key] for h in res.history], [h[key] for h in ref.history], rtol=1e-9,
                                   err_msg=key)


def test_float32_training_on_the_gpu_lowers_the_loss(gpu_backend, tmp_path):
    res = train(_config(tmp_path, gpu_backend, dtype="float32", epochs=6), progress=False, evaluate_at_end=False)
    energy = [h["energy"] for h in res.history]
    assert np.mean(energy[-4:]) < 0.8 * np.mean(energy[:4])  # the first vs the last epoch


# --- srl.cuda_graphs: the iteration's chain and θ-gradient replayed from a recorded CUDA graph

@pytest.mark.gpu
def test_cuda_graph_training_equals_numpy_training(numpy_run, tmp_path):
    """The float64 run above with ``cuda_graphs=True``: the chains of iterations 1, 2-3, 4-5,
    6-7 and 8 run with five different s, so the loop records five times and replays three
    times; the tolerance is the test's above."""
    from srl import cuda_graphs

    b = require(Backend.TORCH_CUDA)
    before = cuda_graphs.RECORDINGS.recorded
    with _scoped(b):
        res = train(_config(tmp_path, b, cuda_graphs=True), progress=False, evaluate_at_end=False)
    assert cuda_graphs.RECORDINGS.recorded - before == 5
    _assert_same_run(res, numpy_run)


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_cuda_graph_training_replays_the_eager_kernels(model, tmp_path):
    """float32 on the GPU: a replay runs the kernels the eager code launches, in the same
    order, on the same inputs, so the run is the eager run bit for bit."""
    b = require(Backend.TORCH_CUDA)
    kw = dict(dtype="float32") if model == "mlp" else dict(dtype="float32", model="conv", hidden=None, channels=8)
    with _scoped(b):
        eager = train(_config(tmp_path / "eager", b, **kw), progress=False, evaluate_at_end=False)
        graphed = train(_config(tmp_path / "graphs", b, cuda_graphs=True, **kw), progress=False,
                        evaluate_at_end=False)
    assert graphed.step_size == eager.step_size
    for key in ("energy", "mse"):
        assert [h[key] for h in graphed.history] == [h[key] for h in eager.history], key
    for k in eager.params:
        np.testing.assert_array_equal(to_np(graphed.params[k]), to_np(eager.params[k]), err_msg=k)
