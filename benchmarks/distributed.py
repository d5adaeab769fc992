"""Data-parallel scaling: seconds per training iteration with 1 and N worker processes.

    python benchmarks/distributed.py                       # mlp and conv on digits, 1 vs 2 processes
    python benchmarks/distributed.py --models conv --nprocs 1,2,4 --rounds 3

Each configuration is ``srl train`` on the embedded digits with the default settings
(K = 25, batch 100, step sizes by the reverse-kernel gradient every 5 iterations) for
``--epochs`` epochs; the time is the training loop's own (``train_seconds_this_session`` of
``summary.json``: no process start-up, no evaluation), divided by the iterations. The
process counts are interleaved round by round so that load from other work on a shared
machine affects them alike; the report gives every round and the median. Results go to
stdout as a Markdown table and to ``benchmarks/results-distributed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one_run(model: str, nproc: int, epochs: int, backend: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "srl", "train", "--model", model, "--epochs", str(epochs), "--backend", backend,
               "--nproc", str(nproc), "--no-progress", "--out", out]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
        summary = json.loads((Path(out) / "summary.json").read_text())
        return summary["train_seconds_this_session"] / summary["iterations"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mlp,conv")
    p.add_argument("--nprocs", default="1,2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--json", default=str(HERE / "results-distributed.json"))
    a = p.parse_args(argv)
    nprocs = [int(v) for v in a.nprocs.split(",")]
    rows = []
    for model in a.models.split(","):
        times = {n: [] for n in nprocs}
        for _ in range(a.rounds):
            for n in nprocs:
                times[n].append(one_run(model, n, a.epochs, a.backend))
        base = statistics.median(times[nprocs[0]])
        for n in nprocs:
            med = statistics.median(times[n])
            rows.append({"model": model, "backend": a.backend, "nproc": n, "seconds_per_iteration": med,
                         "rounds": times[n], "speedup": base / med})
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
          f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print("| model | processes | s / iteration (median) | rounds | speed-up |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['nproc']} | {r['seconds_per_iteration']:.3f} | "
              f"{', '.join(f'{t:.3f}' for t in r['rounds'])} | {r['speedup']:.2f}× |")
    Path(a.json).write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "arch": platform.machine(),
                                                    "python": platform.python_version()},
                                        "epochs": a.epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
