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


def test_around_codes_decodes_the_codes_and_their_neighbourhood(tmp_path):
    """``--around``: h = 0 scores g at the codes themselves (drawn with replacement), h > 0 the
    codes plus h ε; every entry is the same computation as by hand, and a rerun adds nothing."""
    from srl.evaluate import chain_codes, fit_codes, image_metrics
    from srl.train import load_data, load_run, split_run_params

    lt = _script()
    cfg = TrainConfig(**SMALL, epochs=1, out=str(tmp_path / "runs" / "small-seed0"))
    lt.train_with_curve(cfg, 1, 20)
    run = Path(cfg.out)
    table = lt.around_codes(tmp_path / "runs", 300, 40, [0.0, 0.5], sample_seeds=(100,))
    rows = {r["h"]: r["frechet"] for r in map(json.loads, (run / "frechet-codes40-around-300.jsonl").read_text()
                                                 .splitlines())}
    assert sorted(rows) == [0.0, 0.5] and rows[0.0] != rows[0.5]
    assert f"| small-seed0 | 0.5 | 1: {rows[0.5]:.2f} |" in table

    gen, params, s, c = load_run(run / "checkpoint-e0001.npz")
    ds = load_data(c)
    gen_p, _, _ = split_run_params(c, gen, params)
    codes = chain_codes(gen, gen_p, ds.train[:40], step_size=s, n_steps=c.n_steps, sigma=c.sigma, seed=[c.seed, 7])
    assert [z.shape for z in codes] == [(40, 2), (40, 3)] and codes[0].dtype == np.float64
    # fit_codes is the Gaussian of exactly these codes
    g = fit_codes(gen, gen_p, ds.train[:40], step_size=s, n_steps=c.n_steps, sigma=c.sigma, seed=[c.seed, 7])
    np.testing.assert_array_equal(g.mean, np.concatenate(codes, axis=1).mean(axis=0))
    z = np.concatenate(codes, axis=1)
    rng = np.random.default_rng(100)
    zs = z[rng.integers(0, 40, 300)] + 0.5 * rng.standard_normal((300, 5))
    x = gen.forward(gen_p, (zs[:, :2].astype(np.float32), zs[:, 2:].astype(np.float32)))
    assert image_metrics(gen, np.asarray(x), x_reference=ds.test)["frechet_digits"] == rows[0.5]

    before = (run / "frechet-codes40-around-300.jsonl").read_text()
    assert lt.around_codes(tmp_path / "runs", 300, 40, [0.0, 0.5], sample_seeds=(100,)) == table
    assert (run / "frechet-codes40-around-300.jsonl").read_text() == before
