"""Elementwise nonlinearities with hand-written derivative towers (docs/math.md §1 vocabulary).

Each primitive f knows ``f, f', f'', f'''`` in closed form. A tower
``tower(xp, a, k0, n)`` returns ``[f^(k0)(a), ..., f^(k0+n-1)(a)]``:

* the forward pass of a layer needs ``f`` (k0 = 0) and the VJP needs ``f'`` (k0 = 1);
* on a jet of order m (``srl.jet``) each of them needs m more derivatives, so the
  hyper-dual VJP uses up to ``f'''``.

``value`` and ``vjp`` are the two entry points layers use; they accept plain arrays or
jets. Plain arrays may use a backend's native kernel (``srl.backends``); that choice is
made in one function per primitive: ``ndtr`` for Φ, ``_gelu_kernels`` for GELU and ``clip``
for the clamp.
"""

from __future__ import annotations

import math

from srl.backends import native

from . import special
from .jet import Jet

SQRT_2PI = math.sqrt(2.0 * math.pi)


class Elementwise:
    """Base class: ``tower(xp, a, k0, n)`` gives derivatives ``k0 .. k0+n-1`` at ``a``."""

    name = "f"
    max_order = 3

    def tower(self, xp, a, k0: int, n: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check(self, k0, n):
        if k0 + n - 1 > self.max_order:
            raise ValueError(f"{self.name}: derivative of order {k0 + n - 1} is not implemented")

    # fast paths for plain arrays; subclasses may override with native kernels
    def plain_value(self, xp, a):
        return self.tower(xp, a, 0, 1)[0]

    def plain_forward(self, xp, a):
        """``(f(a), aux)``: ``aux`` is whatever the VJP can reuse (or None)."""
        return self.plain_value(xp, a), None

    def plain_vjp(self, xp, a, g, aux=None):
        return self.tower(xp, a, 1, 1)[0] * g

    def __repr__(self):
        return self.name


def value(xp, prim: Elementwise, x):
    """``f(x)`` for an array or a jet."""
    if isinstance(x, Jet):
        return x.apply(prim.tower(xp, x.a, 0, x.order + 1))
    return prim.plain_value(xp, x)


def derivative(xp, prim: Elementwise, x):
    """``f'(x)`` for an array or a jet."""
    if isinstance(x, Jet):
        return x.apply(prim.tower(xp, x.a, 1, x.order + 1))
    return prim.tower(xp, x, 1, 1)[0]


def vjp(xp, prim: Elementwise, x, g):
    """``g ⊙ f'(x)``: the reverse pass of ``y = f(x)`` (array or jet inputs)."""
    if isinstance(x, Jet) or isinstance(g, Jet):
        return derivative(xp, prim, x) * g if isinstance(x, Jet) else g * derivative(xp, prim, x)
    return prim.plain_vjp(xp, x, g)


def ndtr(xp, x):
    """Φ(x), native when the backend has it."""
    ops = native(xp)
    if ops is not None and ops.ndtr is not None:
        return ops.ndtr(x)
    return special.ndtr_generic(xp, x)


def clip(xp, x, lo: float, hi: float):
    """``min(max(x, lo), hi)``, native when the backend has it (array-API ``clip`` is a
    Python-level wrapper on some namespaces)."""
    ops = native(xp)
    if ops is not None and ops.clip is not None:
        return ops.clip(x, lo, hi)
    return xp.clip(x, lo, hi)


class _GELU(Elementwise):
    """Exact GELU, ``x Φ(x)``, with φ the standard normal density:

        f    = x Φ
        f'   = Φ + x φ
        f''  = (2 − x²) φ
        f''' = x (x² − 4) φ
    """

    name = "gelu"

    def tower(self, xp, a, k0, n):
        self._check(k0, n)
        ks = range(k0, k0 + n)
        Phi = ndtr(xp, a) if (0 in ks or 1 in ks) else None
        phi = special.normal_pdf(xp, a) if max(ks) >= 1 else None
        out = []
        for k in ks:
            if k == 0:
                out.append(a * Phi)
            elif k == 1:
                out.append(Phi + a * phi)
            elif k == 2:
                out.append((2.0 - a * a) * phi)
            else:
                out.append(a * (a * a - 4.0) * phi)
        return out

    def plain_value(self, xp, a):
        return _gelu_kernels(xp)[0](xp, a)[0]

    def plain_forward(self, xp, a):
        return _gelu_kernels(xp)[0](xp, a)

    def plain_vjp(self, xp, a, g, aux=None):
        return _gelu_kernels(xp)[1](xp, a, g, aux)


def _generic_gelu(xp, a):
    """``(x Φ(x), Φ(x))``: Φ is kept for the VJP."""
    Phi = ndtr(xp, a)
    return a * Phi, Phi


def _generic_gelu_vjp(xp, a, g, Phi):
    """``g ⊙ (Φ + x φ)``, reusing Φ from the forward pass when given."""
    if Phi is None:
        Phi = ndtr(xp, a)
    return (Phi + a * special.normal_pdf(xp, a)) * g


def _gelu_kernels(xp):
    """GELU's ``(forward, vjp)`` for plain arrays of ``xp``: native when the backend has both.

    ``forward(xp, a) -> (y, aux)`` and ``vjp(xp, a, g, aux) -> g ⊙ GELU'(a)``.
    """
    ops = native(xp)
    if ops is not None and ops.gelu is not None and ops.gelu_vjp is not None:
        return (lambda xp_, a: (ops.gelu(a), None)), (lambda xp_, a, g, aux: ops.gelu_vjp(a, g))
    return _generic_gelu, _generic_gelu_vjp


def _sigmoid(xp, a):
    # 1/(1+e^{-a}) without overflow: e^{-|a|} ≤ 1 always
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class _Softplus(Elementwise):
    """``log(1 + eˣ)``, with σ the logistic sigmoid:

        f = max(x, 0) + log1p(e^{−|x|})     f' = σ     f'' = σ(1−σ)     f''' = σ(1−σ)(1−2σ)
    """

    name = "softplus"

    def tower(self, xp, a, k0, n):
        self._check(k0, n)
        s = _sigmoid(xp, a) if k0 + n > 1 else None
        out = []
        for k in range(k0, k0 + n):
            if k == 0:
                # max(a, 0) by clip: maximum(a, 0.0) would make a host array of the 0 (no CUDA graphs)
                out.append(clip(xp, a, 0.0, math.inf) + xp.log1p(xp.exp(-xp.abs(a))))
            elif k == 1:
                out.append(s)
            elif k == 2:
                out.append(s * (1.0 - s))
            else:
                out.append(s * (1.0 - s) * (1.0 - 2.0 * s))
        return out


class _Tanh(Elementwise):
    """``tanh``:  f' = 1 − t²,  f'' = −2t(1 − t²),  f''' = (6t² − 2)(1 − t²)."""

    name = "tanh"

    def tower(self, xp, a, k0, n):
        self._check(k0, n)
        t = xp.tanh(a)
        u = 1.0 - t * t
        table = {0: lambda: t, 1: lambda: u, 2: lambda: -2.0 * t * u, 3: lambda: (6.0 * t * t - 2.0) * u}
        return [table[k]() for k in range(k0, k0 + n)]

    def plain_forward(self, xp, a):
        t = xp.tanh(a)
        return t, t  # the VJP reuses t

    def plain_vjp(self, xp, a, g, aux=None):
        t = xp.tanh(a) if aux is None else aux
        return (1.0 - t * t) * g


class _Exp(Elementwise):
    """``exp``: every derivative is ``exp``."""

    name = "exp"

    def tower(self, xp, a, k0, n):
        self._check(k0, n)
        e = xp.exp(a)
        return [e] * n


class Clamp(Elementwise):
    """``min(max(x, lo), hi)``: f' = 1 on the open interval (lo, hi) and 0 outside it;
    f'' = f''' = 0.

    At the bounds themselves (``x == lo`` or ``x == hi``) srl takes f' = 0, the
    derivative from outside the interval (``reference/`` does the same). PyTorch's
    ``torch.clamp`` passes the gradient there (f' = 1 for ``lo ≤ x ≤ hi``), and
    ``torch.nn.functional.hardtanh`` gives 0. The two conventions differ only when an
    input equals a bound exactly; in the variance head ``clamp(softplus(v) + 1e-8, 0, 10)``
    the lower bound cannot be reached, and the upper one only by a value of exactly 10.
    """

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = float(lo), float(hi)
        self.name = f"clamp({self.lo:g}, {self.hi:g})"

    def tower(self, xp, a, k0, n):
        self._check(k0, n)
        out = []
        for k in range(k0, k0 + n):
            if k == 0:
                out.append(clip(xp, a, self.lo, self.hi))
            elif k == 1:
                inside = xp.logical_and(a > self.lo, a < self.hi)
                out.append(xp.astype(inside, a.dtype))
            else:
                out.append(xp.zeros_like(a))
        return out


GELU = _GELU()
SOFTPLUS = _Softplus()
TANH = _Tanh()
EXP = _Exp()
