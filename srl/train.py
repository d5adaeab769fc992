"""Learning θ with short-run inference, and the step sizes with it (docs/math.md §3, §4).

One iteration on a minibatch x (n examples):

1. ``z_K`` by short-run Langevin (eq. 2.1) from noise, with the current step sizes s;
2. θ ← Adam step along ``−(1/n) Σ_i ∇_θ E_θ(z_K,i; x_i)`` with ``z_K`` held constant
   (eq. 3.1: no gradient flows through the chain);
3. every ``step_every`` iterations, one step-size update (grid search or Adam on log s,
   on J_jac or the reverse-kernel bound) on the first ``step_subset`` examples.

Every random draw is keyed by ``(seed, iteration)`` (minibatch order by
``(seed, epoch)``), so a run resumed from a checkpoint reproduces the uninterrupted run
exactly. Metrics go to ``metrics.jsonl``; pictures and the checkpoint to the output dir.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from . import _backend, checkpoint, models, viz
from .evaluate import batch_value_and_param_grad, evaluate, reconstruct, sample, to_backend
from .langevin import short_run
from .optim import Adam
from .random import host_rng, standard_normal_groups
from .stepsize import AdamLogStep, GridSearch, StepSizeWarning
from .vae import Encoder, neg_elbo, split_params
from .validate import check_sigma, check_step_size

MODEL_DEFAULTS = {
    "mlp": {"latent_dims": (4, 8), "hidden": 64},
    "conv": {"latent_dims": (8, 16), "channels": 16},
    "paper": {},
}
STEP_METHODS = ("fixed", "grid", "gradient")
METHODS = ("shortrun", "vae")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run (stored in the checkpoint and ``config.json``)."""

    method: str = "shortrun"  # "shortrun" (docs/math.md §3) or "vae" (the baseline, srl.vae)
    data: str = "digits"
    root: Optional[str] = None
    limit: Optional[int] = None
    model: str = "mlp"
    latent_dims: Optional[tuple] = None
    hidden: Optional[int] = None
    channels: Optional[int] = None
    backend: str = "numpy"
    device: Optional[str] = None
    dtype: str = "float32"
    n_steps: int = 25
    sigma: float = 0.15
    step_size: object = 0.05
    step_method: str = "gradient"
    step_objective: str = "reverse"
    step_every: int = 5
    step_subset: int = 32
    step_lr: float = 0.05
    tied: bool = False
    epochs: int = 60
    batch_size: int = 100
    lr: float = 2e-3
    lr_schedule: str = "cosine"  # "constant" (the paper's) or "cosine" decay to 0 over the run
    beta1: float = 0.5
    seed: int = 0
    out: str = "runs/digits"
    checkpoint_every: int = 1  # epochs
    eval_n_bound: int = 100
    eval_iw_chains: int = 8
    blas_threads: Optional[int] = 1  # NumPy backend: BLAS threads (0/None = library default)

    def validate(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.model not in MODEL_DEFAULTS:
            raise ValueError(f"model must be one of {tuple(MODEL_DEFAULTS)}, got {self.model!r}")
        if self.step_method not in STEP_METHODS:
            raise ValueError(f"step_method must be one of {STEP_METHODS}, got {self.step_method!r}")
        if self.step_objective not in ("jacobian", "reverse"):
            raise ValueError(f"step_objective must be 'jacobian' or 'reverse', got {self.step_objective!r}")
        for name in ("epochs", "batch_size", "step_every", "step_subset", "n_steps"):
            if int(getattr(self, name)) < (0 if name == "n_steps" else 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        check_sigma(self.sigma)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in fields})


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


def make_stepper(cfg: TrainConfig):
    if cfg.step_method == "fixed":
        return None
    if cfg.step_method == "grid":
        return GridSearch(kind=cfg.step_objective, tied=cfg.tied)
    return AdamLogStep(kind=cfg.step_objective, lr=cfg.step_lr, tied=cfg.tied)


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


def _load_data(cfg: TrainConfig):
    from . import data as data_mod

    shape = None
    if cfg.model == "paper":
        shape = models.paper().out_shape
    ds = data_mod.load(cfg.data, root=cfg.root, shape=shape, limit=cfg.limit)
    return ds


def _check_out_dir(out: Path):
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"output directory {out} is not writable: {exc}") from exc


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, evaluate_at_end: bool = True,
          max_iterations: Optional[int] = None) -> TrainResult:
    """Run (or resume) training; see the module docstring. ``max_iterations`` stops early
    (used to simulate an interruption: the last checkpoint is then at that iteration)."""
    cfg.validate()
    with _backend.blas_threads(cfg.blas_threads if cfg.backend == "numpy" else None):
        return _train(cfg, resume=resume, progress=progress, evaluate_at_end=evaluate_at_end,
                      max_iterations=max_iterations)


def _train(cfg, *, resume, progress, evaluate_at_end, max_iterations):
    out = Path(cfg.out)
    _check_out_dir(out)
    ds = _load_data(cfg)
    gen = build_generator(cfg, ds.shape)
    xp, dev = _backend.namespace(cfg.backend, cfg.device)
    n_train = ds.train.shape[0]
    if cfg.batch_size > n_train:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {n_train} training images")
    per_epoch = n_train // cfg.batch_size
    total = cfg.epochs * per_epoch
    ckpt_path = out / "checkpoint.npz"
    adam = Adam(lr=cfg.lr, betas=(cfg.beta1, 0.999))
    stepper = make_stepper(cfg)
    if resume and ckpt_path.exists():
        state = checkpoint.load(ckpt_path)
        meta = state["meta"]
        saved = TrainConfig.from_json(meta["config"])
        if saved.to_json() != dict(cfg.to_json(), epochs=saved.epochs, out=saved.out):
            diffs = sorted(k for k, v in cfg.to_json().items() if saved.to_json().get(k) != v and k not in ("epochs", "out"))
            raise ValueError(f"--resume with a different configuration ({', '.join(diffs)}) would not reproduce the run")
        dt = _backend.resolve_dtype(xp, cfg.dtype)
        params = {k: _backend.from_numpy(xp, v, dtype=dt, device=dev) for k, v in state["params"].items()}
        adam.load_state_dict(state["adam"], like=params)
        step_size = tuple(meta["step_size"])
        if stepper is not None and meta.get("stepper") is not None and hasattr(stepper, "load_state_dict"):
            stepper.load_state_dict(meta["stepper"])
        history = meta["history"]
        start = int(meta["iteration"])
        # the log is rewritten from the checkpoint: lines written after it are dropped
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    else:
        params = gen.init(seed=cfg.seed, backend=cfg.backend, dtype=cfg.dtype, device=cfg.device)
        if cfg.method == "vae":
            params.update(Encoder(gen).init(seed=[cfg.seed, 9], backend=cfg.backend, dtype=cfg.dtype,
                                            device=cfg.device))
        step_size = check_step_size(cfg.step_size, len(gen.latent_dims))
        history = []
        start = 0
        (out / "metrics.jsonl").write_text("")
    enc = Encoder(gen) if cfg.method == "vae" else None
    (out / "config.json").write_text(json.dumps({"train": cfg.to_json(), "generator": gen.config}, indent=2))
    stop = total if max_iterations is None else min(total, int(max_iterations))
    bar = _Progress(total, start, progress)
    log = open(out / "metrics.jsonl", "a")
    t0 = time.perf_counter()
    try:
        it = start
        for it in range(start, stop):
            epoch, b = divmod(it, per_epoch)
            perm = np.random.default_rng([cfg.seed, 0, epoch]).permutation(n_train)
            x = to_backend(ds.train[perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]], params[next(iter(params))])
            adam.lr = learning_rate(cfg, it, total)
            if enc is not None:
                params, record = _vae_iteration(xp, gen, enc, params, adam, x, cfg, it)
            else:
                zK = short_run(gen, params, x, step_size=step_size, n_steps=cfg.n_steps, sigma=cfg.sigma,
                               seed=[cfg.seed, 1, it])
                energy, grads, mse = batch_value_and_param_grad(xp, gen, params, x, zK, cfg.sigma)
                params = adam.step(params, grads)  # eq. (3.1)
                record = {"energy": energy, "mse": mse}
            record = {"iteration": it + 1, "epoch": epoch, **record, "step_size": [float(v) for v in step_size]}
            energy, mse = record["energy"], record["mse"]
            if stepper is not None and enc is None and it % cfg.step_every == 0:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", StepSizeWarning)
                    upd = stepper(gen, params, x[:cfg.step_subset, ...], step_size, n_steps=cfg.n_steps,
                                  sigma=cfg.sigma, seed=[cfg.seed, 2, it])
                for w in caught:
                    warnings.warn(f"iteration {it + 1}: {w.message}", StepSizeWarning, stacklevel=2)
                step_size = upd.step_size
                record["step_objective"] = upd.objective
                record["step_diverged"] = upd.diverged
            history.append(record)
            log.write(json.dumps(record) + "\n")
            bar.update(E=f"{energy:.1f}", mse=f"{mse:.4f}", s="/".join(f"{v:.3g}" for v in step_size))
            done = it + 1
            if done % (per_epoch * cfg.checkpoint_every) == 0 or done == stop:
                log.flush()
                _save(ckpt_path, cfg, gen, params, adam, stepper, step_size, history, done)
        log.flush()
    finally:
        log.close()
        bar.close()
    train_seconds = time.perf_counter() - t0
    metrics = {}
    if stop == total and evaluate_at_end:
        metrics = finish(cfg, gen, params, step_size, history, ds, out)
        metrics["train_seconds_this_session"] = train_seconds
        (out / "summary.json").write_text(json.dumps(metrics, indent=2))
    return TrainResult(gen, params, tuple(step_size), history, metrics, out)


def learning_rate(cfg, it: int, total: int) -> float:
    """θ's learning rate at iteration ``it`` (a function of the iteration only: resumable)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * it / max(total, 1)))


def _vae_iteration(xp, gen, enc, params, adam, x, cfg, it):
    """One VAE step: reparameterised −ELBO and its hand-written gradients (srl.vae)."""
    gen_p, enc_p = split_params(params)
    n = x.shape[0]
    eps = standard_normal_groups(host_rng([cfg.seed, 1, it]), n, gen.latent_dims, xp=xp, dtype=x.dtype,
                                 device=_backend.device(x))
    values, g_gen, g_enc, aux = neg_elbo(xp, gen, enc, gen_p, enc_p, x, eps, cfg.sigma)
    grads = {k: g * (1.0 / n) for k, g in {**g_gen, **g_enc}.items()}
    params = adam.step(params, grads)
    r = aux["residual"]
    return params, {"energy": float(xp.mean(values)), "neg_elbo": float(xp.mean(values)),
                    "mse": float(xp.mean(r * r))}


def _save(path, cfg, gen, params, adam, stepper, step_size, history, iteration):
    meta = {"config": cfg.to_json(), "generator": gen.config, "iteration": iteration,
            "step_size": [float(v) for v in step_size], "history": history,
            "stepper": stepper.state_dict() if hasattr(stepper, "state_dict") else None}
    checkpoint.save(path, params=params, adam=adam.state_dict(), meta=meta)


def finish(cfg, gen, params, step_size, history, ds, out: Path) -> dict:
    """Pictures and held-out metrics at the end of a run."""
    from .evaluate import evaluate_vae
    from .vae import reconstruct as vae_reconstruct

    gen_p, enc_p = split_params(params)
    p0 = gen_p[next(iter(gen_p))]
    what = "VAE" if cfg.method == "vae" else f"steps: {cfg.step_method}"
    viz.plot_training(out / "training.png", history, title=f"{cfg.data} · {cfg.model} · {what}")
    xs = sample(gen, gen_p, 64, seed=[cfg.seed, 5])
    viz.save_grid(out / "samples.png", xs, title="samples g(z), z ~ N(0, I)")
    x = to_backend(ds.test[:32], p0)
    if cfg.method == "vae":
        xp = _backend.array_namespace(p0)
        x_hat = vae_reconstruct(xp, gen, Encoder(gen), gen_p, enc_p, x)
        title = "held-out data (odd rows) and VAE reconstructions g(μ(x))"
        metrics = evaluate_vae(gen, Encoder(gen), gen_p, enc_p, ds.test, sigma=cfg.sigma, seed=cfg.seed,
                               n_bound=cfg.eval_n_bound, iw_chains=cfg.eval_iw_chains)
    else:
        x_hat, _ = reconstruct(gen, gen_p, x, step_size=step_size, n_steps=cfg.n_steps, sigma=cfg.sigma,
                               seed=[cfg.seed, 6])
        title = f"held-out data (odd rows) and short-run reconstructions, K={cfg.n_steps}"
        metrics = evaluate(gen, gen_p, ds.test, step_size=step_size, n_steps=cfg.n_steps, sigma=cfg.sigma,
                           seed=cfg.seed, n_bound=cfg.eval_n_bound, iw_chains=cfg.eval_iw_chains)
    viz.save_reconstructions(out / "reconstructions.png", x, x_hat, n=32, title=title)
    metrics["step_size"] = [float(v) for v in step_size]
    metrics["iterations"] = len(history)
    return metrics


def load_run(path, *, backend=None, device=None, dtype=None):
    """``(gen, params, step_size, config)`` from a checkpoint file or run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    state = checkpoint.load(path)
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
