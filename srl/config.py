"""The training configuration: one dataclass field per option of ``srl train``.

Each field of ``TrainConfig`` carries its command-line metadata (argument group, parser,
choices, help); ``srl.cli`` builds the ``srl train`` options from these fields, so an
option is declared in exactly one place. The configuration is stored in the checkpoint and
in ``config.json`` (``to_json`` / ``from_json``) and validated once per run (``validate``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional

import numpy as np

from .validate import check_sigma, check_step_size

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
    data: str = option("digits", "digits | mnist | fashion-mnist | svhn | cifar10 | folder | PATH to images",
                       group="data")
    root: Optional[str] = option(None, "directory with the dataset's standard files (never downloaded)",
                                 group="data", parse=str)
    limit: Optional[int] = option(None, "use at most this many train/test images", group="data", parse=int)
    pad: int = option(0, "black pixels added on each side of the images (2: 28x28 -> 32x32)", group="data")
    model: str = option("mlp", "generator architecture", group="model", choices=tuple(MODEL_DEFAULTS))
    latent_dims: Optional[tuple] = option(None, "comma-separated, top group first (e.g. 8,16)", group="model",
                                          parse=parse_ints)
    hidden: Optional[int] = option(None, "mlp width", group="model", parse=int)
    channels: Optional[int] = option(None, "conv channels", group="model", parse=int)
    backend: str = option("numpy", "array library", group="backend",
                          choices=("numpy", "torch", "jax", "cupy", "array_api_strict"))
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
    step_iterations: int = option(500, "optimise s during the first N iterations, then hold it (0: during the whole "
                                  "run; docs/math.md §5, 'Choosing s')", group="inference")
    step_subset: int = option(32, "examples used per s update", group="inference")
    step_lr: float = option(0.05, "Adam learning rate on log s", group="inference")
    step_keep_activations: bool = option(False, "reverse-kernel s-gradient by the adjoint sweep (more than two latent "
                                         "groups): keep each Langevin step's linearisation, about 2 chains' time "
                                         "instead of 3, memory K x 2 arrays per generator nonlinearity "
                                         "(docs/math.md eq. 5.5)", group="inference", parse=bool)
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
    eval_n_codes: int = option(1000, "training images whose codes' Gaussian the final evaluation also samples from "
                               "(docs/math.md eq. 3.3; 0: not)", group="output")
    blas_threads: Optional[int] = option(1, "NumPy backend: BLAS threads (0 = the library default)",
                                         group="backend")
    cuda_graphs: bool = option(False, "PyTorch on CUDA: replay each iteration's chain and θ-gradient as a recorded "
                               "CUDA graph (srl.cuda_graphs)", group="backend", parse=bool)

    def validate(self):
        """Check every field; ``ValueError``/``TypeError`` naming the field and its option."""
        for name, allowed in (("method", METHODS), ("model", tuple(MODEL_DEFAULTS)), ("step_method", STEP_METHODS),
                              ("step_objective", STEP_OBJECTIVES), ("lr_schedule", LR_SCHEDULES),
                              ("dtype", ("float32", "float64"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{_named(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "step_every", "step_subset", "checkpoint_every", "eval_n_bound",
                     "eval_iw_chains"):
            _check_int(name, getattr(self, name), minimum=1)
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out).strip():
            raise ValueError(f"{_named('out')} must name a directory, got {self.out!r}")
        _check_int("n_steps", self.n_steps, minimum=0)
        _check_int("step_iterations", self.step_iterations, minimum=0)
        _check_int("pad", self.pad, minimum=0)
        _check_int("eval_n_codes", self.eval_n_codes, minimum=0)
        if self.eval_n_codes == 1:
            raise ValueError(f"{_named('eval_n_codes')} must be 0 (off) or at least 2 (a covariance needs two codes), "
                             "got 1")
        _check_int("seed", self.seed, minimum=0)
        for name, minimum in (("limit", 1), ("hidden", 1), ("channels", 1), ("blas_threads", 0)):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=minimum)
        if self.latent_dims is not None:
            dims = self.latent_dims
            if isinstance(dims, (str, bytes)) or not hasattr(dims, "__len__") or len(dims) == 0:
                raise ValueError(f"{_named('latent_dims')} must list at least one group size (e.g. 8,16), "
                                 f"got {dims!r}")
            for d in dims:
                _check_int("latent_dims", d, minimum=1)
        unused = {"paper": ("latent_dims", "hidden", "channels"), "mlp": ("channels",), "conv": ("hidden",)}
        for name in unused[self.model]:
            if getattr(self, name) is not None:
                raise ValueError(f"{_named(name)} does not apply to --model {self.model}; drop it"
                                 + (" (the paper model's architecture is fixed)" if self.model == "paper" else ""))
        try:
            check_sigma(self.sigma, self.dtype)
            values = self.step_size if isinstance(self.step_size, (tuple, list)) else (self.step_size,)
            check_step_size(self.step_size, len(values))
        except (TypeError, ValueError) as exc:
            option = "--sigma" if "sigma" in str(exc) else "--step-size"
            raise type(exc)(f"{option}: {exc}") from None
        for name in ("lr", "step_lr"):
            _check_real(name, getattr(self, name), lo=0.0)
        _check_real("beta1", self.beta1, lo=0.0, closed=True, hi=1.0)
        if self.cuda_graphs and not (self.backend == "torch" and str(self.device or "").startswith("cuda")
                                     and self.method == "shortrun"):
            raise ValueError(f"{_named('cuda_graphs')} records PyTorch CUDA kernels of the short-run method: use it "
                             f"with --backend torch --device cuda (and --method shortrun), or drop it")
        if self.step_keep_activations and not (self.step_method == "gradient" and self.step_objective == "reverse"):
            raise ValueError(f"{_named('step_keep_activations')} speeds up the gradient of the reverse-kernel bound: "
                             "use it with --step-method gradient --step-objective reverse, or drop it")
        if self.tied and len(set(float(v) for v in values)) > 1:
            raise ValueError(f"{_named('tied')} shares one step size between the groups, but {_named('step_size')} "
                             f"gives {len(values)} different ones ({', '.join(map(str, values))}); give one value")

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


def _named(name: str) -> str:
    """A field with its command-line option: ``"lr (--lr)"``."""
    return f"{name} (--{name.replace('_', '-')})"


def _check_int(name, value, *, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{_named(name)} must be an integer, got {value!r}")
    if value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{_named(name)} must be {what}, got {value!r}")


def _check_real(name, value, *, lo, hi=None, closed=False):
    """A finite number in (lo, hi) — or [lo, hi) with ``closed``."""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{_named(name)} must be a number, got {value!r}")
    ok = math.isfinite(value) and (value >= lo if closed else value > lo) and (hi is None or value < hi)
    if not ok:
        where = f"in [{lo:g}, {hi:g})" if hi is not None else "positive and finite"
        raise ValueError(f"{_named(name)} must be {where}, got {value!r}")


def learning_rate(cfg: TrainConfig, it: int, total: int) -> float:
    """θ's learning rate at iteration ``it`` (a function of the iteration only: resumable)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * it / max(total, 1)))
