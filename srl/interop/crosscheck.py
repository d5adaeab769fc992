"""Framework-independent half of the cross-check of a user's own implementation.

``srl.interop.torch.crosscheck`` and ``srl.interop.jax.crosscheck`` compare a user's
PyTorch or JAX implementation of a generator with srl (see ``docs/crosscheck.md``). Both
share what is here:

* :func:`load_names` — the mapping from srl parameter names to the user's names, with
  every unmapped, unloaded, unknown, duplicated or mis-shaped name refused at once;
* :func:`make_problem` — identical inputs (data ``x``, latents ``z``, HVP directions
  ``v``, chain noise ``z0``, ``ξ``) drawn in float64 from one seed;
* :func:`srl_quantities` — srl's own answers on NumPy float64: forward, energy (eq. 1.1),
  ∇z, ∇θ, Hessian-vector products, the chain (eq. 2.1), J_jac (eq. 4.1), −log w (eq. 5.1)
  and their s-gradients;
* :func:`srl_probes` and :func:`localise` — srl's per-layer activations in evaluation
  order and the rule that names the first layer whose activation differs;
* :class:`CrosscheckReport` — the table, ``ok`` and ``first_mismatch``;
* :func:`run_file` — ``srl crosscheck FILE.py``.

Errors are normwise, as in ``srl check``: ``max|a − b|`` and ``max|a − b| / max|b|`` with
``b`` srl's float64 value. Tolerances (:data:`TOLERANCES`) depend on the dtype the user's
code runs in and on whether the quantity is one pass through the model or a whole chain:

* float64, one pass (forward, per-layer activations, energy, ∇z, ∇θ, Hv): 1e-10. Two
  correct float64 implementations differ by round-off, ~1e-14 relative for these models;
  1e-10 leaves four orders of magnitude for the different evaluation order, and is still
  small enough to see a missing ``+ 1e-8`` in the variance head.
* float64, chain and objectives (z_K, J_jac, −log w, their s-gradients): 1e-9, as
  ``srl check`` (K steps accumulate round-off; log-determinants and HVPs through the
  chain lose a few more digits).
* float32: ``4·sqrt(eps32) ≈ 1.4e-3`` for everything (docs/math.md §6). A float32 check
  cannot see differences below float32 resolution (such as the ``+ 1e-8``): check in
  float64, the default.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

#: Normwise relative tolerances by the dtype the user's code runs in (see module docstring).
TOL32 = 4.0 * math.sqrt(float(np.finfo(np.float32).eps))
TOLERANCES = {
    "float64": {"pass": 1e-10, "chain": 1e-9},
    "float32": {"pass": TOL32, "chain": TOL32},
}

#: Quantities computed by one pass through the model; the others run a whole chain.
ONE_PASS = ("forward", "energy", "grad_z", "grad_params", "hvp_z")
OBJECTIVES = {"jacobian": ("J_jac", "dJ_jac/ds"), "reverse": ("-log w", "d(-log w)/ds")}


class CrosscheckError(ValueError):
    """The user's implementation cannot be compared as given (names, shapes, file, noise)."""


class Row(NamedTuple):
    """One line of the report: a quantity, its normwise errors, the tolerance and the verdict."""

    quantity: str
    max_abs_err: float
    max_rel_err: float
    tolerance: float
    ok: bool


class CrosscheckReport:
    """Result of a cross-check.

    ``rows`` is a list of :class:`Row` ``(quantity, max_abs_err, max_rel_err, tolerance,
    ok)``; ``ok`` is true when every row is; ``first_mismatch`` is ``None`` or the srl
    layer (parameter prefix such as ``"res0"`` or ``"inj2.v"``) whose activation is the
    first, in evaluation order, to differ; when no layer can be named it is the first
    failing quantity (``"energy"``, ``"chain"``, ...). ``notes`` explain the verdict
    (which activation differs, what was not compared). ``str(report)`` is a table.
    """

    def __init__(self, rows, first_mismatch=None, notes=(), *, dtype="float64", title="crosscheck"):
        self.rows = list(rows)
        self.first_mismatch = first_mismatch
        self.notes = list(notes)
        self.dtype = dtype
        self.title = title

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self):
        return f"CrosscheckReport(ok={self.ok}, first_mismatch={self.first_mismatch!r}, rows={len(self.rows)})"

    def __str__(self):
        width = max([len(r.quantity) for r in self.rows] + [8])
        lines = [f"{self.title} ({self.dtype}; errors normwise: max|Δ| and max|Δ|/max|srl|)",
                 f"{'quantity':<{width}}  {'max abs err':>11}  {'max rel err':>11}  {'tolerance':>9}  status"]
        lines.append("-" * len(lines[-1]))
        for r in self.rows:
            lines.append(f"{r.quantity:<{width}}  {r.max_abs_err:11.2e}  {r.max_rel_err:11.2e}  "
                         f"{r.tolerance:9.1e}  {'ok' if r.ok else 'MISMATCH'}")
        bad = sum(not r.ok for r in self.rows)
        lines.append(f"{len(self.rows) - bad}/{len(self.rows)} within tolerance"
                     + ("" if self.ok else f"; first mismatch: {self.first_mismatch}"))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def tolerance(dtype: str, quantity: str) -> float:
    """The documented tolerance of ``quantity`` when the user's code runs in ``dtype``."""
    table = TOLERANCES[dtype]
    return table["pass"] if quantity in ONE_PASS or quantity.startswith("layer") else table["chain"]


def check_dtype(dtype) -> str:
    name = str(dtype).replace("torch.", "").replace("jnp.", "")
    if name not in TOLERANCES:
        raise CrosscheckError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return name


def errors(a, b) -> tuple[float, float]:
    """Normwise ``(max|a − b|, max|a − b| / max|b|)`` of two arrays (``inf`` on a shape clash)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return math.inf, math.inf
    if not a.size:
        return 0.0, 0.0
    diff = float(np.max(np.abs(a - b)))
    if not math.isfinite(diff):
        return math.inf, math.inf
    scale = float(np.max(np.abs(b)))
    return diff, diff / scale if scale > 0 else diff


def flat(value) -> np.ndarray:
    """A tuple of arrays (latent groups) as one float64 vector; an array as itself."""
    if isinstance(value, (tuple, list)):
        return np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in value])
    return np.asarray(value, dtype=np.float64)


def row(quantity, mine, srl_value, dtype) -> Row:
    """Compare the user's ``mine`` with srl's value; a :class:`Row`."""
    tol = tolerance(dtype, quantity)
    abs_err, rel_err = errors(flat(mine), flat(srl_value))
    return Row(quantity, abs_err, rel_err, tol, bool(rel_err <= tol))


# ------------------------------------------------------------------------- parameters
def host_params(gen, params) -> dict:
    """srl parameters as float64 NumPy arrays: ``params`` (any array library) or, when it is
    None, ``gen.init(seed=0, dtype="float64")``. Names and shapes are checked against ``gen``."""
    from srl import _backend
    from srl.validate import check_params

    if params is None:
        return gen.init(seed=0, backend="numpy", dtype="float64")
    host = {k: np.array(_backend.to_numpy(v), dtype=np.float64) for k, v in dict(params).items()}
    check_params(gen, host)
    return host


def load_names(srl_shapes: dict, user_shapes: dict, mapping, *, what="module parameter") -> dict:
    """Resolve ``mapping`` to ``{srl_name: user_name}`` and refuse anything that does not fit.

    ``mapping`` is ``None`` (identical names), a dict ``{srl_name: user_name}`` or a
    callable ``srl_name -> user_name`` (``None`` for "no counterpart"). Raises
    :class:`CrosscheckError` naming every srl parameter left unmapped, every mapped name the
    user's code does not have, every user name two srl parameters map to, every user
    parameter left unloaded and every shape mismatch.
    """
    if mapping is None:
        resolve = lambda name: name  # noqa: E731
    elif callable(mapping):
        resolve = mapping
    elif hasattr(mapping, "get"):
        resolve = mapping.get
    else:
        raise CrosscheckError(f"mapping must be a dict or a callable srl_name -> name, got {type(mapping).__name__}")
    if not callable(mapping) and mapping is not None:
        stray = sorted(set(map(str, mapping)) - set(srl_shapes))
        if stray:
            raise CrosscheckError(f"mapping names parameters srl's generator does not have: {', '.join(stray)}")
    names = {s: resolve(s) for s in srl_shapes}
    problems = []
    unmapped = [s for s, u in names.items() if u is None]
    if unmapped:
        problems.append(f"srl parameters with no {what} (extend mapping=): {', '.join(unmapped)}")
    names = {s: str(u) for s, u in names.items() if u is not None}
    unknown = [f"{s} -> {u}" for s, u in names.items() if u not in user_shapes]
    if unknown:
        problems.append(f"mapped to a {what} that does not exist: {', '.join(unknown)}")
    seen: dict = {}
    for s, u in names.items():
        seen.setdefault(u, []).append(s)
    shared = [f"{u} <- {' and '.join(ss)}" for u, ss in seen.items() if len(ss) > 1]
    if shared:
        problems.append(f"one {what} loaded from several srl parameters: {', '.join(shared)}")
    unloaded = [u for u in user_shapes if u not in seen]
    if unloaded:
        problems.append(f"{what}s that no srl parameter is loaded into: {', '.join(unloaded)}")
    shapes = [f"{s} {tuple(srl_shapes[s])} -> {u} {tuple(user_shapes[u])}" for s, u in names.items()
              if u in user_shapes and tuple(user_shapes[u]) != tuple(srl_shapes[s])]
    if shapes:
        problems.append(f"shape mismatch (srl shape -> yours): {', '.join(shapes)}")
    if problems:
        raise CrosscheckError("cannot load the srl parameters: " + "; ".join(problems))
    return names


# ---------------------------------------------------------------------------- inputs
def make_problem(gen, params, *, n, seed, n_steps, sigma, x=None) -> dict:
    """Identical float64 inputs for both sides, all drawn from ``seed``.

    ``z`` and the HVP directions ``v`` are prior draws; ``(z0, noise)`` the chain noise of
    ``srl.random.chain_noise``; ``x`` (unless given) is ``g_θ(z') + σ ε`` for another prior
    draw ``z'``, so the chain starts near data the model can explain.
    """
    from srl import _backend
    from srl.random import chain_noise

    if int(n) < 1:
        raise CrosscheckError(f"n must be a positive number of examples, got {n}")
    n, seed = int(n), int(seed)
    z = gen.prior(n, seed=seed)
    v = gen.prior(n, seed=seed + 1)
    xp = _backend.namespace("numpy")[0]
    z0, noise = chain_noise(seed + 2, n, gen.latent_dims, int(n_steps), xp=xp, dtype=np.float64, device="cpu")
    if x is None:
        rng = np.random.default_rng(seed + 3)
        x = np.asarray(gen.forward(params, gen.prior(n, seed=seed + 4))) + sigma * rng.standard_normal(
            (n, *gen.out_shape))
    else:
        x = np.array(_backend.to_numpy(x), dtype=np.float64)
        if x.shape != (n, *gen.out_shape):
            raise CrosscheckError(f"x has shape {x.shape}, expected {(n, *gen.out_shape)} (n={n})")
    return {"x": x, "z": tuple(z), "v": tuple(v), "z0": tuple(z0), "noise": [tuple(xi) for xi in noise]}


def srl_quantities(gen, params, problem, *, sigma, step_size, n_steps, objectives) -> dict:
    """srl's answers on NumPy float64 (docs/math.md eqs. 1.1, 2.1, 4.1, 5.1)."""
    import srl

    x, z, v = problem["x"], problem["z"], problem["v"]
    z0, noise = problem["z0"], problem["noise"]
    out = {
        "forward": gen.forward(params, z),
        "energy": srl.energy(gen, params, x, z, sigma=sigma),
        "grad_z": srl.grad_z(gen, params, x, z, sigma=sigma),
        "grad_params": srl.grad_params(gen, params, x, z, sigma=sigma),
        "hvp_z": srl.hvp_z(gen, params, x, z, v, sigma=sigma),
        "z_K": srl.short_run(gen, params, x, step_size=step_size, n_steps=n_steps, sigma=sigma, z0=z0, noise=noise),
    }
    for kind in objectives:
        value, grad = srl.stepsize_objective(gen, params, x, step_size=step_size, n_steps=n_steps, sigma=sigma,
                                             z0=z0, noise=noise, kind=kind)
        out[OBJECTIVES[kind][0]], out[OBJECTIVES[kind][1]] = value, grad
    return out


def check_objectives(objectives) -> tuple:
    objectives = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    bad = [k for k in objectives if k not in OBJECTIVES]
    if bad:
        raise CrosscheckError(f"objectives must be among {sorted(OBJECTIVES)}, got {bad}")
    return objectives


def latent_groups(value, gen, n, what) -> tuple:
    """The user's latents back in srl's layout: a tuple of ``(n, d_l)`` float64 arrays.

    Accepts a sequence of L arrays each holding ``n·d_l`` numbers (any layout with the
    example axis first, e.g. ``(n, d, 1, 1)``) or one ``(n, d)`` array (groups concatenated
    top-down)."""
    if hasattr(value, "shape") and not isinstance(value, (tuple, list)):
        a = np.asarray(value, dtype=np.float64).reshape(n, -1)
        if a.shape[1] != gen.d:
            raise CrosscheckError(f"{what} has {a.shape[1]} numbers per example, expected d = {gen.d}")
        return tuple(np.split(a, np.cumsum(gen.latent_dims)[:-1], axis=1))
    groups = list(value)
    if len(groups) != len(gen.latent_dims):
        raise CrosscheckError(f"{what} has {len(groups)} latent groups, expected {len(gen.latent_dims)}")
    out = []
    for l, (a, d) in enumerate(zip(groups, gen.latent_dims)):
        a = np.asarray(a, dtype=np.float64)
        if a.size != n * d:
            raise CrosscheckError(f"{what}[{l}] has shape {a.shape}, expected n·d_{l} = {n}·{d} numbers")
        out.append(a.reshape(n, d))
    return tuple(out)


# ----------------------------------------------------------------------- localisation
class Probe(NamedTuple):
    """An srl activation the user's code can be compared with.

    ``key``: ``("in", leaf)`` / ``("out", leaf)`` for the input and output of a layer that
    owns parameters (``leaf`` its parameter prefix, e.g. ``"res1.conv2"``), ``("block",
    head)`` for the output of an injection head (``"inj1.mu"``, ``"inj1.v"``: μ, and v after
    softplus, ``+ 1e-8`` and clamp) and ``("forward",)`` for x̂. ``blame``: the srl layer
    named when this activation is the first to differ, i.e. the computation that produced
    it. ``what``: a description for the report.
    """

    key: tuple
    value: np.ndarray
    blame: str
    what: str


def srl_probes(gen, params, z) -> list:
    """srl's activations (NumPy float64) in evaluation order, for :func:`localise`.

    Walks the generator of docs/math.md §1 with srl's own layers: every parameter-owning
    layer's input and output, each injection head's output, and x̂.
    """
    from srl import _backend
    from srl.layers import Residual, Sequential

    xp = _backend.namespace("numpy")[0]
    probes: list = []

    def run(layer, x, made_by, block):
        """Apply ``layer`` to ``x`` (produced by ``made_by``) inside ``block``; return (y, made_by)."""
        if isinstance(layer, Sequential):
            for sub in layer.layers:
                x, made_by = run(sub, x, made_by, block)
            return x, made_by
        if isinstance(layer, Residual):
            y, _ = run(layer.body, x, made_by, layer.name or block)
            return y + x, layer.name or block
        if getattr(layer, "w_name", None):  # Dense, Conv2d, ConvTranspose2d
            probes.append(Probe(("in", layer.name), x, made_by, f"input of {layer.name}"))
            y = layer.forward(xp, params, x)[0]
            probes.append(Probe(("out", layer.name), y, layer.name, f"output of {layer.name}"))
            return y, layer.name
        return layer.forward(xp, params, x)[0], block  # activation, reshape, shift

    h = None
    for i, lv in enumerate(gen.levels):
        if lv.mu is None:
            u, made_by = z[i], f"z[{i}]"
        else:
            mu, _ = run(lv.mu, h, f"res{i - 1}", f"inj{i}.mu")
            probes.append(Probe(("block", f"inj{i}.mu"), mu, f"inj{i}.mu", f"μ_{i}, output of inj{i}.mu"))
            v, _ = run(lv.v, h, f"res{i - 1}", f"inj{i}.v")
            probes.append(Probe(("block", f"inj{i}.v"), v, f"inj{i}.v",
                                f"v_{i} = clamp(softplus(·) + 1e-8, 0, 10), output of inj{i}.v"))
            u, made_by = gen.injection.forward(xp, mu, v, z[i])[0], f"inj{i}"
        a, made_by = run(lv.proj, u, made_by, f"proj{i}")
        r, made_by = run(lv.res, a, made_by, f"res{i}")
        h = r if h is None else r + h  # skip connection: h[i] = res_i(...) + h[i-1]
    x_hat, made_by = run(gen.out, h, f"res{len(gen.levels) - 1}", "out")
    probes.append(Probe(("forward",), x_hat, made_by, "x̂, the forward's output"))
    return probes


def describe(probe) -> str:
    """What a mismatch at ``probe`` means, for the report's notes."""
    name = probe.blame
    if name.startswith("res") and probe.key[0] == "in":
        return f"h = {name}(...) + skip differs (residual block {name} or the skip connection after it)"
    if name.startswith("inj") and "." not in name:
        return f"u = μ + exp(v/2) ⊙ z of injection {name} differs"
    if name.startswith("z["):
        return f"the latent {name} reaches the first layer changed (check forward= and the latent layout)"
    return f"{probe.what} differs"


def localise(probes, observed, dtype):
    """Compare the user's activations with srl's; ``(layer_row or None, first_mismatch, notes)``.

    ``observed`` maps probe keys to the user's arrays (``None`` where the user's code
    offered nothing to compare). The first layer-level probe (inputs and outputs of
    parameter-owning layers, then x̂) beyond tolerance names the layer: its ``blame``. When
    that is an injection ``inj{i}``, a differing head output ``inj{i}.mu`` / ``inj{i}.v``
    (observed when the user's head module owns exactly that head's parameters, and counted
    only when it differs from that head's last layer output too) refines it.
    """
    tol = tolerance(dtype, "layer")
    worst = (0.0, 0.0)
    first = None
    compared, skipped = 0, []
    mismatched_heads = []
    last_layer_out: dict = {}  # head prefix -> srl output of its last parameter-owning layer
    for p in probes:
        obs = observed.get(p.key)
        if obs is None:
            if p.key[0] != "block":
                skipped.append(p.key[1] if len(p.key) > 1 else p.key[0])
            continue
        obs = np.asarray(obs, dtype=np.float64)
        if obs.size != p.value.size:
            skipped.append(f"{p.key[1] if len(p.key) > 1 else p.key[0]} (size {obs.size} != {p.value.size})")
            continue
        abs_err, rel_err = errors(obs, p.value)
        if p.key[0] == "block":
            # Evidence only if the user's head output is neither srl's head output nor the
            # output of the head's last layer (a head module that leaves softplus and clamp
            # to its caller is structured differently, not wrong).
            raw = last_layer_out.get(p.blame)
            if rel_err > tol and (raw is None or raw.size != obs.size or errors(obs, raw)[1] > tol):
                mismatched_heads.append((p, abs_err, rel_err))
            continue
        if p.key[0] == "out":
            last_layer_out[p.key[1].rsplit(".", 1)[0]] = p.value
        compared += 1
        worst = max(worst, (abs_err, rel_err), key=lambda t: t[1])
        if rel_err > tol and first is None:
            first = (p, abs_err, rel_err)
    notes = []
    if skipped:
        notes.append(f"not compared layer by layer (no hookable counterpart): {', '.join(sorted(set(skipped)))}")
    if compared == 0:
        return None, None, notes
    layer_row = Row(f"layers ({compared} activations)", worst[0], worst[1], tol, first is None)
    if first is None:
        return layer_row, None, notes
    p, abs_err, rel_err = first
    blame = p.blame
    for head, _, _ in mismatched_heads:
        if head.blame.startswith(blame + "."):
            blame = head.blame
            notes.append(f"{head.what} differs")
            break
    notes.insert(0, f"first mismatch at {p.what}: {describe(p)} (max abs err {abs_err:.2e}, rel {rel_err:.2e})")
    return layer_row, blame, notes


def blame_from_grads(srl_grads: dict, mine: dict, order, dtype):
    """The last srl layer, in evaluation order, whose parameter gradient differs (reverse mode
    carries an error backward, so the layer nearest the output is the culprit)."""
    tol = tolerance(dtype, "grad_params")
    scale = max(float(np.max(np.abs(np.asarray(g)))) for g in srl_grads.values())
    bad = [name for name in order
           if errors(mine[name], srl_grads[name])[0] > tol * (scale if scale > 0 else 1.0)]
    return bad[-1].rsplit(".", 1)[0] if bad else None


def energy_hint(gen, mine, srl_energy, sigma, energy_constants) -> list:
    """A note when the user's energy differs from eq. (1.1) by exactly its constant."""
    from srl.energy import log_constant

    const = log_constant(gen, sigma)
    diff = np.asarray(mine, dtype=np.float64) - np.asarray(srl_energy, dtype=np.float64)
    if np.allclose(diff, -const if energy_constants else const, rtol=1e-6, atol=1e-6 * abs(const)):
        return [f"the energy differs from eq. (1.1) by its constant {const:.6g}: pass "
                f"energy_constants={not energy_constants}"]
    return []


def chain_hints(gen, params, problem, zk, *, step_size, sigma, dtype) -> list:
    """Name a common chain mistake when the user's ``z_K`` equals it: the drift without the
    prior term ``z`` of ∇E, or with ``s`` in place of ``s²/2`` (docs/math.md eq. 2.1)."""
    import srl
    from srl.validate import check_step_size

    s = check_step_size(step_size, len(gen.latent_dims))
    x, tol = problem["x"], tolerance(dtype, "z_K")
    variants = {
        "drops the prior term: the drift uses ∇ of ‖x − g(z)‖²/(2σ²) only, without + z": (False, lambda sl: 0.5 * sl * sl),
        "uses s instead of s²/2 in the drift": (True, lambda sl: sl),
        "uses s/2 instead of s²/2 in the drift": (True, lambda sl: 0.5 * sl),
    }
    hints = []
    for text, (prior, drift) in variants.items():
        z = problem["z0"]
        for xi in problem["noise"]:
            g = srl.grad_z(gen, params, x, z, sigma=sigma)
            z = tuple(zl - drift(sl) * (gl if prior else gl - zl) + sl * xl
                      for zl, gl, xl, sl in zip(z, g, xi, s))  # eq. (2.1) with the mistake
        if errors(flat(zk), flat(z))[1] <= tol:
            hints.append(f"the chain's z_K matches eq. (2.1) done wrong: it {text}")
    return hints


# ------------------------------------------------------------------------ the command
def load_build(path):
    """Import ``path`` and return the keyword arguments its ``build()`` returns."""
    path = Path(path)
    if not path.is_file():
        raise CrosscheckError(f"{path}: no such file (give the Python file that defines build())")
    name = f"srl_crosscheck_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CrosscheckError(f"{path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as exc:
        raise CrosscheckError(f"{path}: syntax error on line {exc.lineno}: {exc.msg}") from exc
    build = getattr(mod, "build", None)
    if not callable(build):
        raise CrosscheckError(f"{path}: defines no build() function returning the crosscheck arguments")
    kwargs = build()
    if not isinstance(kwargs, dict):
        raise CrosscheckError(f"{path}: build() must return a dict of crosscheck arguments, got "
                              f"{type(kwargs).__name__}")
    return kwargs


def run_file(path, *, dtype=None, as_json=False, stream=None) -> int:
    """``srl crosscheck FILE.py``: build, check, print; 0 when every check passes, else 1.

    ``build()`` returns the keyword arguments of ``srl.interop.torch.crosscheck`` (with
    ``module`` and ``gen``) or of ``srl.interop.jax.crosscheck`` (with ``apply_fn``,
    ``variables`` and ``gen``). ``dtype`` overrides the file's choice.
    """
    import inspect
    import json

    stream = stream or sys.stdout
    kwargs = dict(load_build(path))
    if "apply_fn" in kwargs:
        from .jax import crosscheck
        positional = ("apply_fn", "variables", "gen")
    elif "module" in kwargs:
        from .crosscheck_torch import crosscheck
        positional = ("module", "gen")
    else:
        raise CrosscheckError(f"{path}: build() must return 'module' (PyTorch) or 'apply_fn' (JAX), "
                              f"got keys {sorted(kwargs)}")
    missing = [k for k in positional if k not in kwargs]
    if missing:
        raise CrosscheckError(f"{path}: build() did not return {', '.join(missing)}")
    accepted = set(inspect.signature(crosscheck).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise CrosscheckError(f"{path}: build() returned unknown arguments {unknown}; accepted: {sorted(accepted)}")
    if dtype is not None:
        kwargs["dtype"] = dtype
    args = [kwargs.pop(k) for k in positional]
    report = crosscheck(*args, **kwargs)
    if as_json:
        print(json.dumps({"ok": report.ok, "first_mismatch": report.first_mismatch, "notes": report.notes,
                          "rows": [r._asdict() for r in report.rows]}, indent=2), file=stream)
    else:
        print(f"{path}:", file=stream)
        print(report, file=stream)
    return 0 if report.ok else 1
