"""Run a test function in N local worker processes joined by a gloo process group on 127.0.0.1.

Each worker gets the environment torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR=127.0.0.1, MASTER_PORT) and calls ``target(rank, *args)``; its return value
(or the exception's type name and message) comes back in rank order.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import socket
import traceback


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, size: int, port: int) -> dict:
    return {"RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(size),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def _entry(target, rank, size, port, results, args):
    os.environ.update(torchrun_env(rank, size, port))
    try:
        results.put((rank, "ok", target(rank, *args)))
    except BaseException as exc:  # reported to the test, which decides
        results.put((rank, "error", (type(exc).__name__, str(exc), traceback.format_exc())))


def run_workers(target, size: int = 2, *, args=(), wait: float = 120.0, expect: int | None = None):
    """Start ``size`` workers; return ``{rank: (status, value)}`` for the ``expect`` (default all)
    workers that report within ``wait`` seconds; the others are killed."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(target, r, size, port, results, args), daemon=True)
             for r in range(size)]
    for p in procs:
        p.start()
    out = {}
    try:
        while len(out) < (size if expect is None else expect):
            rank, status, value = results.get(timeout=wait)
            out[rank] = (status, value)
    except queue.Empty:
        pass
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    return out
