"""srl.cuda_graphs: the recorded iteration's bookkeeping on the CPU, the option's checks.

A CUDA graph needs a GPU; what the module adds around ``torch.cuda.graph`` does not: the
input buffers the recording reads, the output buffers it writes, and when it records
again. Here the recording is made by ``eager_capture``, which keeps the function that
would have been recorded and runs it again on each replay, as a graph replays its kernels
on whatever its buffers hold at that time: an input that was not copied into the buffers,
or a recording kept for another step size, gives other numbers than the eager code. The
real recording is compared with eager and NumPy training in ``tests/test_gpu.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from srl import cuda_graphs, models
from srl.config import TrainConfig
from srl.cuda_graphs import Recordings
from srl.learning import chain_and_gradient

torch = pytest.importorskip("torch")


def eager_capture(fn, device):
    """The stand-in for ``torch.cuda.graph``: (replay, output buffers, first result)."""
    out = cuda_graphs._clone(fn())

    class Replay:
        @staticmethod
        def replay():
            cuda_graphs._copy_into(out, fn())  # fn reads the input buffers as they are now

    return Replay(), out, cuda_graphs._clone(fn())


def _problem(gen, n, K, seed):
    g = torch.Generator().manual_seed(seed)
    params = {k: v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype)
              for k, v in gen.init(seed=0, backend="torch", dtype="float64").items()}
    x = torch.rand((n, *gen.out_shape), generator=g, dtype=torch.float64)
    z0 = tuple(torch.randn((n, d), generator=g, dtype=torch.float64) for d in gen.latent_dims)
    noise = [tuple(torch.randn((n, d), generator=g, dtype=torch.float64) for d in gen.latent_dims) for _ in range(K)]
    return params, x, z0, noise


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(u, v) for u, v in zip(a, b))
    return bool(torch.equal(a, b))


def _replay(rec, xp, gen, p, x, z0, noise, s, sigma):
    """The training loop's call (srl.learning): s and σ are constants of the recording."""
    def chain(p, x, z0, noise):
        return chain_and_gradient(xp, gen, p, x, z0, noise, s, sigma)

    return rec.replay(chain, (p, x, z0, noise), key=(s, sigma))


def test_replays_read_the_new_inputs_and_record_again_when_the_key_changes():
    gen = models.mlp(latent_dims=(2, 3), hidden=8)
    xp = __import__("array_api_compat").array_namespace(torch.zeros(1))
    rec = Recordings(capture=eager_capture)
    s1, s2 = (0.1, 0.05), (0.1, 0.04)
    for i, s in enumerate((s1, s1, s1, s2, s2)):  # new θ, data and noise every call
        p, x, z0, noise = _problem(gen, 6, 3, seed=i)
        got = _replay(rec, xp, gen, p, x, z0, noise, s, 0.3)
        assert _equal(got, chain_and_gradient(xp, gen, p, x, z0, noise, s, 0.3)), f"call {i}"
    assert rec.recorded == 2  # s1 once, s2 once
    # another batch size is another recording; with one kept, going back records again
    for i, n in enumerate((4, 6)):
        p, x, z0, noise = _problem(gen, n, 3, seed=9 + i)
        got = _replay(rec, xp, gen, p, x, z0, noise, s2, 0.3)
        assert _equal(got, chain_and_gradient(xp, gen, p, x, z0, noise, s2, 0.3))
    assert rec.recorded == 4


def test_training_with_recordings_follows_the_eager_trajectory(monkeypatch, tmp_path):
    """The training loop's use of the recordings (stand-in capture, torch on the CPU): the
    same parameters, step sizes and losses as eager training, bit for bit."""
    from srl.train import train

    run = dict(limit=120, model="mlp", latent_dims=(2, 3), hidden=8, batch_size=40, n_steps=4, step_every=2,
               step_subset=8, lr=3e-3, epochs=2, backend="torch", dtype="float64")
    eager = train(TrainConfig(**run, out=str(tmp_path / "eager")), progress=False, evaluate_at_end=False)
    rec = Recordings(capture=eager_capture)
    monkeypatch.setattr(cuda_graphs, "RECORDINGS", rec)
    # the option is for CUDA devices (checked by validate); the loop itself does not look
    monkeypatch.setattr(TrainConfig, "validate", lambda self: None)
    graphed = train(TrainConfig(**run, out=str(tmp_path / "graphs"), cuda_graphs=True), progress=False,
                    evaluate_at_end=False)
    assert len(graphed.history) == 6 and rec.recorded == 4  # chains of iterations 1, 2-3, 4-5, 6: four s
    assert graphed.step_size == eager.step_size
    for k in eager.params:
        np.testing.assert_array_equal(np.asarray(graphed.params[k]), np.asarray(eager.params[k]), err_msg=k)
    assert [h["energy"] for h in graphed.history] == [h["energy"] for h in eager.history]


@pytest.mark.parametrize("kw", [dict(backend="numpy"), dict(backend="torch"), dict(backend="torch", device="cpu"),
                                dict(backend="torch", device="cuda", method="vae")])
def test_the_option_names_what_it_needs(kw):
    with pytest.raises(ValueError, match=r"cuda_graphs \(--cuda-graphs\) .* --backend torch --device cuda"):
        TrainConfig(cuda_graphs=True, **kw).validate()


@pytest.mark.parametrize("name", ["mlp", "conv", "paper"])
def test_the_recorded_function_makes_no_array_from_host_values(name):
    """A CUDA graph cannot record a copy from host memory, nor a read back to the host:
    ``chain_and_gradient`` must make neither (a Python scalar turned into an array, say by
    ``maximum(a, 0.0)``, is such a copy on a GPU). Watched on the CPU, where the same torch
    operations are dispatched: no tensor lifted from Python data, no scalar read."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if any(s in str(func) for s in ("lift_fresh", "_local_scalar_dense", "scalar_tensor")):
                seen.append(str(func))
            return func(*args, **(kwargs or {}))

    gen = getattr(models, name)()
    xp = __import__("array_api_compat").array_namespace(torch.zeros(1))
    params, x, z0, noise = _problem(gen, 2, 2, seed=0)
    with Watch():
        chain_and_gradient(xp, gen, params, x, z0, noise, (0.05,) * len(gen.latent_dims), 0.3)
    assert not seen
