"""scripts/long_training.py: snapshots every chunk, and the Fréchet re-evaluation of them."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from srl.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
# A run small enough for CI: 200 digits, batch 50, 4 iterations per epoch.
SMALL = dict(limit=200, model="mlp", latent_dims=(2, 3), hidden=16, batch_size=50, n_steps=5, step_every=2,
             step_subset=8, eval_n_bound=4, eval_iw_chains=2)


def _script():
    spec = importlib.util.spec_from_file_location("long_training", ROOT / "scripts" / "long_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rescore_evaluates_every_snapshot_twice_and_resumes(tmp_path):
    lt = _script()
    cfg = TrainConfig(**SMALL, epochs=2, out=str(tmp_path / "runs" / "small-seed0"))
    lt.train_with_curve(cfg, 1, 20)
    run = Path(cfg.out)
    assert sorted(p.name for p in run.glob("checkpoint-e*.npz")) == ["checkpoint-e0001.npz", "checkpoint-e0002.npz"]

    table = lt.rescore(tmp_path / "runs", 300)
    rows = [json.loads(l) for l in (run / "frechet-300.jsonl").read_text().splitlines()]
    assert sorted((r["epoch"], r["sample_seed"]) for r in rows) == [(1, 100), (1, 101), (2, 100), (2, 101)]
    values = np.array([r["frechet"] for r in rows])
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    # independent draws of the same snapshot give different estimates (a shared draw would not)
    assert rows[0]["frechet"] != rows[1]["frechet"]
    line = next(l for l in table.splitlines() if l.startswith("| small-seed0 |"))
    mean = {e: np.mean([r["frechet"] for r in rows if r["epoch"] == e]) for e in (1, 2)}
    assert f"1: {mean[1]:.2f}, 2: {mean[2]:.2f}" in line
    assert f"| {mean[2]:.2f} |" in line  # the final value

    # a second call evaluates nothing again: the file is unchanged
    before = (run / "frechet-300.jsonl").read_text()
    assert lt.rescore(tmp_path / "runs", 300) == table
    assert (run / "frechet-300.jsonl").read_text() == before


def test_rescore_with_the_codes_gaussian_samples_from_the_fitted_codes(tmp_path):
    """``--codes M``: each snapshot's samples come from the Gaussian of the codes of its first M
    training images (fitted with the run's s, K, σ, seed [seed, 7]), in their own file; the
    figure of both sources is written."""
    from srl.evaluate import fit_codes
    from srl.train import load_data, load_run, split_run_params

    lt = _script()
    cfg = TrainConfig(**SMALL, epochs=1, out=str(tmp_path / "runs" / "small-seed0"))
    lt.train_with_curve(cfg, 1, 20)
    run = Path(cfg.out)
    lt.rescore(tmp_path / "runs", 300, codes=50)
    rows = [json.loads(l) for l in (run / "frechet-codes50-300.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["sample_seed"]) for r in rows] == [(1, 100), (1, 101)]
    assert not (run / "frechet-300.jsonl").exists()  # the prior's file is another rescore

    gen, params, s, c = load_run(run / "checkpoint-e0001.npz")
    ds = load_data(c)
    gen_p, _, _ = split_run_params(c, gen, params)
    codes = fit_codes(gen, gen_p, ds.train[:50], step_size=s, n_steps=c.n_steps, sigma=c.sigma, seed=[c.seed, 7])
    want = lt.frechet(gen, gen_p, c, ds, seed=100, n_samples=300, codes=codes)
    assert rows[0]["frechet"] == want  # the same computation, bit for bit
    assert want != lt.frechet(gen, gen_p, c, ds, seed=100, n_samples=300)  # not the prior's samples

    lt.rescore(tmp_path / "runs", 300)
    pytest.importorskip("matplotlib")
    lt.plot_codes([("small", [run])], tmp_path / "fig.png", n_samples=300, codes=50)
    assert (tmp_path / "fig.png").stat().st_size > 0
