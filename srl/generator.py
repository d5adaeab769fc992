"""The top-down generator g_θ(z) with its hand-written reverse pass (docs/math.md §1).

    h[0] = res0(proj0(z[0]))
    for i = 1 .. L-1:
        u_i  = μ_i(h[i-1]) + exp(v_i(h[i-1]) / 2) ⊙ z[i]
        h[i] = res_i(proj_i(u_i)) + h[i-1]
    x̂ = out(h[L-1])              (out ends with tanh)

Blocks are ``srl.layers`` objects; builders for the three architectures live in
``srl.models``. ``forward`` returns ``(x̂, cache)`` and ``backward(gx̂, cache)`` returns
the VJP for every latent group and, optionally, every parameter.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional


from . import _backend
from .layers import Injection, Layer, ParamSpec, Sequential
from .random import host_rng, standard_normal_groups


class Level(NamedTuple):
    """One latent group: its injection heads (None for the top group), projection, residual."""

    mu: Optional[Sequential]
    v: Optional[Sequential]
    proj: Sequential
    res: Layer


class Generator:
    """A multi-layer latent-variable generator (docs/math.md §1, §7).

    Attributes: ``latent_dims`` (top-down), ``out_shape``, ``config`` (JSON-able dict,
    see docs/models.md), ``d`` (total latent dimension), ``D`` (pixels per image).
    """

    def __init__(self, config: dict, levels: list, out: Sequential):
        self.config = config
        self.latent_dims = tuple(int(d) for d in config["latent_dims"])
        self.out_shape = tuple(int(s) for s in config["out_shape"])
        self.levels = levels
        self.out = out
        self.injection = Injection()
        self.d = sum(self.latent_dims)
        self.D = math.prod(self.out_shape)
        self._specs = self._collect_specs()
        self._shapes = {s.name: tuple(int(v) for v in s.shape) for s in self._specs}

    # ----------------------------------------------------------------- parameters
    def _collect_specs(self):
        specs = []
        for lv in self.levels:
            if lv.mu is not None:
                specs += lv.mu.param_specs() + lv.v.param_specs()
            specs += lv.proj.param_specs() + lv.res.param_specs()
        specs += self.out.param_specs()
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("duplicate parameter names in generator")
        return specs

    def param_specs(self) -> list[ParamSpec]:
        """``(name, shape, fan_in)`` in initialisation order (docs/models.md)."""
        return list(self._specs)

    def param_shapes(self) -> dict:
        """``{name: shape}`` in initialisation order."""
        return self._shapes

    @property
    def n_params(self) -> int:
        return sum(math.prod(s.shape) for s in self._specs)

    def init(self, *, seed=0, backend: str = "numpy", dtype: str = "float64", device=None) -> dict:
        """Parameters ``dict[name, array]``: each drawn U(±1/√fan_in) in float64 from one
        ``numpy.random.default_rng(seed)`` in ``param_specs()`` order, then cast and moved.
        """
        xp, dev = _backend.namespace(backend, device)
        dt = _backend.resolve_dtype(xp, dtype)
        rng = host_rng(seed)
        params = {}
        for spec in self._specs:
            bound = 1.0 / math.sqrt(spec.fan_in)
            host = rng.uniform(-bound, bound, size=spec.shape)
            params[spec.name] = _backend.from_numpy(xp, host, dtype=dt, device=dev)
        return params

    def prior(self, n: int, *, seed=0, backend: str = "numpy", dtype: str = "float64", device=None) -> tuple:
        """``z ~ N(0, I)``: a tuple with one ``(n, d_l)`` array per group, top-down."""
        if int(n) < 1:
            raise ValueError(f"n must be a positive number of samples, got {n}")
        xp, dev = _backend.namespace(backend, device)
        dt = _backend.resolve_dtype(xp, dtype)
        return standard_normal_groups(host_rng(seed), int(n), self.latent_dims, xp=xp, dtype=dt, device=dev)

    # -------------------------------------------------------------------- passes
    def forward_cache(self, xp, params, z):
        """``x̂ (n, *out_shape)`` and the cache for ``backward`` (arrays or jets)."""
        caches = []
        h = None
        for i, lv in enumerate(self.levels):
            if lv.mu is None:
                u, c_inj = z[i], None
            else:
                mu, c_mu = lv.mu.forward(xp, params, h)  # (n, d_i)
                v, c_v = lv.v.forward(xp, params, h)  # (n, d_i)
                u, c_u = self.injection.forward(xp, mu, v, z[i])  # (n, d_i)
                c_inj = (c_mu, c_v, c_u)
            a, c_p = lv.proj.forward(xp, params, u)  # (n, *feature)
            r, c_r = lv.res.forward(xp, params, a)  # (n, *feature)
            h = r if h is None else r + h  # skip connection
            caches.append((c_inj, c_p, c_r))
        x_hat, c_out = self.out.forward(xp, params, h)  # (n, *out_shape)
        return x_hat, (caches, c_out)

    def backward(self, xp, params, g_xhat, cache, grads: Optional[dict] = None, tape: Optional[list] = None):
        """VJP: ``g_xhat (n, *out_shape)`` → tuple of ``(n, d_l)``; fills ``grads`` if given,
        and appends the linearisation ``jvp`` reads to ``tape`` if given (``srl.layers``)."""
        caches, c_out = cache
        gh = self.out.backward(xp, params, g_xhat, c_out, grads, tape)  # (n, *feature)
        gz = [None] * len(self.levels)
        for i in reversed(range(len(self.levels))):
            lv = self.levels[i]
            c_inj, c_p, c_r = caches[i]
            ga = lv.res.backward(xp, params, gh, c_r, grads, tape)  # into proj output
            gu = lv.proj.backward(xp, params, ga, c_p, grads, tape)  # (n, d_i)
            if lv.mu is None:
                gz[i] = gu
            else:
                c_mu, c_v, c_u = c_inj
                gmu, gv, gz[i] = self.injection.backward(xp, gu, c_u, tape)
                # h[i-1] feeds the skip, the μ head and the v head
                gh_mu = lv.mu.backward(xp, params, gmu, c_mu, grads, tape)  # (n, *feature)
                gh = gh + gh_mu + lv.v.backward(xp, params, gv, c_v, grads, tape)
        return tuple(gz)

    # ------------------------------------------------------- tangents (adjoint sweep)
    def jvp(self, xp, params, tz, tape):
        """Tangent of ``x̂`` along ``tz`` (tuple of ``(n, d_l)``) at the point whose ``backward``
        filled ``tape``; returns ``(tx̂ (n, *out_shape), tcache)`` for ``backward_jvp``.

        Reads ``tape`` in forward order, the exact reverse of ``backward``'s traversal (the
        v head before the μ head, because ``backward`` runs μ's before v's)."""
        entries = iter(reversed(tape))
        tcaches = []
        th = None
        for i, lv in enumerate(self.levels):
            if lv.mu is None:
                tu, tc_inj = tz[i], None
            else:
                tv, tc_v = lv.v.jvp(xp, params, th, entries)  # (n, d_i)
                tmu, tc_mu = lv.mu.jvp(xp, params, th, entries)  # (n, d_i)
                tu, tc_u = self.injection.jvp(xp, tmu, tv, tz[i], entries)  # (n, d_i)
                tc_inj = (tc_mu, tc_v, tc_u)
            ta, tc_p = lv.proj.jvp(xp, params, tu, entries)  # (n, *feature)
            tr, tc_r = lv.res.jvp(xp, params, ta, entries)  # (n, *feature)
            th = tr if th is None else tr + th
            tcaches.append((tc_inj, tc_p, tc_r))
        t_xhat, tc_out = self.out.jvp(xp, params, th, entries)  # (n, *out_shape)
        if next(entries, None) is not None:
            raise RuntimeError("generator tangent pass: the tape holds more entries than the layers read")
        return t_xhat, (tcaches, tc_out)

    def backward_jvp(self, xp, params, tg_xhat, tcache):
        """Tangent of ``backward``'s result given the tangent ``tg_xhat`` of its input:
        tuple of ``(n, d_l)`` (mirrors ``backward``)."""
        tcaches, tc_out = tcache
        tgh = self.out.backward_jvp(xp, params, tg_xhat, tc_out)  # (n, *feature)
        tgz = [None] * len(self.levels)
        for i in reversed(range(len(self.levels))):
            lv = self.levels[i]
            tc_inj, tc_p, tc_r = tcaches[i]
            tga = lv.res.backward_jvp(xp, params, tgh, tc_r)
            tgu = lv.proj.backward_jvp(xp, params, tga, tc_p)  # (n, d_i)
            if lv.mu is None:
                tgz[i] = tgu
            else:
                tc_mu, tc_v, tc_u = tc_inj
                tgmu, tgv, tgz[i] = self.injection.backward_jvp(xp, tgu, tc_u)
                tgh = tgh + lv.mu.backward_jvp(xp, params, tgmu, tc_mu) + lv.v.backward_jvp(xp, params, tgv, tc_v)
        return tuple(tgz)

    def forward(self, params, z):
        """``x̂ = g_θ(z)``, shape ``(n, *out_shape)`` (docs/math.md §7)."""
        from .validate import check_params, check_z

        xp = _backend.array_namespace(*z, next(iter(params.values())))
        check_params(self, params)
        check_z(self, z, dtype=next(iter(params.values())).dtype)
        return self.forward_cache(xp, params, z)[0]

    def __repr__(self):
        return (f"Generator(kind={self.config.get('kind')!r}, latent_dims={self.latent_dims}, "
                f"out_shape={self.out_shape}, params={self.n_params})")
