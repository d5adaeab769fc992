"""Data-parallel workers over ``torch.distributed`` (docs/distributed.md).

srl does not ship its own communication layer: worker processes are started by
``torch.distributed.run`` (``srl train --nproc N`` on one machine, or ``torchrun`` on a
cluster) and talk through ``torch.distributed`` collectives — gloo for arrays in host
memory, NCCL for arrays on CUDA devices.

Data parallelism with results that do not depend on the number of workers N:

* the global batch of n examples is split into N contiguous row blocks (``Workers.rows``);
* every worker draws the noise of the *whole* global batch from the seed, in the order of
  ``srl.random``, and keeps its own rows (``local_chain_noise``, ``keep_rows``), so example
  i sees the same chain noise whatever N is;
* sums over the batch (∇θ of docs/math.md eq. (3.1), the step-size objectives and their
  s-gradients of §4 and §5, every logged metric) are all-reduced (``Workers.sum``,
  ``Workers.sum_host``); everything computed from them afterwards (the Adam updates) is then
  identical on every worker.

Results therefore agree with a single process up to the order of floating-point
summation. With N = 1 no process group is created and every reduction is the identity.

Array libraries go through the collectives as ``torch`` tensors without copies where
possible: NumPy arrays as zero-copy CPU tensors (``torch.from_numpy``), CuPy arrays by
DLPack on their GPU, torch tensors as they are; array-api-strict arrays via a host copy.

Faults: every collective carries a timeout (``timeout`` seconds, set when the process
group is created). A worker that dies makes the collectives of the others fail at once
(closed connection) and one that hangs makes them fail after the timeout; both raise
``WorkerLostError`` with a message that says so. ``Workers.check_same`` detects workers
started with different configurations or data.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
import uuid
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from . import _backend
from .random import chain_noise

#: seconds a collective may wait for the slowest worker before the run is declared lost
DEFAULT_TIMEOUT = 300.0

#: seconds the local launcher gives its workers to exit when it is interrupted, before SIGKILL
#: (nothing needs a graceful exit: checkpoints are atomic). After a worker *fails*, torch's agent
#: stops the others with its own fixed grace of 30 s, which only a stopped process ever uses up.
SHUTDOWN_GRACE = 5

#: environment variables that ``torch.distributed.run`` (torchrun) sets for each worker
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

#: set by ``launch`` in the workers it starts: the ``--nproc`` they were started with
LOCAL_WORKERS_VARIABLE = "SRL_LOCAL_WORKERS"


class WorkerLostError(RuntimeError):
    """A collective failed: another worker died, hung past the timeout or was stopped."""


class ConfigMismatchError(ValueError):
    """Workers were started with different configurations or data."""


def launched() -> bool:
    """True when this process is a worker started by ``torchrun`` / ``torch.distributed.run``."""
    return all(v in os.environ for v in TORCHRUN_VARIABLES)


def shard(n: int, rank: int, size: int) -> slice:
    """Rows ``[n·rank // size, n·(rank+1) // size)`` of a global batch of ``n``: contiguous blocks
    whose sizes differ by at most one, in rank order, covering ``0..n-1`` exactly once."""
    return slice(n * rank // size, n * (rank + 1) // size)


@dataclass
class Workers:
    """This process's place among the workers, and the collectives srl uses.

    ``rank`` / ``size``: global rank and number of workers; ``local_rank``: rank on this
    machine (the CUDA device index with NCCL); ``device``: where collective buffers live
    (``"cpu"`` for gloo, ``"cuda:<local_rank>"`` for NCCL); ``timeout``: seconds.
    A ``Workers`` with ``size == 1`` needs no process group: every reduction returns its
    input unchanged (``SINGLE``).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    timeout: float = DEFAULT_TIMEOUT
    backend: Optional[str] = None  # "gloo" | "nccl" | None (single process)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only writer of checkpoints, logs, pictures and summaries."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def rows(self, n: int) -> slice:
        """This worker's rows of a global batch of ``n`` (``shard``)."""
        return shard(int(n), self.rank, self.size)

    # -- collectives ---------------------------------------------------------------------

    def _collective(self, what: str, fn, *args):
        try:
            return fn(*args)
        except RuntimeError as exc:  # gloo/NCCL errors are RuntimeError (DistBackendError)
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # gloo: "[.../pair.cc:553] Connection closed by peer [127.0.0.1]:4711. This is typically ..."
            first = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]
            raise WorkerLostError(
                f"worker {self.rank} of {self.size}: {what} failed — another worker died, hung for more than "
                f"the {self.timeout:g} s collective timeout, or was stopped ({first})"
            ) from exc

    def sum(self, arrays: Sequence) -> tuple:
        """All-reduce (sum over workers) of same-dtype backend arrays, as one packed buffer.

        Returns new arrays of the same shapes, dtype, library and device; with one worker,
        the inputs themselves.
        """
        arrays = tuple(arrays)
        if not self.distributed or not arrays:
            return arrays
        xp = _backend.array_namespace(*arrays)
        flat = xp.concat([xp.reshape(a, (-1,)) for a in arrays])  # (Σ sizes,)
        tensor, back = _to_torch(flat, self.device)
        self._collective("all_reduce", _all_reduce, tensor)
        flat = back(tensor)
        out, offset = [], 0
        for a in arrays:
            size = int(np.prod(a.shape, dtype=np.int64))
            out.append(xp.reshape(flat[offset:offset + size], tuple(a.shape)))
            offset += size
        return tuple(out)

    def sum_dict(self, arrays: dict) -> dict:
        """``sum`` of a dict of arrays (the same keys in the same order on every worker)."""
        if not self.distributed:
            return arrays
        return dict(zip(arrays, self.sum(tuple(arrays.values()))))

    def sum_host(self, values) -> np.ndarray:
        """All-reduce (sum) of host float64 numbers: metrics, objective sums, flags."""
        values = np.array(values, dtype=np.float64).reshape(-1)
        if not self.distributed:
            return values
        import torch

        tensor = torch.from_numpy(values).to(self.device)
        self._collective("all_reduce", _all_reduce, tensor)
        return tensor.cpu().numpy()

    def any(self, flag: bool) -> bool:
        """True on every worker when ``flag`` is true on at least one."""
        return bool(self.sum_host([1.0 if flag else 0.0])[0] > 0)

    def gather(self, obj) -> list:
        """Every worker's ``obj`` (JSON-able), in rank order."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size
        self._collective("all_gather_object", dist.all_gather_object, out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            self._collective("barrier", dist.barrier)

    def check_same(self, doc: dict, *, what: str = "configuration") -> None:
        """Raise ``ConfigMismatchError`` on every worker unless all workers hold the same ``doc``.

        The message names the workers and the keys that differ from worker 0.
        """
        docs = self.gather(json.loads(json.dumps(doc, sort_keys=True, default=str)))
        bad = []
        for r, other in enumerate(docs[1:], start=1):
            keys = sorted(k for k in set(docs[0]) | set(other) if docs[0].get(k) != other.get(k))
            if keys:
                shown = ", ".join(f"{k} ({docs[0].get(k)!r} vs {other.get(k)!r})" for k in keys[:4])
                bad.append(f"worker {r}: {shown}{' ...' if len(keys) > 4 else ''}")
        if bad:
            raise ConfigMismatchError(
                f"workers were started with different {what}s (differences from worker 0: {'; '.join(bad)}); "
                "start every worker with the same command line and data"
            )

    def close(self) -> None:
        """Destroy the process group (if this object created one)."""
        if self.backend is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.backend = None


#: the single-process case: no process group, every reduction is the identity
SINGLE = Workers()


def _all_reduce(tensor):
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def _to_torch(flat, device: str):
    """A torch tensor sharing ``flat``'s memory where the library allows, and the way back."""
    import torch

    lib = type(flat).__module__.split(".")[0]
    if lib == "numpy":
        tensor = torch.from_numpy(flat)  # zero-copy: the all-reduce writes into flat
        if device == "cpu":
            return tensor, lambda t: flat
        return tensor.to(device), lambda t: t.cpu().numpy()
    if lib == "torch":
        if flat.device == torch.device(device):
            return flat, lambda t: t
        return flat.to(device), lambda t: t.to(flat.device)
    if lib == "cupy":
        return torch.from_dlpack(flat), lambda t: flat  # zero-copy on the GPU
    # array-api-strict (and anything else with a NumPy host form): through a host copy
    xp = _backend.array_namespace(flat)
    host = np.array(_backend.to_numpy(flat), copy=True)
    return torch.from_numpy(host).to(device), lambda t: _backend.from_numpy(
        xp, t.cpu().numpy(), dtype=flat.dtype, device=_backend.device(flat))


# -- noise of a shard --------------------------------------------------------------------


def keep_rows(host_arrays, rows: slice, *, n: int, xp, dtype, device, n_chains: int = 1) -> tuple:
    """This worker's rows of host float64 arrays drawn for a whole global batch, on ``xp``.

    ``host_arrays``: arrays of ``n_chains · n`` rows, chain-major (row ``m·n + i`` is chain
    m of example i, as ``srl.objectives`` stacks them). Returns the rows ``m·n + i`` for
    ``i`` in ``rows`` and every m, cast and moved exactly as ``srl.random`` does.
    """
    if n_chains == 1:
        index = rows
    else:
        index = np.concatenate([np.arange(rows.start, rows.stop) + m * n for m in range(int(n_chains))])
    return tuple(_backend.from_numpy(xp, np.asarray(a)[index], dtype=dtype, device=device) for a in host_arrays)


def local_chain_noise(seed, n: int, latent_dims, n_steps: int, *, rows: slice, xp, dtype, device,
                      n_chains: int = 1):
    """``(z0, [ξ_0..ξ_{K−1}])`` of ``srl.random.chain_noise(seed, n_chains·n, ...)`` restricted to ``rows``.

    The draw is that of the whole global batch (docs/math.md eq. (2.1); draw order in
    ``srl.random``), so example i gets the same noise for any number of workers; with
    ``rows = slice(0, n)`` the result equals ``chain_noise`` exactly.
    """
    import array_api_compat.numpy as host

    z0, noise = chain_noise(seed, int(n_chains) * int(n), latent_dims, n_steps, xp=host, dtype=host.float64,
                            device="cpu")
    opts = dict(n=int(n), xp=xp, dtype=dtype, device=device, n_chains=n_chains)
    return keep_rows(z0, rows, **opts), [keep_rows(xi, rows, **opts) for xi in noise]


def fingerprint(a) -> str:
    """A short SHA-256 of an array's shape, dtype and bytes (to compare data across workers)."""
    a = np.ascontiguousarray(_backend.to_numpy(a))
    h = hashlib.sha256(f"{a.shape}{a.dtype}".encode())
    h.update(a.data)
    return h.hexdigest()[:16]


# -- process group from the environment, and the local launcher ----------------------------


def uses_cuda(backend: str, device=None) -> bool:
    """True when the arrays of ``backend``/``device`` live on a CUDA device (NCCL collectives)."""
    name, _, dev = str(backend).partition(":")
    dev = dev or ("" if device is None else str(device))
    return name.strip().lower() == "cupy" or (name.strip().lower() == "torch" and dev.startswith("cuda"))


def from_environment(*, timeout: float = DEFAULT_TIMEOUT, backend: str = "numpy", device=None) -> Workers:
    """The ``Workers`` of this process: ``SINGLE`` outside torchrun, else a new process group.

    Reads the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``). Arrays on CUDA devices (``backend``/``device`` as in
    ``srl.train``: torch with a CUDA device, or CuPy) use NCCL, and each worker makes
    ``cuda:LOCAL_RANK`` its current device; host arrays use gloo. ``timeout`` bounds every
    collective (seconds).
    """
    if not (timeout > 0):
        raise ValueError(f"the collective timeout must be a positive number of seconds, got {timeout!r}")
    if not launched() or int(os.environ["WORLD_SIZE"]) == 1:
        return Workers(timeout=float(timeout))
    try:
        import torch
        import torch.distributed as dist
    except ImportError as exc:
        raise ImportError("distributed training needs PyTorch's torch.distributed (pip install 'srl[torch]')") from exc
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if uses_cuda(backend, device):
        if ":" in str(device or "") or ":" in str(backend).partition(":")[2]:
            raise ValueError(f"device {device or backend!r} names one GPU, but each of the {size} workers uses its "
                             "own (cuda:LOCAL_RANK): give --device cuda without an index")
        if not dist.is_nccl_available():
            raise ImportError("arrays on CUDA devices need torch.distributed with NCCL, which this torch lacks")
        torch.cuda.set_device(local_rank)  # torch "cuda" arrays then go to this worker's GPU
        if str(backend).partition(":")[0].strip().lower() == "cupy":
            import cupy

            cupy.cuda.runtime.setDevice(local_rank)  # and CuPy's (srl._backend takes the current device)
        comm, where = "nccl", f"cuda:{local_rank}"
    else:
        if not dist.is_gloo_available():
            raise ImportError("host arrays need torch.distributed with gloo, which this torch lacks")
        comm, where = "gloo", "cpu"
    try:
        dist.init_process_group(comm, init_method="env://", rank=rank, world_size=size,
                                timeout=datetime.timedelta(seconds=float(timeout)))
    except RuntimeError as exc:
        raise WorkerLostError(f"worker {rank} of {size} could not join the process group at "
                              f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}: {exc}") from exc
    return Workers(rank=rank, size=size, local_rank=local_rank, device=where, timeout=float(timeout), backend=comm)


def launch(args: Sequence[str], nproc: int, *, module: str = "srl") -> int:
    """Run ``python -m <module> <args>`` in ``nproc`` local worker processes; return an exit status.

    Workers are started by ``torch.distributed.run``'s elastic agent with a c10d
    rendezvous on 127.0.0.1 (a free port), no restarts. When a worker fails the agent stops
    the others (SIGTERM, then SIGKILL after a grace period); the first failure is reported
    in one line on stderr and its exit status returned (1 when it was killed by a signal).
    """
    if int(nproc) < 1:
        raise ValueError(f"--nproc must be a positive number of processes, got {nproc!r}")
    try:
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    except ImportError as exc:
        raise ImportError("--nproc needs PyTorch's torch.distributed (pip install 'srl[torch]')") from exc
    import logging

    # one compute thread per worker unless the user chose otherwise (the workers share the cores)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ[LOCAL_WORKERS_VARIABLE] = str(int(nproc))
    # the agent's own log lines repeat what the one-line report below says
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=int(nproc), run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                          monitor_interval=0.2, local_addr="127.0.0.1", shutdown_timeout=SHUTDOWN_GRACE)
    try:
        elastic_launch(config, sys.executable)("-u", "-m", module, *args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        how = (f"was killed by {failure.signal_name()}" if failure.exitcode < 0
               else f"exited with status {failure.exitcode}")
        print(f"srl: worker {rank} of {nproc} {how}; the other workers were stopped", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0
