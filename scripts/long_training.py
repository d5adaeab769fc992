"""Held-out curves of long training runs: does a run end near its best?

    python scripts/long_training.py --out RUNS --epochs 300 --every 20 \\
        --variant default --variant fixed:step_method=fixed --seeds 0,1,2
    python scripts/long_training.py --out RUNS --plot docs/figures/long_training.png
    python scripts/long_training.py --out RUNS --rescore 10000   # Fréchet of 10 000 samples, twice
    python scripts/long_training.py --out RUNS --rescore 10000 --codes 1000   # ... z from the codes' Gaussian
    python scripts/long_training.py --out RUNS --rescore 10000 --codes 1000 --around 0,0.4,0.8   # z_i + h ε
    python scripts/long_training.py --out FIG.png --plot-codes "TITLE=RUN,RUN" ...   # both, by epoch

Each variant is ``NAME`` (the ``srl train`` defaults) or ``NAME:key=value,key=value``
(``TrainConfig`` fields; numbers are parsed). Every run trains in chunks of ``--every``
epochs with the ordinary checkpoint/resume of ``srl.train`` (exact, so the chunks add up
to one uninterrupted run); after each chunk the held-out MSE of short-run reconstructions
(first ``--n-test`` test images), the Fréchet distance of 1000 samples, the step sizes and
the largest eigenvalue of the energy's Hessian at ``z_K`` (mean over the examples; the
quantity that limits a stable step size, docs/math.md §2) are appended to
``RUN/curve.jsonl``. A rerun skips evaluated chunks and resumes an interrupted one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_variant(text):
    name, _, rest = text.partition(":")
    kw = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        try:
            v = int(v)
        except ValueError:
            try:
                v = float(v)
            except ValueError:
                pass
        kw[k.strip().replace("-", "_")] = v
    return name, kw


def stability_summary(gen, params, x, zK, s, sigma):
    """At the chains' ends: mean λ_max(∇²_z E) and the 90% quantile of the stability index
    λ̃_max (docs/math.md eq. 2.2; the chain is stable where λ̃_max < 2)."""
    from srl import _backend
    from srl.stability import stability_index

    unscaled = (2.0**0.5,) * len(s)  # A^{1/2} = I: λ̃_max = λ_max(H)
    lam_h = _backend.to_numpy(stability_index(gen, params, x, zK, step_size=unscaled, sigma=sigma))
    lam_s = _backend.to_numpy(stability_index(gen, params, x, zK, step_size=tuple(s), sigma=sigma))
    return float(np.mean(lam_h)), float(np.quantile(lam_s, 0.9))


def evaluate_chunk(run_dir: Path, ds, n_test):
    from srl import _backend
    from srl.evaluate import reconstruct, to_backend
    from srl.train import load_run, split_run_params

    gen, params, s, cfg = load_run(run_dir)
    gen_p, enc, enc_p = split_run_params(cfg, gen, params)
    x = to_backend(ds.test[:n_test], gen_p[next(iter(gen_p))])
    if enc is None:
        x_hat, zK = reconstruct(gen, gen_p, x, step_size=s, n_steps=cfg.n_steps, sigma=cfg.sigma, seed=[cfg.seed, 6])
        lam, stab = stability_summary(gen, gen_p, x[:100], tuple(z[:100] for z in zK), s, cfg.sigma)
    else:
        from srl.vae import reconstruct as vae_reconstruct

        xp = _backend.array_namespace(x)
        x_hat = vae_reconstruct(xp, gen, enc, gen_p, enc_p, x)
        lam = stab = None
    mse = float(np.mean((_backend.to_numpy(x_hat) - ds.test[:n_test]) ** 2))
    fd = frechet(gen, gen_p, cfg, ds, seed=cfg.seed, n_samples=1000)
    return {"mse": mse, "frechet": fd, "step_size": list(s), "hessian_max": lam,
            "stability_q90": stab}


def frechet(gen, gen_p, cfg, ds, *, seed, n_samples, codes=None):
    """The dataset's Fréchet distance (digits or Fashion-MNIST classifier features) of
    ``n_samples`` samples drawn with ``seed`` (from the prior, or from ``codes``, the
    codes' Gaussian of docs/math.md eq. 3.3), against the test images."""
    from srl.evaluate import _synthesis_metrics

    syn = _synthesis_metrics(gen, gen_p, seed=seed, n_samples=n_samples, x_reference=ds.test, dataset=cfg.data,
                             codes=codes)
    return syn.get("frechet_digits", syn.get("frechet_fashion"))


def train_with_curve(cfg, every, n_test, *, on_chunk=None, summary=False):
    """Train ``cfg`` in chunks of ``every`` epochs (exact resume between chunks), evaluate
    after each (``RUN/curve.jsonl``, a snapshot ``RUN/checkpoint-eNNNN.npz``), and with
    ``summary`` write the end-of-run pictures and ``summary.json`` (srl.train.finish).
    Finished chunks are skipped, so an interrupted call resumes where it stopped."""
    from srl.train import finish, load_data, load_run, train

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    curve_path = out / "curve.jsonl"
    done = [json.loads(l) for l in curve_path.read_text().splitlines()] if curve_path.exists() else []
    ds = load_data(cfg)
    per_epoch = ds.train.shape[0] // cfg.batch_size
    for e in list(range(every, cfg.epochs + 1, every)) + ([cfg.epochs] if cfg.epochs % every else []):
        if any(r["epoch"] == e for r in done):
            continue
        t = time.perf_counter()
        # continue the run from its checkpoint; without one, (re)start it: leftovers of a run
        # interrupted before its first checkpoint are replaced
        started = (out / "checkpoint.npz").exists()
        train(cfg, resume=started, overwrite=not started, progress=False, evaluate_at_end=False,
              max_iterations=e * per_epoch)
        seconds = time.perf_counter() - t
        shutil.copyfile(out / "checkpoint.npz", out / f"checkpoint-e{e:04d}.npz")
        rec = {"epoch": e, **evaluate_chunk(out, ds, n_test), "seconds": seconds}
        with open(curve_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        done.append(rec)
        if on_chunk is not None:
            on_chunk(e, rec)
    if summary and not (out / "summary.json").exists():
        gen, params, s, _ = load_run(out)
        history = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        metrics = finish(cfg, gen, params, s, history, ds, out)
        metrics["train_seconds"] = sum(r["seconds"] for r in done)
        (out / "summary.json").write_text(json.dumps(metrics, indent=2))
    (out / "curve.done").write_text("ok")


def run_one(cfg, every, n_test, log):
    def report(e, rec):
        log(f"{Path(cfg.out).name} epoch {e}: mse {rec['mse']:.4f} fd {rec['frechet']:.3f} "
            f"s {'/'.join(f'{v:.3g}' for v in rec['step_size'])} λmax {rec['hessian_max']}")

    train_with_curve(cfg, every, n_test, on_chunk=report)


def s_grid(ckpt: Path, n_test=100, grid=None):
    """At a snapshot: held-out MSE, J_jac and the reverse-kernel bound over a grid of tied s,
    and the Hessian's λ_max at z_K: is the objective's best s the reconstruction's best s?"""
    from srl import _backend, objective_values
    from srl.evaluate import reconstruct, to_backend
    from srl.train import load_data, load_run

    gen, p, s_run, cfg = load_run(ckpt)
    ds = load_data(cfg)
    x_host = ds.test[:n_test]
    x = to_backend(x_host, p[next(iter(p))])
    grid = np.exp(np.linspace(np.log(0.01), np.log(0.3), 11)) if grid is None else grid
    rows = []
    for v in grid:
        st = (float(v),) * len(gen.latent_dims)
        x_hat, _ = reconstruct(gen, p, x, step_size=st, n_steps=cfg.n_steps, sigma=cfg.sigma, seed=[7, 6])
        row = {"s": float(v), "mse": float(np.mean((_backend.to_numpy(x_hat) - x_host) ** 2))}
        for kind in ("jacobian", "reverse"):
            try:
                row[kind] = float(np.mean(_backend.to_numpy(objective_values(
                    gen, p, x, step_size=st, n_steps=cfg.n_steps, sigma=cfg.sigma, seed=7, kind=kind))))
            except FloatingPointError:
                row[kind] = float("nan")
        rows.append(row)
    return {"checkpoint": str(ckpt), "step_size": list(s_run), "grid": rows}


def plot(out_root: Path, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    for c in sorted(out_root.glob("*/curve.jsonl")):
        name = c.parent.name.rsplit("-seed", 1)[0]
        runs.setdefault(name, []).append([json.loads(l) for l in c.read_text().splitlines()])
    keys = [("mse", "held-out MSE / pixel"), ("frechet", "Fréchet distance (1000 samples)"),
            ("step_size", "step size s (bottom group)"), ("hessian_max", "λ_max of ∇²E at z_K"),
            ("stability_q90", "stability index λ̃_max, 90% quantile (eq. 2.2)")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4))
    for i, (name, curves) in enumerate(sorted(runs.items())):
        color = f"C{i}"
        for j, curve in enumerate(curves):
            ep = [r["epoch"] for r in curve]
            for ax, (k, label) in zip(axes, keys):
                ys = [(r[k][-1] if isinstance(r.get(k), list) else r.get(k)) for r in curve]
                ys = [np.nan if y is None else y for y in ys]
                ax.plot(ep, ys, color=color, alpha=0.8, label=name if j == 0 else None)
                ax.set_title(label, fontsize=9)
                ax.set_xlabel("epoch")
    axes[3].set_yscale("log")
    axes[4].axhline(2.0, color="k", lw=0.8, ls="--")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def plot_codes(panels, path: Path, *, n_samples=10000, codes=1000):
    """Fréchet distance by epoch, prior samples (dashed) against samples from the codes'
    Gaussian (solid), from the ``--rescore N [--codes M]`` files; ``panels``: one
    ``(title, [run directories])`` per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def curve(path):
        rows = [json.loads(l) for l in path.read_text().splitlines()]
        epochs = sorted({r["epoch"] for r in rows})
        return epochs, [np.mean([r["frechet"] for r in rows if r["epoch"] == e]) for e in epochs]

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, runs) in zip(axes[0], panels):
        for i, run in enumerate(runs):
            for name, ls, label in ((f"frechet-{n_samples}.jsonl", "--", "z ~ N(0, I)"),
                                    (f"frechet-codes{codes}-{n_samples}.jsonl", "-", "z from the codes' Gaussian")):
                if (run / name).exists():
                    ep, fd = curve(run / name)
                    ax.plot(ep, fd, color=f"C{i}", ls=ls, lw=1.3, label=f"{run.name}, {label}" if i == 0 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"Fréchet distance ({n_samples} samples)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def _score_snapshots(run: Path, path: Path, keys, scorer) -> list:
    """The records of ``path`` (one JSON line each), completed: at every snapshot
    (``checkpoint-eNNNN.npz``) of ``run``, each key (a dict of the fields that identify an
    entry, besides the epoch) not recorded yet is scored and appended at once, so an
    interrupted call resumes. ``scorer(gen, gen_p, s, cfg, ds)`` is called once per snapshot
    with work to do and returns ``score(key) -> float``, recorded as ``"frechet"``."""
    from srl.train import load_data, load_run, split_run_params

    rows = [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
    ds = None
    for snap in sorted(run.glob("checkpoint-e*.npz")):
        epoch = int(snap.stem.rsplit("-e", 1)[1])
        todo = [k for k in keys
                if not any(r["epoch"] == epoch and all(r[f] == v for f, v in k.items()) for r in rows)]
        if not todo:
            continue
        gen, params, s, cfg = load_run(snap)
        ds = ds or load_data(cfg)
        gen_p, _, _ = split_run_params(cfg, gen, params)
        score = scorer(gen, gen_p, s, cfg, ds)
        for k in todo:
            rec = {"epoch": epoch, **k, "frechet": score(k)}
            rows.append(rec)
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
    return rows


def around_codes(out_root: Path, n_samples: int, codes: int, widths, sample_seeds=(100, 101), *, runs=None) -> str:
    """How the generator decodes the neighbourhood of its codes: at every snapshot, the
    Fréchet distance of ``n_samples`` images ``g(z_i + h ε)``, ``z_i`` drawn uniformly from the
    codes of the first ``codes`` training images (the chains of ``fit_codes``), ``ε ~ N(0, I)``,
    for each ``h`` in ``widths`` (``h = 0``: the codes themselves), once per sample seed, in
    ``RUN/frechet-codesM-around-N.jsonl`` (finished entries are skipped); returns a Markdown
    table of each run's first and final snapshot (mean of the draws)."""
    from srl import _backend
    from srl.evaluate import chain_codes, image_metrics

    def scorer(gen, gen_p, s, cfg, ds):
        z = np.concatenate(chain_codes(gen, gen_p, ds.train[:codes], step_size=s, n_steps=cfg.n_steps,
                                       sigma=cfg.sigma, seed=[cfg.seed, 7]), axis=1)  # (M, d)
        p0 = next(iter(gen_p.values()))
        xp = _backend.array_namespace(p0)

        def score(k):
            rng = np.random.default_rng(k["sample_seed"])
            zs = z[rng.integers(0, z.shape[0], n_samples)] + k["h"] * rng.standard_normal((n_samples, z.shape[1]))
            groups = np.split(zs, np.cumsum(gen.latent_dims)[:-1], axis=1)
            x = gen.forward(gen_p, tuple(_backend.from_numpy(xp, g, dtype=p0.dtype, device=_backend.device(p0))
                                         for g in groups))
            m = image_metrics(gen, _backend.to_numpy(x), x_reference=ds.test, dataset=cfg.data)
            return m.get("frechet_digits", m.get("frechet_fashion"))

        return score

    lines = [f"| run | h | Fréchet ({n_samples} samples of g(z_i + h ε), z_i from {codes} training codes) by epoch |",
             "|---|---|---|"]
    for run in sorted(p.parent for p in out_root.glob("*/curve.jsonl")):
        if runs is not None and run.name not in runs:
            continue
        keys = [{"h": h, "sample_seed": ss} for h in widths for ss in sample_seeds]
        rows = _score_snapshots(run, run / f"frechet-codes{codes}-around-{n_samples}.jsonl", keys, scorer)
        for h in widths:
            by = {}
            for r in rows:
                if r["h"] == h:
                    by.setdefault(r["epoch"], []).append(r["frechet"])
            if by:
                curve = ", ".join(f"{e}: {np.mean(v):.2f}" for e, v in sorted(by.items()))
                lines.append(f"| {run.name} | {h:g} | {curve} |")
    return "\n".join(lines)


def table(out_root: Path) -> str:
    """Markdown: for every run under ``out_root``, the best and the final held-out MSE and
    Fréchet distance (with their epochs), the final step sizes, λ_max and stability index."""
    lines = ["| run | best MSE (epoch) | final MSE | best Fréchet (epoch) | final Fréchet | final s | "
             "λ_max(H) | λ̃ q90 |", "|---|---|---|---|---|---|---|---|"]
    for c in sorted(out_root.glob("*/curve.jsonl")):
        curve = [json.loads(l) for l in c.read_text().splitlines()]
        if not curve:
            continue
        bm = min(curve, key=lambda r: r["mse"])
        bf = min(curve, key=lambda r: r["frechet"])
        end = curve[-1]
        q = end.get("stability_q90")
        lines.append(f"| {c.parent.name} (to epoch {end['epoch']}) | {bm['mse']:.4f} ({bm['epoch']}) | {end['mse']:.4f} | "
                     f"{bf['frechet']:.2f} ({bf['epoch']}) | {end['frechet']:.2f} | "
                     f"{' / '.join(f'{v:.3g}' for v in end['step_size'])} | {end['hessian_max']:.0f} | "
                     f"{'—' if q is None else f'{q:.2f}'} |")
    return "\n".join(lines)


def rescore(out_root: Path, n_samples: int, sample_seeds=(100, 101), *, codes: int = 0, runs=None) -> str:
    """The Fréchet distance of ``n_samples`` samples at every snapshot of every run under
    ``out_root`` (or those named in ``runs``), once per sample seed (independent draws), in
    ``RUN/frechet-N.jsonl`` (finished snapshots are skipped); returns a Markdown table of
    each run's curve (mean of the draws), its best and final values, and the largest
    difference between the draws. ``codes``: the samples' z come from the Gaussian fitted to
    the codes of that many training images at each snapshot (``RUN/frechet-codesM-N.jsonl``)."""
    from srl.evaluate import fit_codes

    def scorer(gen, gen_p, s, cfg, ds):
        fitted = None if not codes else fit_codes(gen, gen_p, ds.train[:codes], step_size=s, n_steps=cfg.n_steps,
                                                  sigma=cfg.sigma, seed=[cfg.seed, 7])
        return lambda k: frechet(gen, gen_p, cfg, ds, seed=k["sample_seed"], n_samples=n_samples, codes=fitted)

    source = f"z from the codes' Gaussian of {codes} training images" if codes else "z ~ N(0, I)"
    lines = [f"| run | Fréchet ({n_samples} samples, {source}, mean of {len(sample_seeds)} draws) by epoch | "
             "best (epoch) | final | largest difference between draws |", "|---|---|---|---|---|"]
    for run in sorted(p.parent for p in out_root.glob("*/curve.jsonl")):
        if runs is not None and run.name not in runs:
            continue
        path = run / (f"frechet-codes{codes}-{n_samples}.jsonl" if codes else f"frechet-{n_samples}.jsonl")
        rows = _score_snapshots(run, path, [{"sample_seed": ss} for ss in sample_seeds], scorer)
        epochs = sorted({r["epoch"] for r in rows})
        if not epochs:
            continue
        draws = {e: [r["frechet"] for r in rows if r["epoch"] == e] for e in epochs}
        mean = {e: float(np.mean(v)) for e, v in draws.items()}
        best = min(epochs, key=mean.get)
        spread = max(max(v) - min(v) for v in draws.values())
        curve = ", ".join(f"{e}: {mean[e]:.2f}" for e in epochs)
        lines.append(f"| {run.name} | {curve} | {mean[best]:.2f} ({best}) | {mean[epochs[-1]]:.2f} | {spread:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    from srl.train import TrainConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory of the run directories")
    p.add_argument("--variant", action="append", default=[], help="NAME or NAME:key=value,...")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--every", type=int, default=20, help="epochs between evaluations")
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--data", default="digits")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--plot", default=None, help="write the curves of every run under --out to this PNG")
    p.add_argument("--table", action="store_true", help="print the best/final table of every run under --out")
    p.add_argument("--s-grid", nargs="*", default=None, help="snapshots (checkpoint-eNNNN.npz) to scan over s")
    p.add_argument("--rescore", type=int, default=None, metavar="N",
                   help="re-evaluate the Fréchet distance of every snapshot with N samples, two independent draws")
    p.add_argument("--codes", type=int, default=0, metavar="M",
                   help="with --rescore: z from the Gaussian of the codes of M training images (docs/math.md eq. 3.3)")
    p.add_argument("--around", type=lambda s: [float(v) for v in s.split(",")], default=None, metavar="H,H,...",
                   help="with --rescore N --codes M: images g(z_i + h ε) around the codes z_i instead, for each h")
    p.add_argument("--runs", default=None, help="with --rescore: only these run directories (comma-separated)")
    p.add_argument("--plot-codes", nargs="+", default=None, metavar="TITLE=RUN,RUN,...",
                   help="write the Fréchet curves of prior and codes' samples to --out (a PNG path), one panel "
                        "per argument")
    a = p.parse_args(argv)
    out_root = Path(a.out)
    if a.plot_codes:
        panels = [(t, [Path(r) for r in runs.split(",")]) for t, runs in (arg.split("=", 1) for arg in a.plot_codes)]
        plot_codes(panels, out_root)
        return 0
    if a.rescore and a.around:
        if not a.codes:
            p.error("--around needs --codes M (the training images whose codes it samples around)")
        print(around_codes(out_root, a.rescore, a.codes, a.around, runs=a.runs.split(",") if a.runs else None))
        return 0
    if a.rescore:
        print(rescore(out_root, a.rescore, codes=a.codes, runs=a.runs.split(",") if a.runs else None))
        return 0
    if a.table:
        print(table(out_root))
        return 0
    if a.plot:
        plot(out_root, Path(a.plot))
        return 0
    if a.s_grid:
        for c in a.s_grid:
            r = s_grid(Path(c))
            print(json.dumps(r), flush=True)
            with open(out_root / "s_grid.jsonl", "a") as f:
                f.write(json.dumps(r) + "\n")
        return 0
    seeds = [int(s) for s in a.seeds.split(",")]
    t0 = time.time()

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')} +{time.time() - t0:.0f}s] {msg}", flush=True)

    for v in a.variant:
        name, kw = parse_variant(v)
        for seed in seeds:
            cfg = TrainConfig(data=a.data, limit=a.limit, epochs=a.epochs, seed=seed,
                              out=str(out_root / f"{name}-seed{seed}"), **kw)
            if (Path(cfg.out) / "curve.done").exists():
                continue
            run_one(cfg, a.every, a.n_test, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
