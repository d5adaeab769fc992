"""The run directory: what a training run writes, the rules that protect it, and how it is
read back.

    OUT/config.json        the configuration, the generator's architecture, the data fingerprint
    OUT/metrics.jsonl      one JSON line per iteration (flushed every iteration)
    OUT/checkpoint.npz     the training state (srl.checkpoint: atomic), the metric history
    OUT/training.png, samples.png, samples_codes.png, reconstructions.png    pictures at the end of a run
    OUT/summary.json       held-out metrics at the end of a run

Rules (``srl train``):

* **One run per directory, one writer at a time.** The directory is locked for the whole
  run (``srl.runlock``); a second ``srl train`` on it is refused, naming the holder.
* **An existing run is never replaced silently.** A directory holding a run
  (``checkpoint.npz``, ``config.json`` or ``metrics.jsonl``) is refused unless ``resume``
  (continue it) or ``overwrite`` (replace it) is given; ``resume`` on a directory without
  a checkpoint is refused too.
* **Nothing is written before every check has passed** (configuration, data, backend, and
  for a resume the checkpoint's configuration and data fingerprint). A replacing run
  writes into ``OUT/.srl-new/`` and takes the previous run's place only when it writes its
  first checkpoint: a replacing run that fails or is interrupted before that leaves the
  previous run exactly as it was.
* **Resume is exact or refused**: every option that changes the trajectory must equal the
  run's (``epochs`` may grow under the constant learning-rate schedule only: the cosine
  schedule depends on the total number of iterations), and the training data must have
  the recorded fingerprint. A resumed run rewrites ``metrics.jsonl`` from the checkpoint's
  history, so lines written after the last checkpoint are dropped and the log matches the
  uninterrupted run.
* **No leftovers**: temporary files of interrupted writes and an abandoned ``.srl-new/``
  are removed when the next run takes the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import _backend, checkpoint, models, runlock, viz
from .config import TrainConfig
from .distributed import SINGLE
from .errors import RunDirectoryError
from .learning import Optimisers, TrainState
from .vae import Encoder, split_params

#: a directory holding any of these holds a run
RUN_FILES = ("checkpoint.npz", "config.json", "metrics.jsonl")
#: written at the end of a run
RESULT_FILES = ("training.png", "samples.png", "samples_codes.png", "reconstructions.png", "summary.json")
#: where a run that replaces another one writes until its first checkpoint
STAGING = ".srl-new"
#: fields that may differ on resume: they do not change the trajectory (epochs: see ``_check_resume``;
#: cuda_graphs replays the eager kernels, tests/test_gpu.py::test_cuda_graph_training_replays_the_eager_kernels)
RESUME_FREE = ("out", "epochs", "checkpoint_every", "eval_n_bound", "eval_iw_chains", "eval_n_codes", "cuda_graphs")
#: the checkpoint metadata a run needs
REQUIRED_META = ("config", "generator", "iteration", "step_size", "history")


def data_fingerprint(ds) -> str:
    """A hash of the train and test arrays (shape, dtype and bytes) that identifies the data of a run."""
    h = hashlib.blake2b(digest_size=16)
    for a in (ds.train, ds.test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunDirectory:
    """The files of one run under ``path`` (see the module docstring for the rules)."""

    def __init__(self, path):
        self.path = Path(path)
        self.files = self.path  # where the run writes now: STAGING while it replaces another run
        self.saved_iteration = None  # iteration of the run's checkpoint in ``path``, once there is one
        self.created = False  # whether ``prepare`` created ``path``
        self._log = None
        self._lock = None

    @property
    def checkpoint(self) -> Path:
        return self.files / "checkpoint.npz"

    @property
    def metrics(self) -> Path:
        return self.files / "metrics.jsonl"

    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Create the directory (for ``resume`` it must exist); ``PermissionError`` if it
        cannot be written."""
        if resume and overwrite:
            raise RunDirectoryError("--resume continues the run in the directory and --overwrite replaces it; give one")
        if resume and not self.path.is_dir():
            raise RunDirectoryError(f"--resume: {self.path} does not exist, so it holds no run to continue; drop "
                                    "--resume to start a new run there")
        self.created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RunDirectoryError(f"output directory {self.path} cannot be created: a part of that path is a "
                                    "file, not a directory; choose another --out") from None
        except OSError as exc:
            raise PermissionError(f"output directory {self.path} is not writable: {exc}") from exc
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise PermissionError(f"output directory {self.path} is not writable (permission denied); choose "
                                  "another --out")

    # -- ownership ------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the directory's lock (``RunLockedError`` naming the holder), then remove what
        interrupted runs left behind: temporary files and an abandoned ``STAGING``."""
        self._lock = runlock.acquire(self.path)
        for name in RUN_FILES + RESULT_FILES:
            checkpoint.remove_temporaries(self.path / name)
        shutil.rmtree(self.path / STAGING, ignore_errors=True)

    def unlock(self) -> None:
        """Release the lock; a directory this run created and left empty (it failed before its
        first write) is removed."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self.created:
            try:
                self.path.rmdir()  # only if empty
            except OSError:
                pass

    def run_files(self) -> list:
        """The files of a run present in ``path`` (empty: no run there)."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def check_mode(self, *, resume: bool, overwrite: bool) -> None:
        """Refuse to start a run that would silently replace another, or to resume nothing."""
        existing = self.run_files()
        if resume and "checkpoint.npz" not in existing:
            found = f" (it has {', '.join(existing)} but no checkpoint)" if existing else ""
            raise RunDirectoryError(f"--resume: {self.path} holds no run to continue{found}; drop --resume to start "
                                    "a new run there")
        if not resume and not overwrite and existing:
            raise RunDirectoryError(f"{self.path} already holds a run ({', '.join(existing)}): continue it with "
                                    "--resume (same options), replace it with --overwrite, or choose another --out")

    def start(self, cfg: TrainConfig, gen, history, fingerprint: str, *, replace: bool) -> None:
        """The first writes of a run (after every check): ``config.json`` and the metric log,
        into ``STAGING`` when the run replaces another one."""
        if replace:
            self.files = self.path / STAGING
            self.files.mkdir()
        doc = json.dumps({"train": cfg.to_json(), "generator": gen.config, "data_fingerprint": fingerprint},
                         indent=2)
        config = self.files / "config.json"
        if not (config.exists() and config.read_text() == doc):
            _write_atomic(config, doc)
        self.metrics.write_text("".join(json.dumps(r) + "\n" for r in history))
        self._log = open(self.metrics, "a")

    def _promote(self) -> None:
        """Move a replacing run's files over the previous run's (checkpoint first: it is the
        run's state), and drop the previous run's results."""
        for name in ("checkpoint.npz", "config.json", "metrics.jsonl"):
            os.replace(self.files / name, self.path / name)  # the open log follows its file
        for name in RESULT_FILES:
            (self.path / name).unlink(missing_ok=True)
        self.files.rmdir()
        self.files = self.path

    def close(self) -> None:
        """Close the log; a replacing run that never reached its first checkpoint is discarded."""
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.files != self.path:
            shutil.rmtree(self.files, ignore_errors=True)
            self.files = self.path

    # -- metric log ---------------------------------------------------------------------------

    def log(self, record: dict) -> None:
        """Append one iteration's record to ``metrics.jsonl`` and flush it (readable while training)."""
        try:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
        except OSError as exc:
            err = OSError(f"could not append to {self.metrics} ({exc.strerror or exc}); the last checkpoint is "
                          "unchanged: free space (or fix the disk) and continue with --resume")
            err.errno = exc.errno
            raise err from exc

    # -- checkpoint ---------------------------------------------------------------------------

    def save_checkpoint(self, cfg: TrainConfig, gen, state: TrainState, opt: Optimisers, history,
                        fingerprint: str) -> None:
        """Write the state and the history atomically (srl.checkpoint)."""
        stepper = opt.step.state_to_json(state.stepper) if opt.step is not None else None
        meta = {"config": cfg.to_json(), "generator": gen.config, "iteration": state.iteration,
                "step_size": [float(v) for v in state.step_size], "history": history, "stepper": stepper,
                "data_fingerprint": fingerprint}
        checkpoint.save(self.checkpoint, params=state.params, adam=opt.theta.state_to_host(state.adam), meta=meta)
        if self.files != self.path:
            self._promote()
        self.saved_iteration = state.iteration

    def load_checkpoint(self, cfg: TrainConfig, opt: Optimisers, *, total: int, fingerprint: str):
        """``(state, history)`` from the checkpoint, on ``cfg``'s backend, device and dtype.

        ``RunDirectoryError`` naming the option when continuing with ``cfg`` would not
        reproduce the run (``_check_resume``), or when the data differ from the run's.
        """
        saved_ckpt = checkpoint.load(self.checkpoint, required=REQUIRED_META)
        meta = saved_ckpt["meta"]
        _check_resume(TrainConfig.from_json(meta["config"]), cfg, iteration=int(meta["iteration"]), total=total)
        recorded = meta.get("data_fingerprint")
        if recorded is not None and recorded != fingerprint:
            raise RunDirectoryError(f"--resume: the data differ from the data the run in {self.path} was trained on "
                                    f"(fingerprint {fingerprint} vs {recorded}): the files under --data/--root "
                                    "changed; resume with the original data, or start a new run")
        self.saved_iteration = int(meta["iteration"])
        xp, dev = _backend.namespace(cfg.backend, cfg.device)
        dt = _backend.resolve_dtype(xp, cfg.dtype)
        params = {k: _backend.from_numpy(xp, v, dtype=dt, device=dev) for k, v in saved_ckpt["params"].items()}
        adam = opt.theta.state_from_host(saved_ckpt["adam"], like=params)
        stepper = opt.step.state_from_json(meta.get("stepper")) if opt.step is not None else None
        state = TrainState(params, adam, stepper, tuple(meta["step_size"]), int(meta["iteration"]))
        return state, meta["history"]

    # -- end of run ---------------------------------------------------------------------------

    def write_summary(self, metrics: dict) -> None:
        _write_atomic(self.path / "summary.json", json.dumps(metrics, indent=2))


def _check_resume(saved: TrainConfig, cfg: TrainConfig, *, iteration: int, total: int) -> None:
    """Refuse, naming the options, a resume that would not continue ``saved``'s trajectory exactly."""
    old, new = saved.to_json(), cfg.to_json()
    diffs = [k for k in new if k not in RESUME_FREE and old.get(k) != new[k]]
    if diffs:
        what = "; ".join(f"--{k.replace('_', '-')} {_show(new[k])} (the run has {_show(old.get(k))})" for k in diffs)
        raise RunDirectoryError(f"--resume with {what} would not reproduce the run; resume with the run's values "
                                "(its config.json), or start a new run with another --out")
    if cfg.epochs != saved.epochs:
        if cfg.lr_schedule != "constant":
            raise RunDirectoryError(f"--resume with --epochs {cfg.epochs} (the run has {saved.epochs}) would not "
                                    f"reproduce the run: the {cfg.lr_schedule} learning-rate schedule depends on the "
                                    f"total number of iterations; resume with --epochs {saved.epochs}")
        if total < iteration:
            raise RunDirectoryError(f"--resume with --epochs {cfg.epochs}: the run has already done {iteration} "
                                    f"iterations, more than {cfg.epochs} epochs hold ({total}); resume with "
                                    f"--epochs {saved.epochs}")


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "(unset)" if value is None else str(value)


def finish(cfg: TrainConfig, gen, params, step_size, history, ds, out: Path, *, workers=SINGLE) -> dict:
    """Pictures (training curves, samples, reconstructions) and held-out metrics at the end of a run.

    ``workers`` (``srl.distributed.Workers``): every worker takes part in the short-run
    evaluation (split across them); worker 0 alone draws the pictures, evaluates a VAE and
    returns the metrics (the others return an empty dict).
    """
    from .evaluate import evaluate, evaluate_vae, fit_run_codes, reconstruct, sample, to_backend
    from .vae import reconstruct as vae_reconstruct

    out = Path(out)
    gen_p, enc_p = split_params(params)
    codes = None  # the codes' Gaussian (docs/math.md eq. 3.3), fitted once on worker 0
    if cfg.eval_n_codes and workers.is_main:
        codes = fit_run_codes(gen, gen_p, Encoder(gen) if cfg.method == "vae" else None, enc_p,
                              ds.train[:cfg.eval_n_codes], step_size=step_size, n_steps=cfg.n_steps,
                              sigma=cfg.sigma, seed=cfg.seed)
    if cfg.method != "vae":
        metrics = evaluate(gen, gen_p, ds.test, step_size=step_size, n_steps=cfg.n_steps, sigma=cfg.sigma,
                           seed=cfg.seed, n_bound=cfg.eval_n_bound, iw_chains=cfg.eval_iw_chains, dataset=cfg.data,
                           workers=workers, codes=codes)
    if not workers.is_main:
        return {}
    p0 = gen_p[next(iter(gen_p))]
    what = "VAE" if cfg.method == "vae" else f"steps: {cfg.step_method}"
    viz.plot_training(out / "training.png", history, title=f"{cfg.data} · {cfg.model} · {what}")
    xs = sample(gen, gen_p, 64, seed=[cfg.seed, 5])
    viz.save_grid(out / "samples.png", xs, title="samples g(z), z ~ N(0, I)")
    if codes is not None:
        xs = sample(gen, gen_p, 64, seed=[cfg.seed, 5], codes=codes)
        viz.save_grid(out / "samples_codes.png", xs, title=f"samples g(z), z from the Gaussian of {codes.n} training codes")
    x = to_backend(ds.test[:32], p0)
    if cfg.method == "vae":
        xp = _backend.array_namespace(p0)
        x_hat = vae_reconstruct(xp, gen, Encoder(gen), gen_p, enc_p, x)
        title = "held-out data (odd rows) and VAE reconstructions g(μ(x))"
        metrics = evaluate_vae(gen, Encoder(gen), gen_p, enc_p, ds.test, sigma=cfg.sigma, seed=cfg.seed,
                               n_bound=cfg.eval_n_bound, iw_chains=cfg.eval_iw_chains, dataset=cfg.data,
                               codes=codes)
    else:
        x_hat, _ = reconstruct(gen, gen_p, x, step_size=step_size, n_steps=cfg.n_steps, sigma=cfg.sigma,
                               seed=[cfg.seed, 6])
        title = f"held-out data (odd rows) and short-run reconstructions, K={cfg.n_steps}"
    viz.save_reconstructions(out / "reconstructions.png", x, x_hat, n=32, title=title)
    metrics["step_size"] = [float(v) for v in step_size]
    metrics["iterations"] = len(history)
    return metrics


def load_run(path, *, backend=None, device=None, dtype=None):
    """``(gen, params, step_size, config)`` from a checkpoint file or run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    state = checkpoint.load(path, required=("config", "generator", "step_size"))
    meta = state["meta"]
    cfg = TrainConfig.from_json(meta["config"])
    gen = models.from_config(meta["generator"])
    xp, dev = _backend.namespace(backend or cfg.backend, device if device is not None else cfg.device)
    dt = _backend.resolve_dtype(xp, dtype or cfg.dtype)
    params = {k: _backend.from_numpy(xp, v, dtype=dt, device=dev) for k, v in state["params"].items()}
    return gen, params, tuple(meta["step_size"]), cfg


def split_run_params(cfg, gen, params):
    """``(generator params, encoder or None, encoder params)`` of a loaded run."""
    gen_p, enc_p = split_params(params)
    return gen_p, (Encoder(gen) if cfg.method == "vae" else None), enc_p
