"""JAX fast paths: exact GELU, its VJP and Φ (by erf); on GPUs, XLA convolutions
(``lax.conv_general_dilated``).

The convolution VJPs are the transposed convolutions XLA derives for
``lax.conv_general_dilated`` (``jax.vjp`` of one linear primitive); the model's own
derivatives stay hand-written in ``srl/``. Inside ``jax.jit`` (``srl.compiled``) these
become single XLA convolution ops instead of the generic gather + matmul.

They are used only where JAX's default backend is not the CPU. XLA's CPU convolutions are
much slower than srl's generic gather-matmul compiled by the same XLA (measured on one
thread of a 2-core x86 VM, 2026-11-26, docs/BENCHMARKS.md): the conv model's K = 25 chain
took 480–530 ms with them against 210–220 ms without, and the paper model's K = 5 chain
(batch 16) 55.8 s against 6.4 s. On GPUs the convolutions go to cuDNN. Under ``jax.jit`` a
traced array has no device, so the choice follows ``jax.default_backend()``: arrays
placed on the CPU of a GPU machine still get the XLA convolutions (correct, slower).
"""

from __future__ import annotations

import math

from . import NativeOps

_DIMS = ("NCHW", "OIHW", "NCHW")
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)


def ops() -> NativeOps:
    import jax

    convolutions = lax_convolutions() if jax.default_backend() != "cpu" else {}
    return NativeOps(name="jax", **elementwise_ops(), **convolutions)


def lax_convolutions() -> dict:
    """The six convolution fields of ``NativeOps`` by ``lax.conv_general_dilated``."""
    import jax
    from jax import lax

    def conv2d(x, w, b, stride, pad):
        # x (N, Cin, H, W), w (Cout, Cin, k, k) -> (N, Cout, Ho, Wo)
        y = lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)],
                                     dimension_numbers=_DIMS)
        return y if b is None else y + b[None, :, None, None]

    def conv_transpose2d(x, w, b, stride, pad):
        # x (N, Cin, h, w), w (Cin, Cout, k, k) -> (N, Cout, (h−1)·stride − 2·pad + k, ...):
        # the input-dilated convolution with the flipped, in/out-swapped kernel
        k = w.shape[2]
        wt = jax.numpy.flip(jax.numpy.swapaxes(w, 0, 1), axis=(2, 3))  # (Cout, Cin, k, k)
        q = k - 1 - pad
        y = lax.conv_general_dilated(x, wt, (1, 1), [(q, q), (q, q)], lhs_dilation=(stride, stride),
                                     dimension_numbers=_DIMS)
        return y if b is None else y + b[None, :, None, None]

    def _vjp(f, gy, x, w, want_params):
        _, pull = jax.vjp(f, x, w)
        gx, gw = pull(gy)
        if not want_params:
            return gx, None, None
        return gx, gw, jax.numpy.sum(gy, axis=(0, 2, 3))

    def conv2d_vjp(gy, x, w, stride, pad, want_params):
        return _vjp(lambda a, k: conv2d(a, k, None, stride, pad), gy, x, w, want_params)

    def conv_transpose2d_vjp(gy, x, w, stride, pad, want_params):
        return _vjp(lambda a, k: conv_transpose2d(a, k, None, stride, pad), gy, x, w, want_params)

    def conv2d_input_vjp(gy, w, in_hw, stride, pad):
        x = jax.ShapeDtypeStruct((gy.shape[0], w.shape[1], *in_hw), gy.dtype)
        (gx,) = jax.linear_transpose(lambda a: conv2d(a, w, None, stride, pad), x)(gy)
        return gx

    def conv_transpose2d_input_vjp(gy, w, stride, pad):
        # the input-VJP of a transposed convolution is the convolution with the same weights
        return conv2d(gy, w, None, stride, pad)

    return dict(conv2d=conv2d, conv2d_vjp=conv2d_vjp, conv_transpose2d=conv_transpose2d,
                conv_transpose2d_vjp=conv_transpose2d_vjp, conv2d_input_vjp=conv2d_input_vjp,
                conv_transpose2d_input_vjp=conv_transpose2d_input_vjp)


def elementwise_ops() -> dict:
    """Φ, GELU and GELU's VJP (the ``ndtr``, ``gelu``, ``gelu_vjp`` fields of ``NativeOps``)."""
    import jax
    from jax import lax

    def ndtr(x):
        # Φ(x) = ½ (1 + erf(x/√2)), the form of jax.nn.gelu(approximate=False). XLA's erf is
        # one clamped polynomial; its erfc (accurate relative to Φ in the far left tail)
        # expands to two branches with an exp, and made srl's compiled mlp chains 1.5–2.3×
        # slower (docs/BENCHMARKS.md). Φ is only used inside GELU, x Φ(x) and Φ + x φ, which
        # need Φ to a few ulp of 1 in absolute terms; that is what erf gives (tested against
        # the generic fdlibm code in tests/test_backends.py). Written identically in gelu and
        # gelu_vjp so that XLA merges the two inside one program.
        return 0.5 + 0.5 * lax.erf(x * _SQRT_HALF)

    def gelu(x):
        return x * ndtr(x)

    def gelu_vjp(x, g):
        # g ⊙ GELU'(x) = g ⊙ (Φ(x) + x φ(x))
        phi = jax.numpy.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return g * (ndtr(x) + x * phi)

    return dict(ndtr=ndtr, gelu=gelu, gelu_vjp=gelu_vjp)
