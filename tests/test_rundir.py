"""Run-directory rules: one run per directory, exact-or-refused resume, no leftovers, clear
messages (srl.rundir, srl train). Tiny runs: 40 digits, batches of 10, K = 2."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from srl import DivergenceError, RunDirectoryError, checkpoint, runlock
from srl.cli import main
from srl.train import TrainConfig, train

TINY = dict(limit=40, latent_dims=(2,), hidden=4, batch_size=10, n_steps=2, step_method="fixed",
            lr_schedule="constant", epochs=1)
TINY_ARGS = ["--limit", "40", "--latent-dims", "2", "--hidden", "4", "--batch-size", "10", "--n-steps", "2",
             "--step-method", "fixed", "--lr-schedule", "constant", "--epochs", "1", "--no-progress", "--no-eval"]


def _cfg(out, **kw):
    return TrainConfig(**{**TINY, "out": str(out), **kw})


def _run(out, **kw):
    opts = {k: kw.pop(k) for k in ("resume", "overwrite", "max_iterations") if k in kw}
    return train(_cfg(out, **kw), progress=False, evaluate_at_end=False, **opts)


def _snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _saved_iteration(d):
    return checkpoint.load(d / "checkpoint.npz")["meta"]["iteration"]


# -- one run per directory ----------------------------------------------------------------------


def test_an_existing_run_is_refused_without_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    _run(out)
    before = _snapshot(out)
    with pytest.raises(RunDirectoryError, match=r"already holds a run \(checkpoint.npz, config.json, metrics.jsonl\): "
                                                r"continue it with --resume .* replace it with --overwrite"):
        _run(out, step_method="grid")
    assert _snapshot(out) == before


def test_the_readme_sequence_does_not_destroy_the_first_run(tmp_path, capsys):
    out = str(tmp_path / "digits")
    assert main(["train", *TINY_ARGS, "--out", out]) == 0
    before = _snapshot(tmp_path / "digits")
    capsys.readouterr()
    assert main(["train", *TINY_ARGS, "--step-method", "grid", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert _snapshot(tmp_path / "digits") == before
    assert main(["train", *TINY_ARGS, "--step-method", "grid", "--out", str(tmp_path / "digits-fixed")]) == 0


def test_overwrite_replaces_the_run_and_its_results(tmp_path):
    out = tmp_path / "run"
    train(_cfg(out), progress=False)  # with results (pictures, summary.json)
    assert (out / "summary.json").exists()
    _run(out, seed=3, overwrite=True)
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 3
    assert checkpoint.load(out / "checkpoint.npz")["meta"]["config"]["seed"] == 3
    assert not (out / "summary.json").exists() and not (out / "samples.png").exists()  # the old run's results
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "metrics.jsonl"]


@pytest.mark.parametrize("failure", ["theta divergence", "theta overflow", "interrupt"])
def test_a_failing_replacement_leaves_the_previous_run_exactly(tmp_path, monkeypatch, failure):
    out = tmp_path / "run"
    _run(out)
    before = _snapshot(out)
    if failure == "theta divergence":  # θ finite but huge: the next chain diverges, and the message says why
        with pytest.raises(DivergenceError, match=r"the chain of iteration 2 diverged after θ's update of iteration "
                                                  r"1 \(θ learning rate 1e\+30\); .* lower --lr"), \
                np.errstate(all="ignore"):
            _run(out, lr=1e30, overwrite=True)
    elif failure == "theta overflow":  # lr / (1 - β1) overflows: θ itself becomes inf
        with pytest.raises(DivergenceError, match=r"θ became NaN or inf in the update of iteration 1 .* lower --lr"), \
                np.errstate(all="ignore"):
            _run(out, lr=1e308, overwrite=True)
    else:
        import srl.train as train_mod

        calls = []

        def interrupted_step(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(*a, **k)

        real = train_mod.train_step
        monkeypatch.setattr(train_mod, "train_step", interrupted_step)
        with pytest.raises(KeyboardInterrupt) as info:
            _run(out, seed=5, overwrite=True)
        assert info.value.checkpoint_iteration is None  # the replacement saved nothing
    assert _snapshot(out) == before  # no .srl-new/, no lock, same bytes


def test_a_run_that_fails_before_writing_leaves_no_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        _run(tmp_path / "new" / "run", data=str(tmp_path / "no-such-images"))
    assert sorted(os.listdir(tmp_path)) == ["new"] and not (tmp_path / "new" / "run").exists()


def test_resume_of_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(RunDirectoryError, match="does not exist, so it holds no run to continue; drop --resume"):
        _run(tmp_path / "absent", resume=True)
    assert not (tmp_path / "absent").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirectoryError, match="holds no run to continue; drop --resume"):
        _run(tmp_path / "empty", resume=True)
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "metrics.jsonl").write_text("")
    with pytest.raises(RunDirectoryError, match=r"it has metrics.jsonl but no checkpoint"):
        _run(tmp_path / "partial", resume=True)
    assert sorted(os.listdir(tmp_path / "empty")) == []


def test_concurrent_trainings_one_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from srl import runlock
        lock = runlock.acquire({str(out)!r})
        print("locked", flush=True)
        time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", *TINY_ARGS, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"is in use by process {holder.pid} on host" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert sorted(os.listdir(out)) == [runlock.LOCK_NAME]  # the refused run wrote nothing


# -- exact or refused resume ---------------------------------------------------------------------

TRAJECTORY_OPTIONS = [("sigma", 0.2), ("n_steps", 3), ("lr", 1e-3), ("seed", 1), ("step_size", 0.04),
                      ("batch_size", 20), ("step_method", "grid"), ("lr_schedule", "cosine"), ("beta1", 0.9),
                      ("dtype", "float64"), ("hidden", 5), ("limit", 30), ("blas_threads", 2)]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("interrupted") / "run"
    train(_cfg(out, epochs=2), progress=False, evaluate_at_end=False, max_iterations=4)
    return out


@pytest.mark.parametrize("field, value", TRAJECTORY_OPTIONS)
def test_resume_refuses_each_option_that_changes_the_trajectory(interrupted_run, field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(RunDirectoryError, match=rf"--resume with {flag} {value} \(the run has .*\) would not "
                                                "reproduce the run"):
        train(_cfg(interrupted_run, epochs=2, **{field: value}), resume=True, progress=False, evaluate_at_end=False)


def test_resume_with_other_epochs_under_the_cosine_schedule_is_refused(tmp_path):
    out = tmp_path / "run"
    _run(out, epochs=2, lr_schedule="cosine", max_iterations=4)
    config = (out / "config.json").read_bytes()
    with pytest.raises(RunDirectoryError, match=r"--resume with --epochs 3 \(the run has 2\) .* cosine learning-rate "
                                                "schedule depends on the total number of iterations"):
        _run(out, epochs=3, lr_schedule="cosine", resume=True)
    assert (out / "config.json").read_bytes() == config


def test_more_epochs_under_the_constant_schedule_are_honoured_exactly(tmp_path):
    whole = _run(tmp_path / "whole", epochs=3)
    _run(tmp_path / "part", epochs=2)
    resumed = _run(tmp_path / "part", epochs=3, resume=True)
    for k in whole.params:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k])
    assert json.loads((tmp_path / "part" / "config.json").read_text())["train"]["epochs"] == 3


def test_fewer_epochs_than_done_are_refused_and_the_config_kept(tmp_path):
    out = tmp_path / "run"
    _run(out, epochs=2)
    before = _snapshot(out)
    with pytest.raises(RunDirectoryError, match=r"--epochs 1: the run has already done 8 iterations"):
        _run(out, epochs=1, resume=True)
    assert _snapshot(out) == before


def test_changed_training_data_are_refused_on_resume(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(folder / f"{i:02d}.png")
    cfg = dict(data=str(folder), limit=None, batch_size=5, epochs=2)
    _run(tmp_path / "run", **cfg, max_iterations=2)
    fingerprint = checkpoint.load(tmp_path / "run" / "checkpoint.npz")["meta"]["data_fingerprint"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_fingerprint"] == fingerprint
    _run(tmp_path / "run", **cfg, resume=True, max_iterations=3)  # same data: continues
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8), mode="L").save(folder / "03.png")
    with pytest.raises(RunDirectoryError, match=r"the data differ from the data the run .* was trained on"):
        _run(tmp_path / "run", **cfg, resume=True)


# -- no leftovers, interruptions ------------------------------------------------------------------

SLOW_SECOND_CHECKPOINT = """
import json, os, sys, time
from srl.cli import main
real_fsync, calls = os.fsync, []
def slow_fsync(fd):
    calls.append(fd)
    if len(calls) == 2:  # inside the second checkpoint write
        print("writing", flush=True)
        time.sleep(60)
    real_fsync(fd)
os.fsync = slow_fsync
sys.exit(main(["train", *json.loads(sys.argv[2]), "--out", sys.argv[1]]))
"""


def _writer(out, epochs):
    args = json.dumps([*TINY_ARGS, "--epochs", str(epochs)])  # the last --epochs wins
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SECOND_CHECKPOINT, str(out), args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert list(out.glob(".checkpoint.npz.*.tmp"))  # caught in the middle of the write
    return proc


def test_sigterm_during_a_checkpoint_write_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "run"
    proc = _writer(out, epochs=3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err
    assert f"interrupted; the checkpoint in {out} (iteration 4) is intact" in err
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "metrics.jsonl"]  # no .tmp, no lock
    assert _saved_iteration(out) == 4  # the first checkpoint, intact


def test_kill_9_during_a_checkpoint_write_then_resume_is_exact_and_clean(tmp_path):
    out = tmp_path / "run"
    proc = _writer(out, epochs=3)
    proc.kill()
    proc.communicate()
    assert (out / runlock.LOCK_NAME).exists() and list(out.glob(".checkpoint.npz.*.tmp"))
    with pytest.warns(runlock.StaleLockWarning):
        resumed = _run(out, epochs=3, resume=True)
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "metrics.jsonl"]
    whole = _run(tmp_path / "whole", epochs=3)
    for k in whole.params:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k])
    assert (out / "metrics.jsonl").read_text() == (tmp_path / "whole" / "metrics.jsonl").read_text()


def test_metrics_are_on_disk_after_every_iteration(tmp_path, monkeypatch):
    import srl.train as train_mod

    out = tmp_path / "run"
    seen = []

    def watching_step(state, *a, **k):
        seen.append(len((out / "metrics.jsonl").read_text().splitlines()))
        return real(state, *a, **k)

    real = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", watching_step)
    _run(out, epochs=1)  # one checkpoint, at the end
    assert seen == [0, 1, 2, 3]


@pytest.mark.parametrize("at_call, message", [
    (2, "interrupted before the first checkpoint: nothing of this run was saved"),
    (6, "(iteration 4) is intact: continue with the same command plus --resume"),
])
def test_ctrl_c_says_what_was_saved(tmp_path, monkeypatch, capsys, at_call, message):
    import srl.train as train_mod

    calls = []

    def step(*a, **k):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real(*a, **k)

    real = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", step)
    assert main(["train", *TINY_ARGS, "--epochs", "2", "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / runlock.LOCK_NAME).exists()


def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    from .test_checkpoint_faults import _FullDisk

    out = tmp_path / "run"
    real_save, saves = checkpoint.save, []

    def full_on_second(path, **kw):
        saves.append(path)
        if len(saves) == 2:
            real_fdopen = os.fdopen
            monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k)))
        return real_save(path, **kw)

    monkeypatch.setattr(checkpoint, "save", full_on_second)
    assert main(["train", *TINY_ARGS, "--epochs", "2", "--out", str(out)]) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert _saved_iteration(out) == 4
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "metrics.jsonl"]


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(RunDirectoryError):
        main(["--debug", "train", *TINY_ARGS, "--resume", "--out", str(tmp_path / "none")])
    with pytest.raises(RunDirectoryError):
        main(["train", *TINY_ARGS, "--resume", "--out", str(tmp_path / "none"), "--debug"])


def test_the_config_is_the_recorded_run_after_overwrite_and_resume(tmp_path):
    out = tmp_path / "run"
    _run(out, epochs=2, max_iterations=2)
    _run(out, epochs=2, resume=True)
    doc = json.loads((out / "config.json").read_text())
    assert TrainConfig.from_json(doc["train"]) == dataclasses.replace(_cfg(out, epochs=2))


def test_full_disk_while_logging_is_one_line_naming_the_log(tmp_path, monkeypatch, capsys):
    import errno

    from srl import rundir

    calls = []

    class FullLog:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            calls.append(text)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    real_start = rundir.RunDirectory.start

    def start(self, *a, **k):
        real_start(self, *a, **k)
        self._log = FullLog(self._log)

    monkeypatch.setattr(rundir.RunDirectory, "start", start)
    assert main(["train", *TINY_ARGS, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"could not append to {tmp_path / 'run' / 'metrics.jsonl'} (No space left on device)" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / runlock.LOCK_NAME).exists()
