"""Data-parallel training: 2 workers (gloo on 127.0.0.1) against one process.

One set of spawned workers (module fixture) runs every distributed training these tests
check — each step-size method, the VAE, an interrupted run, a mismatched start — so that
the processes and torch imports are paid once; the single-process runs are made in the
test process. Float64 throughout: the only difference allowed between N = 1 and N = 2 is
the order of floating-point summation of the all-reduced sums.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from srl import _backend, checkpoint, distributed
from srl.train import TrainConfig, train

from .workers import run_workers

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

# float64 sums of at most a few hundred terms, added in another order: a few ulps relative
REL = 1e-12

RUNS = {  # name: configuration changes (the step-size methods of docs/math.md §4, §5, and the VAE of §8)
    "fixed": dict(step_method="fixed"),
    "grid": dict(step_method="grid", step_objective="jacobian"),
    "gradient-reverse": dict(step_method="gradient", step_objective="reverse"),
    "gradient-jacobian": dict(step_method="gradient", step_objective="jacobian"),
    "vae": dict(method="vae", step_method="fixed"),
}


def _cfg(out, **changes):
    # 40 digits, batches of 10 (5 rows per worker), K = 4, s-updates every 2 iterations on 7 examples (4 + 3 rows)
    base = dict(data="digits", limit=40, batch_size=10, epochs=2, n_steps=4, step_every=2, step_subset=7, hidden=16,
                dtype="float64", seed=3, out=str(out), eval_n_bound=10, eval_iw_chains=2)
    return TrainConfig(**dict(base, **changes))


def _host(params):
    return {k: _backend.to_numpy(v).copy() for k, v in params.items()}


def _distributed_runs(rank, root):
    """Everything the tests need from 2 workers; worker 0 reports what it saw."""
    warnings.simplefilter("ignore")
    workers = distributed.from_environment(timeout=60)
    got = {}
    try:
        for name, changes in RUNS.items():
            res = train(_cfg(Path(root) / name, **changes), progress=False, evaluate_at_end=(name == "fixed"),
                        workers=workers)
            got[name] = (_host(res.params), res.history, res.metrics)
        # an interrupted run: stops (and checkpoints) after 3 of its 8 iterations
        train(_cfg(Path(root) / "interrupted", step_method="gradient"), progress=False, max_iterations=3,
              workers=workers)
        try:  # workers started with different configurations
            train(_cfg(Path(root) / "mismatch", n_steps=4 + rank), progress=False, workers=workers)
            got["mismatch"] = None
        except distributed.ConfigMismatchError as exc:
            got["mismatch"] = str(exc)
        got["files"] = sorted(p.name for p in (Path(root) / "fixed").iterdir())
        return got
    finally:
        workers.close()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_workers")
    out = run_workers(_distributed_runs, 2, args=(str(root),), wait=600)
    assert sorted(out) == [0, 1], out
    for rank, (status, value) in out.items():
        assert status == "ok", (rank, value)
    return root, out[0][1], out[1][1]


def _assert_close_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        scale = np.max(np.abs(a[k]))
        assert np.max(np.abs(a[k] - b[k])) <= REL * scale, k


def _assert_close_history(h1, h2):
    assert len(h1) == len(h2)
    for r1, r2 in zip(h1, h2):
        assert r1.keys() == r2.keys()
        for k, v in r1.items():
            assert np.allclose(v, r2[k], rtol=REL, atol=0), (r1["iteration"], k, v, r2[k])


@pytest.mark.parametrize("name", list(RUNS))
def test_two_workers_learn_the_parameters_of_one_process(two_workers, name, tmp_path):
    root, rank0, rank1 = two_workers
    warnings.simplefilter("ignore")
    one = train(_cfg(tmp_path, **RUNS[name]), progress=False, evaluate_at_end=(name == "fixed"))
    params0, history0, metrics0 = rank0[name]
    _assert_close_params(_host(one.params), params0)
    _assert_close_history(one.history, history0)
    # both workers hold the same state, bit for bit (the same Adam step on the same all-reduced sums)
    for k, v in params0.items():
        np.testing.assert_array_equal(v, rank1[name][0][k])
    # and worker 0 wrote it: the checkpoint equals the workers' parameters
    saved = checkpoint.load(root / name / "checkpoint.npz")
    for k, v in params0.items():
        np.testing.assert_array_equal(saved["params"][k], v)
    if name == "fixed":  # the evaluation at the end is split across the workers, the summary written by worker 0
        for k, v in one.metrics.items():
            if k != "train_seconds_this_session":
                assert np.allclose(v, metrics0[k], rtol=REL, atol=0), k
        assert rank1[name][2] == {}


def test_only_worker_0_writes_the_run_directory(two_workers):
    root, rank0, _ = two_workers
    assert rank0["files"] == ["checkpoint.npz", "config.json", "metrics.jsonl", "reconstructions.png", "samples.png",
                              "samples_codes.png", "summary.json", "training.png"]
    lines = (root / "fixed" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8  # one line per iteration, not one per worker


def test_a_two_worker_run_resumes_in_one_process_as_if_uninterrupted(two_workers, tmp_path):
    root, _, _ = two_workers
    warnings.simplefilter("ignore")
    assert checkpoint.load(root / "interrupted" / "checkpoint.npz")["meta"]["iteration"] == 3
    resumed = train(_cfg(root / "interrupted", step_method="gradient"), resume=True, progress=False,
                    evaluate_at_end=False)
    whole = train(_cfg(tmp_path, step_method="gradient"), progress=False, evaluate_at_end=False)
    _assert_close_params(_host(whole.params), _host(resumed.params))
    _assert_close_history(whole.history, resumed.history)


def test_workers_with_different_configurations_stop_at_start(two_workers):
    _, rank0, rank1 = two_workers
    for got in (rank0, rank1):
        assert got["mismatch"] is not None and "worker 1: n_steps (4 vs 5)" in got["mismatch"]


def test_too_few_rows_per_worker_is_a_clear_error(tmp_path):
    two = distributed.Workers(rank=0, size=2)  # the check runs before any collective
    with pytest.raises(ValueError, match="step_subset 1 is smaller than the 2 workers"):
        train(_cfg(tmp_path, step_subset=1, step_method="grid"), progress=False, workers=two)


# -- the command line: srl train --nproc 2, and a worker killed mid-run ------------------------

def _children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


def _rank_of(pid):
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through /proc (Linux)")
def test_killing_a_worker_ends_the_run_with_a_clear_error_and_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    # 200 digits in batches of 10: a checkpoint every epoch of 20 iterations, far more epochs than the test waits for
    cmd = [sys.executable, "-m", "srl", "train", "--nproc", "2", "--limit", "200", "--batch-size", "10", "--epochs",
           "200", "--n-steps", "3", "--hidden", "16", "--step-method", "fixed", "--dtype", "float64", "--no-progress",
           "--timeout", "30", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.npz").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        victims = [c for c in _children(proc.pid) if _rank_of(c) == 1]
        assert len(victims) == 1, _children(proc.pid)
        os.kill(victims[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)  # the survivors stop at once (closed connection), well within this
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "srl: worker 1 of 2 was killed by SIGKILL; the other workers were stopped" in err, err
    state = checkpoint.load(out / "checkpoint.npz")  # intact
    done = state["meta"]["iteration"]
    assert done > 0 and done % 20 == 0
    warnings.simplefilter("ignore")
    cfg = TrainConfig(data="digits", limit=200, batch_size=10, epochs=200, n_steps=3, hidden=16, step_method="fixed",
                      dtype="float64", out=str(out))
    res = train(cfg, resume=True, progress=False, max_iterations=done + 2)
    assert len(res.history) == done + 2
