"""Host synchronisations: a chain, an objective and a training iteration read device values
back a fixed number of times, whatever the number of steps K (divergence is checked once per
chain, after its last step; docs/math.md §2). That divergence is still reported is
``tests/test_errors.py::test_divergence_is_reported``.

Counted on torch tensors (every ``bool``/``float``/``int``/``.item()``/``.tolist()``/``.numpy()``
is a device-to-host read); the counts must not grow with K.
"""

from __future__ import annotations

import numpy as np
import pytest

import srl

torch = pytest.importorskip("torch")

READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")


@pytest.fixture
def count_reads(monkeypatch):
    counter = {"n": 0}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *a, _original=original, **k):
            counter["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)

    def count(fn):
        counter["n"] = 0
        fn()
        return counter["n"]

    return count


def _problem(n=4):
    gen = srl.models.mlp(latent_dims=(2, 3), hidden=6, out_shape=(1, 2, 2))
    p = gen.init(seed=0, backend="torch", dtype="float64")
    x = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (n, 1, 2, 2)))
    return gen, p, x


@pytest.mark.parametrize("what", ["chain", "jacobian", "jacobian_values", "reverse_forward", "reverse_adjoint",
                                  "reverse_adjoint_kept", "hutchinson"])
def test_host_reads_do_not_grow_with_the_number_of_steps(count_reads, what):
    gen, p, x = _problem()
    kw = dict(step_size=(0.1, 0.05), sigma=0.5, seed=1)

    def run(K):
        if what == "chain":
            return lambda: srl.short_run(gen, p, x, n_steps=K, **kw)
        if what == "jacobian_values":
            return lambda: srl.objective_values(gen, p, x, n_steps=K, kind="jacobian", **kw)
        opts = {"jacobian": dict(kind="jacobian"), "hutchinson": dict(kind="jacobian", logdet="hutchinson"),
                "reverse_forward": dict(kind="reverse", gradient="forward"),
                "reverse_adjoint": dict(kind="reverse", gradient="adjoint"),
                "reverse_adjoint_kept": dict(kind="reverse", gradient="adjoint", keep_activations=True)}[what]
        return lambda: srl.stepsize_objective(gen, p, x, n_steps=K, **opts, **kw)

    few, many = count_reads(run(2)), count_reads(run(12))
    assert few == many, (few, many)


def test_a_training_iteration_reads_the_host_a_fixed_number_of_times(count_reads, tmp_path):
    from srl.learning import init_state, make_optimisers, train_step
    from srl.train import TrainConfig, build_generator

    counts = {}
    for K in (2, 12):
        cfg = TrainConfig(model="mlp", latent_dims=(2, 3), hidden=6, backend="torch", dtype="float64", n_steps=K,
                          step_method="gradient", step_subset=4, out=str(tmp_path))
        gen = build_generator(cfg, (1, 8, 8))
        opt = make_optimisers(cfg)
        state = init_state(cfg, gen, opt)
        x = torch.as_tensor(srl.data.load("digits", limit=8).train[:8])
        counts[K] = count_reads(lambda: train_step(state, x, cfg=cfg, gen=gen, opt=opt, lr=1e-3))
    assert counts[2] == counts[12], counts

