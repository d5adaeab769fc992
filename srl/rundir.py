"""The run directory: what a training run writes and how it is read back.

    OUT/config.json        the configuration and the generator's architecture
    OUT/metrics.jsonl      one JSON line per iteration
    OUT/checkpoint.npz     the training state (srl.checkpoint: atomic), the metric history
    OUT/training.png, samples.png, reconstructions.png    pictures at the end of a run
    OUT/summary.json       held-out metrics at the end of a run

A resumed run rewrites ``metrics.jsonl`` from the checkpoint's history, so lines written
after the last checkpoint are dropped and the log matches the uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import _backend, checkpoint, models, viz
from .config import TrainConfig
from .learning import Optimisers, TrainState
from .vae import Encoder, split_params


class RunDirectory:
    """The files of one run under ``path``."""

    def __init__(self, path):
        self.path = Path(path)
        self.checkpoint = self.path / "checkpoint.npz"
        self.metrics = self.path / "metrics.jsonl"
        self._log = None

    def prepare(self) -> None:
        """Create the directory; ``PermissionError`` if it cannot be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write_test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise PermissionError(f"output directory {self.path} is not writable: {exc}") from exc

    def write_config(self, cfg: TrainConfig, gen) -> None:
        (self.path / "config.json").write_text(json.dumps({"train": cfg.to_json(), "generator": gen.config},
                                                          indent=2))

    # -- metric log ---------------------------------------------------------------------------

    def open_log(self, history) -> None:
        """Start ``metrics.jsonl`` with ``history`` (empty for a new run) and open it for appending."""
        self.metrics.write_text("".join(json.dumps(r) + "\n" for r in history))
        self._log = open(self.metrics, "a")

    def log(self, record: dict) -> None:
        self._log.write(json.dumps(record) + "\n")

    def flush_log(self) -> None:
        self._log.flush()

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- checkpoint ---------------------------------------------------------------------------

    def save_checkpoint(self, cfg: TrainConfig, gen, state: TrainState, opt: Optimisers, history) -> None:
        """Write the state and the history atomically (srl.checkpoint)."""
        stepper = opt.step.state_to_json(state.stepper) if opt.step is not None else None
        meta = {"config": cfg.to_json(), "generator": gen.config, "iteration": state.iteration,
                "step_size": [float(v) for v in state.step_size], "history": history, "stepper": stepper}
        checkpoint.save(self.checkpoint, params=state.params, adam=opt.theta.state_to_host(state.adam), meta=meta)

    def load_checkpoint(self, cfg: TrainConfig, opt: Optimisers):
        """``(state, history)`` from the checkpoint, on ``cfg``'s backend, device and dtype.

        ``ValueError`` if the checkpoint was written with a different configuration (other
        than ``epochs`` and ``out``): resuming it would not reproduce the run.
        """
        saved_ckpt = checkpoint.load(self.checkpoint)
        meta = saved_ckpt["meta"]
        saved = TrainConfig.from_json(meta["config"])
        if saved.to_json() != dict(cfg.to_json(), epochs=saved.epochs, out=saved.out):
            diffs = sorted(k for k, v in cfg.to_json().items()
                           if saved.to_json().get(k) != v and k not in ("epochs", "out"))
            raise ValueError(f"--resume with a different configuration ({', '.join(diffs)}) would not reproduce "
                             "the run")
        xp, dev = _backend.namespace(cfg.backend, cfg.device)
        dt = _backend.resolve_dtype(xp, cfg.dtype)
        params = {k: _backend.from_numpy(xp, v, dtype=dt, device=dev) for k, v in saved_ckpt["params"].items()}
        adam = opt.theta.state_from_host(saved_ckpt["adam"], like=params)
        stepper = opt.step.state_from_json(meta.get("stepper")) if opt.step is not None else None
        state = TrainState(params, adam, stepper, tuple(meta["step_size"]), int(meta["iteration"]))
        return state, meta["history"]

    # -- end of run ---------------------------------------------------------------------------

    def write_summary(self, metrics: dict) -> None:
        (self.path / "summary.json").write_text(json.dumps(metrics, indent=2))


def finish(cfg: TrainConfig, gen, params, step_size, history, ds, out: Path) -> dict:
    """Pictures (training curves, samples, reconstructions) and held-out metrics at the end of a run."""
    from .evaluate import evaluate, evaluate_vae, reconstruct, sample, to_backend
    from .vae import reconstruct as vae_reconstruct

    out = Path(out)
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
