"""srl.distributed: row shards, sharded noise, collectives over gloo, consistency checks, faults.

The multi-process tests start 2 workers joined by a gloo process group on 127.0.0.1 (spawned
processes, a few seconds each); they skip where torch.distributed or gloo is absent.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import array_api_compat.numpy as npx

from srl import distributed
from srl.random import chain_noise

from .workers import run_workers

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


@pytest.mark.parametrize("n,size", [(n, size) for n in (1, 2, 7, 32, 100) for size in (1, 2, 3, 5) if n >= size])
def test_shards_cover_every_row_once_in_order(n, size):
    rows = [distributed.shard(n, r, size) for r in range(size)]
    covered = np.concatenate([np.arange(n)[s] for s in rows])
    np.testing.assert_array_equal(covered, np.arange(n))
    lengths = [s.stop - s.start for s in rows]
    assert max(lengths) - min(lengths) <= 1 and min(lengths) >= 1


@pytest.mark.parametrize("n_chains", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_local_noise_is_the_global_draw_restricted_to_the_rows(n_chains, dtype):
    """Concatenating the shards of any number of workers gives the single-process noise bit for bit."""
    dims, n, K = (3, 5), 7, 4
    dt = getattr(npx, dtype)
    z0, noise = chain_noise([11, 1, 4], n_chains * n, dims, K, xp=npx, dtype=dt, device="cpu")
    for size in (1, 2, 3):
        parts = [distributed.local_chain_noise([11, 1, 4], n, dims, K, rows=distributed.shard(n, r, size), xp=npx,
                                               dtype=dt, device="cpu", n_chains=n_chains) for r in range(size)]

        def joined(get):  # chain-major rows m·n + i, reassembled from the shards
            return np.concatenate([np.concatenate([get(p)[m * (s.stop - s.start):(m + 1) * (s.stop - s.start)]
                                                   for p, s in zip(parts, [distributed.shard(n, r, size)
                                                                           for r in range(size)])])
                                   for m in range(n_chains)])

        for l in range(len(dims)):
            np.testing.assert_array_equal(joined(lambda p: p[0][l]), z0[l])
            for k in range(K):
                np.testing.assert_array_equal(joined(lambda p: p[1][k][l]), noise[k][l])
            assert parts[0][0][l].dtype == dt


def test_single_process_reductions_are_the_identity():
    w = distributed.SINGLE
    a = np.arange(6.0).reshape(2, 3)
    assert w.sum((a,))[0] is a
    g = {"w": a}
    assert w.sum_dict(g) is g
    assert w.rows(10) == slice(0, 10) and w.is_main and not w.distributed
    w.check_same({"a": 1})  # nothing to compare with


def test_outside_torchrun_there_is_no_process_group(monkeypatch):
    for v in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    assert not distributed.launched()
    w = distributed.from_environment(timeout=5)
    assert w.size == 1 and w.backend is None


# -- two workers -------------------------------------------------------------------------

def _collectives(rank):
    import array_api_strict

    w = distributed.from_environment(timeout=30)
    try:
        got = {"rank": w.rank, "size": w.size, "rows": (w.rows(9).start, w.rows(9).stop)}
        a32 = np.full((2, 3), rank + 1, dtype=np.float32)
        b64 = np.arange(4, dtype=np.float64) * (rank + 1)
        s = w.sum((a32, b64.astype(np.float32)))
        got["numpy"] = [x.tolist() for x in s]
        got["numpy_types"] = [type(x).__name__ + str(x.dtype) for x in s]
        t = w.sum_dict({"t": torch.full((3,), float(rank + 1), dtype=torch.float64)})["t"]
        got["torch"] = (type(t).__module__, str(t.dtype), t.tolist())
        st = w.sum((array_api_strict.asarray([1.5 * (rank + 1), 2.0], dtype=array_api_strict.float64),))[0]
        got["strict"] = (type(st).__module__.split(".")[0], np.asarray(st._array).tolist())
        got["host"] = w.sum_host([rank, 0.25]).tolist()
        got["any"] = (w.any(rank == 1), w.any(False))
        got["gather"] = w.gather({"r": rank})
        w.check_same({"a": 1, "b": [1, 2]})
        try:
            w.check_same({"a": 1, "batch_size": 100 + rank})
            got["mismatch"] = None
        except distributed.ConfigMismatchError as exc:
            got["mismatch"] = str(exc)
        return got
    finally:
        w.close()


@needs_gloo
def test_two_workers_all_reduce_every_array_library_and_detect_mismatches():
    out = run_workers(_collectives, 2)
    assert sorted(out) == [0, 1], out
    for rank, (status, got) in out.items():
        assert status == "ok", got
        assert got["rank"] == rank and got["size"] == 2
        assert got["rows"] == ((0, 4) if rank == 0 else (4, 9))
        assert got["numpy"] == [[[3.0] * 3] * 2, [0.0, 3.0, 6.0, 9.0]]
        assert got["numpy_types"] == ["ndarrayfloat32", "ndarrayfloat32"]
        assert got["torch"] == ("torch", "torch.float64", [3.0, 3.0, 3.0])
        assert got["strict"] == ("array_api_strict", [4.5, 4.0])
        assert got["host"] == [1.0, 0.5]
        assert got["any"] == (True, False)
        assert got["gather"] == [{"r": 0}, {"r": 1}]
        # every worker raises, naming the worker and the key that differs
        assert "worker 1: batch_size (100 vs 101)" in got["mismatch"]


def _dies(rank):
    w = distributed.from_environment(timeout=30)
    if rank == 1:
        os._exit(3)  # a worker that crashes without a word
    t0 = time.monotonic()
    try:
        w.sum((np.ones(3),))
    except distributed.WorkerLostError as exc:
        return str(exc), time.monotonic() - t0
    return "no error", time.monotonic() - t0


def _hangs(rank):
    w = distributed.from_environment(timeout=3)
    if rank == 1:
        time.sleep(120)  # a worker that stops making progress (killed by the test afterwards)
    t0 = time.monotonic()
    try:
        w.sum_host([1.0])
    except distributed.WorkerLostError as exc:
        return str(exc), time.monotonic() - t0
    return "no error", time.monotonic() - t0


@needs_gloo
@pytest.mark.parametrize("fault", [_dies, _hangs], ids=["dies", "hangs"])
def test_a_lost_worker_makes_the_others_fail_with_a_clear_error(fault):
    out = run_workers(fault, 2, expect=1, wait=90)
    assert 0 in out, "worker 0 did not report: the collective did not time out"
    status, (message, seconds) = out[0]
    assert status == "ok"
    assert message.startswith("worker 0 of 2: all_reduce failed — another worker died, hung"), message
    if fault is _hangs:
        assert seconds >= 2.5  # it was the 3 s collective timeout that ended the wait (not an early error)


# -- distributed evaluation --------------------------------------------------------------

def _eval_problem():
    from srl import models

    gen = models.mlp(latent_dims=(2, 3), hidden=8, out_shape=(1, 4, 4))
    params = gen.init(seed=3, backend="numpy", dtype="float64")
    x_test = np.random.default_rng(5).uniform(-1, 1, size=(13, 1, 4, 4))
    # batches of 7 and 6 examples; 3 importance-weighted chains; no synthesis metrics
    opts = dict(step_size=(0.1, 0.07), n_steps=3, sigma=0.3, seed=4, batch_size=7, n_bound=13, iw_chains=3,
                frechet=False)
    return gen, params, x_test, opts


def _evaluate_worker(rank):
    from srl.evaluate import evaluate

    gen, params, x_test, opts = _eval_problem()
    w = distributed.from_environment(timeout=60)
    try:
        return evaluate(gen, params, x_test, workers=w, **opts)
    finally:
        w.close()


@needs_gloo
def test_evaluation_split_across_workers_equals_one_process():
    from srl.evaluate import evaluate

    gen, params, x_test, opts = _eval_problem()
    one = evaluate(gen, params, x_test, **opts)
    out = run_workers(_evaluate_worker, 3)
    assert sorted(out) == [0, 1, 2], out
    for rank, (status, got) in out.items():
        assert status == "ok", got
        assert got.keys() == one.keys()
        for k, v in one.items():
            # float64 sums in a different order: a few ulps of the total
            assert got[k] == pytest.approx(v, rel=1e-12, abs=0), (rank, k)


# -- command line and device rules -------------------------------------------------------

def _as_torchrun_worker(monkeypatch, size=2):
    for k, v in {"RANK": "0", "WORLD_SIZE": str(size), "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(distributed.LOCAL_WORKERS_VARIABLE, raising=False)


def test_nproc_under_torchrun_is_a_clear_error(monkeypatch, capsys):
    from srl.cli import main

    _as_torchrun_worker(monkeypatch)
    assert main(["train", "--nproc", "2", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "under torchrun the number of processes is torchrun's" in err and "leave --nproc out" in err


def test_one_gpu_named_for_several_workers_is_a_clear_error(monkeypatch):
    _as_torchrun_worker(monkeypatch)
    with pytest.raises(ValueError, match="give --device cuda without an index"):
        distributed.from_environment(backend="torch", device="cuda:1")
    assert distributed.uses_cuda("torch:cuda") and distributed.uses_cuda("cupy")
    assert not distributed.uses_cuda("torch") and not distributed.uses_cuda("numpy", "cpu")


def _nccl_collectives(rank):
    w = distributed.from_environment(timeout=60, backend="torch", device="cuda")
    try:
        t = w.sum((torch.full((3,), float(rank + 1), device="cuda", dtype=torch.float32),))[0]
        out = {"torch": (str(t.device), t.cpu().tolist()), "host": w.sum_host([rank + 1.0]).tolist()}
        try:
            import cupy

            c = w.sum((cupy.full((2,), rank + 1.0, dtype=cupy.float64),))[0]
            out["cupy"] = (type(c).__module__.split(".")[0], c.get().tolist())
        except ImportError:
            out["cupy"] = None
        return out
    finally:
        w.close()


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.device_count() >= 2 and dist.is_nccl_available()),
                    reason="NCCL collectives need torch with NCCL and 2 CUDA devices")
def test_two_gpu_workers_all_reduce_torch_and_cupy_arrays_over_nccl():
    out = run_workers(_nccl_collectives, 2)
    assert sorted(out) == [0, 1], out
    for rank, (status, got) in out.items():
        assert status == "ok", got
        assert got["torch"] == (f"cuda:{rank}", [3.0, 3.0, 3.0])
        assert got["host"] == [3.0]
        if got["cupy"] is not None:
            assert got["cupy"] == ("cupy", [3.0, 3.0])
