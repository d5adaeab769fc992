"""Learning (docs/math.md §3), checkpoints, resume, and the CLI."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

import srl
from srl import checkpoint
from srl.train import TrainConfig, load_run, train

# A run small enough for CI: 200 digits, batch 50, 4 iterations per epoch.
SMALL = dict(limit=200, model="mlp", latent_dims=(2, 3), hidden=16, batch_size=50, n_steps=5, step_every=2,
             step_subset=8, lr=3e-3, lr_schedule="constant", eval_n_bound=20, eval_iw_chains=2)


def _cfg(tmp_path, name="run", **kw):
    return TrainConfig(**{**SMALL, "out": str(tmp_path / name), **kw})


@pytest.mark.parametrize("backend", ["numpy", "torch", "array_api_strict"])
def test_short_training_lowers_the_loss(tmp_path, backend):
    pytest.importorskip(backend)
    # array-api-strict checks every operation in Python (~50× slower): a shorter run there
    epochs = 3 if backend == "array_api_strict" else 6
    res = train(_cfg(tmp_path, epochs=epochs, backend=backend, dtype="float32", step_method="gradient"),
                progress=False, evaluate_at_end=False)
    energy = [h["energy"] for h in res.history]
    mse = [h["mse"] for h in res.history]
    # mean over the first and the last epoch (4 iterations each): learning must show
    assert np.mean(energy[-4:]) < 0.8 * np.mean(energy[:4])
    assert np.mean(mse[-4:]) < np.mean(mse[:4])
    assert all(len(h["step_size"]) == 2 for h in res.history)


@pytest.mark.parametrize("method,objective", [("gradient", "reverse"), ("grid", "jacobian"), ("fixed", "reverse")])
def test_resume_equals_an_uninterrupted_run(tmp_path, method, objective):
    full = train(_cfg(tmp_path, "full", epochs=3, step_method=method, step_objective=objective, dtype="float64"),
                 progress=False, evaluate_at_end=False)
    cfg = _cfg(tmp_path, "parts", epochs=3, step_method=method, step_objective=objective, dtype="float64")
    train(cfg, progress=False, evaluate_at_end=False, max_iterations=5)  # "interrupted" after 5 of 12
    assert checkpoint.load(tmp_path / "parts" / "checkpoint.npz")["meta"]["iteration"] == 5
    resumed = train(cfg, resume=True, progress=False, evaluate_at_end=False)
    for k in full.params:  # bit-identical parameters, step sizes and history
        np.testing.assert_array_equal(resumed.params[k], full.params[k])
    assert resumed.step_size == full.step_size
    assert resumed.history == full.history
    lines = (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == list(range(1, 13))


def test_resume_refuses_a_different_configuration(tmp_path):
    train(_cfg(tmp_path, epochs=1), progress=False, evaluate_at_end=False)
    with pytest.raises(ValueError, match=r"--resume with --sigma 0.3 \(the run has 0.15\) would not reproduce"):
        train(_cfg(tmp_path, epochs=2, sigma=0.3), resume=True, progress=False, evaluate_at_end=False)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    params = {"w": np.arange(3.0)}
    checkpoint.save(path, params=params, adam={"t": 1, "m": {}, "v": {}}, meta={"iteration": 1})
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, params={"w": np.zeros(3)}, adam={"t": 2, "m": {}, "v": {}}, meta={"iteration": 2})
    assert path.read_bytes() == before  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]  # no partial file left
    assert checkpoint.load(path)["meta"]["iteration"] == 1


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.save(path, params={"w": np.arange(3.0)}, adam={"t": 0, "m": {}, "v": {}}, meta={})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(checkpoint.CheckpointError, match="unreadable or truncated"):
        checkpoint.load(path)


def test_unwritable_output_directory(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/srl-cannot-write-here"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        target = str(ro / "run")
    with pytest.raises(PermissionError, match="not writable"):
        train(TrainConfig(**{**SMALL, "out": target, "epochs": 1}), progress=False)


def test_bad_training_arguments(tmp_path):
    with pytest.raises(ValueError, match="step_method"):
        train(_cfg(tmp_path, step_method="newton"), progress=False)
    with pytest.raises(ValueError, match="batch_size 500 exceeds"):
        train(_cfg(tmp_path, batch_size=500), progress=False)
    with pytest.raises(srl.data.DataFilesMissing, match="train-images-idx3-ubyte"):
        train(_cfg(tmp_path, data="mnist", root=str(tmp_path)), progress=False)


def test_full_run_writes_artifacts_and_metrics(tmp_path):
    res = train(_cfg(tmp_path, epochs=2), progress=False)
    out = tmp_path / "run"
    for name in ("metrics.jsonl", "training.png", "samples.png", "samples_codes.png", "reconstructions.png",
                 "checkpoint.npz", "config.json", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    m = res.metrics
    for key in ("mse_per_pixel", "neg_elbo_jacobian_nats", "neg_elbo_reverse_nats", "neg_iw2_elbo_reverse_nats",
                "frechet_digits", "frechet_digits_codes"):
        assert np.isfinite(m[key]), key
    # bits/dim are nats / (D ln 2) with D = 64
    assert m["neg_elbo_jacobian_bpd"] == pytest.approx(m["neg_elbo_jacobian_nats"] / (64 * np.log(2)))
    gen, params, s, cfg = load_run(out)
    assert s == res.step_size and cfg.hidden == 16
    for k in params:
        np.testing.assert_array_equal(params[k], res.params[k])


def test_cli_subcommands(tmp_path, capsys):
    from srl.cli import main

    out = tmp_path / "cli"
    args = ["train", "--limit", "200", "--model", "mlp", "--latent-dims", "2,3", "--hidden", "8", "--batch-size", "50",
            "--n-steps", "3", "--epochs", "1", "--step-method", "grid", "--step-objective", "jacobian", "--out",
            str(out), "--no-progress", "--no-eval"]
    assert main(args) == 0
    assert (out / "checkpoint.npz").exists()
    assert main(["sample", str(out), "-n", "9"]) == 0
    assert (out / "samples.png").exists()
    assert main(["reconstruct", str(out), "-n", "8", "-o", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").exists()
    capsys.readouterr()
    assert main(["eval", str(out), "--n-bound", "10", "--iw-chains", "2", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_bound"] == 10 and np.isfinite(metrics["mse_per_pixel"])
    # bad input gives exit status 2 and a message, not a traceback
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "--sigma", "-1", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "sigma must be a positive" in capsys.readouterr().err


def test_nan_pixels_are_rejected_before_training(tmp_path):
    d = srl.data.load("digits")
    bad = d.train.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(srl.NonFiniteError):
        srl.data.check_images(bad)


def test_fid_is_reported_for_non_digit_images_when_weights_exist(tmp_path, monkeypatch):
    """FID plumbing of srl eval: computed against the test images when weights are found,
    absent when they are not, and an explicit missing weights path is an error."""
    inception = pytest.importorskip("srl.inception")  # needs torch
    from srl.evaluate import _synthesis_metrics

    gen = srl.models.mlp(latent_dims=(2,), hidden=4, out_shape=(3, 4, 4))
    p = gen.init(seed=0)
    ref = np.zeros((5, 3, 4, 4))
    monkeypatch.delenv("SRL_FID_WEIGHTS", raising=False)
    monkeypatch.setattr(inception, "_cache_dirs", lambda: [tmp_path / "nowhere"])
    assert _synthesis_metrics(gen, p, seed=0, n_samples=6, x_reference=ref) == {}
    with pytest.raises(FileNotFoundError, match="explicit path"):
        _synthesis_metrics(gen, p, seed=0, n_samples=6, x_reference=ref, fid_weights=tmp_path / "missing.pth")
    weights = tmp_path / inception.WEIGHTS_FILE
    weights.write_bytes(b"stand-in")
    seen = {}

    def fake_fid(a, b, *, weights):
        seen.update(a=a.shape, b=b.shape, weights=weights)
        return 12.5

    monkeypatch.setattr(inception, "fid", fake_fid)
    out = _synthesis_metrics(gen, p, seed=0, n_samples=6, x_reference=ref, fid_weights=weights)
    assert out == {"fid": 12.5, "n_samples": 6, "fid_reference_images": 5}
    assert seen == {"a": (6, 3, 4, 4), "b": (5, 3, 4, 4), "weights": weights}


def test_cli_train_options_are_the_configuration_fields():
    """Every TrainConfig field is an ``srl train`` option with the field's default and parser."""
    import dataclasses

    from srl.cli import build_parser, config_from_args

    parse = build_parser().parse_args
    assert config_from_args(TrainConfig, parse(["train"])) == TrainConfig()
    cfg = config_from_args(TrainConfig, parse(["train", "--latent-dims", "2,3", "--step-size", "0.1,0.2", "--tied",
                                               "--blas-threads", "0", "--eval-iw-chains", "3", "--lr", "0.5"]))
    assert cfg == dataclasses.replace(TrainConfig(), latent_dims=(2, 3), step_size=(0.1, 0.2), tied=True,
                                      blas_threads=0, eval_iw_chains=3, lr=0.5)
    flags = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= flags


def test_train_step_is_a_pure_function_of_the_state_and_minibatch(tmp_path):
    """The same state and minibatch give bit-identical results, and the input state is not modified."""
    from srl.learning import init_state, make_optimisers, train_step
    from srl.train import build_generator

    cfg = _cfg(tmp_path, dtype="float64", step_method="gradient")
    gen = build_generator(cfg, (1, 8, 8))
    opt = make_optimisers(cfg)
    s0 = init_state(cfg, gen, opt)
    before = {k: np.array(v, copy=True) for k, v in s0.params.items()}
    x = srl.data.load("digits", limit=50).train[:50]
    a, ma = train_step(s0, x, cfg=cfg, gen=gen, opt=opt, lr=1e-3)
    a, ma = train_step(a, x, cfg=cfg, gen=gen, opt=opt, lr=1e-3)
    b, mb = train_step(s0, x, cfg=cfg, gen=gen, opt=opt, lr=1e-3)
    b, mb = train_step(b, x, cfg=cfg, gen=gen, opt=opt, lr=1e-3)
    assert ma == mb and a.step_size == b.step_size and a.iteration == b.iteration == 2
    assert a.stepper.t == 1 and np.array_equal(a.stepper.m, b.stepper.m)  # one s-update (step_every=2)
    for k in before:
        np.testing.assert_array_equal(s0.params[k], before[k])
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert all(not np.array_equal(a.params[k], before[k]) for k in before)  # θ did move


def test_step_sizes_are_held_after_step_iterations(tmp_path):
    """s is optimised during the first ``step_iterations`` iterations only (docs/math.md §5,
    "Choosing s"), then held while θ keeps learning; 0 optimises it throughout."""
    res = train(_cfg(tmp_path, "held", epochs=4, step_method="gradient", step_iterations=6), progress=False,
                evaluate_at_end=False)
    s = [tuple(h["step_size"]) for h in res.history]  # the s used at iterations 1..16
    updated = [h["iteration"] for h in res.history if "step_objective" in h]
    assert updated == [1, 3, 5]  # iterations 0, 2, 4 (0-based) of the first 6, every step_every = 2
    assert len(set(s[:7])) > 1 and len(set(s[6:])) == 1 and res.step_size == s[-1]
    free = train(_cfg(tmp_path, "free", epochs=4, step_method="gradient", step_iterations=0), progress=False,
                 evaluate_at_end=False)
    assert [h["iteration"] for h in free.history if "step_objective" in h] == list(range(1, 17, 2))
    assert free.history[:6] == res.history[:6]  # the same run up to the hold


def test_keeping_activations_changes_only_the_cost_of_the_step_size_gradient(tmp_path, monkeypatch):
    """``--step-keep-activations`` (three latent groups: the adjoint sweep) trains the same run
    as without, up to round-off, through the stored tapes; and it is refused where no adjoint
    sweep runs."""
    from srl import reverse_bound

    calls = []
    tangent_hvp = reverse_bound._hvp_from_tape
    monkeypatch.setattr(reverse_bound, "_hvp_from_tape", lambda *a: calls.append(1) or tangent_hvp(*a))
    kw = dict(latent_dims=(2, 2, 3), epochs=2, dtype="float64", step_method="gradient", step_objective="reverse")
    base = train(_cfg(tmp_path, "base", **kw), progress=False, evaluate_at_end=False)
    assert not calls
    kept = train(_cfg(tmp_path, "kept", step_keep_activations=True, **kw), progress=False, evaluate_at_end=False)
    assert len(calls) == 4 * 5  # four s-updates of K = 5 steps, one tangent HVP each
    assert [h["iteration"] for h in kept.history if "step_objective" in h] == [1, 3, 5, 7]
    # the same float64 run; the HVPs of the sweep sum the same terms in another order
    np.testing.assert_allclose([h["step_size"] for h in kept.history], [h["step_size"] for h in base.history],
                               rtol=1e-10)
    np.testing.assert_allclose([h["energy"] for h in kept.history], [h["energy"] for h in base.history],
                               rtol=1e-10)
    with pytest.raises(ValueError, match="--step-keep-activations.*--step-objective reverse"):
        train(_cfg(tmp_path, "jac", step_keep_activations=True, step_method="gradient", step_objective="jacobian"),
              progress=False)
