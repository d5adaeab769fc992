"""Benchmarks: srl (NumPy, PyTorch) against a plain PyTorch autograd implementation.

    python benchmarks/run.py                 # everything that runs on this machine
    python benchmarks/run.py --suite core    # energy gradient and K=25 chain
    python benchmarks/run.py --suite stepsize --ks 25,100
    python benchmarks/run.py --devices cpu,cuda   # add GPU rows where a device exists
    python benchmarks/run.py --hutchinson-k 0     # skip the (long) Hutchinson J_jac row

Every ratio is measured in one run against the same model with the same weights: the
baseline is ``srl.interop.torch.TorchGenerator`` (nn.Linear/Conv2d/ConvTranspose2d,
F.gelu) differentiated by ``torch.autograd``, written as a user would write it. Every
implementation runs on one thread by default (``--torch-threads``, ``--blas-threads``):
on a shared machine, multi-threaded runs measure the scheduler more than the code. Times
are medians over repetitions after a warm-up; peak memory is measured in a fresh subprocess
per configuration (max RSS above the process's baseline, so it includes everything the
library allocates). Results go to stdout as a Markdown table and to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIGMA = 0.3


def models():
    import srl

    return {
        "mlp": srl.models.mlp(latent_dims=(4, 8), hidden=32, out_shape=(1, 8, 8)),
        "mlp64": srl.models.mlp(latent_dims=(4, 8), hidden=64, out_shape=(1, 8, 8)),
        "conv": srl.models.conv(latent_dims=(8, 16), out_shape=(1, 8, 8), channels=16),
        "paper": srl.models.paper(),
    }


def median_time(fn, *, reps, warmup=1, sync=None):
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compare(f, g, *, reps, rounds=5, sync_f=None, sync_g=None):
    """Interleave ``rounds`` of medians of f and g; keep each one's best round.

    Shared or throttled CPUs add long bursts of interference; alternating the two
    callables and taking each one's least-disturbed round keeps the ratio meaningful.
    """
    tf, tg = [], []
    for _ in range(rounds):
        tf.append(median_time(f, reps=reps, sync=sync_f))
        tg.append(median_time(g, reps=reps, sync=sync_g))
    return min(tf), min(tg)


# ----------------------------------------------------------------------- workloads
class Workload:
    """One model, batch, backend: callables for each measured operation."""

    def __init__(self, model_name, backend, device, batch, dtype="float32"):
        import srl
        from srl import _backend as B

        self.gen = models()[model_name]
        self.backend, self.device, self.batch = backend, device, batch
        gen = self.gen
        xp, dev = B.namespace(backend, device)
        self.xp = xp
        host_x = np.tanh(np.random.default_rng(0).standard_normal((batch, *gen.out_shape)))
        self.params = gen.init(seed=0, backend=backend, dtype=dtype, device=device)
        self.x = B.from_numpy(xp, host_x, dtype=B.resolve_dtype(xp, dtype), device=dev)
        self.z = gen.prior(batch, seed=1, backend=backend, dtype=dtype, device=device)
        self.sync = None
        if backend == "torch" and "cuda" in str(device or ""):
            import torch

            self.sync = torch.cuda.synchronize
        if backend == "cupy":
            import cupy

            self.sync = cupy.cuda.Device().synchronize
        self.srl = srl

    def grad(self):
        return self.srl.grad_z(self.gen, self.params, self.x, self.z, sigma=SIGMA)

    def chain(self, K, s=0.05):
        return self.srl.short_run(self.gen, self.params, self.x, step_size=s, n_steps=K, sigma=SIGMA, seed=0)

    def objective(self, K, kind, s=0.05, **kw):
        return self.srl.stepsize_objective(self.gen, self.params, self.x, step_size=s, n_steps=K, sigma=SIGMA,
                                           seed=0, kind=kind, **kw)

    def train_step(self, K, s=0.05):
        """θ-gradient after a chain through the public, validated ``srl.short_run``."""
        zK = self.chain(K, s)
        return _param_grad()(self.xp, self.gen, self.params, self.x, zK, SIGMA)

    def train_step_inner(self, K, s=0.05):
        """The same iteration through the unvalidated inner chain the training loop uses
        (noise drawn the same way; divergence checked once, on z_K)."""
        from srl.langevin import _short_run, check_chain
        from srl.random import chain_noise

        gen, xp = self.gen, self.xp
        steps = (float(s),) * len(gen.latent_dims)
        z0, noise = chain_noise(0, self.batch, gen.latent_dims, K, xp=xp, dtype=self.x.dtype,
                                device=self.srl._backend.device(self.x))
        zK, _ = _short_run(xp, gen, self.params, self.x, z0, noise, steps, SIGMA)
        check_chain(xp, zK, step_size=steps, sigma=SIGMA, n_steps=K)
        return _param_grad()(xp, gen, self.params, self.x, zK, SIGMA)


    def train_step_graphed(self, K, s=0.05):
        """``train_step_inner`` with the chain and θ-gradient replayed from a recorded CUDA
        graph (``srl.cuda_graphs``, PyTorch on CUDA; the first call records)."""
        from srl.cuda_graphs import RECORDINGS
        from srl.langevin import check_chain
        from srl.random import chain_noise

        gen, xp = self.gen, self.xp
        steps = (float(s),) * len(gen.latent_dims)
        z0, noise = chain_noise(0, self.batch, gen.latent_dims, K, xp=xp, dtype=self.x.dtype,
                                device=self.srl._backend.device(self.x))
        from srl.learning import batch_means, chain_and_gradient

        def chain(p, x, z0, noise):
            return chain_and_gradient(xp, gen, p, x, z0, noise, steps, SIGMA)

        zK, energy, grads, residual = RECORDINGS.replay(chain, (self.params, self.x, z0, noise), key=(repr(self.gen.config), steps))
        check_chain(xp, zK, step_size=steps, sigma=SIGMA, n_steps=K)
        return batch_means(xp, energy, grads, residual)


def _param_grad():
    from srl.learning import batch_value_and_param_grad

    return batch_value_and_param_grad


class TorchAutograd:
    """The baseline: the same generator as a torch.nn.Module, derivatives by autograd."""

    def __init__(self, model_name, device, batch, dtype="float32"):
        import torch

        import srl
        from srl.interop import torch as ti

        self.torch = torch
        gen = models()[model_name]
        self.gen = gen
        params = gen.init(seed=0, backend="numpy", dtype=dtype)
        dev = torch.device(device or "cpu")
        self.module = ti.to_torch(gen, params, device=dev)
        for p in self.module.parameters():
            p.requires_grad_(False)
        tdt = getattr(torch, dtype)
        host_x = np.tanh(np.random.default_rng(0).standard_normal((batch, *gen.out_shape)))
        self.x = torch.as_tensor(host_x, dtype=tdt, device=dev)
        self.z = tuple(torch.as_tensor(a, dtype=tdt, device=dev) for a in gen.prior(batch, seed=1))
        self.dev, self.dtype = dev, tdt
        self.sync = torch.cuda.synchronize if dev.type == "cuda" else None
        self.ti = ti
        self.noise_cache = {}
        self.srl = srl

    def energy_sum(self, z):
        xh = self.module(*z)
        quad = sum((zl * zl).sum() for zl in z) * 0.5
        return quad + ((self.x - xh) ** 2).sum() / (2 * SIGMA**2)

    def grad(self, z=None, create_graph=False):
        z = tuple(zl.detach().requires_grad_(True) for zl in (z or self.z)) if not create_graph else z
        return self.torch.autograd.grad(self.energy_sum(z), z, create_graph=create_graph)

    def noise(self, K):
        if K not in self.noise_cache:
            xp = self.srl._backend.namespace("numpy")[0]
            z0, xi = self.srl.random.chain_noise(0, self.x.shape[0], self.gen.latent_dims, K, xp=xp,
                                                 dtype=np.float64, device="cpu")
            conv = lambda t: tuple(self.torch.as_tensor(a, dtype=self.dtype, device=self.dev) for a in t)  # noqa: E731
            self.noise_cache[K] = (conv(z0), [conv(n) for n in xi])
        return self.noise_cache[K]

    def chain(self, K, s=0.05):
        z0, xi = self.noise(K)
        z = z0
        for k in range(K):
            g = self.grad(z)
            z = tuple((zl - 0.5 * s * s * gl + s * nl).detach() for zl, gl, nl in zip(z, g, xi[k]))
        return z

    def objective(self, K, kind, s=0.05):
        z0, xi = self.noise(K)
        return self.ti.stepsize_objective(self.module, self.x, step_size=s, z0=z0, noise=xi, sigma=SIGMA, kind=kind)

    def train_step(self, K, s=0.05):
        zK = self.chain(K, s)
        for p in self.module.parameters():
            p.requires_grad_(True)
        E = self.energy_sum(tuple(z.detach() for z in zK)) / self.x.shape[0]
        grads = self.torch.autograd.grad(E, list(self.module.parameters()))
        for p in self.module.parameters():
            p.requires_grad_(False)
        return grads


# -------------------------------------------------------------------- measurements
def peak_rss_mb(spec: dict) -> float:
    """Peak resident memory (MB) of one operation, above the memory in use before it.

    Runs in a fresh process: build the workload, reset the kernel's high-water mark
    (``/proc/self/clear_refs`` ← 5), run the operation once, read ``VmHWM``. This counts
    everything the library allocates (NumPy or torch), unlike tracemalloc.
    """
    code = (
        "import json,sys,gc; sys.path.insert(0, %r); import run as b; spec=json.loads(%r);"
        "w=b.make(spec); f=b.op(w, spec); gc.collect();"
        "open('/proc/self/clear_refs','w').write('5');"
        "st=lambda k: int([l for l in open('/proc/self/status') if l.startswith(k)][0].split()[1]);"
        "base=st('VmRSS:'); f(); peak=st('VmHWM:');"
        "print(json.dumps({'mb': (peak-base)/1024}))"
    ) % (str(HERE), json.dumps(spec))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["mb"]


def make(spec):
    if spec["impl"] == "autograd":
        return TorchAutograd(spec["model"], spec.get("device"), spec["batch"])
    return Workload(spec["model"], spec["impl"], spec.get("device"), spec["batch"])


def op(w, spec):
    what, K = spec["op"], spec.get("K", 25)
    if what == "grad":
        return w.grad
    if what == "chain":
        return lambda: w.chain(K)
    if what == "train":
        return lambda: w.train_step(K)
    if what in ("reverse", "jacobian"):
        return lambda: w.objective(K, what)
    if what == "reverse_adjoint":
        return lambda: w.objective(K, "reverse", gradient="adjoint")
    if what == "reverse_adjoint_kept":
        return lambda: w.objective(K, "reverse", gradient="adjoint", keep_activations=True)
    if what == "jacobian_hutchinson":
        return lambda: w.objective(K, "jacobian", logdet="hutchinson", n_probes=4, series_terms=4)
    raise ValueError(what)


IMPL_FILTER = None  # set from --impls
MODEL_FILTER = None  # set from --models (step-size suite)


def impls(devices):
    out = []
    for dev in devices:
        if dev == "cpu":
            out += [("numpy", None), ("torch", "cpu")]
        elif dev.startswith("cuda"):
            out += [("torch", dev)]
            try:
                import cupy  # noqa: F401

                out += [("cupy", None)]
            except ImportError:
                pass
    return [o for o in out if IMPL_FILTER is None or o[0] in IMPL_FILTER]


def baseline_device(impl, device):
    return device if (impl == "torch" and device) else ("cuda" if impl == "cupy" else "cpu")


def fmt_ms(t):
    return f"{t * 1e3:.2f} ms" if t < 10 else f"{t:.2f} s"


def suite_core(devices, reps, rows, paper_batch=16):
    """Energy gradient and one K=25 chain: mlp and conv at digits size (batch 64), and the
    paper model (batch ``paper_batch``, fewer repetitions: one chain takes seconds)."""
    for model, batch in (("mlp", 64), ("conv", 64), ("paper", paper_batch)):
        if MODEL_FILTER is not None and model not in MODEL_FILTER:
            continue
        big = model == "paper"
        for impl, device in impls(devices):
            base = TorchAutograd(model, baseline_device(impl, device), batch)
            w = Workload(model, impl, device, batch)
            plan = (("energy gradient", w.grad, base.grad, 2 if big else reps * 4),
                    ("K=25 chain", lambda: w.chain(25), lambda: base.chain(25), 1 if big else max(1, reps // 2)))
            for name, f, g, r in plan:
                t_srl, t_ag = compare(f, g, reps=r, rounds=3 if big else 5, sync_f=w.sync, sync_g=base.sync)
                rows.append({"suite": "core", "model": model, "batch": batch, "op": name,
                             "impl": f"srl-{impl}" + (f"[{device}]" if device and device != "cpu" else ""),
                             "baseline": f"torch.autograd[{baseline_device(impl, device)}]",
                             "srl_s": t_srl, "autograd_s": t_ag, "ratio": t_srl / t_ag})
                print(_row(rows[-1]), flush=True)


def suite_stepsize(devices, reps, rows, ks, paper_batch, paper_k, memory, hutchinson_k=None):
    """Step-size gradients vs a plain chain and vs autograd through the chain.

    mlp: both kinds at every K; conv: both kinds at the first K, the reverse kind at the
    others (autograd's J_jac through 100 steps of d = 24 Hessians takes many minutes);
    paper: the reverse kind and the Hutchinson J_jac (d = 416 rules out exact Hessians).
    """
    plan = [("mlp", 64, k, ("reverse", "jacobian")) for k in ks]
    plan += [("conv", 64, k, ("reverse", "jacobian") if i == 0 else ("reverse",)) for i, k in enumerate(ks)]
    plan += [("paper", paper_batch, paper_k, ("reverse",))]
    if hutchinson_k != 0:
        plan += [("paper", paper_batch, hutchinson_k or paper_k, ("jacobian_hutchinson",))]
    plan = [p for p in plan if MODEL_FILTER is None or p[0] in MODEL_FILTER]
    for model, batch, K, kinds in plan:
        for impl, device in impls(devices):
            w = Workload(model, impl, device, batch)
            base = TorchAutograd(model, baseline_device(impl, device), batch)
            t_chain = median_time(lambda: w.chain(K), reps=max(1, reps // 2), sync=w.sync)
            for kind in kinds:
                spec = {"impl": impl, "device": device, "model": model, "batch": batch, "K": K, "op": kind}
                r = 1 if (kind != "reverse" or model == "paper") else max(1, reps // 2)
                t_obj = median_time(op(w, spec), reps=r, sync=w.sync)
                row = {"suite": "stepsize", "model": model, "batch": batch, "K": K, "op": f"{kind} s-gradient",
                       "impl": f"srl-{impl}" + (f"[{device}]" if device and device != "cpu" else ""),
                       "srl_s": t_obj, "chain_s": t_chain, "vs_chain": t_obj / t_chain}
                if kind != "jacobian_hutchinson":
                    t_ag = median_time(lambda: base.objective(K, kind), reps=r, sync=base.sync)
                    row.update(autograd_s=t_ag, ratio=t_obj / t_ag,
                               baseline=f"torch.autograd[{baseline_device(impl, device)}]")
                if kind == "jacobian_hutchinson":
                    row["op"] = "jacobian (Hutchinson, 4 probes, 4 terms) s-gradient"
                if memory and kind == "reverse" and impl in ("numpy", "torch") and device in (None, "cpu"):
                    row["srl_peak_mb"] = peak_rss_mb(spec)
                    row["chain_peak_mb"] = peak_rss_mb(dict(spec, op="chain"))
                    row["mem_vs_chain"] = row["srl_peak_mb"] / max(row["chain_peak_mb"], 1e-9)
                    row["autograd_peak_mb"] = peak_rss_mb(dict(spec, impl="autograd"))
                rows.append(row)
                print(_row(row), flush=True)


def suite_train(devices, reps, rows):
    """One training iteration (K=25 chain + θ-gradient), batch 100; on CUDA also the paper
    model, and each eager iteration against the same iteration replayed from a CUDA graph."""
    for model in ("mlp", "conv", "paper"):
        for impl, device in impls(devices):
            on_cuda = impl == "torch" and "cuda" in str(device or "")
            if MODEL_FILTER is not None and model not in MODEL_FILTER or model == "paper" and not on_cuda:
                continue
            w = Workload(model, impl, device, 100)
            base = TorchAutograd(model, baseline_device(impl, device), 100)
            t_srl, t_ag = compare(lambda: w.train_step(25), lambda: base.train_step(25), reps=max(1, reps // 2),
                                  sync_f=w.sync, sync_g=base.sync)
            rows.append({"suite": "train", "model": model, "batch": 100, "K": 25, "op": "training iteration",
                         "impl": f"srl-{impl}" + (f"[{device}]" if device and device != "cpu" else ""),
                         "baseline": f"torch.autograd[{baseline_device(impl, device)}]",
                         "srl_s": t_srl, "autograd_s": t_ag, "ratio": t_srl / t_ag})
            print(_row(rows[-1]), flush=True)
            # the same iteration through the inner chain (validation once, no per-step checks)
            # against the public validated chain, interleaved
            t_inner, t_public = compare(lambda: w.train_step_inner(25), lambda: w.train_step(25),
                                        reps=max(1, reps // 2), sync_f=w.sync, sync_g=w.sync)
            rows.append({"suite": "train", "model": model, "batch": 100, "K": 25,
                         "op": "training iteration, inner chain", "impl": rows[-1]["impl"],
                         "baseline": "public srl.short_run", "srl_s": t_inner, "autograd_s": t_public,
                         "ratio": t_inner / t_public})
            print(_row(rows[-1]), flush=True)
            if on_cuda:  # srl.cuda_graphs against the eager inner iteration, interleaved
                t_graph, t_eager = compare(lambda: w.train_step_graphed(25), lambda: w.train_step_inner(25),
                                           reps=max(1, reps // 2), sync_f=w.sync, sync_g=w.sync)
                rows.append({"suite": "train", "model": model, "batch": 100, "K": 25,
                             "op": "training iteration, CUDA graph", "impl": rows[-1]["impl"],
                             "baseline": "the same, eager", "srl_s": t_graph, "autograd_s": t_eager,
                             "ratio": t_graph / t_eager})
                print(_row(rows[-1]), flush=True)


def suite_peers(reps, rows, *, models_=("mlp", "mlp64", "conv"), batch=64, K=25, paper_batch=16, paper=True,
                paper_rounds=1):
    """Every implementation side by side, per K-step chain and per reverse-kernel s-gradient:
    srl on NumPy, PyTorch and JAX (public API; compiled on JAX), torch.autograd and JAX
    autodiff + jit (``benchmarks/jax_peer.py``), same weights, data and noise. Rounds are
    interleaved over the implementations and each keeps its least-disturbed round; the JAX
    rows' compile time (first call after a fresh build minus the steady-state time) is
    reported separately. ``paper``: srl-numpy's chain against autograd's, and the adjoint
    s-gradient (L = 5) against each backend's own chain, batch ``paper_batch``."""
    import jax_peer

    have_jax = True
    try:
        import jax  # noqa: F401
    except ImportError:
        have_jax = False
        print("peers: JAX is not installed, its columns are skipped", file=sys.stderr)
    for model in models_:
        if MODEL_FILTER is not None and model not in MODEL_FILTER:
            continue
        gen = models()[model]
        impls_ = {"srl-numpy": Workload(model, "numpy", None, batch),
                  "srl-torch": Workload(model, "torch", "cpu", batch),
                  "torch.autograd": TorchAutograd(model, "cpu", batch)}
        if have_jax:
            impls_["srl-jax"] = jax_peer.SrlJax(gen, batch, K)
            impls_["srl-jax, noise given"] = jax_peer.SrlJaxNoiseGiven(gen, batch, K)
            impls_["JAX autodiff + jit"] = jax_peer.JaxPeer(gen, batch, K)
        calls = {}
        for name, w in impls_.items():
            if isinstance(w, (jax_peer.SrlJax, jax_peer.JaxPeer)):
                calls[name] = {"chain": w.chain, "reverse": w.reverse}
            else:
                calls[name] = {"chain": (lambda w=w: w.chain(K)), "reverse": (lambda w=w: w.objective(K, "reverse"))}
        compile_s = {}
        if have_jax:
            for mine in ("srl-jax", "srl-jax, noise given"):
                jax_peer.check_equal(impls_["JAX autodiff + jit"], impls_[mine], gen)
            for name in ("srl-jax", "JAX autodiff + jit"):
                for what in ("chain", "reverse"):
                    first = jax_peer._first_call(impls_[name], what)
                    steady = median_time(calls[name][what], reps=3)
                    compile_s[(name, what)] = max(first - steady, 0.0)
        for what, label in (("chain", f"K={K} chain"), ("reverse", "reverse s-gradient")):
            best = {name: float("inf") for name in calls}
            for _ in range(3):  # interleaved rounds
                for name in calls:
                    best[name] = min(best[name], median_time(calls[name][what], reps=reps))
            for name, t in best.items():
                row = {"suite": "peers", "model": model, "batch": batch, "K": K, "op": label, "impl": name,
                       "srl_s": t}
                if (name, what) in compile_s:
                    row["compile_s"] = compile_s[(name, what)]
                rows.append(row)
                print(f"peers | {model} | n={batch} | {label} | {name} | {fmt_ms(t)}"
                      + (f" | compile {row['compile_s']:.1f} s" if "compile_s" in row else ""), flush=True)
    if paper:
        suite_paper(rows, batch=paper_batch, K=K, have_jax=have_jax, rounds=paper_rounds)


def _seconds(f, sync=None):
    """Wall time of one call (``sync(out)`` waits for asynchronous results)."""
    t0 = time.perf_counter()
    out = f()
    if sync:
        sync(out)
    return time.perf_counter() - t0


def suite_paper(rows, *, batch=16, K=25, have_jax=True, rounds=1):
    """Paper model: srl-numpy's chain against torch.autograd's (interleaved, best of
    ``rounds``), and the reverse-kernel s-gradient by the adjoint sweep (L = 5) against each
    backend's own chain. One call takes seconds to minutes, so NumPy and torch are timed
    without a warm-up call; JAX's first calls compile (reported separately)."""
    w_np, base = Workload("paper", "numpy", None, batch), TorchAutograd("paper", "cpu", batch)
    t_np = t_ag = float("inf")
    for _ in range(rounds):  # interleaved, no warm-up call (each call takes seconds)
        t_np = min(t_np, _seconds(lambda: w_np.chain(K)))
        t_ag = min(t_ag, _seconds(lambda: base.chain(K)))
    rows.append({"suite": "paper", "model": "paper", "batch": batch, "K": K, "op": f"K={K} chain", "impl": "srl-numpy",
                 "baseline": "torch.autograd[cpu]", "srl_s": t_np, "autograd_s": t_ag, "ratio": t_np / t_ag})
    print(_row(rows[-1]), flush=True)
    backends = [("numpy", None), ("torch", "cpu")] + ([("jax", None)] if have_jax else [])
    for impl, device in backends:
        w = w_np if impl == "numpy" else Workload("paper", impl, device, batch)
        sync = None
        if impl == "jax":
            import jax

            sync = jax.block_until_ready

        def timed(f):
            return _seconds(f, sync)

        chain = lambda: w.chain(K)  # noqa: E731
        sweeps = {"reverse s-gradient (adjoint)": op(w, {"op": "reverse_adjoint", "K": K}),
                  "reverse s-gradient (adjoint, activations kept)": op(w, {"op": "reverse_adjoint_kept", "K": K})}
        first = {}
        if impl == "jax":  # first calls compile
            first = {"chain": timed(chain), **{op: timed(f) for op, f in sweeps.items()}}
        t_chain = t_np if impl == "numpy" else float("inf")
        best = {op: float("inf") for op in sweeps}
        for _ in range(rounds):  # interleaved
            if impl != "numpy":
                t_chain = min(t_chain, timed(chain))
            for op, f in sweeps.items():
                best[op] = min(best[op], timed(f))
        for op, t_adj in best.items():
            row = {"suite": "paper", "model": "paper", "batch": batch, "K": K, "op": op, "impl": f"srl-{impl}",
                   "srl_s": t_adj, "chain_s": t_chain, "vs_chain": t_adj / t_chain}
            if impl == "jax":
                row.update(compile_s=max(first[op] - t_adj, 0.0), chain_compile_s=max(first["chain"] - t_chain, 0.0))
            rows.append(row)
            print(_row(row), flush=True)


def _row(r):
    parts = [r["suite"], r["model"], f"n={r['batch']}", r["op"] + (f" K={r['K']}" if "K" in r else ""), r["impl"],
             fmt_ms(r["srl_s"])]
    if "autograd_s" in r:
        parts += [f"autograd {fmt_ms(r['autograd_s'])}", f"ratio {r['ratio']:.2f}"]
    if "vs_chain" in r:
        parts += [f"vs chain {r['vs_chain']:.2f}"]
    if "srl_peak_mb" in r:
        parts += [f"peak {r['srl_peak_mb']:.0f} MB (chain {r['chain_peak_mb']:.0f}, "
                  f"autograd {r.get('autograd_peak_mb', float('nan')):.0f})"]
    return " | ".join(parts)


def markdown(rows, env) -> str:
    """Tables for docs/BENCHMARKS.md."""
    out = [f"Machine: {env.get('cpus')} CPUs ({env.get('machine')}), Python {env.get('python')}, NumPy "
           f"{env.get('numpy')}, torch {env.get('torch', '—')} ({env.get('torch_threads', '?')} threads)"
           + (f", GPU {env['gpu']}" if env.get("gpu") else "") + f"; BLAS for srl-numpy: {env.get('blas', '?')}.", ""]
    core = [r for r in rows if r["suite"] in ("core", "train")]
    if core:
        out += ["| model | batch | operation | implementation | srl | baseline | baseline time | ratio |",
                "|---|---|---|---|---|---|---|---|"]
        for r in core:
            out.append(f"| {r['model']} | {r['batch']} | {r['op']}{' K=' + str(r['K']) if 'K' in r else ''} | "
                       f"{r['impl']} | {fmt_ms(r['srl_s'])} | {r.get('baseline', 'torch.autograd')} | "
                       f"{fmt_ms(r['autograd_s'])} | **{r['ratio']:.2f}×** |")
        out.append("")
    step = [r for r in rows if r["suite"] == "stepsize"]
    if step:
        out += ["| model | batch | K | s-gradient | implementation | time | × own chain | torch.autograd | ratio | "
                "peak MB (srl / chain / autograd) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in step:
            ag = f"{fmt_ms(r['autograd_s'])}" if "autograd_s" in r else "—"
            ratio = f"{r['ratio']:.2f}×" if "ratio" in r else "—"
            mem = (f"{r['srl_peak_mb']:.0f} / {r['chain_peak_mb']:.0f} / {r.get('autograd_peak_mb', float('nan')):.0f}"
                   if "srl_peak_mb" in r else "—")
            out.append(f"| {r['model']} | {r['batch']} | {r['K']} | {r['op'].replace(' s-gradient', '')} | "
                       f"{r['impl']} | {fmt_ms(r['srl_s'])} | {r['vs_chain']:.2f}× | {ag} | {ratio} | {mem} |")
    out.append("")
    out.append("Ratios below 1 mean srl is faster.")
    return "\n".join(out)


PEER_COLUMNS = ("srl-numpy", "srl-torch", "torch.autograd", "srl-jax", "srl-jax, noise given", "JAX autodiff + jit")


def markdown_peers(rows) -> str:
    """The side-by-side tables of ``suite_peers``: times per implementation, ratios to JAX + jit."""
    out = []
    peers = [r for r in rows if r["suite"] == "peers"]
    if peers:
        out += ["| model | operation | " + " | ".join(PEER_COLUMNS) + " | srl-jax / JAX | srl-jax, noise given / JAX "
                "| srl-numpy / JAX | compile: srl-jax / JAX |", "|---|---|" + "---|" * (len(PEER_COLUMNS) + 4)]
        keys = list(dict.fromkeys((r["model"], r["op"]) for r in peers))
        for model, op_ in keys:
            t = {r["impl"]: r for r in peers if (r["model"], r["op"]) == (model, op_)}
            cells = [fmt_ms(t[c]["srl_s"]) if c in t else "—" for c in PEER_COLUMNS]
            jx = t.get("JAX autodiff + jit")
            ratio = (lambda c: f"**{t[c]['srl_s'] / jx['srl_s']:.2f}×**" if jx and c in t else "—")
            comp = (f"{t['srl-jax']['compile_s']:.1f} s / {jx['compile_s']:.1f} s"
                    if jx and "compile_s" in t.get("srl-jax", {}) else "—")
            out.append(f"| {model} (batch {t[next(iter(t))]['batch']}) | {op_} | " + " | ".join(cells)
                       + f" | {ratio('srl-jax')} | {ratio('srl-jax, noise given')} | {ratio('srl-numpy')} | {comp} |")
        out.append("")
    paper = [r for r in rows if r["suite"] == "paper"]
    if paper:
        out += ["| paper model (batch {}, K = {}) | implementation | time | against | ratio |".format(
            paper[0]["batch"], paper[0]["K"]), "|---|---|---|---|---|"]
        for r in paper:
            if "autograd_s" in r:
                out.append(f"| {r['op']} | {r['impl']} | {fmt_ms(r['srl_s'])} | torch.autograd chain "
                           f"{fmt_ms(r['autograd_s'])} | **{r['ratio']:.2f}×** |")
            else:
                comp = (f" (compile {r['compile_s']:.0f} s; chain {r['chain_compile_s']:.0f} s)"
                        if "compile_s" in r else "")
                out.append(f"| {r['op']} | {r['impl']} | {fmt_ms(r['srl_s'])}{comp} | own chain "
                           f"{fmt_ms(r['chain_s'])} | **{r['vs_chain']:.2f}×** |")
    return "\n".join(out)


def environment():
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "numpy": np.__version__}
    try:
        from threadpoolctl import threadpool_info

        env["blas"] = [f"{i['internal_api']} {i['version']} threads={i['num_threads']}" for i in threadpool_info()
                       if i.get("user_api") == "blas"]
    except ImportError:
        pass
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all", choices=["all", "core", "stepsize", "train", "jax", "peers"])
    ap.add_argument("--devices", default="cpu", help="comma-separated: cpu, cuda")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ks", default="25,100", help="chain lengths for the step-size suite")
    ap.add_argument("--paper-batch", type=int, default=16)
    ap.add_argument("--paper-k", type=int, default=25)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-paper", action="store_true", help="peers suite: skip the paper-model rows")
    ap.add_argument("--paper-only", action="store_true", help="peers suite: the paper-model rows only")
    ap.add_argument("--paper-rounds", type=int, default=1,
                    help="peers suite: interleaved rounds of the paper-model rows (each keeps its best)")
    ap.add_argument("--json", default=str(HERE / "results.json"))
    ap.add_argument("--models", default=None, help="core and step-size suites: only these models (mlp,conv,paper)")
    ap.add_argument("--impls", default=None, help="only these implementations (numpy,torch,cupy)")
    ap.add_argument("--hutchinson-k", type=int, default=None,
                    help="K for the paper model's Hutchinson J_jac row (default: --paper-k; 0 skips the row)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="intra-op threads for torch (srl-torch and the autograd baseline; 0: torch's default)")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads for srl-numpy (0: library default); see srl._backend.blas_threads. "
                         "With the default --torch-threads 1 every implementation runs on one thread")
    a = ap.parse_args(argv)
    from srl._backend import blas_threads

    with blas_threads(a.blas_threads):
        _main(a)


def _main(a):
    global IMPL_FILTER, MODEL_FILTER
    if a.torch_threads:
        try:
            import torch

            torch.set_num_threads(a.torch_threads)
        except ImportError:
            pass
    IMPL_FILTER = a.impls.split(",") if a.impls else None
    MODEL_FILTER = a.models.split(",") if a.models else None
    devices = [d.strip() for d in a.devices.split(",") if d.strip()]
    rows = []
    print(json.dumps(environment()))
    if a.suite in ("all", "core"):
        suite_core(devices, a.reps, rows, paper_batch=a.paper_batch)
    if a.suite in ("all", "train"):
        suite_train(devices, a.reps, rows)
    if a.suite in ("all", "stepsize"):
        suite_stepsize(devices, a.reps, rows, tuple(int(k) for k in a.ks.split(",")), a.paper_batch, a.paper_k,
                       memory=not a.no_memory, hutchinson_k=a.hutchinson_k)
    if a.suite in ("all", "jax"):  # srl on JAX vs JAX autodiff + jit (benchmarks/jax_peer.py)
        import jax_peer

        jax_peer.suite_jax(a.reps, rows)
    if a.suite in ("all", "peers"):  # every implementation side by side (suite_peers)
        suite_peers(a.reps, rows, paper_batch=a.paper_batch, K=a.paper_k, paper=not a.no_paper,
                    models_=() if a.paper_only else ("mlp", "mlp64", "conv"), paper_rounds=a.paper_rounds)
    Path(a.json).write_text(json.dumps({"environment": environment(), "rows": rows}, indent=2))
    print(f"wrote {a.json}")
    print(markdown([r for r in rows if r["suite"] not in ("jax", "peers", "paper")], environment()))
    if any(r["suite"] in ("peers", "paper") for r in rows):
        print("\n" + markdown_peers(rows))
    if any(r["suite"] == "jax" for r in rows):
        print("\n" + jax_peer.markdown([r for r in rows if r["suite"] == "jax"]))


if __name__ == "__main__":
    main()
