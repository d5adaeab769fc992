"""Plain-PyTorch export of the srl generators, and a torch.autograd oracle.

Two jobs (see ``docs/models.md`` and ``docs/math.md``):

1. **Export.**  :class:`TorchGenerator` is an ordinary ``torch.nn.Module`` that computes
   the generator ``g_θ(z)`` of docs/math.md §1 for any config of ``docs/models.md``.  Its
   ``state_dict()`` keys and shapes are exactly the parameter names and PyTorch layouts of
   that document, so ``to_torch(gen, params)`` loads an srl parameter dictionary and
   :func:`state_dict_to_numpy` brings a trained module's weights back.

2. **Oracle.**  The functions :func:`energy`, :func:`grad_z`, :func:`grad_params`,
   :func:`hvp_z`, :func:`hessian_z`, :func:`short_run`, :func:`stepsize_objective` and
   :func:`iw_reverse_objective` implement docs/math.md §1, §2, §4 and §5 using nothing but
   ``torch.autograd`` (reverse mode, double and triple backward through
   ``create_graph=True``).  The srl core never uses autograd, so these are an
   *independent* implementation: tests, ``srl check`` and the benchmarks compare against
   them ("a plain PyTorch autograd implementation of the same model").

3. **Cross-check.**  :func:`crosscheck` compares a user's own module (any parameter
   names, latent layout and Langevin loop) with srl, and :func:`prescribed_noise` drives
   a loop that draws its own noise with ``torch.randn`` (``docs/crosscheck.md``).  Both
   live in their own modules and are imported on first use.

Apart from those two, this module imports nothing from the rest of ``srl``; it stands
alone on ``torch`` and ``numpy``.

Conventions used throughout the oracle:

* ``z`` is a tuple of ``L`` tensors ``(n, d_l)``, groups top-down (``z[0]`` is the top
  group z_L of docs/math.md §1).  Internally the chain works on the concatenation
  ``(n, d)`` with ``d = Σ d_l`` in that order.
* ``x`` has shape ``(n, *out_shape)``.
* ``step_size`` is a float (one value shared by all groups) or one value per group;
  ``A = diag(s²/2)`` with every coordinate of group ``l`` using ``s_l`` (docs/math.md §2).
* Noise is always explicit: ``z0`` is a tuple like ``z`` and ``noise`` a list of ``K``
  such tuples (ξ_0 .. ξ_{K-1}).  Nothing here draws random numbers.
* Inputs (``x``, ``z``, noise, numpy arrays included) are converted to the dtype and
  device of the module's parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TorchGenerator",
    "to_torch",
    "from_torch",
    "state_dict_to_numpy",
    "param_shapes",
    "energy",
    "grad_z",
    "grad_params",
    "hvp_z",
    "hessian_z",
    "short_run",
    "stepsize_objective",
    "iw_reverse_objective",
    "crosscheck",
    "prescribed_noise",
]


def __getattr__(name):
    """``crosscheck`` and ``prescribed_noise``, imported on first use (PEP 562)."""
    if name == "crosscheck":
        from .crosscheck_torch import crosscheck

        return crosscheck
    if name == "prescribed_noise":
        from .torch_noise import prescribed_noise

        return prescribed_noise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_LOG_2PI = math.log(2.0 * math.pi)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, ``x Φ(x)`` (erf form; docs/models.md "Layers")."""
    return F.gelu(x, approximate="none")


# --------------------------------------------------------------------------------------
# Blocks (docs/models.md, "Generator").  Attribute names ARE the parameter names.
# --------------------------------------------------------------------------------------


class _DenseResidual(nn.Module):
    """``Residual(Dense(H→H) → GELU → Dense(H→H) → GELU)``: ``y = body(x) + x``."""

    def __init__(self, width: int):
        super().__init__()
        self.dense1 = nn.Linear(width, width)
        self.dense2 = nn.Linear(width, width)

    def forward(self, h):
        return _gelu(self.dense2(_gelu(self.dense1(h)))) + h


class _ConvResidual(nn.Module):
    """``Residual(Conv2d(c→c,k1,"same") → GELU → Conv2d(c→c,k2,"same") → GELU)``."""

    def __init__(self, channels: int, k1: int, k2: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, k1, padding=(k1 - 1) // 2)
        self.conv2 = nn.Conv2d(channels, channels, k2, padding=(k2 - 1) // 2)

    def forward(self, h):
        return _gelu(self.conv2(_gelu(self.conv1(h)))) + h


class _DenseProj(nn.Module):
    """mlp ``proj{i}``: ``Dense(d_i → H) → GELU``."""

    def __init__(self, d: int, width: int):
        super().__init__()
        self.dense = nn.Linear(d, width)

    def forward(self, u):
        return _gelu(self.dense(u))


class _ConvProj(nn.Module):
    """conv ``proj{i}``: ``Dense(d_i → q·Gh·Gw) → GELU → reshape (q,Gh,Gw) →
    ConvTranspose2d(q → c, kp, stride 1, pad (kp−1)/2, no bias) → GELU``."""

    def __init__(self, d: int, q: int, grid: tuple[int, int], channels: int, kp: int):
        super().__init__()
        self.q, self.grid = q, grid
        self.dense = nn.Linear(d, q * grid[0] * grid[1])
        self.convt = nn.ConvTranspose2d(q, channels, kp, stride=1, padding=(kp - 1) // 2, bias=False)

    def forward(self, u):
        y = _gelu(self.dense(u)).reshape(u.shape[0], self.q, *self.grid)
        return _gelu(self.convt(y))


class _DenseHead(nn.Module):
    """mlp ``inj{i}.mu`` / ``inj{i}.v``: ``Dense(H → H) → GELU → Dense(H → d_i)``."""

    def __init__(self, width: int, d: int):
        super().__init__()
        self.dense1 = nn.Linear(width, width)
        self.dense2 = nn.Linear(width, d)

    def forward(self, h):
        return self.dense2(_gelu(self.dense1(h)))


class _ConvHead(nn.Module):
    """conv ``inj{i}.mu`` / ``inj{i}.v``: ``Conv2d(c → d_i, ki, pad 0) → GELU → flatten →
    Dense(d_i·G'h·G'w → d_i)``."""

    def __init__(self, channels: int, d: int, ki: int, grid_out: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(channels, d, ki, padding=0)
        self.dense = nn.Linear(d * grid_out[0] * grid_out[1], d)

    def forward(self, h):
        return self.dense(_gelu(self.conv(h)).flatten(1))


class _Injection(nn.Module):
    """Stochastic injection (docs/math.md §1): ``u = μ + exp(v/2) ⊙ z`` with
    ``v = clamp(softplus(v_raw) + 1e-8, 0, 10)``."""

    def __init__(self, make_head):
        super().__init__()
        self.mu = make_head()
        self.v = make_head()

    def forward(self, h, z):
        mu = self.mu(h)
        v = torch.clamp(F.softplus(self.v(h)) + 1e-8, 0.0, 10.0)
        return mu + torch.exp(0.5 * v) * z


class _DenseOut(nn.Module):
    """mlp ``out``: ``Residual(dense) → Dense(H → D) → reshape out_shape → Tanh``."""

    def __init__(self, width: int, out_shape: tuple[int, ...]):
        super().__init__()
        self.out_shape = out_shape
        self.res = _DenseResidual(width)
        self.dense = nn.Linear(width, math.prod(out_shape))

    def forward(self, h):
        return torch.tanh(self.dense(self.res(h)).reshape(h.shape[0], *self.out_shape))


class _ConvOut(nn.Module):
    """conv ``out``: ``Residual(as res) → ConvTranspose2d(c → C, 4, stride 2, pad 1, bias)
    → Tanh``."""

    def __init__(self, channels: int, k1: int, k2: int, out_channels: int):
        super().__init__()
        self.res = _ConvResidual(channels, k1, k2)
        self.convt = nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1, bias=True)

    def forward(self, h):
        return torch.tanh(self.convt(self.res(h)))


def _normalize_config(config: Mapping) -> dict:
    """Validate a docs/models.md config and return a plain-dict copy (lists, not tuples)."""
    cfg = dict(config)
    kind = cfg.get("kind")
    if kind not in ("mlp", "conv"):
        raise ValueError(f"config['kind'] must be 'mlp' or 'conv', got {kind!r}")
    cfg["latent_dims"] = [int(d) for d in cfg["latent_dims"]]
    cfg["out_shape"] = [int(s) for s in cfg["out_shape"]]
    if not cfg["latent_dims"] or min(cfg["latent_dims"]) < 1:
        raise ValueError("latent_dims must be a non-empty list of positive ints")
    if kind == "mlp":
        cfg["hidden"] = int(cfg["hidden"])
    else:
        if len(cfg["out_shape"]) != 3:
            raise ValueError("conv out_shape must be (C, H, W)")
        _, hh, ww = cfg["out_shape"]
        if hh % 2 or ww % 2:
            raise ValueError("conv out_shape H and W must be even (grid is (H/2, W/2))")
        for key in ("channels", "proj_channels", "proj_kernel", "inj_kernel"):
            cfg[key] = int(cfg[key])
        cfg["res_kernels"] = [int(k) for k in cfg["res_kernels"]]
        for k in (cfg["proj_kernel"], *cfg["res_kernels"]):
            if k % 2 != 1:
                raise ValueError(f"'same' kernels must be odd, got {k}")
        if cfg["inj_kernel"] > min(hh, ww) // 2:
            raise ValueError("inj_kernel larger than the (H/2, W/2) grid")
    return cfg


class TorchGenerator(nn.Module):
    """The generator ``g_θ(z)`` of docs/math.md §1 as a plain ``torch.nn.Module``.

    ``TorchGenerator(config)`` builds exactly the architecture of ``docs/models.md`` for
    ``config["kind"]`` in ``{"mlp", "conv"}`` (the paper model is a "conv" config).
    ``state_dict()`` keys are the documented parameter names, in the documented
    evaluation order, with PyTorch layouts.

    Parameters start with torch's default initialisation, or, with ``seed=s``, with the
    documented srl initialisation (``docs/models.md`` "Parameter order and
    initialisation": every parameter in order from one ``numpy.random.default_rng(s)``
    as ``uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))`` in float64, then cast to ``dtype``).
    ``dtype`` / ``device`` (optional) are applied before that initialisation.

    ``forward(*z)`` (or ``forward(z)`` with a tuple/list) returns ``x̂`` of shape
    ``(n, *out_shape)``:

    .. code-block:: text

        h[0] = res0(proj0(z[0]))
        h[i] = res{i}(proj{i}(μ_i + exp(v_i/2) ⊙ z[i])) + h[i-1]     i = 1 .. L-1
        x̂   = tanh(out(h[L-1]))
    """

    def __init__(self, config: Mapping, *, seed: int | None = None, dtype=None, device=None):
        super().__init__()
        cfg = _normalize_config(config)
        self.config = cfg
        self.latent_dims = tuple(cfg["latent_dims"])
        self.out_shape = tuple(cfg["out_shape"])
        L = len(self.latent_dims)
        # Registration order = docs/models.md evaluation order (inj{i} then proj{i} then
        # res{i}, finally out), so state_dict() lists parameters in param_specs() order.
        if cfg["kind"] == "mlp":
            H = cfg["hidden"]
            for i, d in enumerate(self.latent_dims):
                if i >= 1:
                    self.add_module(f"inj{i}", _Injection(lambda d=d: _DenseHead(H, d)))
                self.add_module(f"proj{i}", _DenseProj(d, H))
                self.add_module(f"res{i}", _DenseResidual(H))
            self.out = _DenseOut(H, self.out_shape)
        else:
            C, hh, ww = self.out_shape
            c, q = cfg["channels"], cfg["proj_channels"]
            kp, (k1, k2), ki = cfg["proj_kernel"], cfg["res_kernels"], cfg["inj_kernel"]
            grid = (hh // 2, ww // 2)
            grid_out = (grid[0] - ki + 1, grid[1] - ki + 1)
            for i, d in enumerate(self.latent_dims):
                if i >= 1:
                    self.add_module(f"inj{i}", _Injection(lambda d=d: _ConvHead(c, d, ki, grid_out)))
                self.add_module(f"proj{i}", _ConvProj(d, q, grid, c, kp))
                self.add_module(f"res{i}", _ConvResidual(c, k1, k2))
            self.out = _ConvOut(c, k1, k2, C)
        self._L = L
        if dtype is not None or device is not None:
            self.to(dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype, device=device)
        if seed is not None:
            self.reset_parameters_srl(seed)

    @torch.no_grad()
    def reset_parameters_srl(self, seed: int) -> None:
        """Re-initialise as ``gen.init(seed)`` is documented to (docs/models.md): in
        evaluation order, weight then bias, ``rng.uniform(-b, b, shape)`` in float64 with
        ``b = 1/sqrt(fan_in)``; ``fan_in`` = ``weight.size(1)·k·k`` as in PyTorch's own
        default: in (Linear), cin·k·k (Conv2d), cout·k·k (ConvTranspose2d); the bias shares
        its layer's fan_in."""
        rng = np.random.default_rng(seed)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                fan_in = layer.in_features
            elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                k = layer.kernel_size
                fan_in = layer.weight.shape[1] * k[0] * k[1]
            else:
                continue
            b = 1.0 / math.sqrt(fan_in)
            for p in (layer.weight, layer.bias):
                if p is not None:
                    draw = rng.uniform(-b, b, size=tuple(p.shape))
                    p.copy_(torch.as_tensor(draw, dtype=torch.float64).to(p.dtype))

    def forward(self, *z):
        if len(z) == 1 and isinstance(z[0], (tuple, list)):
            z = tuple(z[0])
        if len(z) != self._L:
            raise ValueError(f"expected {self._L} latent groups, got {len(z)}")
        h = getattr(self, "res0")(getattr(self, "proj0")(z[0]))
        for i in range(1, self._L):
            u = getattr(self, f"inj{i}")(h, z[i])
            h = getattr(self, f"res{i}")(getattr(self, f"proj{i}")(u)) + h
        return self.out(h)

    def extra_repr(self) -> str:
        return f"config={self.config!r}"


def param_shapes(config: Mapping) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the parameters of ``config`` in evaluation order (built with
    a meta-device module, no memory allocated)."""
    with torch.device("meta"):
        module = TorchGenerator(config)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------


def _to_tensor(a) -> torch.Tensor:
    """Any array (numpy, torch, array_api_strict, cupy, ...) -> torch tensor (a copy is
    taken later by ``load_state_dict``)."""
    if isinstance(a, torch.Tensor):
        return a.detach()
    if isinstance(a, (np.ndarray, np.generic, float, int, list, tuple)):
        return torch.as_tensor(np.asarray(a))
    if hasattr(a, "__dlpack__"):
        try:
            return torch.from_dlpack(a)
        except Exception:  # e.g. a CUDA array while torch is CPU-only
            pass
    if hasattr(a, "get"):  # cupy: explicit device -> host copy
        return torch.as_tensor(np.asarray(a.get()))
    return torch.as_tensor(np.asarray(a))


def to_torch(config_or_gen, params: Mapping, *, dtype=None, device=None) -> TorchGenerator:
    """Build a :class:`TorchGenerator` and load ``params`` into it.

    ``config_or_gen`` is a docs/models.md config dict or any object with a ``.config``
    attribute (an srl generator).  ``params`` maps the documented names to arrays of any
    library; they are converted with DLPack or ``numpy.asarray``.  ``dtype`` defaults to
    the parameters' dtype (they must agree), ``device`` to the parameters' device (CPU for
    non-torch arrays).  Missing, unexpected or mis-shaped names raise.
    """
    config = config_or_gen.config if hasattr(config_or_gen, "config") else config_or_gen
    tensors = {str(k): _to_tensor(v) for k, v in params.items()}
    if dtype is None:
        dtypes = {t.dtype for t in tensors.values()}
        if len(dtypes) != 1:
            raise ValueError(f"params have mixed dtypes {dtypes}; pass dtype=")
        dtype = dtypes.pop()
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if device is None:
        devices = {t.device for t in tensors.values()}
        device = devices.pop() if len(devices) == 1 else torch.device("cpu")
    module = TorchGenerator(config).to(dtype=dtype, device=device)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise KeyError(f"parameter names do not match the config: missing {missing}, unexpected {unexpected}")
    for k, t in tensors.items():
        if tuple(t.shape) != tuple(expected[k].shape):
            raise ValueError(f"{k}: shape {tuple(t.shape)} != expected {tuple(expected[k].shape)}")
    module.load_state_dict({k: t.to(dtype=dtype, device=device) for k, t in tensors.items()}, strict=True)
    return module


def state_dict_to_numpy(module_or_state_dict) -> dict[str, np.ndarray]:
    """``{name: float64 numpy copy}`` of a :class:`TorchGenerator` (or its state dict),
    with the docs/models.md names."""
    sd = module_or_state_dict.state_dict() if isinstance(module_or_state_dict, nn.Module) else module_or_state_dict
    return {k: np.array(v.detach().to("cpu", torch.float64).numpy(), dtype=np.float64, copy=True) for k, v in sd.items()}


def from_torch(module_or_state_dict, config=None, *, backend: str = "numpy", dtype=None, device=None):
    """Load a :class:`TorchGenerator` (or a state dict plus its ``config``) back into srl.

    Returns ``(gen, params)`` with ``gen = srl.models.from_config(config)`` and ``params``
    arrays of ``backend`` (default NumPy), in the module's dtype unless ``dtype`` is given.
    The values are copied exactly (no rounding when the dtype is kept).
    """
    from srl import _backend
    from srl import models as srl_models

    if isinstance(module_or_state_dict, nn.Module):
        config = module_or_state_dict.config if config is None else config
        sd = module_or_state_dict.state_dict()
    else:
        sd = module_or_state_dict
        if config is None:
            raise ValueError("from_torch(state_dict) needs the generator config (docs/models.md)")
    gen = srl_models.from_config(config)
    if dtype is None:
        dtypes = {str(v.dtype).replace("torch.", "") for v in sd.values()}
        if len(dtypes) != 1:
            raise ValueError(f"state dict mixes dtypes {sorted(dtypes)}; pass dtype=")
        dtype = dtypes.pop()
    xp, dev = _backend.namespace(backend, device)
    dt = _backend.resolve_dtype(xp, dtype)
    expected = {s.name: tuple(s.shape) for s in gen.param_specs()}
    if set(sd) != set(expected):
        raise KeyError(f"state dict names do not match the config: missing {sorted(set(expected) - set(sd))}, "
                       f"unexpected {sorted(set(sd) - set(expected))}")
    params = {}
    for spec in gen.param_specs():  # documented order
        host = sd[spec.name].detach().to("cpu").numpy()
        params[spec.name] = _backend.from_numpy(xp, host, dtype=dt, device=dev)
    return gen, params


# --------------------------------------------------------------------------------------
# Autograd oracle: helpers
# --------------------------------------------------------------------------------------


def _ref(module):
    p = next(module.parameters())
    return p.dtype, p.device


def _t(a, module) -> torch.Tensor:
    dtype, device = _ref(module)
    if isinstance(a, torch.Tensor):
        return a.to(dtype=dtype, device=device)
    return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)


def _dims(module) -> tuple[int, ...]:
    return tuple(module.config["latent_dims"])


def _cat(z, module) -> torch.Tensor:
    """Tuple of L groups (n, d_l) -> (n, d) in group order."""
    if isinstance(z, torch.Tensor):
        raise TypeError("latents must be a tuple/list of L tensors (n, d_l), one per group")
    dims = _dims(module)
    if len(z) != len(dims):
        raise ValueError(f"expected {len(dims)} latent groups, got {len(z)}")
    parts = [_t(zl, module) for zl in z]
    for zl, d in zip(parts, dims):
        if zl.ndim != 2 or zl.shape[1] != d:
            raise ValueError(f"latent group has shape {tuple(zl.shape)}, expected (n, {d})")
    return torch.cat(parts, dim=1)


def _split(zf: torch.Tensor, module) -> tuple[torch.Tensor, ...]:
    return tuple(torch.split(zf, list(_dims(module)), dim=1))


def _energy_flat(module, x, zf, sigma) -> torch.Tensor:
    """Eq. (1.1) on the concatenated latent ``zf`` (n, d); returns (n,).  A module with a
    callable ``srl_energy(x, z, sigma)`` attribute (the user's own energy, wrapped by
    :func:`crosscheck`) supplies the per-example values itself."""
    custom = getattr(module, "srl_energy", None)
    if custom is not None:
        return custom(x, _split(zf, module), sigma)
    n, d = zf.shape
    D = math.prod(module.config["out_shape"])
    xhat = module(_split(zf, module))
    resid = (x - xhat).reshape(n, -1)
    return (
        0.5 * (zf * zf).sum(dim=1)
        + (resid * resid).sum(dim=1) / (2.0 * sigma**2)
        + 0.5 * d * _LOG_2PI
        + 0.5 * D * math.log(2.0 * math.pi * sigma**2)
    )


def _grad_flat(module, x, zf, sigma, create_graph):
    """(E (n,), ∇_z Σ E (n, d)) at ``zf``, which must require grad."""
    e = _energy_flat(module, x, zf, sigma)
    (g,) = torch.autograd.grad(e.sum(), zf, create_graph=create_graph)
    return e, g


def _hessian_flat(zf, g, create_graph):
    """Per-example Hessian (n, d, d) from ``g = ∇_z Σ E`` (built with create_graph=True)
    by d batched HVPs: column j is ∇_z (g · e_j).  Examples are independent, so the
    batched product is the per-example product."""
    n, d = zf.shape
    cols = []
    for j in range(d):
        (hj,) = torch.autograd.grad(g[:, j].sum(), zf, retain_graph=True, create_graph=create_graph)
        cols.append(hj)
    return torch.stack(cols, dim=2)  # H[:, i, j] = ∂g_j/∂z_i = ∂²E/∂z_i∂z_j (symmetric)


def _step_vector(step_size, module, *, leaf: bool) -> torch.Tensor:
    """Step sizes as a (L,) tensor; a float means L equal values.  With ``leaf=True`` a
    fresh leaf requiring grad (for ∂/∂s), else the given tensor (graph kept) or a
    constant."""
    dtype, device = _ref(module)
    L = len(_dims(module))
    if isinstance(step_size, torch.Tensor):
        s = step_size.to(dtype=dtype, device=device)
        if s.ndim == 0:
            s = s.expand(L)
    elif np.ndim(step_size) == 0:
        s = torch.full((L,), float(step_size), dtype=dtype, device=device)
    else:
        s = torch.as_tensor(np.asarray(step_size, dtype=np.float64), dtype=dtype, device=device)
    if s.shape != (L,):
        raise ValueError(f"step_size must be a float or {L} values (one per group), got shape {tuple(s.shape)}")
    if leaf:
        s = s.detach().clone().requires_grad_(True)
    return s


def _per_coordinate(s: torch.Tensor, module) -> torch.Tensor:
    """(L,) -> (d,): each group's coordinates use their group's s (docs/math.md §2)."""
    return torch.cat([s[l].expand(d) for l, d in enumerate(_dims(module))])


def _chain(module, x, s, z0, noise, sigma, create_graph):
    """Eq. (2.1) on flat latents.  Returns lists ``zs`` (z_0..z_K), ``gs`` (g_0..g_K),
    ``es`` (E(z_0)..E(z_K)).  With ``create_graph`` every z_k and g_k keeps its graph
    (to s and to z_0), so later backward passes differentiate through the chain."""
    sc = _per_coordinate(s, module)  # (d,)
    a = 0.5 * sc * sc  # A = diag(s²/2)
    z = _cat(z0, module).detach().requires_grad_(True)
    xis = [_cat(xi, module) for xi in noise]
    zs, gs, es = [], [], []
    for k in range(len(xis) + 1):
        if not create_graph:
            z = z.detach().requires_grad_(True)
        e, g = _grad_flat(module, x, z, sigma, create_graph)
        zs.append(z)
        gs.append(g)
        es.append(e)
        if k == len(xis):
            break
        if create_graph:
            z = z - a * g + sc * xis[k]
        else:
            with torch.no_grad():
                z = z - a * g + sc * xis[k]
    return zs, gs, es, xis, sc, a


# --------------------------------------------------------------------------------------
# Autograd oracle: public functions
# --------------------------------------------------------------------------------------


def energy(module, x, z, *, sigma) -> torch.Tensor:
    """Per-example energy (docs/math.md §1, eq. 1.1), all constants included:

    ``E(z; x) = ½‖z‖² + ‖x − g(z)‖²/(2σ²) + (d/2) log 2π + (D/2) log(2πσ²)``.

    Differentiable (by autograd) in ``z`` and in the module's parameters.
    Returns shape ``(n,)``.
    """
    x = _t(x, module)
    return _energy_flat(module, x, _cat(z, module), float(sigma))


def grad_z(module, x, z, *, sigma, create_graph: bool = False) -> tuple[torch.Tensor, ...]:
    """``∇_z Σ_i E_i`` (docs/math.md §1, §7) by ``torch.autograd.grad``; a tuple like ``z``."""
    x = _t(x, module)
    zf = _cat(z, module).detach().requires_grad_(True)
    _, g = _grad_flat(module, x, zf, float(sigma), create_graph)
    return _split(g, module)


def grad_params(module, x, z, *, sigma) -> dict[str, torch.Tensor]:
    """``∇_θ Σ_i E_i`` (docs/math.md §3's per-minibatch gradient, unnormalised) by autograd;
    ``{name: grad}`` with the docs/models.md names.  ``z`` is held constant."""
    x = _t(x, module)
    zf = _cat(z, module).detach()
    names, params = zip(*module.named_parameters())
    e = _energy_flat(module, x, zf, float(sigma))
    grads = torch.autograd.grad(e.sum(), params)
    return dict(zip(names, grads))


def hvp_z(module, x, z, v, *, sigma, create_graph: bool = False) -> tuple[torch.Tensor, ...]:
    """Per-example Hessian-vector product ``H(z_i) v_i`` with ``H = ∇²_z E`` (docs/math.md §4),
    by double backward: ``∇_z ((∇_z Σ E) · v)``.  Examples are independent, so the
    batched product is per example.  A tuple like ``z``."""
    x = _t(x, module)
    zf = _cat(z, module).detach().requires_grad_(True)
    vf = _cat(v, module)
    _, g = _grad_flat(module, x, zf, float(sigma), True)
    (hv,) = torch.autograd.grad((g * vf).sum(), zf, create_graph=create_graph)
    return _split(hv, module)


def hessian_z(module, x, z, *, sigma) -> torch.Tensor:
    """Exact per-example Hessian ``∇²_z E(z_i; x_i)`` in the concatenated latent
    (groups in order), shape ``(n, d, d)``, from ``d`` batched HVPs (docs/math.md §4)."""
    x = _t(x, module)
    zf = _cat(z, module).detach().requires_grad_(True)
    _, g = _grad_flat(module, x, zf, float(sigma), True)
    return _hessian_flat(zf, g, create_graph=False).detach()


def short_run(module, x, *, step_size, z0, noise, sigma, create_graph: bool = False):
    """Short-run Langevin chain, docs/math.md §2 eq. (2.1):

    ``z_{k+1} = z_k − A ∇_z E(z_k) + s ⊙ ξ_k``, ``A = diag(s²/2)``, per-group ``s``.

    ``z0`` is a tuple like z, ``noise`` a list of K such tuples.  Returns ``(z_K, path)``
    with ``path`` the list of K+1 tuples ``z_0 .. z_K``.  With ``create_graph=True`` the
    returned tensors keep the autograd graph (pass ``step_size`` as a tensor requiring
    grad to differentiate in s); otherwise they are detached.
    """
    x = _t(x, module)
    s = _step_vector(step_size, module, leaf=False)
    if not create_graph:
        s = s.detach()
    zs, *_ = _chain(module, x, s, z0, noise, float(sigma), create_graph)
    if not create_graph:
        zs = [zk.detach() for zk in zs]
    path = [_split(zk, module) for zk in zs]
    return path[-1], path


def _log_normal(zf):
    d = zf.shape[1]
    return -0.5 * (zf * zf).sum(dim=1) - 0.5 * d * _LOG_2PI


def _objective_values(module, x, s, z0, noise, sigma, kind):
    """Per-example objective (n,) as a differentiable function of the (L,) tensor s."""
    zs, gs, es, xis, sc, a = _chain(module, x, s, z0, noise, sigma, create_graph=True)
    K = len(xis)
    if kind == "jacobian":
        # eq. (4.1): log N(z0;0,I) − Σ_{k<K} log|det(I − A H_k)| + E(z_K)
        val = _log_normal(zs[0]) + es[K]
        d = zs[0].shape[1]
        eye = torch.eye(d, dtype=zs[0].dtype, device=zs[0].device)
        for k in range(K):
            H = _hessian_flat(zs[k], gs[k], create_graph=True)
            M = eye - a[:, None] * H  # (A H)_{ij} = a_i H_ij
            _, logabsdet = torch.linalg.slogdet(M)
            val = val - logabsdet
        return val
    if kind == "reverse":
        # eq. (5.1): −log w = E(z_K) + log N(z0;0,I) − Σ_k [½‖ξ_k‖² − ½‖ξ_k − ½ s⊙(g_k+g_{k+1})‖²]
        val = es[K] + _log_normal(zs[0])
        for k in range(K):
            r = xis[k] - 0.5 * sc * (gs[k] + gs[k + 1])
            val = val - (0.5 * (xis[k] * xis[k]).sum(dim=1) - 0.5 * (r * r).sum(dim=1))
        return val
    raise ValueError(f"kind must be 'jacobian' or 'reverse', got {kind!r}")


def stepsize_objective(module, x, *, step_size, z0, noise, sigma, kind: str = "jacobian"):
    """Step-size objective and its gradient in s, by autograd through the whole chain.

    * ``kind="jacobian"``: ``J_jac`` of docs/math.md §4 eq. (4.1) per example,
      ``log N(z_0; 0, I) − Σ_{k<K} log|det(I − A H_k)| + E(z_K)``, with ``H_k`` the exact
      autograd Hessian (d HVPs, ``create_graph=True``) and ``torch.linalg.slogdet``.
    * ``kind="reverse"``: ``−log w`` of docs/math.md §5 eq. (5.1).

    Returns ``(values (n,), grad (L,))`` with ``grad = d values.sum() / d s``, ``s`` a leaf
    tensor of one value per group (a float ``step_size`` means L equal values; the
    gradient is still per group).  The derivative includes every path through
    ``z_k(s)``, ``g_k`` and ``H_k`` (hence the third-order term of docs/math.md §4.1), since
    autograd differentiates the graph built with ``create_graph=True``.
    Both values are upper bounds on ``−log p(x)`` in expectation over the noise.
    """
    x = _t(x, module)
    s = _step_vector(step_size, module, leaf=True)
    val = _objective_values(module, x, s, z0, noise, float(sigma), kind)
    (grad,) = torch.autograd.grad(val.sum(), s)
    return val.detach(), grad


def iw_reverse_objective(module, x, *, step_size, z0s, noises, sigma):
    """Importance-weighted extended-space bound (docs/math.md §5):
    ``−log (1/M) Σ_m w_m`` per example via ``logsumexp``, with ``log w_m`` of eq. (5.1)
    for chain m started at ``z0s[m]`` driven by ``noises[m]``.  Returns
    ``(values (n,), grad (L,))``, ``grad = d values.sum() / d s`` by autograd."""
    if len(z0s) != len(noises) or len(z0s) == 0:
        raise ValueError("z0s and noises must be non-empty lists of the same length M")
    x = _t(x, module)
    s = _step_vector(step_size, module, leaf=True)
    log_w = torch.stack(
        [-_objective_values(module, x, s, z0, noise, float(sigma), "reverse") for z0, noise in zip(z0s, noises)],
        dim=0,
    )  # (M, n)
    val = -(torch.logsumexp(log_w, dim=0) - math.log(len(z0s)))
    (grad,) = torch.autograd.grad(val.sum(), s)
    return val.detach(), grad
