"""Primitive layers of the generator, with their first and second derivatives.

Plain NumPy, float64, written for clarity (explicit loops over kernel offsets).
This module implements the layer vocabulary of docs/math.md §1 with the exact conventions
of docs/models.md ("Layers (all PyTorch conventions)").

For every elementwise activation ``f`` we provide ``f``, ``f'`` and ``f''``; these
give, for y = f(x):

* forward             y   = f(x)
* JVP (tangent)       dy  = f'(x) dx
* VJP (reverse)       gx  = f'(x) gy
* tangent of the VJP  dgx = f''(x) dx gy + f'(x) dgy

The linear layers (Dense, Conv2d, ConvTranspose2d) have a forward, a VJP in the
input and in the parameters; their JVP is the forward without bias and the tangent
of their input VJP is the VJP itself applied to the tangent cotangent (the weights
are held fixed when differentiating in z).
"""

import math

import numpy as np

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# math.erfc applied elementwise (no scipy).  erfc is used rather than 1 + erf so
# that Phi(x) keeps full relative accuracy for negative x.
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


# --------------------------------------------------------------------------- #
# Elementwise activations (docs/math.md §1 "Layer vocabulary"; docs/models.md "Layers")
# --------------------------------------------------------------------------- #

def normal_cdf(x):
    """Standard normal CDF Phi(x) = (1 + erf(x/sqrt2))/2 = erfc(-x/sqrt2)/2."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * _erfc(-x / _SQRT2)


def normal_pdf(x):
    """Standard normal density phi(x) = exp(-x^2/2)/sqrt(2 pi)."""
    x = np.asarray(x, dtype=np.float64)
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def gelu(x):
    """Exact GELU (erf form), docs/models.md: x Phi(x)."""
    return x * normal_cdf(x)


def gelu_d1(x):
    """GELU'(x) = Phi(x) + x phi(x)."""
    return normal_cdf(x) + x * normal_pdf(x)


def gelu_d2(x):
    """GELU''(x) = (2 - x^2) phi(x)."""
    return (2.0 - x * x) * normal_pdf(x)


def sigmoid(x):
    """Logistic sigmoid 1/(1+exp(-x)), evaluated as exp(-softplus(-x)) (no overflow)."""
    return np.exp(-np.logaddexp(0.0, -x))


def softplus(x):
    """Softplus log(1 + exp(x)) (docs/models.md), evaluated stably as logaddexp(0, x)."""
    return np.logaddexp(0.0, x)


def softplus_d1(x):
    """softplus'(x) = sigmoid(x)."""
    return sigmoid(x)


def softplus_d2(x):
    """softplus''(x) = sigmoid(x) sigmoid(-x) = sigmoid(x)(1 - sigmoid(x))."""
    return sigmoid(x) * sigmoid(-x)


def tanh(x):
    """tanh (output nonlinearity, docs/math.md §1)."""
    return np.tanh(x)


def tanh_d1(x):
    """tanh'(x) = 1 - tanh(x)^2."""
    t = np.tanh(x)
    return 1.0 - t * t


def tanh_d2(x):
    """tanh''(x) = -2 tanh(x) (1 - tanh(x)^2)."""
    t = np.tanh(x)
    return -2.0 * t * (1.0 - t * t)


def clamp(x, lo, hi):
    """Clamp(lo, hi) = min(max(x, lo), hi) (docs/models.md)."""
    return np.minimum(np.maximum(x, lo), hi)


def clamp_d1(x, lo, hi):
    """clamp'(x) = 1 strictly inside (lo, hi), 0 elsewhere (boundary points get 0)."""
    return ((x > lo) & (x < hi)).astype(np.float64)


def clamp_d2(x, lo, hi):
    """clamp''(x) = 0 (piecewise linear)."""
    return np.zeros_like(np.asarray(x, dtype=np.float64))


# --------------------------------------------------------------------------- #
# Dense (docs/models.md: y = x @ weight.T + bias)
# --------------------------------------------------------------------------- #

def dense(x, weight, bias=None):
    """Dense layer, docs/models.md: y = x @ weight.T + bias.

    x: (n, in), weight: (out, in), bias: (out,) -> y: (n, out)
    """
    y = x @ weight.T
    if bias is not None:
        y = y + bias
    return y


def dense_vjp(x, weight, gy):
    """VJP of :func:`dense`.

    x: (n, in), weight: (out, in), gy: (n, out)
    -> gx: (n, in), gweight: (out, in), gbias: (out,)
    (parameter gradients are summed over the batch: they are gradients of a sum.)
    """
    gx = gy @ weight                 # (n, in)
    gweight = gy.T @ x               # (out, in)
    gbias = gy.sum(axis=0)           # (out,)
    return gx, gweight, gbias


# --------------------------------------------------------------------------- #
# Conv2d (cross-correlation, zero padding), as torch.nn.functional.conv2d
# --------------------------------------------------------------------------- #

def _out_size_conv(size, k, stride, padding):
    """Conv2d output length along one axis: (size + 2p - k)//stride + 1."""
    return (size + 2 * padding - k) // stride + 1


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Conv2d as ``torch.nn.functional.conv2d`` (docs/models.md "Layers").

    Cross-correlation:  y[n, o, i, j] = b[o] + sum_{c, a, e} w[o, c, a, e] *
    xpad[n, c, i*stride + a, j*stride + e], with xpad the input zero-padded by
    ``padding`` on every side.

    x: (n, cin, H, W), weight: (cout, cin, k, k), bias: (cout,) or None
    -> y: (n, cout, Ho, Wo),  Ho = (H + 2p - k)//stride + 1
    """
    n, cin, H, W = x.shape
    cout, cin_w, kh, kw = weight.shape
    assert cin == cin_w, (x.shape, weight.shape)
    p, s = padding, stride
    Ho, Wo = _out_size_conv(H, kh, s, p), _out_size_conv(W, kw, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))          # (n, cin, H+2p, W+2p)
    y = np.zeros((n, cout, Ho, Wo), dtype=np.float64)
    for a in range(kh):
        for e in range(kw):
            patch = xp[:, :, a:a + s * (Ho - 1) + 1:s, e:e + s * (Wo - 1) + 1:s]  # (n, cin, Ho, Wo)
            y += np.einsum("nchw,oc->nohw", patch, weight[:, :, a, e])
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv2d_vjp(x, weight, gy, stride=1, padding=0):
    """VJP of :func:`conv2d` (transpose of the loops of the forward).

    x: (n, cin, H, W), weight: (cout, cin, k, k), gy: (n, cout, Ho, Wo)
    -> gx: (n, cin, H, W), gweight: (cout, cin, k, k), gbias: (cout,)
    """
    n, cin, H, W = x.shape
    cout, _, kh, kw = weight.shape
    p, s = padding, stride
    Ho, Wo = gy.shape[2], gy.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))          # (n, cin, H+2p, W+2p)
    gxp = np.zeros_like(xp)
    gweight = np.zeros_like(weight, dtype=np.float64)
    for a in range(kh):
        for e in range(kw):
            rows = slice(a, a + s * (Ho - 1) + 1, s)
            cols = slice(e, e + s * (Wo - 1) + 1, s)
            gxp[:, :, rows, cols] += np.einsum("nohw,oc->nchw", gy, weight[:, :, a, e])
            gweight[:, :, a, e] = np.einsum("nohw,nchw->oc", gy, xp[:, :, rows, cols])
    gx = gxp[:, :, p:p + H, p:p + W]                           # drop the padding
    gbias = gy.sum(axis=(0, 2, 3))
    return gx, gweight, gbias


# --------------------------------------------------------------------------- #
# ConvTranspose2d, as torch.nn.functional.conv_transpose2d
# --------------------------------------------------------------------------- #

def conv_transpose2d(x, weight, bias=None, stride=1, padding=0):
    """ConvTranspose2d as ``torch.nn.functional.conv_transpose2d`` (docs/models.md).

    Scatter form: every input pixel (i, j) adds ``x[n, c, i, j] * w[c, :, a, e]`` at
    position (i*stride + a, j*stride + e) of a "full" output of size
    (H-1)*stride + k; the result is that full output with ``padding`` rows/columns
    cropped on every side, i.e. size (H-1)*stride - 2*padding + k.
    (No output_padding, no dilation, groups = 1.)

    x: (n, cin, H, W), weight: (cin, cout, k, k), bias: (cout,) or None
    -> y: (n, cout, (H-1)s - 2p + k, (W-1)s - 2p + k)
    """
    n, cin, H, W = x.shape
    cin_w, cout, kh, kw = weight.shape
    assert cin == cin_w, (x.shape, weight.shape)
    p, s = padding, stride
    Hf, Wf = (H - 1) * s + kh, (W - 1) * s + kw
    full = np.zeros((n, cout, Hf, Wf), dtype=np.float64)
    for a in range(kh):
        for e in range(kw):
            rows = slice(a, a + s * (H - 1) + 1, s)
            cols = slice(e, e + s * (W - 1) + 1, s)
            full[:, :, rows, cols] += np.einsum("nchw,co->nohw", x, weight[:, :, a, e])
    y = full[:, :, p:Hf - p, p:Wf - p].copy()
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv_transpose2d_vjp(x, weight, gy, stride=1, padding=0):
    """VJP of :func:`conv_transpose2d`.

    x: (n, cin, H, W), weight: (cin, cout, k, k), gy: (n, cout, Ho, Wo)
    -> gx: (n, cin, H, W), gweight: (cin, cout, k, k), gbias: (cout,)
    """
    n, cin, H, W = x.shape
    _, cout, kh, kw = weight.shape
    p, s = padding, stride
    Hf, Wf = (H - 1) * s + kh, (W - 1) * s + kw
    gfull = np.zeros((n, cout, Hf, Wf), dtype=np.float64)     # cotangent of the uncropped output
    gfull[:, :, p:Hf - p, p:Wf - p] = gy
    gx = np.zeros_like(x, dtype=np.float64)
    gweight = np.zeros_like(weight, dtype=np.float64)
    for a in range(kh):
        for e in range(kw):
            rows = slice(a, a + s * (H - 1) + 1, s)
            cols = slice(e, e + s * (W - 1) + 1, s)
            g = gfull[:, :, rows, cols]                            # (n, cout, H, W)
            gx += np.einsum("nohw,co->nchw", g, weight[:, :, a, e])
            gweight[:, :, a, e] = np.einsum("nchw,nohw->co", x, g)
    gbias = gy.sum(axis=(0, 2, 3))
    return gx, gweight, gbias
