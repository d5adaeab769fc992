"""Cross-check a user's own PyTorch implementation against srl (``docs/crosscheck.md``).

    from srl.interop.torch import crosscheck
    report = crosscheck(module, srl.models.paper(), forward=..., mapping=..., chain=...)
    print(report); assert report.ok

The srl parameters are loaded into a copy of ``module`` through ``mapping`` (every other
floating buffer is first filled with NaN, so nothing stale can pass), and on identical
float64-drawn inputs the module is compared with srl on NumPy float64:

* ``forward``: x̂ = g_θ(z) (docs/math.md §1), and layer by layer through forward hooks on
  the module's submodules that own mapped parameters (``first_mismatch`` names the first
  srl layer whose activation differs);
* ``energy``: the user's ``energy`` (or eq. (1.1) on the module's forward);
* ``grad_z``, ``grad_params``, ``hvp_z``: torch.autograd through the module against srl's
  hand-written reverse pass and Hessian-vector products;
* ``z_K``: the user's own ``chain`` against eq. (2.1) on the same noise;
* ``J_jac`` (eq. 4.1), ``-log w`` (eq. 5.1) and their s-gradients: the autograd oracle of
  ``srl.interop.torch`` run through the module against srl's exact ones.

Tolerances by dtype are in ``srl.interop.crosscheck`` (float64: 1e-10 for one pass, 1e-9
for chains; float32: 4·sqrt(eps32)).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from . import crosscheck as cc
from . import torch as ti

__all__ = ["crosscheck"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class _Adapted(nn.Module):
    """The user's module seen through srl's conventions, for the autograd oracle of
    ``srl.interop.torch``: ``forward(z)`` takes a tuple of ``(n, d_l)`` tensors and returns
    ``(n, *out_shape)``; ``config`` is the srl generator's; ``srl_energy`` (when the user
    gives an energy) returns eq. (1.1) per example, constants included."""

    def __init__(self, inner, gen, forward, energy, energy_constants):
        super().__init__()
        self.inner = inner
        self.config = gen.config
        self._out_shape = tuple(gen.out_shape)
        self._forward = forward
        self._energy = energy
        self._energy_constants = bool(energy_constants)
        self._gen = gen
        self.srl_energy = self._user_energy if energy is not None else None

    def forward(self, z):
        z = tuple(z)
        out = self.inner(*z) if self._forward is None else self._forward(self.inner, z)
        n = z[0].shape[0]
        if not isinstance(out, torch.Tensor):
            raise cc.CrosscheckError(f"the forward returned {type(out).__name__}, expected a tensor x̂ "
                                     f"(n, {', '.join(map(str, self._out_shape))}); pass forward=")
        if out.numel() != n * int(np.prod(self._out_shape)):
            raise cc.CrosscheckError(f"the forward returned shape {tuple(out.shape)}, expected "
                                     f"{(n, *self._out_shape)}; pass forward= returning x̂")
        return out.reshape(n, *self._out_shape)

    def _user_energy(self, x, z, sigma):
        from srl.energy import log_constant

        e = self._energy(self.inner, x, tuple(z), sigma)
        n = x.shape[0]
        if not isinstance(e, torch.Tensor) or tuple(e.shape) != (n,):
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise cc.CrosscheckError(f"energy() must return one value per example, shape ({n},), got {shape}; "
                                     "sum the squared error over pixels, not over the batch")
        return e if self._energy_constants else e + log_constant(self._gen, sigma)


def _hookable(module, names, gen):
    """``{key: user submodule}`` for the probes of ``srl_probes`` the module can offer:
    ``("layer", prefix)`` where one submodule without parameter-owning children owns
    exactly the parameters mapped from that srl layer, and ``("block", head)`` for the
    outermost submodule whose parameters are exactly those of an injection head."""
    modules = dict(module.named_modules())
    leaves: dict = {}
    for s in names:
        leaves.setdefault(s.rsplit(".", 1)[0], []).append(s)
    found = {}
    for prefix, srl_names in leaves.items():
        owners = {names[s].rsplit(".", 1)[0] if "." in names[s] else "" for s in srl_names}
        if len(owners) != 1:
            continue
        owner = owners.pop()
        mod = modules.get(owner)
        if mod is None or any(any(True for _ in c.parameters()) for c in mod.children()):
            continue
        direct = {f"{owner}.{n}" if owner else n for n, _ in mod.named_parameters(recurse=False)}
        if direct == {names[s] for s in srl_names}:
            found[("layer", prefix)] = mod
    heads = sorted({".".join(s.split(".")[:2]) for s in names if s.startswith("inj")})
    for head in heads:
        want = {names[s] for s in names if s.startswith(head + ".")}
        for mname in sorted(modules, key=len):
            have = {f"{mname}.{n}" if mname else n for n, _ in modules[mname].named_parameters()}
            if have == want:
                found[("block", head)] = modules[mname]
                break
    return found


def _observe(adapted, z, hookable):
    """Run the forward once with hooks; ``({probe key: array or None}, x̂)``."""
    seen: dict = {}

    def make_hook(key):
        def hook(mod, args, output):
            seen.setdefault(key, []).append((args[0] if args else None, output))
        return hook

    handles = [mod.register_forward_hook(make_hook(key)) for key, mod in hookable.items()]
    try:
        with torch.no_grad():
            x_hat = adapted(z)
    finally:
        for h in handles:
            h.remove()
    host = lambda t: t.detach().to("cpu", torch.float64).numpy() if isinstance(t, torch.Tensor) else None  # noqa
    observed = {}
    for (kind, name), calls in seen.items():
        if len(calls) != 1:  # called several times: ambiguous, not compared
            continue
        inp, out = calls[0]
        if kind == "layer":
            observed[("in", name)], observed[("out", name)] = host(inp), host(out)
        else:
            observed[("block", name)] = host(out)
    observed[("forward",)] = host(x_hat)
    return observed, host(x_hat)


def _load(module, gen, params, mapping, dtype, keep_buffers):
    """A copy of ``module`` in ``dtype`` holding ``params`` (through ``mapping``); the names."""
    m = copy.deepcopy(module).to(dtype=dtype)
    user = dict(m.named_parameters())
    names = cc.load_names(gen.param_shapes(), {k: tuple(p.shape) for k, p in user.items()}, mapping)
    keep = set(keep_buffers)
    unknown = sorted(keep - {k for k, _ in m.named_buffers()})
    if unknown:
        raise cc.CrosscheckError(f"keep_buffers names buffers the module does not have: {', '.join(unknown)}")
    with torch.no_grad():
        for name, b in m.named_buffers():
            if b.is_floating_point() and name not in keep:
                b.fill_(float("nan"))
        for p in user.values():
            p.fill_(float("nan"))
        for s, u in names.items():
            user[u].copy_(torch.as_tensor(params[s]))
    return m, names


def crosscheck(module, gen, *, forward=None, mapping=None, params=None, chain=None, energy=None,
               energy_constants=False, sigma=0.15, step_size=0.05, n_steps=5, n=3, seed=0, dtype="float64",
               x=None, objectives=("jacobian", "reverse"), keep_buffers=()):
    """Compare a user's PyTorch implementation of an srl generator with srl.

    Parameters
    ----------
    module : the user's ``torch.nn.Module`` (not modified: a copy is checked)
    gen : the srl generator it is meant to equal, e.g. ``srl.models.paper()``
    forward : ``callable(module, z) -> x̂`` with ``z`` a tuple of ``(n, d_l)`` tensors, groups
        top-down (adapt the latent layout here, e.g. ``z_l[:, :, None, None]``); x̂ may have
        any shape holding ``n·prod(out_shape)`` numbers. Default ``module(*z)``.
    mapping : ``{srl_name: module_name}`` or ``callable(srl_name) -> module_name``; default
        identical names (those of ``srl.interop.torch.to_torch``). Unmapped srl parameters,
        module parameters left unloaded, unknown names and shape mismatches are refused,
        all named, with ``CrosscheckError``.
    params : srl parameters (any array library); default ``gen.init(seed=0, dtype="float64")``
    chain : optional ``callable(module, x, z0, noise, step_size, sigma, n_steps) -> z_K``,
        the user's own Langevin loop driven by ``z0`` (tuple like z) and ``noise`` (``K``
        such tuples); ``step_size`` is passed as given. ``z_K``: L tensors with ``n·d_l``
        numbers each, or one ``(n, d)`` tensor. A loop that draws its own noise can be run
        unmodified inside ``srl.interop.torch.prescribed_noise``.
    energy : optional ``callable(module, x, z, sigma) -> (n,)``, the user's per-example
        energy; default eq. (1.1) on the forward. It then drives ∇z, ∇θ, Hv and the objectives.
    energy_constants : whether ``energy`` includes the constant ``(d/2) log 2π +
        (D/2) log(2πσ²)`` of eq. (1.1) (default: it does not, and it is added)
    sigma, step_size, n_steps : σ, s (float or one per group) and K of the comparison
    n, seed : examples, and the seed of every input (srl's ``prior``/``chain_noise``)
    dtype : ``"float64"`` (default) or ``"float32"``, the dtype the module runs in; srl runs
        in float64. Tolerances: see ``srl.interop.crosscheck``.
    x : optional data ``(n, *out_shape)``; default ``g_θ(z') + σ ε``
    objectives : which step-size objectives to compare, ``"jacobian"`` (eq. 4.1; d
        Hessian-vector products per step) and/or ``"reverse"`` (eq. 5.1)
    keep_buffers : names of module buffers to keep (all other floating buffers are NaN)

    Returns
    -------
    ``CrosscheckReport``: ``ok``, ``rows`` (quantity, max_abs_err, max_rel_err, tolerance,
    ok), ``first_mismatch``, ``notes``; ``print(report)`` shows the table.
    """
    dtype = cc.check_dtype(dtype)
    objectives = cc.check_objectives(objectives)
    if not isinstance(module, nn.Module):
        raise cc.CrosscheckError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    host = cc.host_params(gen, params)
    tdtype = _DTYPES[dtype]
    m, names = _load(module, gen, host, mapping, tdtype, keep_buffers)
    device = next(m.parameters()).device
    problem = cc.make_problem(gen, host, n=n, seed=seed, n_steps=n_steps, sigma=sigma, x=x)
    ref = cc.srl_quantities(gen, host, problem, sigma=sigma, step_size=step_size, n_steps=n_steps,
                            objectives=objectives)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=tdtype, device=device)  # noqa: E731
    tz = lambda z: tuple(t(a) for a in z)  # noqa: E731
    host_t = lambda a: a.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    xt, z, v = t(problem["x"]), tz(problem["z"]), tz(problem["v"])
    z0, noise = tz(problem["z0"]), [tz(xi) for xi in problem["noise"]]
    adapted = _Adapted(m, gen, forward, energy, energy_constants)

    rows, notes = [], []
    observed, x_hat = _observe(adapted, z, _hookable(m, names, gen))
    rows.append(cc.row("forward", x_hat, ref["forward"], dtype))
    layer_row, first, layer_notes = cc.localise(cc.srl_probes(gen, host, problem["z"]), observed, dtype)
    if layer_row is not None:
        rows.append(layer_row)
    notes += layer_notes

    e = ti.energy(adapted, xt, z, sigma=sigma).detach()
    rows.append(cc.row("energy", host_t(e), ref["energy"], dtype))
    if not rows[-1].ok:
        notes += cc.energy_hint(gen, host_t(e), ref["energy"], sigma, energy_constants)
    rows.append(cc.row("grad_z", [host_t(g) for g in ti.grad_z(adapted, xt, z, sigma=sigma)], ref["grad_z"], dtype))
    user_params = dict(m.named_parameters())
    order = list(gen.param_shapes())
    grads = torch.autograd.grad(ti.energy(adapted, xt, z, sigma=sigma).sum(), [user_params[names[s]] for s in order],
                                allow_unused=True)
    mine = {s: (host_t(g) if g is not None else np.zeros(gen.param_shapes()[s])) for s, g in zip(order, grads)}
    rows.append(cc.row("grad_params", [mine[s] for s in order], [ref["grad_params"][s] for s in order], dtype))
    if not rows[-1].ok and first is None:
        first = cc.blame_from_grads(ref["grad_params"], mine, order, dtype)
    rows.append(cc.row("hvp_z", [host_t(h) for h in ti.hvp_z(adapted, xt, z, v, sigma=sigma)], ref["hvp_z"], dtype))

    if chain is not None:
        with torch.enable_grad():
            zk = chain(m, xt, z0, noise, step_size, sigma, n_steps)
        zk = cc.latent_groups([host_t(a) for a in zk] if isinstance(zk, (tuple, list)) else host_t(zk),
                              gen, int(n), "chain's z_K")
        rows.append(cc.row("z_K (chain)", zk, ref["z_K"], dtype))
        if not rows[-1].ok:
            notes += cc.chain_hints(gen, host, problem, zk, step_size=step_size, sigma=sigma, dtype=dtype)
    for kind in objectives:
        value, grad = ti.stepsize_objective(adapted, xt, step_size=step_size, z0=z0, noise=noise, sigma=sigma,
                                            kind=kind)
        vname, gname = cc.OBJECTIVES[kind]
        rows.append(cc.row(vname, host_t(value), ref[vname], dtype))
        rows.append(cc.row(gname, host_t(grad), ref[gname], dtype))
    if first is None:
        bad = [r.quantity for r in rows if not r.ok]
        first = ("chain" if bad[0].startswith("z_K") else bad[0]) if bad else None
    title = f"crosscheck: {type(module).__name__} vs srl {gen!r}"
    return cc.CrosscheckReport(rows, first, notes, dtype=dtype, title=title)
