"""NumPy fast paths: 2-D convolutions from strided views and BLAS, ``numpy.clip``, and the
normal CDF from SciPy when SciPy is installed.

Every convolution-like map (Conv2d and ConvTranspose2d forwards and VJPs) is one of two
shapes, for a kernel k, stride s and padding p:

* a **correlation** ``y[n, o, i, j] = Σ_{c,a,b} w[o, c, a, b] xpad[n, c, i·s + a, j·s + b]``
  (Conv2d forward, ConvTranspose2d input-VJP, and, with s = 1, Conv2d input-VJP and
  ConvTranspose2d forward with the flipped kernel ``w[o, c, k−1−a, k−1−b]`` taken as
  ``(c, o)`` and padding ``k − 1 − p``);
* a **scatter** ``y[n, o, i·s + a − p, j·s + b − p] += Σ_c x[n, c, i, j] w[c, o, a, b]``
  (ConvTranspose2d forward and Conv2d input-VJP when s > 1): one GEMM
  ``(o·k·k, c) @ (c, n·h·w)`` then k² strided adds, touching no zero holes.

A stride-1 correlation (every convolution of the paper model's residual blocks and
heads) is computed from a *band* copy ``B[c, b, r, n, j] = xpad[n, c, r, j + b]`` — k
copies of the input instead of im2col's k² — as k GEMMs, one per kernel row a, on the
strided views ``B[:, :, a:a + Ho]`` reshaped (without copying) to
``(c·k, Ho·n·Wo)``. Strided correlations use one im2col copy and one GEMM. Results are
returned as ``(N, C, H, W)`` views of channel-major products (no transposing copy);
weight VJPs are GEMMs of the output gradient with the same bands or columns.

Equal to the generic array-API code (``srl.conv``) to round-off; tested in
``tests/test_backends.py``.
"""

from __future__ import annotations

from . import NativeOps


def _np():
    import numpy as np

    return np


# ----------------------------------------------------------------- stride-1 correlation
def _band(x, k: int, pad: int):
    """``x (N, C, H, W)`` → ``B (C, k, H + 2·pad, N, Wo)``, ``B[c, b, r, n, j] = xpad[n, c, r, j + b]``.

    Written straight from ``x``, one strided copy per kernel column b (the padded input
    itself is never formed), zeros only where ``xpad`` is zero."""
    np = _np()
    N, C, H, W = x.shape
    Hp, Wo = H + 2 * pad, W + 2 * pad - k + 1
    B = np.empty((C, k, Hp, N, Wo), dtype=x.dtype)
    B[:, :, :pad] = 0  # padded rows
    B[:, :, pad + H:] = 0
    xt = x.transpose(1, 2, 0, 3)  # (C, H, N, W); a contiguous view when x came from a band correlation
    for b in range(k):
        lo, hi = max(0, pad - b), min(Wo, W + pad - b)  # columns j whose source j + b − pad lies in x
        B[:, b, pad:pad + H, :, :lo] = 0
        B[:, b, pad:pad + H, :, hi:] = 0
        B[:, b, pad:pad + H, :, lo:hi] = xt[:, :, :, lo + b - pad:hi + b - pad]
    return B


def _band_rows(B, a: int, Ho: int):
    """Kernel row a of a band as a ``(C·k, Ho·N·Wo)`` matrix: a strided view, no copy."""
    C, k, _, N, Wo = B.shape
    return B[:, :, a:a + Ho].reshape(C * k, Ho * N * Wo)


def _correlate_band(B, w):
    """Stride-1 correlation of a band with ``w (O, C, k, k)`` → ``(O, Ho, N, Wo)``."""
    C, k, Hp, N, Wo = B.shape
    O, Ho = w.shape[0], Hp - k + 1
    y = None
    for a in range(k):
        t = w[:, :, a, :].reshape(O, C * k) @ _band_rows(B, a, Ho)  # (O, Ho·N·Wo)
        if y is None:
            y = t
        else:
            y += t
    return y.reshape(O, Ho, N, Wo)


def _band_weight_vjp(g, B, shape):
    """``gw[o, c, a, b] = Σ g[o, (i, n, j)] B[c, b, i + a, n, j]`` for ``g (O, Ho·N·Wo)``."""
    np = _np()
    C, k, Hp, N, Wo = B.shape
    O, Ho = g.shape[0], Hp - k + 1
    gw = np.empty((O, C, k, k), dtype=B.dtype)
    for a in range(k):
        gw[:, :, a, :] = (g @ _band_rows(B, a, Ho).T).reshape(O, C, k)
    return gw.reshape(shape)


def _from_ohnw(y):
    """``(O, H, N, W)`` → an ``(N, O, H, W)`` view."""
    return y.transpose(2, 0, 1, 3)


def _ohnw(x):
    """``(N, C, H, W)`` → ``(C, H·N·W)`` in the band's column order (a view when possible)."""
    return x.transpose(1, 2, 0, 3).reshape(x.shape[1], -1)


def _flip(w):
    """``w (A, B, k, k)`` → ``(B, A, k, k)`` rotated by 180°: the adjoint correlation's kernel."""
    return w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]


# -------------------------------------------------------------------- strided maps
def _im2col(x, k: int, stride: int, pad: int):
    """``x (N, C, H, W)`` → ``(cols (C·k·k, N·Ho·Wo), Ho, Wo)`` for a strided correlation."""
    from numpy.lib.stride_tricks import sliding_window_view

    np = _np()
    N, C, H, W = x.shape
    buf = np.zeros((C, N, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    buf[:, :, pad:pad + H, pad:pad + W] = x.transpose(1, 0, 2, 3)
    win = sliding_window_view(buf, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # (C, N, Ho, Wo, k, k)
    Ho, Wo = win.shape[2], win.shape[3]
    return win.transpose(0, 4, 5, 1, 2, 3).reshape(C * k * k, N * Ho * Wo), Ho, Wo


def _scatter(x, w, stride: int, pad: int, out_hw):
    """``y[n, o, i·s + a − p, j·s + b − p] += Σ_c x[n, c, i, j] w[c, o, a, b]`` → ``(N, O, *out_hw)``."""
    np = _np()
    N, C, h, wd = x.shape
    O, k = w.shape[1], w.shape[2]
    P = w.reshape(C, O * k * k).T @ x.transpose(1, 0, 2, 3).reshape(C, N * h * wd)  # (O·k·k, N·h·w)
    P = P.reshape(O, k, k, N, h, wd)
    H, W = out_hw
    full_h = max((h - 1) * stride + k, pad + H)
    full_w = max((wd - 1) * stride + k, pad + W)
    F = np.zeros((O, N, full_h, full_w), dtype=P.dtype)
    for a in range(k):
        for b in range(k):
            F[:, :, a:a + (h - 1) * stride + 1:stride, b:b + (wd - 1) * stride + 1:stride] += P[:, a, b]
    return F[:, :, pad:pad + H, pad:pad + W].transpose(1, 0, 2, 3)


# -------------------------------------------------------------- the NativeOps fields
def _conv2d(x, w, b, stride, pad):
    """Conv2d forward: ``x (N, Cin, H, W)``, ``w (Cout, Cin, k, k)`` → ``(N, Cout, Ho, Wo)``."""
    k = w.shape[2]
    if stride == 1:
        y = _correlate_band(_band(x, k, pad), w)  # (Cout, Ho, N, Wo)
        if b is not None:
            y += b[:, None, None, None]
        return _from_ohnw(y)
    cols, Ho, Wo = _im2col(x, k, stride, pad)
    y = w.reshape(w.shape[0], -1) @ cols  # (Cout, N·Ho·Wo)
    if b is not None:
        y += b[:, None]
    return y.reshape(-1, x.shape[0], Ho, Wo).transpose(1, 0, 2, 3)


def _conv2d_input_vjp(gy, w, in_hw, stride, pad):
    """Conv2d input-VJP: ``gy (N, Cout, Ho, Wo)`` → ``gx (N, Cin, *in_hw)``."""
    k = w.shape[2]
    if stride == 1 and pad <= k - 1:
        return _from_ohnw(_correlate_band(_band(gy, k, k - 1 - pad), _flip(w)))
    return _scatter(gy, w, stride, pad, in_hw)


def _conv2d_vjp(gy, x, w, stride, pad, want_params):
    gx = _conv2d_input_vjp(gy, w, (x.shape[2], x.shape[3]), stride, pad)
    if not want_params:
        return gx, None, None
    k = w.shape[2]
    if stride == 1:
        gw = _band_weight_vjp(_ohnw(gy), _band(x, k, pad), w.shape)
    else:
        cols, _, _ = _im2col(x, k, stride, pad)
        gw = (gy.transpose(1, 0, 2, 3).reshape(gy.shape[1], -1) @ cols.T).reshape(w.shape)
    return gx, gw, gy.sum(axis=(0, 2, 3))


def _conv_transpose2d(x, w, b, stride, pad):
    """ConvTranspose2d forward, ``w (Cin, Cout, k, k)``: the input-VJP of a Conv2d with
    weights ``w`` (whose input has ``Cout`` channels), plus the bias."""
    k = w.shape[2]
    out_hw = ((x.shape[2] - 1) * stride - 2 * pad + k, (x.shape[3] - 1) * stride - 2 * pad + k)
    y = _conv2d_input_vjp(x, w, out_hw, stride, pad)
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def _conv_transpose2d_input_vjp(gy, w, stride, pad):
    """The input-VJP of a transposed convolution is the convolution with the same weights."""
    return _conv2d(gy, w, None, stride, pad)


def _conv_transpose2d_vjp(gy, x, w, stride, pad, want_params):
    """``gx = conv2d(gy, w)``; ``gw[c, o, a, b] = Σ x[n, c, i, j] gypad[n, o, i·s + a, j·s + b]``."""
    k = w.shape[2]
    gb = gy.sum(axis=(0, 2, 3)) if want_params else None
    if stride == 1:
        B = _band(gy, k, pad)  # shared by gx and gw
        gx = _from_ohnw(_correlate_band(B, w))
        gw = _band_weight_vjp(_ohnw(x), B, w.shape) if want_params else None
        return gx, gw, gb
    gx = _conv2d(gy, w, None, stride, pad)
    if not want_params:
        return gx, None, None
    cols, _, _ = _im2col(gy, k, stride, pad)  # (Cout·k·k, N·h·w)
    gw = (x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1) @ cols.T).reshape(w.shape)
    return gx, gw, gb


def ops() -> NativeOps:
    convs = dict(
        conv2d=_conv2d,
        conv2d_vjp=_conv2d_vjp,
        conv_transpose2d=_conv_transpose2d,
        conv_transpose2d_vjp=_conv_transpose2d_vjp,
        conv2d_input_vjp=_conv2d_input_vjp,
        conv_transpose2d_input_vjp=_conv_transpose2d_input_vjp,
    )
    np = _np()
    try:
        from scipy import special
    except ImportError:
        return NativeOps(name="numpy", clip=np.clip, **convs)
    return NativeOps(name="numpy", ndtr=special.ndtr, clip=np.clip, **convs)
