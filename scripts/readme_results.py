"""Regenerate the main-job results shown in README.md from the current code.

Runs the three documented commands into a scratch directory, one after the other:

    srl train                              --out WORK/optimized   (the defaults)
    srl train --step-method fixed          --out WORK/fixed
    srl train --step-objective jacobian    --out WORK/jacobian

then copies the pictures into ``docs/figures/`` (``train_curves.png``,
``train_reconstructions.png``, ``train_samples.png`` and ``train_samples_codes.png`` from the default run,
``train_fixed_reconstructions.png`` from the fixed-step run) and rewrites the part of
README.md between the markers ``<!-- main-job-results:begin -->`` and
``<!-- main-job-results:end -->``: the configuration sentence, the timings, the table of
held-out metrics and the sentences comparing the runs. Every number there is read from
the runs' ``summary.json`` and ``config.json``.

Usage (about five minutes of CPU time in all; keep it at low priority on a shared machine)::

    nice -n 19 python scripts/readme_results.py [--work DIR] [--jobs 3] [--dry-run]

``--work DIR`` keeps the runs in DIR and reuses any run there that already finished
(its ``summary.json`` exists); an interrupted run is resumed. ``--jobs N`` runs up to N of
the three commands at once (timings are CPU times of each command, so they do not depend
on N much). ``--dry-run`` prints the new README block instead of writing files.
``--train-args "..."`` appends options to every command (e.g. ``"--epochs 1"``) to try the
script quickly; it implies ``--dry-run``, since the README shows the defaults.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FIGURES = ROOT / "docs" / "figures"
BEGIN = "<!-- main-job-results:begin -->"
END = "<!-- main-job-results:end -->"

RUNS = {
    "optimized": [],
    "fixed": ["--step-method", "fixed"],
    "jacobian": ["--step-objective", "jacobian"],
}
PICTURES = [
    ("optimized", "training.png", "train_curves.png"),
    ("optimized", "reconstructions.png", "train_reconstructions.png"),
    ("optimized", "samples.png", "train_samples.png"),
    ("optimized", "samples_codes.png", "train_samples_codes.png"),
    ("fixed", "reconstructions.png", "train_fixed_reconstructions.png"),
]


def _run_timed(cmd) -> tuple:
    """Run ``cmd``; return ``(CPU seconds of that process, wall seconds)``."""
    wall0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return usage.ru_utime + usage.ru_stime, time.perf_counter() - wall0


def run_one(work: Path, name: str, extra: list) -> dict:
    """Run (or reuse, or resume) one training command; return its summary and timings."""
    out = work / name
    summary = out / "summary.json"
    timing = out / "readme_timing.json"
    if summary.exists() and timing.exists():
        print(f"[{name}] reusing {out}", flush=True)
    else:
        cmd = [sys.executable, "-c", "import sys; from srl.cli import main; sys.exit(main())", "train",
               *extra, "--out", str(out), "--no-progress"]
        if (out / "checkpoint.npz").exists():
            cmd.append("--resume")
        elif out.exists():
            cmd.append("--overwrite")  # a run stopped before its first checkpoint
        print(f"[{name}] srl train {' '.join(extra + ['--out', str(out)])}", flush=True)
        commit = _commit()  # the code this run imports
        cpu, wall = _run_timed(cmd)
        timing.write_text(json.dumps({"cpu_seconds": cpu, "wall_seconds": wall, "commit": commit}))
    result = json.loads(summary.read_text())
    result.update(json.loads(timing.read_text()))
    result["config"] = json.loads((out / "config.json").read_text())
    return result


def real_digit_context(n_samples: int, n_subsets: int = 20) -> dict:
    """The digits Fréchet distance of real digits (random train subsets of ``n_samples``
    images against the test reference) and the feature classifier's test accuracy."""
    import numpy as np

    from srl.data import load
    from srl.frechet import digits_classifier, digits_frechet

    ds = load("digits")
    rng = np.random.default_rng(0)
    n = min(n_samples, ds.train.shape[0])
    fds = [digits_frechet(ds.train[rng.choice(ds.train.shape[0], n, replace=False)]) for _ in range(n_subsets)]
    return {"real_fd_mean": float(np.mean(fds)), "real_fd_std": float(np.std(fds, ddof=1)), "real_fd_n": n,
            "classifier_accuracy": digits_classifier().accuracy(ds.test, ds.test_labels),
            "n_train": int(ds.train.shape[0])}


def _fmt_s(values) -> str:
    return " / ".join(f"{v:.3g}" for v in values)


def _best(a: float, b: float, text_a: str, text_b: str):
    """Bold the smaller of two metrics (all rows of the table are 'lower is better')."""
    return (f"**{text_a}**", text_b) if a < b else (text_a, f"**{text_b}**")


def _minutes(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


def render(res: dict, ctx: dict, *, machine: str, date: str, commit: str) -> str:
    """The README block for the three runs (see the module docstring); ``ctx`` from
    ``real_digit_context``."""
    opt, fix, jac = res["optimized"], res["fixed"], res["jacobian"]
    tc, gc = opt["config"]["train"], opt["config"]["generator"]
    M = tc["eval_iw_chains"]
    iw_key = f"neg_iw{M}_elbo_reverse_nats"
    dims = " + ".join(str(d) for d in gc["latent_dims"])
    width = f", width {gc['hidden']}" if "hidden" in gc else ""
    schedule = " with cosine decay" if tc["lr_schedule"] == "cosine" else ""
    L = len(gc["latent_dims"])
    objective = {"reverse": "the reverse-kernel bound (eq. 5.1; "
                            + ("forward sensitivities, eq. 5.2)" if L <= 2 else "the adjoint sweep, eq. 5.6)"),
                 "jacobian": "J_jac (eq. 4.1; eq. 4.3)"}[tc["step_objective"]]
    data = f"the {ctx['n_train']} training digits"
    s0 = tc["step_size"]
    s0 = s0 if isinstance(s0, (int, float)) else s0[0]

    def cpu(r):
        return _minutes(r["cpu_seconds"])

    rows = []
    a, b = _best(opt["mse_per_pixel"], fix["mse_per_pixel"], f"{opt['mse_per_pixel']:.4f}", f"{fix['mse_per_pixel']:.4f}")
    rows.append(f"| reconstruction MSE per pixel (data in [−1, 1]) ↓ | {a} | {b} |")
    if "frechet_digits" in opt:
        a, b = _best(opt["frechet_digits"], fix["frechet_digits"], f"{opt['frechet_digits']:.2f}",
                     f"{fix['frechet_digits']:.2f}")
        rows.append(f"| digits Fréchet distance ({opt['n_samples']} samples; real digits score "
                    f"{ctx['real_fd_mean']:.2f} ± {ctx['real_fd_std']:.2f}) ↓ | {a} | {b} |")
    if "frechet_digits_codes" in opt and "frechet_digits_codes" in fix:
        a, b = _best(opt["frechet_digits_codes"], fix["frechet_digits_codes"], f"{opt['frechet_digits_codes']:.2f}",
                     f"{fix['frechet_digits_codes']:.2f}")
        rows.append(f"| the same, z from the Gaussian of the codes of {opt['n_codes']} training digits "
                    f"(docs/math.md eq. 3.3; `srl sample RUN --from codes`) ↓ | {a} | {b} |")
    a, b = _best(opt["neg_elbo_jacobian_nats"], fix["neg_elbo_jacobian_nats"], f"{opt['neg_elbo_jacobian_nats']:.1f}",
                 f"{fix['neg_elbo_jacobian_nats']:.1f}")
    rows.append(f"| −ELBO J_jac (eq. 4.1) [nats] ↓ | {a} | {b} |")
    a, b = _best(opt["neg_elbo_reverse_nats"], fix["neg_elbo_reverse_nats"], f"{opt['neg_elbo_reverse_nats']:.1f}",
                 f"{fix['neg_elbo_reverse_nats']:.1f}")
    rows.append(f"| −ELBO reverse kernel (eq. 5.1) [nats] ↓ | {a} | {b} |")
    a, b = _best(opt[iw_key], fix[iw_key], f"{opt[iw_key]:.1f}", f"{fix[iw_key]:.1f}")
    rows.append(f"| −log of the importance-weighted bound, M = {M} (eq. 5.3) [nats] ↓ | {a} | {b} |")
    rows.append(f"| final step sizes (top group first) | {_fmt_s(opt['step_size'])} | {_fmt_s(fix['step_size'])} |")

    ratio = fix["mse_per_pixel"] / opt["mse_per_pixel"]
    cmp_mse = (f"The optimized step sizes give {ratio:.2g}× lower reconstruction error than the fixed one"
               if ratio >= 1 else f"The fixed step size gives {1 / ratio:.2g}× lower reconstruction error")
    fr = ""
    if "frechet_digits" in opt:
        better = "the optimized" if opt["frechet_digits"] < fix["frechet_digits"] else "the fixed"
        fr = f"; {better} step size gives the better Fréchet distance"
    jac_fr = f" and Fréchet distance {jac['frechet_digits']:.2f}" if "frechet_digits" in jac else ""
    lines = [
        BEGIN,
        f"`srl train` with its defaults — the `{gc['kind']}` generator (latent groups {dims}{width}), "
        f"σ = {tc['sigma']:g}, K = {tc['n_steps']} Langevin steps, batch {tc['batch_size']}, Adam "
        f"(lr {tc['lr']:g}{schedule}, β1 = {tc['beta1']:g}), {tc['epochs']} epoch{'s' if tc['epochs'] != 1 else ''} over {data}, step sizes per "
        f"group optimized by Adam on log s with the exact gradient of {objective} every "
        f"{tc['step_every']} iterations, from s = {s0:g}, kept in the chain's stable region and held after "
        f"{tc.get('step_iterations', 0)} iterations (docs/math.md §5, \"Choosing s\") — takes **{cpu(opt)}** of "
        f"CPU time, training and "
        f"evaluation (one core; measured on {machine}, {date}), and writes:",
        "",
        "| `training.png`: energy, MSE and the learned step sizes | `reconstructions.png`: held-out digits (odd rows) "
        "and their short-run reconstructions |",
        "|---|---|",
        "| ![curves](docs/figures/train_curves.png) | ![reconstructions](docs/figures/train_reconstructions.png) |",
        "",
        "| `samples.png`: z from the prior | `samples_codes.png`: z from the Gaussian of the codes of "
        f"{opt.get('n_codes', 1000)} training digits (docs/math.md eq. 3.3) |",
        "|---|---|",
        "| ![samples](docs/figures/train_samples.png) | ![samples from the codes](docs/figures/train_samples_codes.png) |",
        "",
        f"Held-out numbers ({opt['n_test']} test digits; bounds on the first {opt['n_bound']}), against the same "
        f"run with the step size held at the paper's s = {s0:g} "
        f"(`srl train --step-method fixed --out runs/digits-fixed`, "
        f"{cpu(fix)} of CPU time; its reconstructions: "
        "[train_fixed_reconstructions.png](docs/figures/train_fixed_reconstructions.png)):",
        "",
        f"| metric | optimized s (default) | fixed s = {s0:g} |",
        "|---|---|---|",
        *rows,
        "",
        f"{cmp_mse}{fr}. Optimizing J_jac instead (`srl train --step-objective jacobian --out runs/digits-jacobian`, "
        f"{cpu(jac)} of CPU time) gives MSE {jac['mse_per_pixel']:.4f}{jac_fr}, with final step sizes "
        f"{_fmt_s(jac['step_size'])}. The Fréchet distance compares Gaussians fitted to the penultimate "
        f"features of a small MLP classifier trained on the digits training split ({100 * ctx['classifier_accuracy']:.1f} % "
        f"held-out accuracy; `srl.frechet`); real digits (random sets of {ctx['real_fd_n']} training images, "
        f"20 draws) score {ctx['real_fd_mean']:.2f} ± {ctx['real_fd_std']:.2f} against the same held-out reference. "
        "Bits per dimension are in `summary.json`.",
        "",
        f"These numbers come from `scripts/readme_results.py` (the package as of commit {commit}), which reruns the three "
        "commands and rewrites this paragraph and the pictures.",
        END,
    ]
    # prose paragraphs wrapped like the rest of the README; table rows and images stay on one line
    return "\n".join(line if line.startswith(("|", "<!--", "`samples")) or not line else
                     textwrap.fill(line, width=92, break_long_words=False, break_on_hyphens=False)
                     for line in lines)


def _commit() -> str:
    """The last commit that changed the package (``srl/``, ``backends/``, ``pyproject.toml``)."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h", "--abbrev=10", "--", "srl", "backends",
                              "pyproject.toml"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "srl", "backends"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + (" with local changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=None, help="directory for the runs (default: a temporary directory)")
    p.add_argument("--jobs", type=int, default=1, help="run up to this many commands at once")
    p.add_argument("--dry-run", action="store_true", help="print the README block; write nothing")
    p.add_argument("--train-args", default="", help="extra options for every command (implies --dry-run)")
    a = p.parse_args(argv)
    if a.jobs < 1:
        print(f"--jobs must be a positive integer, got {a.jobs}", file=sys.stderr)
        return 2
    extra_args = a.train_args.split()
    if extra_args:
        a.dry_run = True
    text = README.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        print(f"README.md must contain {BEGIN} and {END} once each", file=sys.stderr)
        return 2
    tmp = None
    if a.work is None:
        tmp = tempfile.mkdtemp(prefix="srl-readme-")
        work = Path(tmp)
    else:
        work = Path(a.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
            futures = {name: pool.submit(run_one, work, name, extra + extra_args) for name, extra in RUNS.items()}
            res = {name: f.result() for name, f in futures.items()}
        ctx = real_digit_context(int(res["optimized"].get("n_samples", 1000)))
        machine = f"a {os.cpu_count()}-core {platform.machine()} CPU"
        date = datetime.date.today().isoformat()
        commits = sorted({r.get("commit", "unknown") for r in res.values()})
        block = render(res, ctx, machine=machine, date=date, commit=" / ".join(commits))
        if a.dry_run:
            print(block)
            return 0
        for run, src, dst in PICTURES:
            shutil.copyfile(work / run / src, FIGURES / dst)
        pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
        text = README.read_text()  # again: the README may have changed during the runs
        README.write_text(pattern.sub(lambda m: block, text, count=1))
        print(f"README.md and docs/figures/train_*.png rewritten from {work}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
