"""The training configuration: one dataclass field per option of ``srl train``.

Each field of ``TrainConfig`` carries its command-line metadata (argument group, parser,
choices, help); ``srl.cli`` builds the ``srl train`` options from these fields, so an
option is declared in exactly one place. The configuration is stored in the checkpoint and
in ``config.json`` (``to_json`` / ``from_json``) and validated once per run (``validate``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from .validate import check_sigma

MODEL_DEFAULTS = {
    "mlp": {"latent_dims": (4, 8), "hidden": 64},
    "conv": {"latent_dims": (8, 16), "channels": 16},
    "paper": {},
}
STEP_METHODS = ("fixed", "grid", "gradient")
STEP_OBJECTIVES = ("jacobian", "reverse")
METHODS = ("shortrun", "vae")
LR_SCHEDULES = ("constant", "cosine")


def parse_floats(text):
    """``"0.05"`` → 0.05, ``"0.1,0.05"`` → (0.1, 0.05): one step size or one per group."""
    vals = [float(v) for v in str(text).split(",") if v.strip()]
    return vals[0] if len(vals) == 1 else tuple(vals)


def parse_ints(text):
    """``"8,16"`` → (8, 16)."""
    return tuple(int(v) for v in str(text).split(",") if v.strip())


def option(default, help: str, *, group: Optional[str], parse=None, choices=None):
    """A configuration field with its command-line metadata.

    ``group``: argument group of ``srl train --help`` (None: top level); ``parse``: the
    function turning the command-line text into the value (``bool``: a flag that sets
    True); ``choices``: the allowed values.
    """
    if parse is None:
        parse = type(default)
    meta = {"help": help, "group": group, "parse": parse, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run (stored in the checkpoint and ``config.json``)."""

    method: str = option("shortrun", "short-run Langevin inference (docs/math.md §3) or the VAE baseline on the same "
                         "generator (docs/math.md §8)", group=None, choices=METHODS)
    data: str = option("digits", "digits | mnist | svhn | cifar10 | folder | PATH to images", group="data")
    root: Optional[str] = option(None, "directory with the dataset's standard files (never downloaded)",
                                 group="data", parse=str)
    limit: Optional[int] = option(None, "use at most this many train/test images", group="data", parse=int)
    model: str = option("mlp", "generator architecture", group="model", choices=tuple(MODEL_DEFAULTS))
    latent_dims: Optional[tuple] = option(None, "comma-separated, top group first (e.g. 8,16)", group="model",
                                          parse=parse_ints)
    hidden: Optional[int] = option(None, "mlp width", group="model", parse=int)
    channels: Optional[int] = option(None, "conv channels", group="model", parse=int)
    backend: str = option("numpy", "array library", group="backend",
                          choices=("numpy", "torch", "cupy", "array_api_strict"))
    device: Optional[str] = option(None, "e.g. cuda, cuda:1", group="backend", parse=str)
    dtype: str = option("float32", "floating-point precision", group="backend", choices=("float32", "float64"))
    n_steps: int = option(25, "K, Langevin steps", group="inference")
    sigma: float = option(0.15, "observation noise σ", group="inference")
    step_size: object = option(0.05, "initial s (one value or one per group)", group="inference",
                               parse=parse_floats)
    step_method: str = option("gradient", "how s is optimised", group="inference", choices=STEP_METHODS)
    step_objective: str = option("reverse", "J_jac (docs/math.md eq. 4.1) or the reverse-kernel bound (eq. 5.1)",
                                 group="inference", choices=STEP_OBJECTIVES)
    step_every: int = option(5, "update s every N iterations", group="inference")
    step_subset: int = option(32, "examples used per s update", group="inference")
    step_lr: float = option(0.05, "Adam learning rate on log s", group="inference")
    tied: bool = option(False, "one step size shared by all groups", group="inference", parse=bool)
    epochs: int = option(60, "passes over the training images", group="optimisation")
    batch_size: int = option(100, "minibatch size", group="optimisation")
    lr: float = option(2e-3, "Adam learning rate for θ", group="optimisation")
    lr_schedule: str = option("cosine", "'constant' (the paper's) or 'cosine' decay to 0 over the run",
                              group="optimisation", choices=LR_SCHEDULES)
    beta1: float = option(0.5, "Adam β1 for θ", group="optimisation")
    seed: int = option(0, "selects every random draw of the run", group="optimisation")
    out: str = option("runs/digits", "output directory", group="output")
    checkpoint_every: int = option(1, "write the checkpoint every N epochs", group="output")
    eval_n_bound: int = option(100, "test examples used for the bounds of the final evaluation", group="output")
    eval_iw_chains: int = option(8, "chains M of the importance-weighted bound of the final evaluation",
                                 group="output")
    blas_threads: Optional[int] = option(1, "NumPy backend: BLAS threads (0 = the library default)",
                                         group="backend")

    def validate(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.model not in MODEL_DEFAULTS:
            raise ValueError(f"model must be one of {tuple(MODEL_DEFAULTS)}, got {self.model!r}")
        if self.step_method not in STEP_METHODS:
            raise ValueError(f"step_method must be one of {STEP_METHODS}, got {self.step_method!r}")
        if self.step_objective not in STEP_OBJECTIVES:
            raise ValueError(f"step_objective must be 'jacobian' or 'reverse', got {self.step_objective!r}")
        for name in ("epochs", "batch_size", "step_every", "step_subset", "n_steps"):
            if int(getattr(self, name)) < (0 if name == "n_steps" else 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        check_sigma(self.sigma)
        if self.lr_schedule not in LR_SCHEDULES:
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


def learning_rate(cfg: TrainConfig, it: int, total: int) -> float:
    """θ's learning rate at iteration ``it`` (a function of the iteration only: resumable)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * it / max(total, 1)))
