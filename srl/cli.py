"""The ``srl`` command: train, sample, reconstruct, eval, check.

    srl train                       # digits, numpy backend, optimized step sizes
    srl train --step-method fixed   # the same budget with the step size held fixed
    srl sample runs/digits          # PNG grid of samples from a run
    srl reconstruct runs/digits     # held-out data and their short-run reconstructions
    srl eval runs/digits            # held-out MSE, ELBOs (nats, bits/dim), Fréchet distance
    srl check --backend torch       # this backend vs the NumPy reference and torch.autograd
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


def _floats(text):
    vals = [float(v) for v in str(text).split(",") if v.strip()]
    return vals[0] if len(vals) == 1 else tuple(vals)


def _ints(text):
    return tuple(int(v) for v in str(text).split(",") if v.strip())


def _add_train(sub):
    from .train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="learn a generator with short-run inference",
                       description="Learn θ by short-run Langevin inference (docs/math.md §3) with step sizes optimized "
                                   "variationally (docs/math.md §4, §5). Writes metrics.jsonl, training.png, samples.png, "
                                   "reconstructions.png, summary.json and checkpoint.npz to --out.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", default=d.method, choices=["shortrun", "vae"],
                   help="short-run Langevin inference (docs/math.md §3) or the VAE baseline on the same generator")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=d.data, help="digits | mnist | svhn | cifar10 | folder | PATH to images")
    g.add_argument("--root", default=None, help="directory with the dataset's standard files (never downloaded)")
    g.add_argument("--limit", type=int, default=None, help="use at most this many train/test images")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=d.model, choices=["mlp", "conv", "paper"])
    g.add_argument("--latent-dims", type=_ints, default=None, help="comma-separated, top group first (e.g. 8,16)")
    g.add_argument("--hidden", type=int, default=None, help="mlp width")
    g.add_argument("--channels", type=int, default=None, help="conv channels")
    g = p.add_argument_group("backend")
    g.add_argument("--backend", default=d.backend, choices=["numpy", "torch", "cupy", "array_api_strict"])
    g.add_argument("--device", default=None, help="e.g. cuda, cuda:1")
    g.add_argument("--dtype", default=d.dtype, choices=["float32", "float64"])
    g = p.add_argument_group("inference")
    g.add_argument("--n-steps", type=int, default=d.n_steps, help="K, Langevin steps")
    g.add_argument("--sigma", type=float, default=d.sigma, help="observation noise σ")
    g.add_argument("--step-size", type=_floats, default=d.step_size, help="initial s (one value or one per group)")
    g.add_argument("--step-method", default=d.step_method, choices=["fixed", "grid", "gradient"])
    g.add_argument("--step-objective", default=d.step_objective, choices=["jacobian", "reverse"])
    g.add_argument("--step-every", type=int, default=d.step_every, help="update s every N iterations")
    g.add_argument("--step-subset", type=int, default=d.step_subset, help="examples used per s update")
    g.add_argument("--step-lr", type=float, default=d.step_lr, help="Adam learning rate on log s")
    g.add_argument("--tied", action="store_true", help="one step size shared by all groups")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate for θ")
    g.add_argument("--lr-schedule", default=d.lr_schedule, choices=["constant", "cosine"])
    g.add_argument("--beta1", type=float, default=d.beta1)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--out", default=d.out, help="output directory")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz (exactly)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    return p


def _run_dir_arg(p):
    p.add_argument("run", help="run directory (or its checkpoint.npz)")
    p.add_argument("--backend", default=None, help="override the run's backend")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)


def build_parser():
    parser = argparse.ArgumentParser(prog="srl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"srl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    p = sub.add_parser("sample", help="write a PNG grid of samples g(z), z ~ N(0, I)")
    _run_dir_arg(p)
    p.add_argument("-n", "--n", type=int, default=64)
    p.add_argument("-o", "--output", default=None, help="PNG path (default RUN/samples.png)")
    p = sub.add_parser("reconstruct", help="reconstruct held-out data by short-run inference")
    _run_dir_arg(p)
    p.add_argument("-n", "--n", type=int, default=32)
    p.add_argument("-o", "--output", default=None, help="PNG path (default RUN/reconstructions.png)")
    p = sub.add_parser("eval", help="held-out MSE, ELBOs and the Fréchet distance")
    _run_dir_arg(p)
    p.add_argument("--n-bound", type=int, default=100, help="test examples used for the bounds")
    p.add_argument("--iw-chains", type=int, default=8, help="chains M of the importance-weighted bound")
    p.add_argument("--fid-weights", default=None,
                   help="Inception weights file for FID on non-digit images (pt_inception-2015-12-05-6726825d.pth; "
                        "also found via $SRL_FID_WEIGHTS or the torch hub cache; never downloaded)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p = sub.add_parser("check", help="compare a backend with the NumPy reference and torch.autograd")
    p.add_argument("--backend", default="numpy", help="numpy | torch | torch:cuda | cupy | array_api_strict")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--model", default="all", choices=["all", "mlp", "conv"])
    p.add_argument("--json", action="store_true", help="print JSON only")
    return parser


def _cmd_train(a):
    from .train import TrainConfig, train

    cfg = TrainConfig(method=a.method, data=a.data, root=a.root, limit=a.limit, model=a.model, latent_dims=a.latent_dims,
                      hidden=a.hidden, channels=a.channels, backend=a.backend, device=a.device, dtype=a.dtype,
                      n_steps=a.n_steps, sigma=a.sigma, step_size=a.step_size, step_method=a.step_method,
                      step_objective=a.step_objective, step_every=a.step_every, step_subset=a.step_subset,
                      step_lr=a.step_lr, tied=a.tied, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                      lr_schedule=a.lr_schedule, beta1=a.beta1, seed=a.seed, out=a.out)
    res = train(cfg, resume=a.resume, progress=not a.no_progress, evaluate_at_end=not a.no_eval)
    print(f"wrote {res.out}/ (metrics.jsonl, training.png, samples.png, reconstructions.png, checkpoint.npz)")
    if res.metrics:
        print(json.dumps(res.metrics, indent=2))
    return 0


def _load(a):
    """The run named on the command line: ``(gen, gen params, encoder, encoder params, s, cfg)``."""
    from .train import load_run, split_run_params

    gen, params, s, cfg = load_run(a.run, backend=a.backend, device=a.device)
    gen_p, enc, enc_p = split_run_params(cfg, gen, params)
    return gen, gen_p, enc, enc_p, s, cfg


def _output(a, name):
    run = Path(a.run)
    return Path(a.output or (run if run.is_dir() else run.parent) / name)


def _test_data(cfg, gen):
    from . import data as data_mod

    return data_mod.load(cfg.data, root=cfg.root, shape=gen.out_shape, limit=cfg.limit).test


def _cmd_sample(a):
    from . import viz
    from .evaluate import sample

    gen, gen_p, _, _, _, _ = _load(a)
    out = _output(a, "samples.png")
    viz.save_grid(out, sample(gen, gen_p, a.n, seed=a.seed), title="samples g(z), z ~ N(0, I)")
    print(f"wrote {out}")
    return 0


def _cmd_reconstruct(a):
    from . import _backend, vae, viz
    from .evaluate import reconstruct, to_backend

    gen, gen_p, enc, enc_p, s, cfg = _load(a)
    x = to_backend(_test_data(cfg, gen)[:a.n], gen_p[next(iter(gen_p))])
    if enc is not None:
        x_hat = vae.reconstruct(_backend.array_namespace(x), gen, enc, gen_p, enc_p, x)
    else:
        x_hat, _ = reconstruct(gen, gen_p, x, step_size=s, n_steps=cfg.n_steps, sigma=cfg.sigma, seed=a.seed)
    out = _output(a, "reconstructions.png")
    viz.save_reconstructions(out, x, x_hat, n=a.n, title=f"held-out data and reconstructions (K={cfg.n_steps})")
    print(f"wrote {out}")
    return 0


def _cmd_eval(a):
    from .evaluate import evaluate, evaluate_vae

    gen, gen_p, enc, enc_p, s, cfg = _load(a)
    test = _test_data(cfg, gen)
    if enc is not None:
        metrics = evaluate_vae(gen, enc, gen_p, enc_p, test, sigma=cfg.sigma, seed=a.seed, n_bound=a.n_bound,
                               iw_chains=a.iw_chains, fid_weights=a.fid_weights)
    else:
        metrics = evaluate(gen, gen_p, test, step_size=s, n_steps=cfg.n_steps, sigma=cfg.sigma, seed=a.seed,
                           n_bound=a.n_bound, iw_chains=a.iw_chains, fid_weights=a.fid_weights)
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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"train": _cmd_train, "sample": _cmd_sample, "reconstruct": _cmd_reconstruct, "eval": _cmd_eval,
               "check": _cmd_check}[args.command]
    warnings.simplefilter("default")
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is intact (resume with --resume)", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, PermissionError, ImportError, FloatingPointError) as exc:
        print(f"srl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
