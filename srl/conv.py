"""2-D convolutions from array-API gathers and matmuls (SPEC §1: Conv2d, ConvTranspose2d).

The array API has no convolution and no scatter, so every convolution-like map here is
*gather, then matmul*:

    cols[n, c·k² + t, p] = x_pad[n, c, idx[t, p]]            (take; one zero slot pads)
    y[n, o, p]           = Σ_{c,t} W2[o, c·k² + t] cols[n, c·k² + t, p]        (matmul)

A convolution maps a "big" grid (H, W) to a "small" grid (Ho, Wo) with kernel k, stride
s and zero padding p, ``Ho = (H + 2p − k) // s + 1``. Two index maps describe it:

* ``fwd[t, (i, j)] = (i·s + a − p, j·s + b − p)`` in the big grid (t = (a, b)), and
* ``bwd[t, (r, c)] = ((r + p − a)/s, (c + p − b)/s)`` in the small grid when that is
  an integer position inside it,

with out-of-range entries pointing at the zero slot. ``fwd`` gathers for Conv2d's forward
and ConvTranspose2d's input-VJP; ``bwd`` (the transpose of ``fwd`` as a relation) gathers
for Conv2d's input-VJP and ConvTranspose2d's forward, so no scatter-add is ever needed.
Weight VJPs are ``tensordot``s of an output gradient with gathered columns.

Weights use PyTorch layouts: Conv2d ``(cout, cin, k, k)``, ConvTranspose2d
``(cin, cout, k, k)``.
"""

from __future__ import annotations

import functools

import numpy as np

from ._backend import device as _device


def conv_out_size(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * pad - k) // stride + 1


def conv_transpose_out_size(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a transposed convolution along one axis."""
    return (size - 1) * stride - 2 * pad + k


@functools.lru_cache(maxsize=None)
def _index_maps(H: int, W: int, k: int, stride: int, pad: int):
    """Host index maps ``(fwd, bwd)``, each flattened to 1-D in (t, position) order."""
    Ho, Wo = conv_out_size(H, k, stride, pad), conv_out_size(W, k, stride, pad)
    a = np.arange(k)[:, None, None, None]  # kernel row
    b = np.arange(k)[None, :, None, None]  # kernel col
    i = np.arange(Ho)[None, None, :, None]
    j = np.arange(Wo)[None, None, None, :]
    r, c = i * stride + a - pad, j * stride + b - pad  # (k, k, Ho, Wo)
    ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    fwd = np.where(ok, r * W + c, H * W).reshape(k * k * Ho * Wo)
    r = np.arange(H)[None, None, :, None]
    c = np.arange(W)[None, None, None, :]
    ni, nj = r + pad - a, c + pad - b  # stride multiples of the small-grid position
    i, j = ni // stride, nj // stride
    ok = (ni % stride == 0) & (nj % stride == 0) & (i >= 0) & (i < Ho) & (j >= 0) & (j < Wo)
    bwd = np.where(ok, i * Wo + j, Ho * Wo).reshape(k * k * H * W)
    return fwd.astype(np.int64), bwd.astype(np.int64), (Ho, Wo)


_device_maps: dict = {}


def index_maps(xp, device, H, W, k, stride, pad):
    """``(fwd, bwd, (Ho, Wo))`` as ``xp`` integer arrays on ``device`` (cached)."""
    key = (xp.__name__, str(device), H, W, k, stride, pad)
    if key not in _device_maps:
        fwd, bwd, out = _index_maps(H, W, k, stride, pad)
        _device_maps[key] = (
            xp.asarray(fwd, dtype=xp.int64, device=device),
            xp.asarray(bwd, dtype=xp.int64, device=device),
            out,
        )
    return _device_maps[key]


def gather_columns(xp, x, idx, kk: int):
    """``x (N, C, h, w)`` → columns ``(N, C·kk, P)`` with ``P = len(idx) // kk``."""
    N, C = x.shape[0], x.shape[1]
    flat = xp.reshape(x, (N, C, -1))  # (N, C, h·w)
    zero = xp.zeros((N, C, 1), dtype=x.dtype, device=_device(x))
    padded = xp.concat([flat, zero], axis=2)  # (N, C, h·w + 1): last slot is the zero pad
    cols = xp.take(padded, idx, axis=2)  # (N, C, kk·P)
    return xp.reshape(cols, (N, C * kk, -1))


def _contract(xp, w2, cols, out_hw):
    """``w2 (O, CK) @ cols (N, CK, P)`` → ``(N, O, *out_hw)``."""
    y = w2 @ cols  # (N, O, P), w2 broadcast over the batch
    return xp.reshape(y, (cols.shape[0], w2.shape[0], *out_hw))


def _wgrad(xp, gy, cols):
    """``Σ_{n,p} gy[n, o, p] cols[n, j, p]`` → ``(O, J)``."""
    N, O = gy.shape[0], gy.shape[1]
    return xp.tensordot(xp.reshape(gy, (N, O, -1)), cols, axes=([0, 2], [0, 2]))


def conv2d(xp, x, w, b, *, stride: int, pad: int):
    """Conv2d forward, ``x (N, Cin, H, W)``, ``w (Cout, Cin, k, k)`` → ``(y, cols)``."""
    cout, cin, k, _ = w.shape
    fwd, _, out_hw = index_maps(xp, _device(x), x.shape[2], x.shape[3], k, stride, pad)
    cols = gather_columns(xp, x, fwd, k * k)  # (N, Cin·k², Ho·Wo)
    y = _contract(xp, xp.reshape(w, (cout, cin * k * k)), cols, out_hw)  # (N, Cout, Ho, Wo)
    if b is not None:
        y = y + xp.reshape(b, (1, cout, 1, 1))
    return y, cols


def conv2d_vjp_input(xp, gy, w, in_hw, *, stride: int, pad: int):
    """Conv2d input-VJP: ``gy (N, Cout, Ho, Wo)`` → ``gx (N, Cin, H, W)``."""
    cout, cin, k, _ = w.shape
    _, bwd, _ = index_maps(xp, _device(gy), in_hw[0], in_hw[1], k, stride, pad)
    colsT = gather_columns(xp, gy, bwd, k * k)  # (N, Cout·k², H·W)
    w2T = xp.reshape(xp.permute_dims(w, (1, 0, 2, 3)), (cin, cout * k * k))  # (Cin, Cout·k²)
    return _contract(xp, w2T, colsT, in_hw)


def conv2d_vjp_params(xp, gy, cols, w_shape, *, bias: bool):
    """Conv2d parameter VJPs from the forward columns: ``(gw, gb)``."""
    gw = xp.reshape(_wgrad(xp, gy, cols), w_shape)  # (Cout, Cin, k, k)
    gb = xp.sum(gy, axis=(0, 2, 3)) if bias else None  # (Cout,)
    return gw, gb


def conv_transpose2d(xp, x, w, b, *, stride: int, pad: int):
    """ConvTranspose2d forward, ``x (N, Cin, h, w)``, ``w (Cin, Cout, k, k)`` → ``y``."""
    cin, cout, k, _ = w.shape
    H = conv_transpose_out_size(x.shape[2], k, stride, pad)
    W = conv_transpose_out_size(x.shape[3], k, stride, pad)
    _, bwd, small = index_maps(xp, _device(x), H, W, k, stride, pad)
    if small != (x.shape[2], x.shape[3]):
        raise ValueError(f"transposed convolution geometry mismatch: {small} vs {x.shape[2:]}")
    colsT = gather_columns(xp, x, bwd, k * k)  # (N, Cin·k², H·W)
    w2 = xp.reshape(xp.permute_dims(w, (1, 0, 2, 3)), (cout, cin * k * k))  # (Cout, Cin·k²)
    y = _contract(xp, w2, colsT, (H, W))
    if b is not None:
        y = y + xp.reshape(b, (1, cout, 1, 1))
    return y


def conv_transpose2d_vjp(xp, gy, x, w, *, stride: int, pad: int, want_params: bool, bias: bool):
    """ConvTranspose2d VJPs: ``gy (N, Cout, H, W)`` → ``(gx, gw, gb)``."""
    cin, cout, k, _ = w.shape
    fwd, _, small = index_maps(xp, _device(gy), gy.shape[2], gy.shape[3], k, stride, pad)
    cols = gather_columns(xp, gy, fwd, k * k)  # (N, Cout·k², h·w)
    gx = _contract(xp, xp.reshape(w, (cin, cout * k * k)), cols, small)  # (N, Cin, h, w)
    if not want_params:
        return gx, None, None
    gw = xp.reshape(_wgrad(xp, x, cols), w.shape)  # (Cin, Cout, k, k)
    gb = xp.sum(gy, axis=(0, 2, 3)) if bias else None
    return gx, gw, gb
