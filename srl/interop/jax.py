"""Cross-check a user's own JAX implementation against srl (``docs/crosscheck.md``).

    from srl.interop.jax import crosscheck
    report = crosscheck(apply_fn, variables, srl.models.paper(), mapping=..., chain=...)

``apply_fn(variables, z) -> x̂`` is the user's pure function (e.g. a Flax module's
``apply``) with its own parameter tree ``variables``; ``z`` is a tuple of ``(n, d_l)``
arrays, top group first. srl's parameters are put into the tree through ``mapping``
(srl name → tree path ``"a/b/c"`` or a tuple of keys, optionally with a transform for
another layout, e.g. ``("dense/kernel", lambda w: w.T)``), and the same quantities as
``srl.interop.torch.crosscheck`` are compared with JAX autodiff on the user's side:
forward, energy (eq. 1.1), ∇z (``jax.grad``), ∇θ (``jax.grad`` through the transforms, so
the gradient comes back in srl's layout), Hessian-vector products (``jax.jvp`` of
``jax.grad``), the user's chain against eq. (2.1), and J_jac (eq. 4.1) and −log w (eq. 5.1)
with their s-gradients by ``jax.grad`` through the chain.

Layer-by-layer localisation reads the jaxpr of ``apply_fn``: for each srl layer the first
operation combining its (transformed) parameters with an activation gives the layer's
input, and the last operation adding more of its parameters (the bias) gives its output.

float64 runs inside ``jax.enable_x64(True)``, a scoped setting: JAX's global configuration
is left as it was. Tolerances by dtype are those of ``srl.interop.crosscheck``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from . import crosscheck as cc

__all__ = ["crosscheck"]

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------- tree
def _key(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def path_str(path) -> str:
    """A tree path as ``"a/b/0/c"`` (dict keys, sequence indices and attribute names)."""
    return "/".join(_key(k) for k in path)


def _is_param(leaf) -> bool:
    return hasattr(leaf, "dtype") and hasattr(leaf, "shape") and jnp.issubdtype(leaf.dtype, jnp.floating)


def _resolve(mapping, srl_names):
    """``({srl_name: path or None}, {srl_name: transform or None})``."""
    if mapping is None:
        get = lambda s: s  # noqa: E731
    elif callable(mapping):
        get = mapping
    elif hasattr(mapping, "get"):
        stray = sorted(set(map(str, mapping)) - set(srl_names))
        if stray:
            raise cc.CrosscheckError(f"mapping names parameters srl's generator does not have: {', '.join(stray)}")
        get = mapping.get
    else:
        raise cc.CrosscheckError(f"mapping must be a dict or a callable srl_name -> path, got {type(mapping).__name__}")
    paths, transforms = {}, {}
    for s in srl_names:
        target, fn = get(s), None
        if isinstance(target, tuple) and len(target) == 2 and callable(target[1]):
            target, fn = target
        if isinstance(target, (tuple, list)):
            target = "/".join(map(str, target))
        paths[s], transforms[s] = target, fn
    return paths, transforms


# ----------------------------------------------------------------- autodiff quantities
def _split(zf, dims):
    return tuple(jnp.split(zf, np.cumsum(dims)[:-1].tolist(), axis=1))


def _log_normal(zf):
    return -0.5 * jnp.sum(zf * zf, axis=1) - 0.5 * zf.shape[1] * _LOG_2PI


def _objective(energy, x, s, z0, noise, dims, kind):
    """Per-example J_jac (eq. 4.1) or −log w (eq. 5.1) as a function of the (L,) step sizes
    ``s``: the chain of eq. (2.1) on flat latents (n, d); differentiable in ``s``. Run
    eagerly: compiling the unrolled third-order program costs far more than running it once."""
    sc = jnp.concatenate([jnp.broadcast_to(s[l], (d,)) for l, d in enumerate(dims)])  # (d,)
    a = 0.5 * sc * sc  # A = diag(s²/2)
    e_flat = lambda zf: energy(x, _split(zf, dims))  # noqa: E731  (n, d) -> (n,)
    grad = jax.grad(lambda zf: jnp.sum(e_flat(zf)))  # (n, d) -> (n, d), per example
    z = jnp.concatenate(z0, axis=1)  # (n, d)
    d = z.shape[1]
    eye = jnp.eye(d, dtype=z.dtype)

    def hessian(zf):
        """Per-example Hessian (n, d, d) from d batched HVPs (examples are independent)."""
        cols = jax.vmap(lambda e: jax.jvp(grad, (zf,), (jnp.broadcast_to(e, zf.shape),))[1])(eye)  # (d, n, d)
        return jnp.transpose(cols, (1, 2, 0))  # H[i, :, j] = ∂g/∂z_j

    g, val = grad(z), _log_normal(z)
    for xi in noise:
        xi = jnp.concatenate(xi, axis=1)  # (n, d)
        if kind == "jacobian":
            val = val - jnp.linalg.slogdet(eye - a[:, None] * hessian(z))[1]  # log|det(I − A H_k)|
        z_next = z - a * g + sc * xi  # eq. (2.1)
        g_next = grad(z_next)
        if kind == "reverse":
            r = xi - 0.5 * sc * (g + g_next)  # r_k of eq. (5.1)
            val = val - (0.5 * jnp.sum(xi * xi, axis=1) - 0.5 * jnp.sum(r * r, axis=1))
        z, g = z_next, g_next
    return val + e_flat(z)


# ----------------------------------------------------------------------- localisation
_CALLS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _sub_jaxpr(eqn):
    for key in _CALLS:
        sub = eqn.params.get(key)
        if sub is not None and hasattr(sub, "jaxpr") and hasattr(sub, "consts"):
            return sub
    return None


def _observe(apply_fn, variables, z, layer_of_path):
    """Evaluate ``apply_fn`` through its jaxpr; ``({probe key: array}, x̂)``.

    Tags follow each value: ``("pure", P)`` computed from srl layer P's parameters alone,
    ``("chain", P)`` the result of combining them with an activation, ``"const"``, or
    ``None`` (an activation). The first combination gives P's input, the last its output.
    """
    flat, treedef = tree_util.tree_flatten_with_path(variables)
    traced = [k for k, (_, leaf) in enumerate(flat) if _is_param(leaf)]  # other leaves stay static

    def with_leaves(lv, zz):
        leaves = [leaf for _, leaf in flat]
        for k, a in zip(traced, lv):
            leaves[k] = a
        return apply_fn(tree_util.tree_unflatten(treedef, leaves), zz)

    leaves = [flat[k][1] for k in traced]
    closed = jax.make_jaxpr(with_leaves)(leaves, tuple(z))
    tags_in = [("pure", layer_of_path[path_str(flat[k][0])]) if path_str(flat[k][0]) in layer_of_path else "const"
               for k in traced]
    tags_in += [None] * len(z)
    inputs: dict = {}
    outputs: dict = {}
    ambiguous: set = set()

    def combine(tags):
        pure = {t[1] for t in tags if isinstance(t, tuple) and t[0] == "pure"}
        chain = {t[1] for t in tags if isinstance(t, tuple) and t[0] == "chain"}
        act = any(t is None for t in tags) or len(chain) > 1 or (chain and pure != chain)
        return pure, chain, act

    def run(jaxpr, consts, args, tags):
        env, tag = {}, {}
        for v, c in zip(jaxpr.constvars, consts):
            env[v], tag[v] = c, "const"
        for v, a, t in zip(jaxpr.invars, args, tags):
            env[v], tag[v] = a, t
        read = lambda v: v.val if hasattr(v, "val") else env[v]  # noqa: E731  Literal or Var
        read_tag = lambda v: "const" if hasattr(v, "val") else tag[v]  # noqa: E731
        for eqn in jaxpr.eqns:
            vals = [read(v) for v in eqn.invars]
            tin = [read_tag(v) for v in eqn.invars]
            sub = _sub_jaxpr(eqn)
            if sub is not None:
                outs, touts = run(sub.jaxpr, sub.consts, vals, tin)
            else:
                outs = eqn.primitive.bind(*vals, **eqn.params)
                outs = outs if eqn.primitive.multiple_results else [outs]
                pure, chain, act = combine(tin)
                if all(t == "const" for t in tin):
                    t_out = "const"
                elif len(pure) == 1 and not act and not chain:
                    t_out = ("pure", next(iter(pure)))
                elif len(pure) == 1 and (act or chain) and len(outs) == 1:
                    P = next(iter(pure))
                    if chain == {P}:  # e.g. the bias added to the layer's product
                        t_out = ("chain", P)
                    else:  # first product of the layer's parameters with an activation
                        act_in = [a for a, t in zip(vals, tin) if t is None or (isinstance(t, tuple) and t[0] == "chain")]
                        if P in inputs or len(act_in) != 1:
                            ambiguous.add(P)
                        inputs.setdefault(P, act_in[0] if act_in else None)
                        t_out = ("chain", P)
                    outputs[P] = outs[0]
                else:
                    t_out = None
                touts = [t_out] * len(outs)
            for v, o, t in zip(eqn.outvars, outs, touts):
                env[v], tag[v] = o, t
        return [read(v) for v in jaxpr.outvars], [read_tag(v) for v in jaxpr.outvars]

    outs, _ = run(closed.jaxpr, closed.consts, leaves + list(z), tags_in)
    host = lambda a: None if a is None else np.asarray(a, dtype=np.float64)  # noqa: E731
    observed = {}
    for P in inputs:
        if P not in ambiguous:
            observed[("in", P)], observed[("out", P)] = host(inputs[P]), host(outputs[P])
    x_hat = host(outs[0])
    observed[("forward",)] = x_hat
    return observed, x_hat


# ------------------------------------------------------------------------ the check
def crosscheck(apply_fn, variables, gen, *, mapping=None, params=None, chain=None, energy=None,
               energy_constants=False, sigma=0.15, step_size=0.05, n_steps=5, n=3, seed=0, dtype="float64",
               x=None, objectives=("jacobian", "reverse")):
    """Compare a user's JAX implementation of an srl generator with srl.

    Parameters
    ----------
    apply_fn : ``apply_fn(variables, z) -> x̂``, pure; ``z`` a tuple of ``(n, d_l)`` arrays,
        top group first (adapt the latent layout inside); x̂ holds ``n·prod(out_shape)``
        numbers
    variables : the user's parameter tree (nested dicts, lists, tuples, ...)
    gen : the srl generator it is meant to equal
    mapping : ``{srl_name: path}`` or ``callable(srl_name) -> path``, a path being ``"a/b/c"``
        or a tuple of keys, or ``(path, transform)`` where ``transform`` takes srl's array
        (PyTorch layout, docs/models.md) to the user's (e.g. ``lambda w: w.T`` for a
        ``(in, out)`` Dense kernel); default: the tree is a flat dict with srl's names.
        Unmapped srl parameters, floating leaves left unloaded, unknown paths and shape
        mismatches are refused, all named, with ``CrosscheckError``.
    params : srl parameters; default ``gen.init(seed=0, dtype="float64")``
    chain : optional ``callable(apply_fn, variables, x, z0, noise, step_size, sigma, n_steps)
        -> z_K`` (L arrays of ``n·d_l`` numbers, or one ``(n, d)`` array): the user's chain
        driven by ``z0`` (tuple like z) and ``noise`` (K such tuples)
    energy : optional ``callable(variables, x, z, sigma) -> (n,)``; default eq. (1.1) on
        ``apply_fn``. ``energy_constants``: whether it includes eq. (1.1)'s constant.
    sigma, step_size, n_steps, n, seed, x, objectives : as ``srl.interop.torch.crosscheck``
    dtype : ``"float64"`` (run inside ``jax.enable_x64(True)``) or ``"float32"``

    Returns
    -------
    ``CrosscheckReport`` (``ok``, ``rows``, ``first_mismatch``, ``notes``).
    """
    dtype = cc.check_dtype(dtype)
    objectives = cc.check_objectives(objectives)
    if not callable(apply_fn):
        raise cc.CrosscheckError(f"apply_fn must be callable (variables, z) -> x̂, got {type(apply_fn).__name__}")
    host = cc.host_params(gen, params)
    with jax.enable_x64(dtype == "float64"):
        return _crosscheck(apply_fn, variables, gen, host, mapping=mapping, chain=chain, energy=energy,
                           energy_constants=energy_constants, sigma=float(sigma), step_size=step_size,
                           n_steps=int(n_steps), n=int(n), seed=seed, dtype=dtype, x=x, objectives=objectives)


def _crosscheck(apply_fn, variables, gen, host, *, mapping, chain, energy, energy_constants, sigma, step_size,
                n_steps, n, seed, dtype, x, objectives):
    from srl.energy import log_constant
    from srl.validate import check_step_size

    jdt = jnp.float64 if dtype == "float64" else jnp.float32
    flat, treedef = tree_util.tree_flatten_with_path(variables)
    user = {path_str(p): leaf for p, leaf in flat if _is_param(leaf)}
    order = list(gen.param_shapes())
    paths, transforms = _resolve(mapping, order)
    ident = lambda a: a  # noqa: E731
    fns = {s: transforms[s] or ident for s in order}
    srl_arrays = {s: jnp.asarray(host[s], dtype=jdt) for s in order}
    shapes = {s: tuple(jax.eval_shape(fns[s], srl_arrays[s]).shape) for s in order}
    names = cc.load_names(shapes, {k: tuple(v.shape) for k, v in user.items()}, paths, what="tree leaf")
    slot = {u: s for s, u in names.items()}

    def assemble(arrays):
        """The user's tree holding ``arrays`` (srl names and layout) in the mapped leaves."""
        leaves = [fns[slot[path_str(p)]](arrays[slot[path_str(p)]]).astype(jdt) if path_str(p) in slot else leaf
                  for p, leaf in flat]
        return tree_util.tree_unflatten(treedef, leaves)

    loaded = assemble(srl_arrays)
    problem = cc.make_problem(gen, host, n=n, seed=seed, n_steps=n_steps, sigma=sigma, x=x)
    ref = cc.srl_quantities(gen, host, problem, sigma=sigma, step_size=step_size, n_steps=n_steps,
                            objectives=objectives)
    j = lambda a: jnp.asarray(np.asarray(a), dtype=jdt)  # noqa: E731
    jz = lambda z: tuple(j(a) for a in z)  # noqa: E731
    xj, z, v = j(problem["x"]), jz(problem["z"]), jz(problem["v"])
    z0, noise = jz(problem["z0"]), [jz(xi) for xi in problem["noise"]]
    const = log_constant(gen, sigma)

    def forward(variables_, zz):
        out = apply_fn(variables_, zz)
        if not hasattr(out, "shape") or math.prod(out.shape) != n * gen.D:
            raise cc.CrosscheckError(f"apply_fn returned {getattr(out, 'shape', type(out).__name__)}, expected x̂ "
                                     f"{(n, *gen.out_shape)}")
        return jnp.reshape(out, (zz[0].shape[0], *gen.out_shape))

    def energy_of(variables_):
        def e(xx, zz):  # (n,)
            if energy is not None:
                val = energy(variables_, xx, zz, sigma)
                if not hasattr(val, "shape") or tuple(val.shape) != (xx.shape[0],):
                    raise cc.CrosscheckError(f"energy() must return one value per example, shape ({xx.shape[0]},), "
                                             f"got {getattr(val, 'shape', type(val).__name__)}")
                return val if energy_constants else val + const
            resid = jnp.reshape(xx - forward(variables_, zz), (xx.shape[0], -1))
            return (sum(0.5 * jnp.sum(zl * zl, axis=1) for zl in zz) + jnp.sum(resid * resid, axis=1) / (2 * sigma ** 2)
                    + const)
        return e

    E = energy_of(loaded)
    rows, notes = [], []
    layer_of_path = {names[s]: s.rsplit(".", 1)[0] for s in order}
    observed, x_hat = _observe(lambda vv, zz: forward(vv, zz), loaded, z, layer_of_path)
    rows.append(cc.row("forward", x_hat, ref["forward"], dtype))
    layer_row, first, layer_notes = cc.localise(cc.srl_probes(gen, host, problem["z"]), observed, dtype)
    if layer_row is not None:
        rows.append(layer_row)
    notes += layer_notes

    e = np.asarray(E(xj, z), dtype=np.float64)
    rows.append(cc.row("energy", e, ref["energy"], dtype))
    if not rows[-1].ok:
        notes += cc.energy_hint(gen, e, ref["energy"], sigma, energy_constants)
    grad_z = jax.grad(lambda zz: jnp.sum(E(xj, zz)))
    rows.append(cc.row("grad_z", [np.asarray(g) for g in grad_z(z)], ref["grad_z"], dtype))
    gp = jax.grad(lambda arrays: jnp.sum(energy_of(assemble(arrays))(xj, z)))(srl_arrays)
    mine = {s: np.asarray(gp[s], dtype=np.float64) for s in order}
    rows.append(cc.row("grad_params", [mine[s] for s in order], [ref["grad_params"][s] for s in order], dtype))
    if not rows[-1].ok and first is None:
        first = cc.blame_from_grads(ref["grad_params"], mine, order, dtype)
    hv = jax.jvp(grad_z, (z,), (v,))[1]
    rows.append(cc.row("hvp_z", [np.asarray(h) for h in hv], ref["hvp_z"], dtype))

    if chain is not None:
        zk = chain(apply_fn, loaded, xj, z0, noise, step_size, sigma, n_steps)
        zk = cc.latent_groups([np.asarray(a) for a in zk] if isinstance(zk, (tuple, list)) else np.asarray(zk),
                              gen, n, "chain's z_K")
        rows.append(cc.row("z_K (chain)", zk, ref["z_K"], dtype))
        if not rows[-1].ok:
            notes += cc.chain_hints(gen, host, problem, zk, step_size=step_size, sigma=sigma, dtype=dtype)
    s = jnp.asarray(check_step_size(step_size, len(gen.latent_dims)), dtype=jdt)
    for kind in objectives:
        def value_and_grad(ss, kind=kind):
            values, pullback = jax.vjp(lambda s_: _objective(E, xj, s_, z0, noise, gen.latent_dims, kind), ss)
            return values, pullback(jnp.ones_like(values))[0]  # d values.sum() / ds

        values, grad = value_and_grad(s)
        vname, gname = cc.OBJECTIVES[kind]
        rows.append(cc.row(vname, np.asarray(values), ref[vname], dtype))
        rows.append(cc.row(gname, np.asarray(grad), ref[gname], dtype))
    if first is None:
        bad = [r.quantity for r in rows if not r.ok]
        first = ("chain" if bad[0].startswith("z_K") else bad[0]) if bad else None
    name = getattr(apply_fn, "__qualname__", type(apply_fn).__name__)
    return cc.CrosscheckReport(rows, first, notes, dtype=dtype, title=f"crosscheck: {name} (JAX) vs srl {gen!r}")
