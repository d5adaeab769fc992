"""The ``srl`` command: train, sample, reconstruct, eval, check.

    srl train                       # digits, numpy backend, optimized step sizes
    srl train --step-method fixed --out runs/digits-fixed   # the same budget, step size held fixed
    srl sample runs/digits          # PNG grid of samples from a run
    srl reconstruct runs/digits     # held-out data and their short-run reconstructions
    srl eval runs/digits            # held-out MSE, ELBOs (nats, bits/dim), Fréchet distance
    srl check --backend torch       # this backend vs the NumPy reference, torch.autograd and JAX autodiff
    srl crosscheck my_model.py      # your own PyTorch/JAX implementation vs srl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path


def add_config_options(parser, config_class) -> None:
    """One ``--option`` per field of a configuration dataclass (srl.config), in field order,
    in the argument group, with the parser, choices, default and help the field declares."""
    groups = {}
    for f in dataclasses.fields(config_class):
        meta = f.metadata
        group = meta["group"]
        if group is None:
            target = parser
        else:
            if group not in groups:
                groups[group] = parser.add_argument_group(group)
            target = groups[group]
        flag = "--" + f.name.replace("_", "-")
        if meta["parse"] is bool:
            target.add_argument(flag, action="store_true", default=f.default, help=meta["help"])
        else:
            target.add_argument(flag, type=meta["parse"], default=f.default, choices=meta["choices"],
                                help=meta["help"])


def config_from_args(config_class, args):
    """The configuration holding the parsed values of ``add_config_options``."""
    return config_class(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_class)})


def _add_train(sub):
    from .config import TrainConfig

    p = sub.add_parser("train", parents=[_debug_option()],
                       help="learn a generator with short-run inference",
                       description="Learn θ by short-run Langevin inference (docs/math.md §3) with step sizes optimized "
                                   "variationally (docs/math.md §4, §5). Writes metrics.jsonl, training.png, samples.png, "
                                   "samples_codes.png, reconstructions.png, summary.json and checkpoint.npz to --out.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(p, TrainConfig)
    g = p.add_argument_group("run")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly (refused if an option that changes its trajectory differs)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (it is kept until the new run writes its first checkpoint)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    _add_workers(p)
    return p


def _debug_option():
    """``--debug`` after the subcommand as well (only set when given, so that ``srl --debug
    train`` keeps working)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    return p


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _n_codes(*, off: bool):
    """``--n-codes``: at least 2 training images (a covariance needs two codes), or 0 with ``off``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 2 and not (off and value == 0):
            raise argparse.ArgumentTypeError(f"must be {'0 (off) or ' if off else ''}an integer >= 2 (a covariance "
                                             f"needs two codes), got {text!r}")
        return value
    return parse


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed must be a non-negative integer, got {text!r}")
    return value


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _add_workers(p):
    from .distributed import DEFAULT_TIMEOUT

    g = p.add_argument_group("workers", "data-parallel over torch.distributed (docs/distributed.md); a launch by "
                                        "torchrun is detected from its environment")
    g.add_argument("--nproc", type=_positive_int, default=1,
                   help="start this many local worker processes (torch.distributed.run); leave it out under torchrun")
    g.add_argument("--timeout", type=_positive_seconds, default=DEFAULT_TIMEOUT,
                   help="seconds a collective waits for the slowest worker before the run stops")


def _run_dir_arg(p):
    p.add_argument("run", help="run directory (or its checkpoint.npz)")
    p.add_argument("--backend", default=None, help="override the run's backend")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=_seed, default=0)


def build_parser():
    parser = argparse.ArgumentParser(prog="srl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"srl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    p = sub.add_parser("sample", parents=[_debug_option()],
                       help="write a PNG grid of samples g(z), z ~ N(0, I) or from the codes' Gaussian")
    _run_dir_arg(p)
    p.add_argument("-n", "--n", type=_positive_int, default=64)
    p.add_argument("--from", dest="source", default="prior", choices=["prior", "codes"],
                   help="z from the prior N(0, I) (the paper's), or from the Gaussian fitted to the short-run codes of "
                        "training images (docs/math.md eq. 3.3)")
    p.add_argument("--n-codes", type=_n_codes(off=False), default=1000,
                   help="with --from codes: training images whose codes the Gaussian is fitted to")
    p.add_argument("-o", "--output", default=None, help="PNG path (default RUN/samples.png)")
    p = sub.add_parser("reconstruct", parents=[_debug_option()],
                       help="reconstruct held-out data by short-run inference")
    _run_dir_arg(p)
    p.add_argument("-n", "--n", type=_positive_int, default=32)
    p.add_argument("-o", "--output", default=None, help="PNG path (default RUN/reconstructions.png)")
    p = sub.add_parser("eval", parents=[_debug_option()],
                       help="held-out MSE, ELBOs and the Fréchet distance")
    _run_dir_arg(p)
    p.add_argument("--n-bound", type=_positive_int, default=100, help="test examples used for the bounds")
    p.add_argument("--iw-chains", type=_positive_int, default=8, help="chains M of the importance-weighted bound")
    p.add_argument("--fid-weights", default=None,
                   help="Inception weights file for FID on non-digit images (pt_inception-2015-12-05-6726825d.pth; "
                        "also found via $SRL_FID_WEIGHTS or the torch hub cache; never downloaded)")
    p.add_argument("--n-codes", type=_n_codes(off=True), default=1000,
                   help="also the Fréchet distance of samples from the Gaussian fitted to the codes of this many "
                        "training images (docs/math.md eq. 3.3); 0: not")
    p.add_argument("--json", action="store_true", help="print JSON only")
    _add_workers(p)
    p = sub.add_parser("check", parents=[_debug_option()],
                       help="compare a backend with the NumPy reference, torch.autograd and JAX autodiff")
    p.add_argument("--backend", default="numpy", help="numpy | torch | torch:cuda | jax | jax:gpu | cupy | array_api_strict")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--model", default="all", choices=["all", "mlp", "conv"])
    p.add_argument("--json", action="store_true", help="print JSON only")
    _add_crosscheck(sub)
    return parser


def _add_crosscheck(sub):
    p = sub.add_parser("crosscheck", parents=[_debug_option()],
                       help="compare your own PyTorch or JAX implementation with srl",
                       description="FILE.py defines build() returning the arguments of srl.interop.torch.crosscheck "
                                   "(module, gen, ...) or srl.interop.jax.crosscheck (apply_fn, variables, gen, ...); "
                                   "see docs/crosscheck.md. Exit status: 0 all checks pass, 1 a mismatch, 2 the file "
                                   "cannot be checked.")
    p.add_argument("file", help="Python file defining build()")
    p.add_argument("--dtype", default=None, choices=["float32", "float64"], help="override the file's dtype")
    p.add_argument("--json", action="store_true", help="print JSON only")


def _cmd_crosscheck(a):
    from .interop.crosscheck import CrosscheckError, run_file

    try:
        return run_file(a.file, dtype=a.dtype, as_json=a.json)
    except Exception as exc:  # the user's file: any error is reported in one line
        if a.debug:
            raise
        msg = str(exc) if isinstance(exc, CrosscheckError) else f"{a.file}: {type(exc).__name__}: {exc}"
        print(f"srl crosscheck: error: {msg}".replace("\n", " "), file=sys.stderr)
        return 2


def _local_workers_wanted(a) -> bool:
    """True when this command should start ``--nproc`` local workers (not when it is one of them)."""
    from . import distributed

    if distributed.launched():
        if a.nproc > 1 and os.environ.get(distributed.LOCAL_WORKERS_VARIABLE) != str(a.nproc):
            raise ValueError("--nproc starts local workers; under torchrun the number of processes is torchrun's "
                             "(--nproc-per-node, --nnodes): leave --nproc out")
        return False
    return a.nproc > 1


def _workers(a, backend, device):
    """This process's ``srl.distributed.Workers`` (one process, or a worker of a torchrun launch)."""
    from . import distributed

    workers = distributed.from_environment(timeout=a.timeout, backend=backend, device=device)
    if not workers.is_main:  # worker 0 reports warnings and interruptions; the others would repeat them
        warnings.simplefilter("ignore")
        a.quiet_interruption = True
    return workers


def _cmd_train(a):
    from . import distributed
    from .config import TrainConfig
    from .train import train

    cfg = config_from_args(TrainConfig, a)
    if _local_workers_wanted(a):
        cfg.validate()
        if cfg.batch_size < a.nproc:
            raise ValueError(f"batch_size {cfg.batch_size} is smaller than --nproc {a.nproc}")
        return distributed.launch(a.argv, a.nproc)
    workers = _workers(a, cfg.backend, cfg.device)
    try:
        res = train(cfg, resume=a.resume, overwrite=a.overwrite, progress=not a.no_progress,
                    evaluate_at_end=not a.no_eval, workers=workers)
    finally:
        workers.close()
    if workers.is_main:
        from .rundir import RESULT_FILES, RUN_FILES

        written = [name for name in RUN_FILES + RESULT_FILES if (Path(res.out) / name).exists()]
        print(f"wrote {res.out}/ ({', '.join(written)})")
        if res.metrics:
            print(json.dumps(res.metrics, indent=2))
    return 0


def _load(a):
    """The run named on the command line: ``(gen, gen params, encoder, encoder params, s, cfg)``."""
    from .train import load_run, split_run_params

    gen, params, s, cfg = load_run(a.run, backend=a.backend, device=a.device)
    gen_p, enc, enc_p = split_run_params(cfg, gen, params)
    return gen, gen_p, enc, enc_p, s, cfg


def _saved_config(run):
    """The training configuration stored in a run's checkpoint."""
    from . import checkpoint
    from .config import TrainConfig

    path = Path(run)
    saved = checkpoint.load(path / "checkpoint.npz" if path.is_dir() else path, required=("config",))
    return TrainConfig.from_json(saved["meta"]["config"])


def _output(a, name):
    run = Path(a.run)
    return Path(a.output or (run if run.is_dir() else run.parent) / name)


def _data(cfg, gen):
    """The run's data set (``.train``, ``.test``), shaped for its generator."""
    from .train import load_data

    return load_data(cfg, shape=gen.out_shape)


def _cmd_sample(a):
    from . import viz
    from .evaluate import fit_run_codes, sample

    gen, gen_p, enc, enc_p, s, cfg = _load(a)
    out = viz.output_path(_output(a, "samples.png"))  # checked before the work
    codes, title = None, "samples g(z), z ~ N(0, I)"
    if a.source == "codes":
        codes = fit_run_codes(gen, gen_p, enc, enc_p, _data(cfg, gen).train[:a.n_codes], step_size=s,
                              n_steps=cfg.n_steps, sigma=cfg.sigma, seed=a.seed)
        title = f"samples g(z), z from the Gaussian of {codes.n} training codes"
    out = viz.save_grid(out, sample(gen, gen_p, a.n, seed=a.seed, codes=codes), title=title)
    print(f"wrote {out}")
    return 0


def _cmd_reconstruct(a):
    from . import _backend, vae, viz
    from .evaluate import reconstruct, to_backend

    gen, gen_p, enc, enc_p, s, cfg = _load(a)
    out = viz.output_path(_output(a, "reconstructions.png"))  # checked before the work
    x = to_backend(_data(cfg, gen).test[:a.n], gen_p[next(iter(gen_p))])
    if enc is not None:
        x_hat = vae.reconstruct(_backend.array_namespace(x), gen, enc, gen_p, enc_p, x)
    else:
        x_hat, _ = reconstruct(gen, gen_p, x, step_size=s, n_steps=cfg.n_steps, sigma=cfg.sigma, seed=a.seed)
    out = viz.save_reconstructions(out, x, x_hat, n=a.n, title=f"held-out data and reconstructions (K={cfg.n_steps})")
    print(f"wrote {out}")
    return 0


def _cmd_eval(a):
    from . import distributed
    from .evaluate import evaluate, evaluate_vae

    if _local_workers_wanted(a):
        return distributed.launch(a.argv, a.nproc)
    saved = _saved_config(a.run)  # the device must be chosen before the parameters are loaded onto it
    workers = _workers(a, a.backend or saved.backend, a.device if a.device is not None else saved.device)
    try:
        gen, gen_p, enc, enc_p, s, cfg = _load(a)
        if a.fid_weights is not None and tuple(gen.out_shape) != (1, 8, 8):
            from . import inception

            inception.load_fid_inception(a.fid_weights)  # a bad weights file fails before the evaluation
        ds = _data(cfg, gen)  # read once: the test images, and the training images of the codes' Gaussian
        test, x_codes = ds.test, (ds.train[:a.n_codes] if a.n_codes else None)
        if enc is not None:  # the VAE's evaluation is not split: worker 0 does it alone
            metrics = {} if not workers.is_main else evaluate_vae(
                gen, enc, gen_p, enc_p, test, sigma=cfg.sigma, seed=a.seed, n_bound=a.n_bound, iw_chains=a.iw_chains,
                fid_weights=a.fid_weights, dataset=cfg.data, x_codes=x_codes)
        else:
            metrics = evaluate(gen, gen_p, test, step_size=s, n_steps=cfg.n_steps, sigma=cfg.sigma, seed=a.seed,
                               n_bound=a.n_bound, iw_chains=a.iw_chains, fid_weights=a.fid_weights, dataset=cfg.data,
                               workers=workers, x_codes=x_codes)
    finally:
        workers.close()
    if not workers.is_main:
        return 0
    metrics["step_size"] = list(s)
    if a.json:
        print(json.dumps(metrics, indent=2))
    else:
        width = max(len(k) for k in metrics)
        for k, v in metrics.items():
            print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0


def _cmd_check(a):
    from .check import run_check

    return run_check(backend=a.backend, dtype=a.dtype, model=a.model, as_json=a.json)


def _interrupted(args, exc) -> str:
    """What an interruption left: the run's checkpoint, if any, and how to continue."""
    if args.command != "train":
        return "interrupted"
    it = getattr(exc, "checkpoint_iteration", None)
    if it is None:
        return ("interrupted before the first checkpoint: nothing of this run was saved (a run it was replacing is "
                "unchanged); start it again")
    return (f"interrupted; the checkpoint in {args.out} (iteration {it}) is intact: continue with the same command "
            "plus --resume")


def _backend_mode(args):
    """``--backend jax`` runs the command in JAX's 64-bit mode (scoped to the command), so
    ``--dtype float64`` works; float32 arrays stay float32."""
    from ._backend import x64_scope

    return x64_scope(getattr(args, "backend", None))


def main(argv=None) -> int:
    """Run the ``srl`` command; returns the exit status (2: bad input or arguments, 1: the
    system failed, e.g. a full disk; 130/143: interrupted by Ctrl-C/SIGTERM). Errors are
    one line; ``--debug`` shows the traceback."""
    from .distributed import WorkerLostError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what --nproc passes on to the workers it starts
    handler = {"train": _cmd_train, "sample": _cmd_sample, "reconstruct": _cmd_reconstruct, "eval": _cmd_eval,
               "check": _cmd_check, "crosscheck": _cmd_crosscheck}[args.command]
    warnings.simplefilter("default")
    show = warnings.showwarning
    if not args.debug:
        def one_line(message, category, filename, lineno, file=None, line=None):
            print(f"srl {args.command}: {category.__name__}: {message}", file=sys.stderr)

        warnings.showwarning = one_line
    try:
        with _backend_mode(args):
            return handler(args)
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        from .train import Terminated

        if not getattr(args, "quiet_interruption", False):
            print(f"srl {args.command}: {_interrupted(args, exc)}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except (ValueError, TypeError, FileNotFoundError, PermissionError, ImportError, FloatingPointError,
            NotADirectoryError, IsADirectoryError) as exc:
        if args.debug:
            raise
        print(f"srl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except WorkerLostError as exc:
        hint = (f"; the last checkpoint in {args.out} is intact (continue with --resume)"
                if args.command == "train" else "")
        if args.debug:
            raise
        print(f"srl {args.command}: error: {exc}{hint}", file=sys.stderr)
        return 1
    except OSError as exc:  # the system failed (full disk, I/O error): not the input
        if args.debug:
            raise
        print(f"srl {args.command}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
