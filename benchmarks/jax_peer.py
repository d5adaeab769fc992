"""srl on JAX against a native JAX autodiff + jit implementation of the same model.

    python benchmarks/jax_peer.py                      # mlp width 32, mlp width 64, conv; batch 64
    python benchmarks/run.py --suite jax               # the same rows inside the main benchmark run

The peer is what a JAX user would write: the generator of ``srl.interop.jax_model`` (plain
``jax.numpy``/``lax`` layers, checked equal to srl's forward before timing), ∇z by
``jax.grad``, the short-run chain as a ``lax.scan`` under ``jax.jit``, and the
reverse-kernel bound's s-gradient (docs/math.md eq. 5.1) by ``jax.grad`` through the
scanned chain. srl runs through its public API on ``backend="jax"`` (``srl.short_run``,
``srl.stepsize_objective(kind="reverse")``), compiled by ``srl.compiled``, with the same
weights, data and chain noise. Times are medians after warm-up, interleaved (as in
``run.py``); compile time is reported separately: the first call minus the steady-state
time, measured on freshly built jitted functions.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIGMA = 0.3
STEP = 0.05


def models():
    import srl

    return {
        "mlp32": srl.models.mlp(latent_dims=(4, 8), hidden=32, out_shape=(1, 8, 8)),
        "mlp64": srl.models.mlp(latent_dims=(4, 8), hidden=64, out_shape=(1, 8, 8)),
        "conv": srl.models.conv(latent_dims=(8, 16), out_shape=(1, 8, 8), channels=16),
    }


def _host_problem(gen, batch, K):
    from srl import _backend as B
    from srl.random import chain_noise

    np_xp = B.namespace("numpy")[0]
    params = gen.init(seed=0, backend="numpy", dtype="float64")
    x = np.tanh(np.random.default_rng(0).standard_normal((batch, *gen.out_shape)))
    z0, noise = chain_noise(0, batch, gen.latent_dims, K, xp=np_xp, dtype=np.float64, device="cpu")
    return params, x, z0, noise


class JaxPeer:
    """The same model in plain JAX, derivatives by autodiff, everything under ``jax.jit``."""

    def __init__(self, gen, batch, K, dtype="float32"):
        import jax
        import jax.numpy as jnp
        from jax import lax

        from srl.interop import jax_model as jm

        self.jax = jax
        cfg, dims = gen.config, gen.latent_dims
        params, x, z0, noise = _host_problem(gen, batch, K)
        dt = getattr(jnp, dtype)
        self.params = {k: jnp.asarray(v, dtype=dt) for k, v in params.items()}
        self.x = jnp.asarray(x, dtype=dt)
        self.z0 = tuple(jnp.asarray(a, dtype=dt) for a in z0)
        self.noise = tuple(jnp.asarray(np.stack([xi[l] for xi in noise]), dtype=dt) for l in range(len(dims)))
        self.s = jnp.full((len(dims),), STEP, dtype=dt)
        self.forward = jax.jit(lambda p, z: jm.forward(cfg, p, z))

        def energy_sum(p, x, z):
            r = x - jm.forward(cfg, p, z)
            return 0.5 * sum(jnp.sum(a * a) for a in z) + jnp.sum(r * r) / (2 * SIGMA ** 2)

        grad = jax.grad(energy_sum, argnums=2)

        def chain(p, x, z0, noise, s):
            def step(z, xi):
                g = grad(p, x, z)
                return tuple(a - 0.5 * sl * sl * b + sl * c for a, b, c, sl in zip(z, g, xi, s)), None

            return lax.scan(step, z0, noise)[0]

        def energies(p, x, z):  # per example, with constants (eq. 1.1)
            n = x.shape[0]
            r = (x - jm.forward(cfg, p, z)).reshape(n, -1)
            d, D = sum(dims), r.shape[1]
            return (0.5 * sum(jnp.sum(a * a, axis=1) for a in z) + jnp.sum(r * r, axis=1) / (2 * SIGMA ** 2)
                    + 0.5 * d * math.log(2 * math.pi) + 0.5 * D * math.log(2 * math.pi * SIGMA ** 2))

        def neg_log_w(s, p, x, z0, noise):  # eq. (5.1), summed over the batch
            def step(carry, xi):
                z, g, acc = carry
                zn = tuple(a - 0.5 * sl * sl * b + sl * c for a, b, c, sl in zip(z, g, xi, s))
                gn = grad(p, x, zn)
                r = tuple(c - 0.5 * sl * (b + bn) for c, sl, b, bn in zip(xi, s, g, gn))
                acc = acc - 0.5 * sum(jnp.sum(c * c) for c in xi) + 0.5 * sum(jnp.sum(a * a) for a in r)
                return (zn, gn, acc), None

            d = sum(dims)
            log_n0 = -0.5 * sum(jnp.sum(a * a) for a in z0) - 0.5 * d * math.log(2 * math.pi) * x.shape[0]
            (zK, _, acc), _ = lax.scan(step, (z0, grad(p, x, z0), jnp.zeros((), x.dtype)), noise)
            return log_n0 + acc + jnp.sum(energies(p, x, zK))

        self._chain_fn = chain
        self._obj_fn = jax.value_and_grad(neg_log_w)
        self.build()

    def build(self):
        """Fresh jitted functions (so the next calls include compilation)."""
        self._chain = self.jax.jit(self._chain_fn)
        self._obj = self.jax.jit(self._obj_fn)

    def chain(self):
        return self.jax.block_until_ready(self._chain(self.params, self.x, self.z0, self.noise, tuple(self.s)))

    def reverse(self):
        return self.jax.block_until_ready(self._obj(self.s, self.params, self.x, self.z0, self.noise))


class SrlJax:
    """srl's public API on ``backend="jax"`` (compiled), same weights, data and noise."""

    def __init__(self, gen, batch, K, dtype="float32"):
        import jax

        import srl
        from srl import _backend as B

        self.jax, self.srl, self.gen, self.K = jax, srl, gen, K
        xp, dev = B.namespace("jax")
        _, x, _, _ = _host_problem(gen, batch, K)
        self.params = gen.init(seed=0, backend="jax", dtype=dtype)
        self.x = B.from_numpy(xp, x, dtype=B.resolve_dtype(xp, dtype), device=dev)

    def build(self):
        from srl import compiled

        compiled.clear_cache()

    def chain(self):
        return self.jax.block_until_ready(
            self.srl.short_run(self.gen, self.params, self.x, step_size=STEP, n_steps=self.K, sigma=SIGMA, seed=0))

    def reverse(self):
        return self.jax.block_until_ready(self.srl.stepsize_objective(
            self.gen, self.params, self.x, step_size=STEP, n_steps=self.K, sigma=SIGMA, seed=0, kind="reverse"))


class SrlJaxNoiseGiven(SrlJax):
    """The same public calls with the chain noise handed in as device arrays (``z0=``, and
    ``noise=`` stacked ``(K, n, d_l)`` per group), as the peer receives it: no host draw,
    no transfer. The values are the seed's."""

    def __init__(self, gen, batch, K, dtype="float32"):
        super().__init__(gen, batch, K, dtype)
        import jax.numpy as jnp

        _, _, z0, noise = _host_problem(gen, batch, K)
        dt = getattr(jnp, dtype)
        self.z0 = tuple(jnp.asarray(a, dtype=dt) for a in z0)
        self.noise = tuple(jnp.asarray(np.stack([xi[l] for xi in noise]), dtype=dt)
                           for l in range(len(gen.latent_dims)))

    def chain(self):
        return self.jax.block_until_ready(self.srl.short_run(
            self.gen, self.params, self.x, step_size=STEP, n_steps=self.K, sigma=SIGMA, z0=self.z0, noise=self.noise))

    def reverse(self):
        return self.jax.block_until_ready(self.srl.stepsize_objective(
            self.gen, self.params, self.x, step_size=STEP, n_steps=self.K, sigma=SIGMA, z0=self.z0, noise=self.noise,
            kind="reverse"))


def check_equal(peer, mine, gen):
    """The peer computes srl's function: forward, z_K and the reverse bound agree.

    On GPUs JAX computes float32 products in TF32 by default (about 1e-3 relative; README,
    "Backends"): the check runs in IEEE float32 (both sides retraced under that setting);
    the timings use the defaults, the same for both implementations."""
    import jax

    with jax.default_matmul_precision("highest"):
        _check_equal(peer, mine, gen)


def _check_equal(peer, mine, gen):
    import srl

    z = gen.prior(4, seed=3, backend="jax", dtype="float32")
    want = srl.Generator.forward(gen, mine.params, z)
    got = peer.forward(peer.params, z)
    scale = float(np.max(np.abs(np.asarray(want))))
    # float32, same weights: round-off of a few dozen operations
    assert float(np.max(np.abs(np.asarray(got) - np.asarray(want)))) <= 1e-5 * max(scale, 1.0), "forward differs"
    for a, b in zip(peer.chain(), mine.chain()):
        assert np.allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-3), "z_K differs"
    (v_peer, g_peer), (v_mine, g_mine) = peer.reverse(), mine.reverse()
    assert np.allclose(float(v_peer), float(np.sum(np.asarray(v_mine))), rtol=1e-3), "-log w differs"
    assert np.allclose(np.asarray(g_peer), np.asarray(g_mine), rtol=1e-2, atol=1e-2 * float(np.max(np.abs(
        np.asarray(g_peer))))), "s-gradient differs"


def _median(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _first_call(obj, what):
    obj.jax.clear_caches()  # compile from scratch (JAX caches executables per traced function)
    obj.build()
    t = time.perf_counter()
    getattr(obj, what)()
    return time.perf_counter() - t


def measure(model, *, batch=64, K=25, reps=10, rounds=3):
    """Rows for one model: chain and reverse-kernel s-gradient, srl-jax (seeded, and with the
    peer's noise handed in) vs the JAX peer, timed in interleaved rounds."""
    gen = models()[model]
    peer, mine, given = JaxPeer(gen, batch, K), SrlJax(gen, batch, K), SrlJaxNoiseGiven(gen, batch, K)
    rows = []
    for what, label in (("chain", f"K={K} chain"), ("reverse", "reverse s-gradient")):
        c_peer, c_mine = _first_call(peer, what), _first_call(mine, what)
        getattr(given, what)()  # compiled by the call above (same shapes and options)
        if what == "reverse":
            check_equal(peer, mine, gen)
            check_equal(peer, given, gen)
        tp, tm, tg = [], [], []
        for _ in range(rounds):  # interleaved; each one's least-disturbed round
            tp.append(_median(getattr(peer, what), reps))
            tm.append(_median(getattr(mine, what), reps))
            tg.append(_median(getattr(given, what), reps))
        t_peer, t_mine, t_given = min(tp), min(tm), min(tg)
        rows.append({"suite": "jax", "model": model, "batch": batch, "K": K, "op": label, "impl": "srl-jax",
                     "baseline": "JAX autodiff + jit", "srl_s": t_mine, "peer_s": t_peer, "ratio": t_mine / t_peer,
                     "given_s": t_given, "ratio_given": t_given / t_peer,
                     "srl_compile_s": max(c_mine - t_mine, 0.0), "peer_compile_s": max(c_peer - t_peer, 0.0)})
        print(_row(rows[-1]), flush=True)
    return rows


def _fmt(t):
    return f"{t * 1e3:.2f} ms" if t < 10 else f"{t:.2f} s"


def _row(r):
    return (f"jax | {r['model']} | n={r['batch']} | {r['op']} | srl-jax {_fmt(r['srl_s'])} | "
            f"noise given {_fmt(r['given_s'])} | JAX jit {_fmt(r['peer_s'])} | ratio {r['ratio']:.2f} / "
            f"{r['ratio_given']:.2f} | compile srl {r['srl_compile_s']:.1f} s, "
            f"peer {r['peer_compile_s']:.1f} s")


def markdown(rows):
    out = ["| model | batch | operation | srl-jax (public API, compiled) | srl-jax, noise given | JAX autodiff + jit "
           "| ratio | ratio, noise given | compile: srl / peer |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['batch']} | {r['op']} | {_fmt(r['srl_s'])} | {_fmt(r['given_s'])} | "
                   f"{_fmt(r['peer_s'])} | **{r['ratio']:.2f}×** | **{r['ratio_given']:.2f}×** | "
                   f"{r['srl_compile_s']:.1f} s / {r['peer_compile_s']:.1f} s |")
    return "\n".join(out)


def suite_jax(reps, rows, model_names=None):
    """Hook for ``run.py``: appends the JAX rows (skips cleanly without JAX)."""
    try:
        import jax  # noqa: F401
    except ImportError:
        print("jax suite skipped: JAX is not installed", file=sys.stderr)
        return
    for m in model_names or models():
        rows += measure(m, reps=max(3, reps))


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp32,mlp64,conv")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", default=str(HERE / "results-jax.json"))
    a = ap.parse_args()
    rows = []
    suite_jax(a.reps, rows, a.models.split(","))
    Path(a.json).write_text(json.dumps({"rows": rows}, indent=2))
    print(markdown(rows))
