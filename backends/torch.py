"""PyTorch fast paths: fused GELU, clamp and cuDNN/oneDNN convolutions (no autograd).

``torch.ops.aten.convolution_backward`` is the kernel autograd itself calls; here it is
called directly with explicit gradients, so no graph is ever recorded.
"""

from __future__ import annotations

from . import NativeOps


def ops() -> NativeOps:
    import torch
    import torch.nn.functional as F

    aten = torch.ops.aten

    def gelu(x):
        return F.gelu(x)

    def gelu_vjp(x, g):
        return aten.gelu_backward(g, x)

    def conv2d(x, w, b, stride, pad):
        return F.conv2d(x, w, b, stride=stride, padding=pad)

    def _vjp(gy, x, w, stride, pad, want_params, transposed):
        bias_size = [w.shape[1] if transposed else w.shape[0]]
        return aten.convolution_backward(
            gy, x, w, bias_size, [stride, stride], [pad, pad], [1, 1],
            transposed, [0, 0], 1, [True, want_params, want_params],
        )

    def conv2d_vjp(gy, x, w, stride, pad, want_params):
        return _vjp(gy, x, w, stride, pad, want_params, False)

    def conv_transpose2d(x, w, b, stride, pad):
        return F.conv_transpose2d(x, w, b, stride=stride, padding=pad)

    def conv_transpose2d_vjp(gy, x, w, stride, pad, want_params):
        return _vjp(gy, x, w, stride, pad, want_params, True)

    def conv2d_input_vjp(gy, w, in_hw, stride, pad):
        size = (gy.shape[0], w.shape[1], *in_hw)
        return torch.nn.grad.conv2d_input(size, w, gy, stride=stride, padding=pad)

    def conv_transpose2d_input_vjp(gy, w, stride, pad):
        # the input-VJP of a transposed convolution is the convolution with the same weights
        return F.conv2d(gy, w, None, stride=stride, padding=pad)

    return NativeOps(
        name="torch",
        ndtr=torch.special.ndtr,
        gelu=gelu,
        gelu_vjp=gelu_vjp,
        conv2d=conv2d,
        conv2d_vjp=conv2d_vjp,
        conv_transpose2d=conv_transpose2d,
        conv_transpose2d_vjp=conv_transpose2d_vjp,
        conv2d_input_vjp=conv2d_input_vjp,
        conv_transpose2d_input_vjp=conv_transpose2d_input_vjp,
        clip=torch.clamp,
    )
