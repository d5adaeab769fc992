"""2-D convolutions (docs/math.md §1: Conv2d, ConvTranspose2d): one dispatch point, one
generic algorithm.

**Dispatch.** Layers call only the six functions of the first section below
(``conv2d``, ``conv2d_vjp``, ``conv2d_input_vjp`` and their ``conv_transpose2d``
counterparts). Each of them is the single place where a backend's native kernel
(``srl.backends``: torch's oneDNN/cuDNN, NumPy's strided-view + BLAS path, ...) is chosen
over the generic code, for plain arrays and for the stacked components of jets alike
(a jet's components go through one call, ``jet.linear(..., fused=True)``).

**Generic algorithm.** The array API has no convolution and no scatter. Every
convolution-like map here — the forward passes and the input-VJPs of Conv2d and
ConvTranspose2d — is one *gather-matmul*

    y[n, q, o] = Σ_{t, c} x[n, idx[q, t], c] · W[t, c, o]                 (channels last)

where ``idx[q, t]`` is the input position that output position q reads through kernel
offset t (or a zero slot for padding / holes). It is evaluated in whichever order moves
less data:

* gather first (im2col): ``cols[(n, q), (t, c)] = x[n, idx[q, t], c]``, then
  ``y = cols @ W`` — gathers ``k²·Cin`` values per output position;
* matmul first: ``patches[n, p, (t, o)] = Σ_c x[n, p, c] W[t, c, o]``, then
  ``y[n, q, o] = Σ_t patches[n, idx[q, t], t, o]`` — gathers ``k²·Cout`` values.

A convolution maps a "big" grid (H, W) to a "small" grid (Ho, Wo) with kernel k, stride
s and zero padding p, ``Ho = (H + 2p − k) // s + 1``. Two index maps describe it:

* ``fwd[(i, j), t] = (i·s + a − p, j·s + b − p)`` in the big grid (t = (a, b)), and
* ``bwd[(r, c), t] = ((r + p − a)/s, (c + p − b)/s)`` in the small grid when that is
  an integer position inside it,

``fwd`` serves Conv2d's forward and ConvTranspose2d's input-VJP; ``bwd`` (the transpose
of ``fwd`` as a relation) serves Conv2d's input-VJP and ConvTranspose2d's forward, so no
scatter-add is ever needed. Weight VJPs are one matmul of gathered columns with the
output gradient.

Weights use PyTorch layouts: Conv2d ``(cout, cin, k, k)``, ConvTranspose2d
``(cin, cout, k, k)``.
"""

from __future__ import annotations

import functools

import numpy as np

from srl.backends import native

from ._backend import device as _device


# ----------------------------------------------------------------------------- dispatch
def _kernel(xp, name):
    """The backend's native implementation of ``name`` for namespace ``xp``, or None."""
    ops = native(xp)
    return None if ops is None else getattr(ops, name)


def conv2d(xp, x, w, b, *, stride: int, pad: int):
    """Conv2d forward: ``x (N, Cin, H, W)``, ``w (Cout, Cin, k, k)``, ``b (Cout,)`` or None
    → ``y (N, Cout, Ho, Wo)``."""
    fast = _kernel(xp, "conv2d")
    if fast is not None:
        return fast(x, w, b, stride, pad)
    return generic_conv2d(xp, x, w, b, stride=stride, pad=pad)[0]


def conv2d_vjp(xp, gy, x, w, *, stride: int, pad: int, want_params: bool, bias: bool):
    """Conv2d VJPs ``(gx, gw, gb)`` for ``gy (N, Cout, Ho, Wo)``; ``gw, gb`` are None unless
    ``want_params`` (``gb`` also None without ``bias``)."""
    fast = _kernel(xp, "conv2d_vjp")
    if fast is not None:
        gx, gw, gb = fast(gy, x, w, stride, pad, want_params)
        return gx, gw, (gb if bias else None)
    gx = generic_conv2d_vjp_input(xp, gy, w, (x.shape[2], x.shape[3]), stride=stride, pad=pad)
    if not want_params:
        return gx, None, None
    gw, gb = generic_conv2d_vjp_params(xp, gy, x, None, w.shape, stride=stride, pad=pad, bias=bias)
    return gx, gw, gb


def conv2d_input_vjp(xp, gy, w, in_hw, *, stride: int, pad: int):
    """Conv2d input-VJP alone (linear in ``gy``; used for jets): ``gx (N, Cin, *in_hw)``."""
    fast = _kernel(xp, "conv2d_input_vjp")
    if fast is not None:
        return fast(gy, w, in_hw, stride, pad)
    return generic_conv2d_vjp_input(xp, gy, w, in_hw, stride=stride, pad=pad)


def conv_transpose2d(xp, x, w, b, *, stride: int, pad: int):
    """ConvTranspose2d forward: ``x (N, Cin, h, w)``, ``w (Cin, Cout, k, k)`` →
    ``y (N, Cout, (h − 1)s − 2p + k, ...)``."""
    fast = _kernel(xp, "conv_transpose2d")
    if fast is not None:
        return fast(x, w, b, stride, pad)
    return generic_conv_transpose2d(xp, x, w, b, stride=stride, pad=pad)


def conv_transpose2d_vjp(xp, gy, x, w, *, stride: int, pad: int, want_params: bool, bias: bool):
    """ConvTranspose2d VJPs ``(gx, gw, gb)`` for ``gy (N, Cout, H, W)`` (see ``conv2d_vjp``)."""
    fast = _kernel(xp, "conv_transpose2d_vjp")
    if fast is not None:
        gx, gw, gb = fast(gy, x, w, stride, pad, want_params)
        return gx, gw, (gb if bias else None)
    return generic_conv_transpose2d_vjp(xp, gy, x, w, stride=stride, pad=pad, want_params=want_params,
                                        bias=bias)


def conv_transpose2d_input_vjp(xp, gy, w, *, stride: int, pad: int):
    """ConvTranspose2d input-VJP alone (linear in ``gy``; used for jets)."""
    fast = _kernel(xp, "conv_transpose2d_input_vjp")
    if fast is not None:
        return fast(gy, w, stride, pad)
    return generic_conv_transpose2d_vjp(xp, gy, None, w, stride=stride, pad=pad, want_params=False,
                                        bias=False)[0]


# ---------------------------------------------------------------------- generic code


def conv_out_size(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * pad - k) // stride + 1


def conv_transpose_out_size(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a transposed convolution along one axis."""
    return (size - 1) * stride - 2 * pad + k


def _with_offsets(idx, n_in: int, kk: int):
    """Index into ``(n_in·kk + 1)`` rows for the matmul-first order (``idx·kk + t``)."""
    q = idx.reshape(-1, kk)
    t = np.arange(kk)[None, :]
    return np.where(q < n_in, q * kk + t, n_in * kk).reshape(-1)


@functools.lru_cache(maxsize=None)
def _index_maps(H: int, W: int, k: int, stride: int, pad: int):
    """Host index maps ``(fwd, bwd)``, each flattened to 1-D in (position, t) order."""
    Ho, Wo = conv_out_size(H, k, stride, pad), conv_out_size(W, k, stride, pad)
    i = np.arange(Ho)[:, None, None, None]
    j = np.arange(Wo)[None, :, None, None]
    a = np.arange(k)[None, None, :, None]  # kernel row
    b = np.arange(k)[None, None, None, :]  # kernel col
    r, c = i * stride + a - pad, j * stride + b - pad  # (Ho, Wo, k, k)
    ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    fwd = np.where(ok, r * W + c, H * W).reshape(Ho * Wo * k * k)
    r = np.arange(H)[:, None, None, None]
    c = np.arange(W)[None, :, None, None]
    ni, nj = r + pad - a, c + pad - b  # stride multiples of the small-grid position
    i, j = ni // stride, nj // stride
    ok = (ni % stride == 0) & (nj % stride == 0) & (i >= 0) & (i < Ho) & (j >= 0) & (j < Wo)
    bwd = np.where(ok, i * Wo + j, Ho * Wo).reshape(H * W * k * k)
    return fwd.astype(np.int64), bwd.astype(np.int64), (Ho, Wo)


class _Map:
    """One direction of a geometry on one device: gather indices for both orders."""

    def __init__(self, xp, device, idx, n_in, kk):
        self.kk, self.n_in = kk, n_in
        idx_t = _with_offsets(idx, n_in, kk)
        if xp.__name__ == "jax.numpy":
            # Host int32 arrays (JAX has 64-bit integers only in its 64-bit mode; the indices
            # fit int32): a cached JAX array made while tracing under jax.jit would be a tracer
            # that leaks into the next trace, a host array is a compile-time constant there.
            self.idx, self.idx_t = idx.astype(np.int32), idx_t.astype(np.int32)
            return
        self.idx = xp.asarray(idx, dtype=xp.int64, device=device)  # (P_out·kk,) into n_in + 1 rows
        self.idx_t = xp.asarray(idx_t, dtype=xp.int64, device=device)


_device_maps: dict = {}


def index_maps(xp, device, H, W, k, stride, pad):
    """``(fwd, bwd, (Ho, Wo))`` as ``_Map`` objects on ``device`` (cached)."""
    key = (xp.__name__, str(device), H, W, k, stride, pad)
    if key not in _device_maps:
        fwd, bwd, (Ho, Wo) = _index_maps(H, W, k, stride, pad)
        _device_maps[key] = (_Map(xp, device, fwd, H * W, k * k), _Map(xp, device, bwd, Ho * Wo, k * k),
                             (Ho, Wo))
    return _device_maps[key]


def channels_last(xp, x):
    """``(N, C, h, w)`` → ``(N·h·w, C)``."""
    N, C = x.shape[0], x.shape[1]
    return xp.reshape(xp.permute_dims(xp.reshape(x, (N, C, -1)), (0, 2, 1)), (-1, C))


def channels_first(xp, y, N, hw):
    """``(N·h·w, C)`` → ``(N, C, h, w)``."""
    C = y.shape[1]
    return xp.reshape(xp.permute_dims(xp.reshape(y, (N, -1, C)), (0, 2, 1)), (N, C, *hw))


def _take_rows(xp, a, idx):
    """``a (N, R, C)`` with a zero row appended, gathered along axis 1 by ``idx``."""
    zero = xp.zeros((a.shape[0], 1, a.shape[2]), dtype=a.dtype, device=_device(a))
    return xp.take(xp.concat([a, zero], axis=1), idx, axis=1)


def gather_columns(xp, x, m: _Map):
    """im2col: ``x (N, C, h, w)`` → ``(N·P_out, kk·C)``."""
    N, C = x.shape[0], x.shape[1]
    cols = _take_rows(xp, xp.reshape(channels_last(xp, x), (N, -1, C)), m.idx)  # (N, P_out·kk, C)
    return xp.reshape(cols, (-1, m.kk * C))


def gather_matmul(xp, x, m: _Map, wmat, out_hw, *, keep_cols: bool = False):
    """``y = gather(x, m) @ wmat`` in the cheaper order (see the module docstring).

    x: (N, Cin, h, w);  wmat: (kk·Cin, Cout), row ``t·Cin + c``.
    Returns ``(y (N, Cout, *out_hw), cols or None)``; ``keep_cols`` forces im2col order
    and returns the columns (needed for a weight VJP).
    """
    N, cin = x.shape[0], x.shape[1]
    cout = wmat.shape[1]
    if keep_cols or cin <= cout:
        cols = gather_columns(xp, x, m)  # (N·P_out, kk·Cin)
        return channels_first(xp, cols @ wmat, N, out_hw), (cols if keep_cols else None)
    # matmul first: per-offset contributions of every input position, then gather-and-sum
    w_by_c = xp.reshape(xp.permute_dims(xp.reshape(wmat, (m.kk, cin, cout)), (1, 0, 2)), (cin, m.kk * cout))
    patches = channels_last(xp, x) @ w_by_c  # (N·h·w, kk·Cout)
    picked = _take_rows(xp, xp.reshape(patches, (N, -1, cout)), m.idx_t)  # (N, P_out·kk, Cout)
    y = xp.sum(xp.reshape(picked, (-1, m.kk, cout)), axis=1)  # (N·P_out, Cout)
    return channels_first(xp, y, N, out_hw), None


def _kernel_matrix(xp, w, order):
    """Weights permuted to ``order`` (kh, kw, in, out axes) and flattened to ``(k²·in, out)``."""
    m = xp.permute_dims(w, order)
    return xp.reshape(m, (-1, m.shape[3]))


def generic_conv2d(xp, x, w, b, *, stride: int, pad: int, keep_cols: bool = False):
    """Conv2d forward, ``x (N, Cin, H, W)``, ``w (Cout, Cin, k, k)`` → ``(y, cols or None)``."""
    k = w.shape[2]
    fwd, _, out_hw = index_maps(xp, _device(x), x.shape[2], x.shape[3], k, stride, pad)
    y, cols = gather_matmul(xp, x, fwd, _kernel_matrix(xp, w, (2, 3, 1, 0)), out_hw, keep_cols=keep_cols)
    if b is not None:
        y = y + xp.reshape(b, (1, -1, 1, 1))
    return y, cols  # (N, Cout, Ho, Wo)


def generic_conv2d_vjp_input(xp, gy, w, in_hw, *, stride: int, pad: int):
    """Conv2d input-VJP: ``gy (N, Cout, Ho, Wo)`` → ``gx (N, Cin, H, W)``."""
    k = w.shape[2]
    _, bwd, _ = index_maps(xp, _device(gy), in_hw[0], in_hw[1], k, stride, pad)
    return gather_matmul(xp, gy, bwd, _kernel_matrix(xp, w, (2, 3, 0, 1)), in_hw)[0]


def generic_conv2d_vjp_params(xp, gy, x, cols, w_shape, *, stride: int, pad: int, bias: bool):
    """Conv2d parameter VJPs ``(gw, gb)``; ``cols`` from the forward, or None to re-gather."""
    cout, cin, k, _ = w_shape
    if cols is None:
        fwd, _, _ = index_maps(xp, _device(x), x.shape[2], x.shape[3], k, stride, pad)
        cols = gather_columns(xp, x, fwd)  # (N·Ho·Wo, k²·Cin)
    g = channels_last(xp, gy)  # (N·Ho·Wo, Cout)
    gw = cols.T @ g  # (k²·Cin, Cout)
    gw = xp.permute_dims(xp.reshape(gw, (k, k, cin, cout)), (3, 2, 0, 1))  # (Cout, Cin, k, k)
    gb = xp.sum(g, axis=0) if bias else None  # (Cout,)
    return gw, gb


def generic_conv_transpose2d(xp, x, w, b, *, stride: int, pad: int):
    """ConvTranspose2d forward, ``x (N, Cin, h, w)``, ``w (Cin, Cout, k, k)`` → ``y``."""
    k = w.shape[2]
    H = conv_transpose_out_size(x.shape[2], k, stride, pad)
    W = conv_transpose_out_size(x.shape[3], k, stride, pad)
    _, bwd, small = index_maps(xp, _device(x), H, W, k, stride, pad)
    if small != (x.shape[2], x.shape[3]):
        raise ValueError(f"transposed convolution geometry mismatch: {small} vs {x.shape[2:]}")
    y, _ = gather_matmul(xp, x, bwd, _kernel_matrix(xp, w, (2, 3, 0, 1)), (H, W))  # (N, Cout, H, W)
    if b is not None:
        y = y + xp.reshape(b, (1, -1, 1, 1))
    return y


def generic_conv_transpose2d_vjp(xp, gy, x, w, *, stride: int, pad: int, want_params: bool, bias: bool):
    """ConvTranspose2d VJPs: ``gy (N, Cout, H, W)`` → ``(gx, gw, gb)``."""
    cin, cout, k, _ = w.shape
    N = gy.shape[0]
    fwd, _, small = index_maps(xp, _device(gy), gy.shape[2], gy.shape[3], k, stride, pad)
    gx, cols = gather_matmul(xp, gy, fwd, _kernel_matrix(xp, w, (2, 3, 1, 0)), small, keep_cols=want_params)
    if not want_params:
        return gx, None, None
    gw = channels_last(xp, x).T @ cols  # (Cin, k²·Cout)
    gw = xp.permute_dims(xp.reshape(gw, (cin, k, k, cout)), (0, 3, 1, 2))  # (Cin, Cout, k, k)
    gb = xp.sum(xp.reshape(gy, (N, cout, -1)), axis=(0, 2)) if bias else None
    return gx, gw, gb
