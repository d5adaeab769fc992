"""``srl check``: one backend against the NumPy reference, torch.autograd and JAX autodiff.

For a small mlp and a small conv generator, on identical weights and noise, compute with
srl on backend B

    energy, ∇z E, ∇θ E, H v, the chain z_K, J_jac and −log w with their s-gradients
    (−log w's by forward sensitivities, by the adjoint sweep, and by the adjoint sweep with
    the linearisation kept: three rows against the same oracle values)

and compare with the independent float64 oracle ``srl.reference`` (values), with
``srl.interop.torch`` (torch.autograd, float64) when torch is installed and with
``srl.interop.jax_model`` (JAX autodiff: ``jax.grad``, forward-over-reverse HVPs,
``jax.grad`` through the chain for the s-gradients; float64) when JAX is installed: two
autodiff implementations written independently of srl's hand-written derivatives and of
each other. Errors are normwise: ``max|a − b|`` and
``max|a − b| / max|b|``. The command prints a table and exits with status 1 when any
relative error exceeds the documented tolerance of its dtype:

* float64: 1e-9 (docs/math.md §6 sets 1e-10 against the reference for single evaluations;
  the chain and the objectives accumulate K steps of round-off, so the check allows 10×);
* float32: 4·sqrt(eps32) ≈ 1.4e-3 against the float64 results (docs/math.md §6).
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np

from . import _backend
from . import reference as ref

CONFIGS = {
    "mlp": {"kind": "mlp", "latent_dims": [2, 3], "hidden": 8, "out_shape": [1, 4, 4]},
    "conv": {"kind": "conv", "latent_dims": [2, 3], "out_shape": [1, 6, 6], "channels": 3, "proj_channels": 2,
             "proj_kernel": 3, "res_kernels": [3, 3], "inj_kernel": 2},
}
SIGMA, K, STEP = 0.4, 4, (0.12, 0.07)
TOL64 = 1e-9
TOL32 = 4 * math.sqrt(float(np.finfo(np.float32).eps))


# The adjoint forms of d(-log w)/ds, each checked against the oracles' d(-log w)/ds.
ADJOINT_ROWS = {"d(-log w)/ds adjoint": dict(gradient="adjoint"),
                "d(-log w)/ds adjoint kept": dict(gradient="adjoint", keep_activations=True)}


def _oracle_name(quantity: str) -> str:
    return "d(-log w)/ds" if quantity in ADJOINT_ROWS else quantity


def _flat(v):
    if isinstance(v, dict):
        return np.concatenate([np.ravel(_backend.to_numpy(v[k])).astype(np.float64) for k in sorted(v)])
    if isinstance(v, (tuple, list)):
        return np.concatenate([np.ravel(_backend.to_numpy(a)).astype(np.float64) for a in v])
    return np.ravel(_backend.to_numpy(v)).astype(np.float64)


def _errors(a, b):
    a, b = _flat(a), _flat(b)
    if a.shape != b.shape:
        return math.inf, math.inf
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return diff, diff / scale if scale > 0 else diff


def _srl_quantities(gen, cfg, backend, dtype, host):
    import srl

    xp, dev = _backend.namespace(backend)
    dt = _backend.resolve_dtype(xp, dtype)
    put = lambda a: _backend.from_numpy(xp, a, dtype=dt, device=dev)  # noqa: E731
    p = {k: put(v) for k, v in host["params"].items()}
    x = put(host["x"])
    z = tuple(put(a) for a in host["z"])
    v = tuple(put(a) for a in host["v"])
    z0 = tuple(put(a) for a in host["z0"])
    noise = [tuple(put(a) for a in xi) for xi in host["noise"]]
    out = {
        "energy": srl.energy(gen, p, x, z, sigma=SIGMA),
        "grad_z": srl.grad_z(gen, p, x, z, sigma=SIGMA),
        "grad_params": srl.grad_params(gen, p, x, z, sigma=SIGMA),
        "hvp_z": srl.hvp_z(gen, p, x, z, v, sigma=SIGMA),
        "z_K": srl.short_run(gen, p, x, step_size=STEP, n_steps=K, sigma=SIGMA, z0=z0, noise=noise),
    }
    for kind, name in (("jacobian", "J_jac"), ("reverse", "-log w")):
        val, grad = srl.stepsize_objective(gen, p, x, step_size=STEP, n_steps=K, sigma=SIGMA, z0=z0, noise=noise,
                                           kind=kind)
        out[name] = val
        out[f"d{'J_jac' if kind == 'jacobian' else '(-log w)'}/ds"] = grad
    for label, opts in ADJOINT_ROWS.items():
        out[label] = srl.stepsize_objective(gen, p, x, step_size=STEP, n_steps=K, sigma=SIGMA, z0=z0, noise=noise,
                                            kind="reverse", **opts)[1]
    return out


def _reference_quantities(cfg, host):
    p, x, z, v = host["params"], host["x"], host["z"], host["v"]
    return {
        "energy": ref.energy(cfg, p, x, z, SIGMA),
        "grad_z": ref.grad_z(cfg, p, x, z, SIGMA),
        "grad_params": ref.grad_params(cfg, p, x, z, SIGMA),
        "hvp_z": ref.hvp_z(cfg, p, x, z, v, SIGMA),
        "z_K": ref.short_run(cfg, p, x, STEP, host["z0"], host["noise"], SIGMA)[0],
        "J_jac": ref.jacobian_objective(cfg, p, x, STEP, host["z0"], host["noise"], SIGMA),
        "-log w": ref.reverse_objective(cfg, p, x, STEP, host["z0"], host["noise"], SIGMA),
    }


def _autograd_quantities(cfg, host):
    import torch

    from .interop import torch as ti

    m = ti.to_torch(cfg, host["params"], dtype=torch.float64)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    x, z, v = t(host["x"]), tuple(t(a) for a in host["z"]), tuple(t(a) for a in host["v"])
    z0, noise = tuple(t(a) for a in host["z0"]), [tuple(t(a) for a in xi) for xi in host["noise"]]
    out = {
        "energy": ti.energy(m, x, z, sigma=SIGMA).detach(),
        "grad_z": ti.grad_z(m, x, z, sigma=SIGMA),
        "grad_params": ti.grad_params(m, x, z, sigma=SIGMA),
        "hvp_z": ti.hvp_z(m, x, z, v, sigma=SIGMA),
        "z_K": ti.short_run(m, x, step_size=STEP, z0=z0, noise=noise, sigma=SIGMA)[0],
    }
    for kind, name, dname in (("jacobian", "J_jac", "dJ_jac/ds"), ("reverse", "-log w", "d(-log w)/ds")):
        val, grad = ti.stepsize_objective(m, x, step_size=STEP, z0=z0, noise=noise, sigma=SIGMA, kind=kind)
        out[name], out[dname] = val, grad
    return {k: (tuple(a.detach() for a in v) if isinstance(v, tuple) else
                ({n: g.detach() for n, g in v.items()} if isinstance(v, dict) else v.detach()))
            for k, v in out.items()}


def _jax_quantities(cfg, host):
    """The same quantities by JAX autodiff (``srl.interop.jax_model``), float64."""
    import jax

    from .interop import jax_model as jm

    with jax.enable_x64(True):  # scoped: float64 for the oracle only
        t = lambda a: jax.numpy.asarray(a, dtype=jax.numpy.float64)  # noqa: E731
        p = {k: t(v) for k, v in host["params"].items()}
        x, z, v = t(host["x"]), tuple(t(a) for a in host["z"]), tuple(t(a) for a in host["v"])
        z0, noise = tuple(t(a) for a in host["z0"]), [tuple(t(a) for a in xi) for xi in host["noise"]]
        out = {
            "energy": jm.energy(cfg, p, x, z, sigma=SIGMA),
            "grad_z": jm.grad_z(cfg, p, x, z, sigma=SIGMA),
            "grad_params": jm.grad_params(cfg, p, x, z, sigma=SIGMA),
            "hvp_z": jm.hvp_z(cfg, p, x, z, v, sigma=SIGMA),
            "z_K": jm.short_run(cfg, p, x, step_size=STEP, z0=z0, noise=noise, sigma=SIGMA),
        }
        for kind, name, dname in (("jacobian", "J_jac", "dJ_jac/ds"), ("reverse", "-log w", "d(-log w)/ds")):
            out[name], out[dname] = jm.stepsize_objective(cfg, p, x, step_size=STEP, z0=z0, noise=noise,
                                                          sigma=SIGMA, kind=kind)
        return {k: (tuple(map(np.asarray, v)) if isinstance(v, tuple) else
                    ({n: np.asarray(g) for n, g in v.items()} if isinstance(v, dict) else np.asarray(v)))
                for k, v in out.items()}


def _host_problem(cfg, seed=0):
    gen_ref = ref
    rng = np.random.default_rng(seed + 100)
    params = gen_ref.init_params(cfg, seed)
    n = 3
    z = gen_ref.prior(cfg, n, seed + 1)
    v = gen_ref.prior(cfg, n, seed + 2)
    z0, noise = gen_ref.chain_noise(cfg, n, K, seed + 3)
    x = np.tanh(rng.standard_normal((n, *cfg["out_shape"])))
    return {"params": params, "x": x, "z": z, "v": v, "z0": z0, "noise": noise}


def compare(backend="numpy", dtype="float64", model="all") -> list:
    """Rows ``{model, quantity, ref_abs, ref_rel, ag_abs, ag_rel, jax_abs, jax_rel, tol, ok}``
    (``ag_*`` when torch is installed, ``jax_*`` when JAX is)."""
    with _backend.x64_scope(backend):
        return _compare(backend, dtype, model)


def _compare(backend, dtype, model) -> list:
    import srl

    names = list(CONFIGS) if model == "all" else [model]
    have_torch = importlib.util.find_spec("torch") is not None
    have_jax = _importable("jax")
    rows = []
    for name in names:
        cfg = CONFIGS[name]
        gen = srl.models.from_config(cfg)
        host = _host_problem(cfg)
        mine = _srl_quantities(gen, cfg, backend, dtype, host)
        refq = _reference_quantities(cfg, host)
        agq = _autograd_quantities(cfg, host) if have_torch else {}
        jaxq = _jax_quantities(cfg, host) if have_jax else {}
        for q, value in mine.items():
            tol = TOL64 if dtype == "float64" else TOL32
            row = {"model": name, "quantity": q, "tol": tol}
            o = _oracle_name(q)
            if o in refq:
                row["ref_abs"], row["ref_rel"] = _errors(value, refq[o])
            if o in agq:
                row["ag_abs"], row["ag_rel"] = _errors(value, agq[o])
            if o in jaxq:
                row["jax_abs"], row["jax_rel"] = _errors(value, jaxq[o])
            rels = [row[k] for k in ("ref_rel", "ag_rel", "jax_rel") if k in row]
            row["ok"] = bool(rels) and all(r <= tol for r in rels)
            rows.append(row)
    return rows


def _importable(name: str) -> bool:
    """Whether ``name`` imports (an installed but broken package counts as absent)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def run_check(*, backend="numpy", dtype="float64", model="all", as_json=False, stream=None) -> int:
    """Print the comparison table; return 0 if every error is within tolerance, else 1."""
    import sys

    stream = stream or sys.stdout
    rows = compare(backend=backend, dtype=dtype, model=model)
    if as_json:
        print(json.dumps({"backend": backend, "dtype": dtype, "rows": rows}, indent=2), file=stream)
    else:
        fmt = lambda v: "—" if v is None else f"{v:.2e}"  # noqa: E731
        print(f"srl check: backend={backend} dtype={dtype}  (errors normwise: max|Δ| and max|Δ|/max|ref|)",
              file=stream)
        head = f"{'model':5} {'quantity':25} {'vs reference abs':>16} {'rel':>9}   {'vs autograd abs':>15} {'rel':>9}" \
               f"   {'vs jax abs':>10} {'rel':>9}   {'tol':>8}  status"
        print(head, file=stream)
        print("-" * len(head), file=stream)
        for r in rows:
            print(f"{r['model']:5} {r['quantity']:25} {fmt(r.get('ref_abs')):>16} {fmt(r.get('ref_rel')):>9}   "
                  f"{fmt(r.get('ag_abs')):>15} {fmt(r.get('ag_rel')):>9}   "
                  f"{fmt(r.get('jax_abs')):>10} {fmt(r.get('jax_rel')):>9}   {r['tol']:8.1e}  "
                  f"{'ok' if r['ok'] else 'FAIL'}", file=stream)
        bad = [r for r in rows if not r["ok"]]
        print(f"{len(rows) - len(bad)}/{len(rows)} within tolerance" + (": FAILED" if bad else ""), file=stream)
    return 0 if all(r["ok"] for r in rows) else 1
