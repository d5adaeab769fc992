"""Layers with hand-written forward and reverse passes (docs/math.md §1 layer vocabulary).

Every layer follows the same two-function protocol (llm.c style):

    y, cache = layer.forward(xp, params, x)
    gx       = layer.backward(xp, params, gy, cache, grads)

``backward`` returns the VJP with respect to the input and, when ``grads`` is a dict,
stores the parameter VJPs in it under the parameter names of ``docs/models.md``.

Two more functions give Hessian-vector products from a stored linearisation (the adjoint
sweep with ``keep_activations=True``, docs/math.md eq. 5.5):

    backward(xp, params, gy, cache, None, tape)      # also appends to the list ``tape``
    ty, tcache = layer.jvp(xp, params, tx, entries)  # tangent of the forward pass
    tgx        = layer.backward_jvp(xp, params, tgy, tcache)  # tangent of the VJP

``tape`` receives, from the nonlinear maps only, what the tangents need: ``(x, gy)`` per
activation, ``(e, z, gu)`` per injection. ``jvp`` reads it in forward order (``entries = iter(reversed(tape))``), so its
traversal must be the exact reverse of ``backward``'s. Linear layers store nothing: their
tangent is the layer's own linear map without the bias, and the tangent of their VJP is the
VJP itself. No forward value is recomputed; a tangent pass costs about one gradient pass.

Inputs may be plain arrays or jets (``srl.jet``): linear maps go through
``jet.linear``, nonlinearities through ``elementwise.value``/``vjp``, products through
the jet's product rule. The same code therefore yields gradients (plain arrays),
Hessian-vector products (first-order jets) and third-order terms (second-order jets).
Parameter VJPs are only formed for plain arrays.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from . import conv
from . import elementwise as ew
from .jet import Jet, linear


class ParamSpec(NamedTuple):
    """A parameter's name, shape and fan-in (for U(±1/√fan_in) initialisation)."""

    name: str
    shape: tuple
    fan_in: int


class Layer:
    """Protocol: ``param_specs``, ``forward``, ``backward``, ``out_shape``."""

    name = ""

    def param_specs(self) -> list:
        return []

    def out_shape(self, in_shape: tuple) -> tuple:
        return in_shape

    def forward(self, xp, p, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, xp, p, gy, cache, grads, tape=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def jvp(self, xp, p, tx, entries):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward_jvp(self, xp, p, tgy, tcache):  # pragma: no cover - abstract
        raise NotImplementedError


def _no_param_grads_for_jets(layer, x, grads):
    if grads is not None and isinstance(x, Jet):
        raise TypeError(f"{layer.name}: parameter gradients are only formed for plain arrays")


# --------------------------------------------------------------------------- linear
class Dense(Layer):
    """``y = x Wᵀ + b``; ``W (out, in)``, ``b (out,)``.

    VJPs: ``gx = gy W``, ``gW = gyᵀ x``, ``gb = Σ_n gy``.
    """

    def __init__(self, name: str, n_in: int, n_out: int, *, bias: bool = True):
        self.name, self.n_in, self.n_out, self.bias = name, int(n_in), int(n_out), bias
        self.w_name, self.b_name = f"{name}.weight", f"{name}.bias"

    def param_specs(self):
        specs = [ParamSpec(f"{self.name}.weight", (self.n_out, self.n_in), self.n_in)]
        if self.bias:
            specs.append(ParamSpec(f"{self.name}.bias", (self.n_out,), self.n_in))
        return specs

    def out_shape(self, in_shape):
        return (self.n_out,)

    def forward(self, xp, p, x):
        W = p[self.w_name]  # (out, in)
        y = x.map(xp, lambda v: v @ W.T) if isinstance(x, Jet) else x @ W.T  # (n, in) @ (in, out) -> (n, out)
        if self.bias:
            y = y + p[self.b_name]  # (n, out) + (out,)
        return y, x

    def backward(self, xp, p, gy, x, grads, tape=None):
        _no_param_grads_for_jets(self, x, grads)
        W = p[self.w_name]  # (out, in)
        gx = gy.map(xp, lambda g: g @ W) if isinstance(gy, Jet) else gy @ W  # (n, out) @ (out, in) -> (n, in)
        if grads is not None:
            grads[self.w_name] = gy.T @ x  # (out, n) @ (n, in) -> (out, in)
            if self.bias:
                grads[self.b_name] = xp.sum(gy, axis=0)  # (out,)
        return gx

    def jvp(self, xp, p, tx, entries):
        return tx @ p[self.w_name].T, None  # (n, in) @ (in, out) -> (n, out)

    def backward_jvp(self, xp, p, tgy, tcache):
        return tgy @ p[self.w_name]  # (n, out) @ (out, in) -> (n, in)


class _Convolution(Layer):
    """Shared parameters and shape logic of Conv2d and ConvTranspose2d."""

    def __init__(self, name, cin, cout, k, *, stride=1, pad=0, bias=True):
        self.name, self.cin, self.cout, self.k = name, int(cin), int(cout), int(k)
        self.stride, self.pad, self.bias = int(stride), int(pad), bias
        self.w_name, self.b_name = f"{name}.weight", f"{name}.bias"

    def weight_shape(self) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def fan_in(self) -> int:
        """PyTorch's default-initialisation fan-in: ``weight.size(1)·k·k`` (docs/models.md)."""
        return self.weight_shape()[1] * self.k * self.k

    def param_specs(self):
        fan_in = self.fan_in()
        specs = [ParamSpec(self.w_name, self.weight_shape(), fan_in)]
        if self.bias:
            specs.append(ParamSpec(self.b_name, (self.cout,), fan_in))
        return specs

    def out_shape(self, in_shape):
        c, h, w = in_shape
        size = conv.conv_transpose_out_size if isinstance(self, ConvTranspose2d) else conv.conv_out_size
        return (self.cout, size(h, self.k, self.stride, self.pad), size(w, self.k, self.stride, self.pad))


class Conv2d(_Convolution):
    """Cross-correlation with zero padding, PyTorch layout ``W (cout, cin, k, k)``.

    ``srl.conv`` picks a backend's native kernel or the generic gather-matmul code.
    """

    def weight_shape(self):
        return (self.cout, self.cin, self.k, self.k)

    def forward(self, xp, p, x):
        W = p[self.w_name]
        b = p[self.b_name] if self.bias else None
        s, pd = self.stride, self.pad
        if isinstance(x, Jet):  # linear in x: one call on all jet components, bias on the value only
            y = linear(xp, lambda v: conv.conv2d(xp, v, W, None, stride=s, pad=pd), x, fused=True)
            return (y + xp.reshape(b, (1, -1, 1, 1)) if b is not None else y), x
        return conv.conv2d(xp, x, W, b, stride=s, pad=pd), x  # (n, cout, ho, wo)

    def backward(self, xp, p, gy, x, grads, tape=None):
        _no_param_grads_for_jets(self, x, grads)
        W = p[self.w_name]
        s, pd = self.stride, self.pad
        if isinstance(gy, Jet):
            in_hw = (x.shape[2], x.shape[3])
            return linear(xp, lambda g: conv.conv2d_input_vjp(xp, g, W, in_hw, stride=s, pad=pd), gy, fused=True)
        gx, gw, gb = conv.conv2d_vjp(xp, gy, x, W, stride=s, pad=pd, want_params=grads is not None,
                                     bias=self.bias)
        if grads is not None:
            grads[self.w_name] = gw
            if self.bias:
                grads[self.b_name] = gb
        return gx  # (n, cin, h, w)

    def jvp(self, xp, p, tx, entries):
        ty = conv.conv2d(xp, tx, p[self.w_name], None, stride=self.stride, pad=self.pad)  # (n, cout, ho, wo)
        return ty, (tx.shape[2], tx.shape[3])  # the input's (h, w) for the VJP

    def backward_jvp(self, xp, p, tgy, in_hw):
        return conv.conv2d_input_vjp(xp, tgy, p[self.w_name], in_hw, stride=self.stride, pad=self.pad)  # (n, cin, h, w)


class ConvTranspose2d(_Convolution):
    """Transposed convolution, PyTorch layout ``W (cin, cout, k, k)``; output
    ``(H − 1)s − 2p + k`` (docs/models.md: k5 s1 p2 / k3 s1 p1 and k4 s2 p1 in the paper model)."""

    def weight_shape(self):
        return (self.cin, self.cout, self.k, self.k)

    def forward(self, xp, p, x):
        W = p[self.w_name]
        b = p[self.b_name] if self.bias else None
        s, pd = self.stride, self.pad
        if isinstance(x, Jet):
            y = linear(xp, lambda v: conv.conv_transpose2d(xp, v, W, None, stride=s, pad=pd), x, fused=True)
            return (y + xp.reshape(b, (1, -1, 1, 1)) if b is not None else y), x
        return conv.conv_transpose2d(xp, x, W, b, stride=s, pad=pd), x  # (n, cout, H, W)

    def backward(self, xp, p, gy, x, grads, tape=None):
        _no_param_grads_for_jets(self, x, grads)
        W = p[self.w_name]
        s, pd = self.stride, self.pad
        if isinstance(gy, Jet):
            return linear(xp, lambda g: conv.conv_transpose2d_input_vjp(xp, g, W, stride=s, pad=pd), gy,
                          fused=True)
        gx, gw, gb = conv.conv_transpose2d_vjp(xp, gy, x, W, stride=s, pad=pd, want_params=grads is not None,
                                               bias=self.bias)
        if grads is not None:
            grads[self.w_name] = gw
            if self.bias:
                grads[self.b_name] = gb
        return gx  # (n, cin, h, w)

    def jvp(self, xp, p, tx, entries):
        return conv.conv_transpose2d(xp, tx, p[self.w_name], None, stride=self.stride, pad=self.pad), None  # (n, cout, H, W)

    def backward_jvp(self, xp, p, tgy, tcache):
        return conv.conv_transpose2d_input_vjp(xp, tgy, p[self.w_name], stride=self.stride, pad=self.pad)  # (n, cin, h, w)


class Reshape(Layer):
    """Reshape the per-example shape (C order, like torch ``view``)."""

    def __init__(self, in_shape: tuple, out_shape: tuple):
        if math.prod(in_shape) != math.prod(out_shape):
            raise ValueError(f"cannot reshape {in_shape} to {out_shape}")
        self.in_shape, self.shape = tuple(in_shape), tuple(out_shape)
        self.name = f"reshape{self.shape}"

    def out_shape(self, in_shape):
        return self.shape

    def forward(self, xp, p, x):
        return linear(xp, lambda v: xp.reshape(v, (v.shape[0], *self.shape)), x), None

    def backward(self, xp, p, gy, cache, grads, tape=None):
        return linear(xp, lambda g: xp.reshape(g, (g.shape[0], *self.in_shape)), gy)

    def jvp(self, xp, p, tx, entries):
        return xp.reshape(tx, (tx.shape[0], *self.shape)), None

    def backward_jvp(self, xp, p, tgy, tcache):
        return xp.reshape(tgy, (tgy.shape[0], *self.in_shape))


# ---------------------------------------------------------------------- elementwise
class Activation(Layer):
    """``y = f(x)`` elementwise; VJP ``gx = f'(x) ⊙ gy`` (``srl.elementwise``)."""

    def __init__(self, prim: ew.Elementwise):
        self.prim = prim
        self.name = prim.name

    def forward(self, xp, p, x):
        if isinstance(x, Jet):
            # one tower for both passes: f..f^(m) here, f'..f^(m+1) in backward (m = jet order)
            derivs = self.prim.tower(xp, x.a, 0, x.order + 2)
            return x.apply(derivs[:-1]), (x, derivs)
        y, aux = self.prim.plain_forward(xp, x)
        return y, (x, aux)

    def backward(self, xp, p, gy, cache, grads, tape=None):
        x, aux = cache
        if isinstance(x, Jet):
            return x.apply(aux[1:]) * gy  # f'(x) as a jet, times gy
        if isinstance(gy, Jet):
            return ew.vjp(xp, self.prim, x, gy)
        if tape is not None:
            tape.append((x, gy))  # what the tangents need (module docstring)
        return self.prim.plain_vjp(xp, x, gy, aux)

    def jvp(self, xp, p, tx, entries):
        x, gy = next(entries)  # the input and incoming gradient at the linearisation point: (n, *S) each
        f1, f2 = self.prim.tower(xp, x, 1, 2)  # f'(x), f''(x): (n, *S)
        return f1 * tx, (f1, f2 * (tx * gy))  # ty (n, *S); f'(x) and f''(x) tx gy for backward_jvp

    def backward_jvp(self, xp, p, tgy, tcache):
        f1, curvature = tcache
        return f1 * tgy + curvature  # d/dε [f'(x + ε tx) (gy + ε tgy)] = f'(x) tgy + f''(x) tx gy


def GELU():
    return Activation(ew.GELU)


def Softplus():
    return Activation(ew.SOFTPLUS)


def Tanh():
    return Activation(ew.TANH)


def Clamp(lo: float, hi: float):
    return Activation(ew.Clamp(lo, hi))


class Shift(Layer):
    """``y = x + c`` for a constant c (the ``+ 1e-8`` of the variance head)."""

    def __init__(self, c: float):
        self.c = float(c)
        self.name = f"shift({self.c:g})"

    def forward(self, xp, p, x):
        return x + self.c, None

    def backward(self, xp, p, gy, cache, grads, tape=None):
        return gy

    def jvp(self, xp, p, tx, entries):
        return tx, None

    def backward_jvp(self, xp, p, tgy, tcache):
        return tgy


# ------------------------------------------------------------------------ structure
class Sequential(Layer):
    """Composition; ``backward`` runs the layers' VJPs in reverse order."""

    def __init__(self, *layers: Layer, name: str = ""):
        self.layers = list(layers)
        self.name = name

    def param_specs(self):
        return [s for layer in self.layers for s in layer.param_specs()]

    def out_shape(self, in_shape):
        for layer in self.layers:
            in_shape = layer.out_shape(in_shape)
        return in_shape

    def forward(self, xp, p, x):
        caches = []
        for layer in self.layers:
            x, c = layer.forward(xp, p, x)
            caches.append(c)
        return x, caches

    def backward(self, xp, p, gy, caches, grads, tape=None):
        for layer, c in zip(reversed(self.layers), reversed(caches)):
            gy = layer.backward(xp, p, gy, c, grads, tape)
        return gy

    def jvp(self, xp, p, tx, entries):
        tcaches = []
        for layer in self.layers:
            tx, tc = layer.jvp(xp, p, tx, entries)
            tcaches.append(tc)
        return tx, tcaches

    def backward_jvp(self, xp, p, tgy, tcaches):
        for layer, tc in zip(reversed(self.layers), reversed(tcaches)):
            tgy = layer.backward_jvp(xp, p, tgy, tc)
        return tgy


class Residual(Layer):
    """``y = body(x) + x``; VJP ``gx = body_vjp(gy) + gy``."""

    def __init__(self, body: Sequential, name: str = ""):
        self.body, self.name = body, name

    def param_specs(self):
        return self.body.param_specs()

    def out_shape(self, in_shape):
        out = self.body.out_shape(in_shape)
        if tuple(out) != tuple(in_shape):
            raise ValueError(f"residual block {self.name!r} changes shape {in_shape} -> {out}")
        return out

    def forward(self, xp, p, x):
        y, cache = self.body.forward(xp, p, x)
        return y + x, cache

    def backward(self, xp, p, gy, cache, grads, tape=None):
        return self.body.backward(xp, p, gy, cache, grads, tape) + gy

    def jvp(self, xp, p, tx, entries):
        ty, tcache = self.body.jvp(xp, p, tx, entries)
        return ty + tx, tcache

    def backward_jvp(self, xp, p, tgy, tcache):
        return self.body.backward_jvp(xp, p, tgy, tcache) + tgy


class Injection:
    """Stochastic injection ``u = μ + exp(v/2) ⊙ z`` (docs/math.md §1, non-centred form).

    VJPs with ``e = exp(v/2)``:  ``gμ = gu``,  ``gv = ½ e ⊙ z ⊙ gu``,  ``gz = e ⊙ gu``.
    """

    name = "injection"

    def forward(self, xp, mu, v, z):
        e = ew.value(xp, ew.EXP, v * 0.5)  # (n, d)
        return mu + e * z, (e, z)

    def backward(self, xp, gu, cache, tape=None):
        e, z = cache
        if tape is not None:
            tape.append((e, z, gu))
        gz = e * gu  # (n, d)
        gv = (e * z) * gu * 0.5  # (n, d)
        return gu, gv, gz

    def jvp(self, xp, tmu, tv, tz, entries):
        """Tangent of ``u`` along ``(tμ, tv, tz)``, with ``te = ½ e ⊙ tv``."""
        e, z, gu = next(entries)
        te = (0.5 * e) * tv  # (n, d)
        return tmu + te * z + e * tz, (e, z, gu, te, tz)

    def backward_jvp(self, xp, tgu, tcache):
        """Tangents of ``(gμ, gv, gz)`` given the tangent ``tgu`` of ``gu``."""
        e, z, gu, te, tz = tcache
        tgz = te * gu + e * tgu  # (n, d)
        tgv = 0.5 * ((te * z + e * tz) * gu + (e * z) * tgu)  # (n, d)
        return tgu, tgv, tgz
