"""The training loop: data order, iterations, checkpoints (docs/math.md §3, §4, §5).

``train(cfg)`` runs ``srl.learning.train_step`` over minibatches for ``cfg.epochs``
epochs and records everything in the run directory (``srl.rundir``): one metric line per
iteration, a checkpoint every ``checkpoint_every`` epochs, and pictures and held-out
metrics at the end. The minibatch order is keyed by ``(seed, epoch)`` and every draw of
the step by ``(seed, iteration)``, so a run resumed from a checkpoint reproduces the
uninterrupted run exactly.

The configuration is ``srl.config.TrainConfig``; this module re-exports it together with
``load_run`` and ``split_run_params`` (``srl.rundir``) for callers of ``srl.train``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

from . import _backend, distributed, models
from .config import METHODS, MODEL_DEFAULTS, STEP_METHODS, TrainConfig, learning_rate
from .distributed import SINGLE
from .evaluate import to_backend
from .errors import DivergenceError
from .learning import ThetaDivergenceError, TrainState, chain_diverges, init_state, make_optimisers, train_step
from .rundir import RunDirectory, data_fingerprint, finish, load_run, split_run_params

__all__ = ["TrainConfig", "TrainResult", "TrainState", "train", "build_generator", "learning_rate", "finish",
           "load_run", "split_run_params", "MODEL_DEFAULTS", "STEP_METHODS", "METHODS"]


def build_generator(cfg: TrainConfig, out_shape):
    """The generator named by ``cfg.model`` for images of ``out_shape``."""
    if cfg.model == "paper":
        gen = models.paper()
        if tuple(gen.out_shape) != tuple(out_shape):
            raise ValueError(f"the paper model makes {gen.out_shape} images; the data are {tuple(out_shape)}")
        return gen
    defaults = MODEL_DEFAULTS[cfg.model]
    dims = tuple(cfg.latent_dims) if cfg.latent_dims else defaults["latent_dims"]
    if cfg.model == "mlp":
        return models.mlp(latent_dims=dims, hidden=cfg.hidden or defaults["hidden"], out_shape=out_shape)
    return models.conv(latent_dims=dims, out_shape=out_shape, channels=cfg.channels or defaults["channels"])


@dataclasses.dataclass
class TrainResult:
    gen: object
    params: dict
    step_size: tuple
    history: list
    metrics: dict
    out: Path


class _Progress:
    """tqdm when available and wanted, else silent."""

    def __init__(self, total, initial, enabled):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, desc="train")
            except ImportError:  # pragma: no cover - tqdm is a dependency
                self.bar = None

    def update(self, **info):
        if self.bar is not None:
            self.bar.set_postfix(info, refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def load_data(cfg: TrainConfig, shape=None):
    """The run's data set (``cfg.data``, ``root``, ``pad``, ``limit``), converted to
    ``shape`` when given (``paper`` runs: the paper model's 32×32 RGB)."""
    from . import data as data_mod

    if shape is None and cfg.model == "paper":
        shape = models.paper().out_shape
    return data_mod.load(cfg.data, root=cfg.root, shape=shape, limit=cfg.limit, pad=cfg.pad)


class Terminated(KeyboardInterrupt):
    """SIGTERM received during ``train``: raised like Ctrl-C so that every cleanup runs
    (no temporary file or half-written replacement run is left behind)."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """While training in the main thread, SIGTERM raises ``Terminated`` (unless the program
    installed its own SIGTERM handler)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
          evaluate_at_end: bool = True, max_iterations: Optional[int] = None, workers=SINGLE) -> TrainResult:
    """Run (or resume) training; see the module docstring and the run-directory rules in
    ``srl.rundir``. ``resume``: continue the run in ``cfg.out`` exactly (refused when it
    would not reproduce it); ``overwrite``: replace the run there (without either, a
    directory holding a run is refused). ``max_iterations`` stops early (used to simulate
    an interruption: the last checkpoint is then at that iteration).

    Ctrl-C (or SIGTERM) raises ``KeyboardInterrupt`` with ``checkpoint_iteration`` set to
    the iteration of the run's checkpoint in ``cfg.out`` (None when there is none).

    ``workers`` (``srl.distributed.Workers``, e.g. ``srl.distributed.from_environment()``
    in a process started by torchrun): data-parallel training. Every worker calls ``train``
    with the same arguments and gets the same result; worker 0 alone locks and writes the
    run directory, the others only read its checkpoint on ``resume`` (docs/distributed.md).
    """
    cfg.validate()
    with _backend.blas_threads(cfg.blas_threads if cfg.backend == "numpy" else None), _sigterm_interrupts():
        return _train(cfg, resume=resume, overwrite=overwrite, progress=progress, evaluate_at_end=evaluate_at_end,
                      max_iterations=max_iterations, workers=workers)


def _train(cfg, *, resume, overwrite, progress, evaluate_at_end, max_iterations, workers):
    run = RunDirectory(cfg.out)
    opts = dict(resume=resume, overwrite=overwrite, progress=progress, evaluate_at_end=evaluate_at_end,
                max_iterations=max_iterations, workers=workers)
    if not workers.is_main:  # reads the checkpoint on resume, writes nothing
        return _train_locked(run, cfg, **opts)
    run.prepare(resume=resume, overwrite=overwrite)
    try:
        run.lock()
        run.check_mode(resume=resume, overwrite=overwrite)
        return _train_locked(run, cfg, **opts)
    except KeyboardInterrupt as exc:
        exc.checkpoint_iteration = run.saved_iteration
        raise
    finally:
        run.unlock()


def _check_workers(cfg, workers, data: str, state):
    """Enough rows for every worker, and the same configuration, data and state on all of them."""
    if cfg.batch_size < workers.size:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the {workers.size} workers (--batch-size): "
                         "use a batch of at least one example per worker")
    if cfg.step_method != "fixed" and min(cfg.step_subset, cfg.batch_size) < workers.size:
        raise ValueError(f"step_subset {cfg.step_subset} is smaller than the {workers.size} workers "
                         "(--step-subset): use at least one example per worker")
    params = np.concatenate([np.ravel(_backend.to_numpy(p)) for p in state.params.values()])
    workers.check_same(dict(cfg.to_json(), training_data=data, start_iteration=state.iteration,
                            start_params=distributed.fingerprint(params)))


def _train_locked(run, cfg, *, resume, overwrite, progress, evaluate_at_end, max_iterations, workers):
    main = workers.is_main  # the only writer of the run directory
    ds = load_data(cfg)
    if evaluate_at_end and ds.test.shape[0] == 0:
        raise ValueError(f"the data ({cfg.data}) have no test images for the evaluation at the end of the run: use "
                         "more images, or --no-eval")
    gen = build_generator(cfg, ds.shape)
    _backend.namespace(cfg.backend, cfg.device)  # BackendUnavailableError before any work
    n_train = ds.train.shape[0]
    if cfg.batch_size > n_train:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {n_train} training images (--batch-size)")
    per_epoch = n_train // cfg.batch_size
    total = cfg.epochs * per_epoch
    opt = make_optimisers(cfg)
    fingerprint = data_fingerprint(ds)
    if resume:
        state, history = run.load_checkpoint(cfg, opt, total=total, fingerprint=fingerprint)
    else:
        state, history = init_state(cfg, gen, opt), []
    if workers.distributed:
        _check_workers(cfg, workers, fingerprint, state)
    # every check has passed: the first writes
    stop = total if max_iterations is None else min(total, int(max_iterations))
    bar = _Progress(total, state.iteration, progress and main)
    like = next(iter(state.params.values()))
    t0 = time.perf_counter()
    try:
        if main:
            run.start(cfg, gen, history, fingerprint, replace=overwrite and bool(run.run_files()))
        previous = None  # θ before the last update: tells the cause of a divergence
        for it in range(state.iteration, stop):
            epoch, b = divmod(it, per_epoch)
            perm = np.random.default_rng([cfg.seed, 0, epoch]).permutation(n_train)
            x = to_backend(ds.train[perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]], like)
            try:
                new, metrics = train_step(state, x, cfg=cfg, gen=gen, opt=opt, lr=learning_rate(cfg, it, total),
                                          workers=workers)
            except ThetaDivergenceError:
                raise
            except DivergenceError as exc:
                if previous is not None and cfg.method != "vae" and not chain_diverges(previous, state, x, cfg=cfg,
                                                                                        gen=gen):
                    raise DivergenceError(
                        f"the chain of iteration {it + 1} diverged after θ's update of iteration {it} (θ learning rate "
                        f"{learning_rate(cfg, it - 1, total):.3g}); with θ before that update it does not: the θ "
                        "learning rate is too large for this model; lower --lr") from exc
                raise
            previous, state = state.params, new
            record = {"iteration": state.iteration, "epoch": epoch, **metrics}
            history.append(record)
            bar.update(E=f"{metrics['energy']:.1f}", mse=f"{metrics['mse']:.4f}",
                       s="/".join(f"{v:.3g}" for v in state.step_size))
            if main:
                run.log(record)
                if state.iteration % (per_epoch * cfg.checkpoint_every) == 0 or state.iteration == stop:
                    run.save_checkpoint(cfg, gen, state, opt, history, fingerprint)
    finally:
        if main:
            run.close()
        bar.close()
    train_seconds = time.perf_counter() - t0
    metrics = {}
    if stop == total and evaluate_at_end:
        metrics = finish(cfg, gen, state.params, state.step_size, history, ds, run.path, workers=workers)
        if main:
            metrics["train_seconds_this_session"] = train_seconds
            run.write_summary(metrics)
    return TrainResult(gen, state.params, tuple(state.step_size), history, metrics, run.path)
