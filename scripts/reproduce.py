"""Regenerate a section of docs/REPRODUCTION.md: short-run inference with fixed and
optimized step sizes against a VAE on the same generator and the same training budget.

    python scripts/reproduce.py                     # digits, 3 seeds (about 30 min on 2 cores)
    python scripts/reproduce.py --data fashion-mnist   # needs dataset-fashion-mnist (apt-get)
    python scripts/reproduce.py --quick             # a smoke run of every path (1-2 min)
    python scripts/reproduce.py --data cifar10 --root ~/data --model paper   # a local 32×32 set

Resumable: every run has its own run directory (``--runs``, default
``runs/reproduce/DATA/METHOD-seedN``) and trains in chunks of ``--every`` epochs with the
exact checkpoint/resume of ``srl train``; a rerun skips finished runs (``summary.json``),
resumes an interrupted one from its last chunk, and prints its progress with an estimate
of the time left. After each chunk the held-out MSE and Fréchet distance are recorded
(``curve.jsonl``), so the report shows whether each run ended near its best.

Every method trains the same generator architecture with the same data, epochs, batch
size, learning rate and seeds; they differ only in how z is inferred:

* ``fixed``     short-run Langevin, s held at its initial value;
* ``grid``      one tied s chosen by grid search on J_jac (the paper's option), every 20
                iterations (the others update every 5) because each search costs ~20 chains;
* ``jacobian``  s by Adam on log s with the exact gradient of J_jac (docs/math.md §4.1);
* ``reverse``   s by Adam on log s with the gradient of the reverse-kernel bound (docs/math.md §5);
* ``vae``       an encoder network and the reparameterised ELBO (srl.vae).

Results (per seed and mean ± standard deviation), plots of the step sizes and held-out
metrics during training, of both objectives over a grid of tied step sizes, sample and
reconstruction grids per method, and the discussion are written to the DATA section of
docs/REPRODUCTION.md (between its markers) and to docs/figures/reproduction_DATA_*.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "fixed": dict(method="shortrun", step_method="fixed"),
    # the grid evaluates J_jac (exact Hessians) for 5 tied candidates: every 20 iterations
    "grid": dict(method="shortrun", step_method="grid", step_objective="jacobian", tied=True, step_every=20),
    "jacobian": dict(method="shortrun", step_method="gradient", step_objective="jacobian"),
    "reverse": dict(method="shortrun", step_method="gradient", step_objective="reverse"),
    "vae": dict(method="vae"),
}


PRESETS = {
    # The first 5000 train and 5000 test images at 28×28, the dense generator, 20 epochs
    # (1000 iterations of 100; s optimised during the first 500), bounds on 100 test images:
    # chosen by measurement (docs/models.md: about 0.1 s of one core per short-run iteration)
    # so that the 15 runs take about an hour of one core.
    "fashion-mnist": dict(limit=5000, epochs=20, every=5, model="mlp", n_bound=100, n_curve=500),
}


def run_all(args, out_runs: Path):
    """Train (or resume, or skip) every run; each lives in its own run directory."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from long_training import train_with_curve
    from srl.train import TrainConfig, load_data

    plan = []
    for name, kw in METHODS.items():
        if args.methods and name not in args.methods:
            continue
        for seed in range(args.seed_from, args.seeds):
            cfg = TrainConfig(data=args.data, root=args.root, limit=args.limit, model=args.model,
                              epochs=args.epochs, seed=seed, out=str(out_runs / f"{name}-seed{seed}"),
                              eval_n_bound=args.n_bound, eval_iw_chains=8, pad=args.pad, **kw)
            if args.latent_dims:
                cfg.latent_dims = tuple(args.latent_dims)
            plan.append((name, seed, cfg))
    n_train = load_data(plan[0][2]).train.shape[0] if plan else 0
    per_run = args.epochs * (n_train // plan[0][2].batch_size) if plan else 0
    # cost weights per iteration (measured): VAE ≈ 1/20 of a short-run iteration
    weight = {name: (0.05 if name == "vae" else 1.0) for name in METHODS}
    total = sum(weight[n] * per_run for n, _, _ in plan)
    state = {"done": 0.0, "start": None, "t0": time.perf_counter()}
    results = {}
    for i, (name, seed, cfg) in enumerate(plan):
        out = Path(cfg.out)
        if not (out / "summary.json").exists():
            curve = out / "curve.jsonl"
            resumed = max([json.loads(l)["epoch"] for l in curve.read_text().splitlines()], default=0) \
                if curve.exists() else 0
            if state["start"] is None:
                state["start"] = state["done"] + weight[name] * per_run * resumed / cfg.epochs
                state["t0"] = time.perf_counter()

            def report(epoch, rec, _name=name, _seed=seed, _i=i, _epochs=cfg.epochs):
                work = state["done"] + weight[_name] * per_run * epoch / _epochs
                rate = (time.perf_counter() - state["t0"]) / max(work - state["start"], 1e-9)
                print(f"[{time.strftime('%H:%M:%S')}] run {_i + 1}/{len(plan)} {_name} seed {_seed} epoch "
                      f"{epoch}/{_epochs}: held-out mse {rec['mse']:.4f}, Fréchet {rec['frechet']:.3g}; "
                      f"{100 * work / total:.0f}% done, about {rate * (total - work) / 60:.0f} min left", flush=True)

            train_with_curve(cfg, args.every, n_test=args.n_curve, on_chunk=report, summary=True)
        metrics = json.loads((out / "summary.json").read_text())
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        curve = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
        metrics["wall_seconds"] = sum(r["seconds"] for r in curve)
        fd = metrics.get("frechet_digits", metrics.get("frechet_fashion"))
        if fd is not None:
            metrics["frechet"] = fd
            if not any(k.endswith("_codes") for k in metrics):  # a summary written before eq. (3.3) existed
                metrics.update(codes_metrics(out))
            metrics["frechet_codes"] = metrics.get("frechet_digits_codes", metrics.get("frechet_fashion_codes"))
        state["done"] += weight[name] * per_run
        results.setdefault(name, []).append({"seed": seed, "metrics": metrics, "history": history, "curve": curve,
                                             "out": str(out)})
        print(f"{name} seed {seed}: " + json.dumps({k: round(v, 4) for k, v in metrics.items()
                                                   if isinstance(v, float)}), flush=True)
    return results


def codes_metrics(run_dir: Path) -> dict:
    """The ``*_codes`` metrics of the end-of-run evaluation (samples from the codes' Gaussian,
    docs/math.md eq. 3.3; the same seeds and sizes as ``srl.rundir.finish``), for a run whose
    summary predates them: computed from its checkpoint and cached in ``RUN/codes.json``."""
    from srl.evaluate import _codes_metrics, fit_codes, fit_vae_codes
    from srl.train import load_data, load_run, split_run_params

    cache = run_dir / "codes.json"
    if cache.exists():
        return json.loads(cache.read_text())
    gen, params, s, cfg = load_run(run_dir)
    gen_p, enc, enc_p = split_run_params(cfg, gen, params)
    ds = load_data(cfg, shape=gen.out_shape)
    x_codes = ds.train[:cfg.eval_n_codes]
    if enc is None:
        codes = fit_codes(gen, gen_p, x_codes, step_size=s, n_steps=cfg.n_steps, sigma=cfg.sigma, seed=[cfg.seed, 7])
    else:
        codes = fit_vae_codes(gen, enc, gen_p, enc_p, x_codes, seed=[cfg.seed, 7])
    out = _codes_metrics(gen, gen_p, codes, seed=cfg.seed, n_samples=1000, x_reference=ds.test, dataset=cfg.data)
    cache.write_text(json.dumps(out))
    return out


def objective_grid(run_dir: Path, *, n_examples, seed=0):
    """Both objectives (mean over held-out examples, common noise) on a grid of tied s."""
    from srl import objective_values
    from srl.evaluate import to_backend
    from srl.train import load_data, load_run, split_run_params

    gen, params, s, cfg = load_run(run_dir)
    gen_p, _, _ = split_run_params(cfg, gen, params)
    ds = load_data(cfg, shape=gen.out_shape)
    x = to_backend(ds.test[:n_examples], gen_p[next(iter(gen_p))])
    grid = np.exp(np.linspace(np.log(0.01), np.log(0.6), 14))
    curves = {"J_jac (eq. 4.1)": [], "−log w (eq. 5.1)": []}
    for v in grid:
        for label, kind in (("J_jac (eq. 4.1)", "jacobian"), ("−log w (eq. 5.1)", "reverse")):
            try:
                val = float(np.mean(objective_values(gen, gen_p, x, step_size=float(v), n_steps=cfg.n_steps,
                                                     sigma=cfg.sigma, seed=seed, kind=kind)))
            except FloatingPointError:
                val = math.nan
            curves[label].append(val)
    return grid, curves, s, cfg


def summarise(values):
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "—"
    return f"{v.mean():.4g} ± {v.std(ddof=1):.2g}" if v.size > 1 else f"{v.mean():.4g}"


ROWS = [
    ("held-out MSE / pixel ([−1, 1] scale) ↓", "mse_per_pixel"),
    ("Fréchet distance (1000 samples) ↓", "frechet"),
    ("Fréchet distance, z from the codes' Gaussian (1000 samples) ↓", "frechet_codes"),
    ("−ELBO, J_jac [nats] ↓", "neg_elbo_jacobian_nats"),
    ("−ELBO, reverse kernel [nats] ↓", "neg_elbo_reverse_nats"),
    ("−IW-ELBO (M=8), reverse kernel [nats] ↓", "neg_iw8_elbo_reverse_nats"),
    ("−ELBO, VAE [nats] ↓", "neg_elbo_vae_nats"),
    ("−IW-ELBO (M=8), VAE [nats] ↓", "neg_iw8_elbo_vae_nats"),
    ("final step sizes (top group first)", "step_size"),
    ("−ELBO, J_jac [bits/dim] ↓", "neg_elbo_jacobian_bpd"),
    ("−ELBO, VAE [bits/dim] ↓", "neg_elbo_vae_bpd"),
    ("training wall time [s]", "wall_seconds"),
]


def table(results):
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key in ROWS:
        cells = []
        for name in names:
            vals = [r["metrics"].get(key) for r in results[name]]
            if key == "step_size":
                arr = [v for v in vals if v is not None]
                cells.append("—" if not arr or name == "vae" else
                             " / ".join(f"{m:.3g}" for m in np.mean(np.asarray(arr, dtype=float), axis=0)))
            else:
                cells.append(summarise(vals))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed(results):
    keys = ["mse_per_pixel", "frechet", "frechet_codes", "neg_elbo_jacobian_nats", "neg_iw8_elbo_reverse_nats",
            "neg_elbo_vae_nats"]
    lines = ["| method | seed | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, runs in results.items():
        for r in runs:
            cells = [f"{r['metrics'][k]:.4g}" if isinstance(r["metrics"].get(k), float) else "—" for k in keys]
            lines.append(f"| {name} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_step_sizes(results, path):
    from srl.viz import _mpl

    plt = _mpl()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, name in enumerate(n for n in results if n != "vae"):
        for r in results[name][:1]:
            it = [h["iteration"] for h in r["history"]]
            s = np.asarray([h["step_size"] for h in r["history"]])
            for j in range(s.shape[1]):
                ax.plot(it, s[:, j], color=f"C{i}", ls=["-", "--", ":"][j % 3], lw=1.2,
                        label=f"{name}, group {j}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("step size s")
    ax.set_title("Langevin step sizes during training (seed 0)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def discussion(results):
    """Statements computed from the numbers (no claim is written by hand)."""
    def vals(name, key):
        v = [r["metrics"].get(key) for r in results.get(name, [])]
        return [x for x in v if isinstance(x, float) and np.isfinite(x)]

    def mean(name, key):
        v = vals(name, key)
        return float(np.mean(v)) if v else math.nan

    def sd(name, key):
        v = vals(name, key)
        return float(np.std(v, ddof=1)) if len(v) > 1 else math.nan

    out = []
    for key, what in (("mse_per_pixel", "held-out reconstruction MSE"), ("frechet", "Fréchet distance"),
                      ("frechet_codes", "Fréchet distance of samples from the codes' Gaussian")):
        best_sr = min(("grid", "jacobian", "reverse"), key=lambda n: mean(n, key))
        for other in ("fixed", "vae"):
            a, b = mean(best_sr, key), mean(other, key)
            spread = max(sd(best_sr, key), sd(other, key))
            verdict = ("lower" if a < b else "higher")
            clear = abs(a - b) > 2 * spread if np.isfinite(spread) else False
            out.append(f"* {what}: the best optimized-step method (**{best_sr}**, {a:.4g}) is {verdict} than "
                       f"**{other}** ({b:.4g}); the difference is "
                       f"{'larger' if clear else 'not larger'} than twice the seed spread ({spread:.2g}).")
    best_j = min(("fixed", "grid", "jacobian", "reverse"), key=lambda n: mean(n, "neg_elbo_jacobian_nats"))
    out.append(f"* bounds on −log p(x): the tightest short-run bound is J_jac of **{best_j}** "
               f"({mean(best_j, 'neg_elbo_jacobian_nats'):.4g} nats); the VAE's ELBO is "
               f"{mean('vae', 'neg_elbo_vae_nats'):.4g} nats and its IWAE {mean('vae', 'neg_iw8_elbo_vae_nats'):.4g}. "
               "The reverse-kernel bound is the loosest of all "
               f"({min(mean(n, 'neg_elbo_reverse_nats') for n in ('fixed', 'grid', 'jacobian', 'reverse')):.4g} nats "
               "at best; importance weighting with M = 8 chains brings it to "
               f"{min(mean(n, 'neg_iw8_elbo_reverse_nats') for n in ('fixed', 'grid', 'jacobian', 'reverse')):.4g}).")
    sr = [mean(n, "wall_seconds") for n in ("fixed", "grid", "jacobian", "reverse")]
    out.append(f"* cost: a VAE iteration needs one gradient pass where short-run inference needs K = 25, so the VAE "
               f"trained in {mean('vae', 'wall_seconds'):.3g} s against "
               f"{min(sr):.3g}–{max(sr):.3g} s for the short-run methods (same epochs).")
    return "\n".join(out)


def plot_curves(results, path, fd_label):
    """Held-out MSE and Fréchet distance during training, every seed of every method."""
    from srl.viz import _mpl

    plt = _mpl()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, runs) in enumerate(results.items()):
        for j, r in enumerate(runs):
            ep = [c["epoch"] for c in r["curve"]]
            for ax, key in zip(axes, ("mse", "frechet")):
                ax.plot(ep, [c[key] for c in r["curve"]], color=f"C{i}", alpha=0.8, label=name if j == 0 else None)
    axes[0].set_title("held-out MSE / pixel during training", fontsize=9)
    axes[1].set_title(f"{fd_label} during training", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def end_vs_best(results):
    """Per method: how far the last evaluation is above the best one during training."""
    lines = ["| method | MSE end / best (per seed) | Fréchet end / best (per seed) |", "|---|---|---|"]
    for name, runs in results.items():
        cells = []
        for key in ("mse", "frechet"):
            cells.append(", ".join(f"{r['curve'][-1][key] / min(c[key] for c in r['curve']):.2f}" for r in runs))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(doc: Path, key: str, text: str):
    """Replace the ``key`` section of ``doc`` (between its markers), or append it."""
    begin, end = f"<!-- BEGIN {key} (scripts/reproduce.py) -->", f"<!-- END {key} -->"
    block = f"{begin}\n{text.strip()}\n{end}\n"
    old = doc.read_text() if doc.exists() else ""
    if begin in old and end in old:
        a, b = old.index(begin), old.index(end) + len(end)
        new = old[:a] + block.rstrip("\n") + old[b:]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block
    doc.write_text(new)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--root", default=None)
    ap.add_argument("--pad", type=int, default=0)
    ap.add_argument("--model", default=None, help="default: the srl train default (or the data's preset)")
    ap.add_argument("--latent-dims", type=lambda s: [int(v) for v in s.split(",")], default=None)
    ap.add_argument("--epochs", type=int, default=None, help="default: the srl train default (or the preset)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-from", type=int, default=0,
                    help="with --methods: train seeds SEED_FROM..SEEDS-1 only (another process takes the rest)")
    ap.add_argument("--limit", type=int, default=None, help="default: all images (or the preset)")
    ap.add_argument("--n-bound", type=int, default=None, help="test images for the bounds (default 100 or the preset)")
    ap.add_argument("--every", type=int, default=None, help="epochs between held-out evaluations (curves)")
    ap.add_argument("--n-curve", type=int, default=None, help="held-out images per curve evaluation (default 500)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (writes to /tmp, not docs/)")
    ap.add_argument("--runs", default=None, help="directory for the training runs (default runs/reproduce/DATA)")
    ap.add_argument("--methods", type=lambda s: s.split(","), default=None,
                    help="train only these methods (e.g. to split the work over processes); the report "
                         "needs all of them, so run once more without --methods to write it")
    args = ap.parse_args(argv)
    from srl.train import TrainConfig

    d = TrainConfig()
    preset = PRESETS.get(args.data, {})
    args.model = args.model or preset.get("model", d.model)
    args.epochs = args.epochs or preset.get("epochs", d.epochs)
    args.limit = args.limit or preset.get("limit")
    args.every = args.every or preset.get("every", max(1, args.epochs // 10))
    args.n_bound = args.n_bound or preset.get("n_bound", 100)
    args.n_curve = args.n_curve or preset.get("n_curve", 500)
    docs = ROOT / "docs"
    if args.quick:
        args.seeds, args.epochs, args.limit, args.n_bound, args.every, args.n_curve = 2, 2, 300, 10, 1, 50
        docs = Path("/tmp/srl-reproduce-quick")
    figs = docs / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs) if args.runs else (ROOT / "runs" / "reproduce" / args.data if not args.quick
                                              else docs / "runs")
    t_start = time.perf_counter()
    results = run_all(args, runs)
    if args.methods:
        print("trained the requested methods; run again without --methods to write the report")
        return
    tag = args.data.replace("/", "_")
    plot_step_sizes(results, figs / f"reproduction_{tag}_step_sizes.png")
    fd_label = {"digits": "digits Fréchet distance", "fashion-mnist": "Fashion-MNIST Fréchet distance"}.get(
        args.data, "FID")
    plot_curves(results, figs / f"reproduction_{tag}_curves.png", fd_label)
    import shutil

    from srl.viz import plot_objective_curve

    grids = []
    for name in results:
        out = Path(results[name][0]["out"])
        for what in ("samples", "reconstructions"):
            shutil.copyfile(out / f"{what}.png", figs / f"reproduction_{tag}_{name}_{what}.png")
        grids.append(f"| {name} | ![samples {name}](figures/reproduction_{tag}_{name}_samples.png) | "
                     f"![reconstructions {name}](figures/reproduction_{tag}_{name}_reconstructions.png) |")
    grid_rows = []
    for name in ("fixed", "reverse"):
        if name not in results:
            continue
        grid, curves, s, cfg = objective_grid(Path(results[name][0]["out"]), n_examples=min(args.n_bound, 100))
        plot_objective_curve(figs / f"reproduction_{tag}_objective_grid_{name}.png", grid, curves,
                             title=f"objectives vs tied s, model trained with '{name}' (seed 0)")
        best = {k: float(grid[int(np.nanargmin(v))]) if np.any(np.isfinite(v)) else math.nan for k, v in curves.items()}
        grid_rows.append(f"| {name} | " + " | ".join(f"{best[k]:.3g}" for k in curves) +
                         f" | {' / '.join(f'{v:.3g}' for v in s)} |")
    env = f"Python {sys.version.split()[0]}, NumPy {np.__version__}, {time.strftime('%Y-%m-%d')}"
    total_min = sum(r["metrics"].get("wall_seconds", 0.0) for rs in results.values() for r in rs) / 60
    cfg0 = TrainConfig(data=args.data, limit=args.limit, model=args.model, epochs=args.epochs)
    text = f"""## {args.data}

Regenerate with `python scripts/reproduce.py --data {args.data}{' --pad ' + str(args.pad) if args.pad else ''}`
(resumable: runs live in `runs/reproduce/{args.data}/METHOD-seedN/`; a rerun skips finished runs and
resumes interrupted ones). Data: **{args.data}**{f', the first {args.limit} train and {args.limit} test images' if args.limit else ''};
model: **{args.model}**; `srl train` defaults otherwise (σ = {cfg0.sigma}, K = {cfg0.n_steps}, batch
{cfg0.batch_size}, lr {cfg0.lr:g} with {cfg0.lr_schedule} schedule, initial s = {cfg0.step_size}, s optimised
during the first {cfg0.step_iterations} iterations and then held);
{args.epochs} epochs per run for every method; seeds 0..{args.seeds - 1}; bounds on the first
{args.n_bound} held-out examples; held-out curves every {args.every} epochs on {args.n_curve} test images.
{total_min:.0f} min of training in all ({env}; trained one run at a time on a 2-core x86 CPU shared
with other jobs, so wall times are inflated and only their ratios are meaningful).

### Results (mean ± standard deviation over seeds)

{table(results)}

Bounds are upper bounds on −log p(x) (nats; bits/dim divide by D·ln 2) for the Gaussian observation
model on [−1, 1]-scaled pixels (lower is better). J_jac and the reverse-kernel bound are the short-run
methods' own bounds with each run's final step sizes; the VAE rows are the VAE's ELBO and IWAE.

### What the numbers say

{discussion(results)}

### Held-out metrics during training

![curves](figures/reproduction_{tag}_curves.png)

Last evaluation relative to the best one of the same run (1.00: the run ended at its best):

{end_vs_best(results)}

### Step sizes during training

![step sizes](figures/reproduction_{tag}_step_sizes.png)

### The objectives over a grid of tied step sizes

Mean over held-out examples with common chain noise across the grid, for the generators trained with a
fixed step size and with the reverse-kernel gradient (seed 0):

![objective grid fixed](figures/reproduction_{tag}_objective_grid_fixed.png)
![objective grid reverse](figures/reproduction_{tag}_objective_grid_reverse.png)

| model trained with | argmin J_jac | argmin −log w | learned s (per group) |
|---|---|---|---|
{chr(10).join(grid_rows)}

### Samples and reconstructions (seed 0)

Reconstructions: held-out images (odd rows) and their reconstructions (even rows).

| method | samples | reconstructions |
|---|---|---|
{chr(10).join(grids)}

### Per-seed numbers

{per_seed(results)}
"""
    write_section(docs / "REPRODUCTION.md", args.data, text)
    print(f"wrote the {args.data} section of {docs / 'REPRODUCTION.md'} "
          f"({(time.perf_counter() - t_start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
