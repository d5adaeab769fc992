"""Drive a user's own noise-drawing PyTorch code with prescribed noise.

A Langevin loop written for PyTorch usually draws its own noise, ``z = torch.randn(...)``
and ``z + s * torch.randn_like(z)``. To compare it with srl on identical noise
(docs/math.md §2: the noise is an input of the chain), run it unmodified inside
:func:`prescribed_noise`, which makes ``torch.randn`` and ``torch.randn_like`` return the
given tensors, in order::

    draws = [z0_group_0, ..., z0_group_L-1, xi_0_group_0, ...]   # in the order the loop draws
    with prescribed_noise(draws):
        z_K = my_langevin(model, x, n_steps=K, step=s)

Each call must ask for exactly the shape of the next prescribed tensor, and on leaving the
block every tensor must have been used; anything else raises ``CrosscheckError`` naming
the draw. The values keep the prescribed tensor's dtype unless the call asks for one
(``dtype=``, or the argument's dtype for ``randn_like``), so a float64 check is not
rounded to PyTorch's default float32. Only the attributes ``torch.randn`` and
``torch.randn_like`` are replaced, for the duration of the block and for every thread: a
name bound earlier with ``from torch import randn``, ``Tensor.normal_`` and
``torch.normal`` are not affected.
"""

from __future__ import annotations

import contextlib

import torch

from .crosscheck import CrosscheckError


def _flatten(draws) -> list:
    out = []
    for d in draws:
        if isinstance(d, (list, tuple)):
            out += _flatten(d)
        else:
            out.append(torch.as_tensor(d))
    return out


def _size(args, kwargs) -> tuple:
    if "size" in kwargs:
        size = kwargs.pop("size")
        return tuple(int(s) for s in ((size,) if isinstance(size, int) else size))
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        return tuple(int(s) for s in args[0])
    return tuple(int(s) for s in args)


@contextlib.contextmanager
def prescribed_noise(draws):
    """Within the block, ``torch.randn`` / ``torch.randn_like`` return ``draws`` in order.

    ``draws`` is a sequence (nested lists and tuples are flattened in order) of tensors or
    arrays. Shapes are checked call by call; leaving the block without having used all of
    them, or asking for more, raises ``CrosscheckError``. ``dtype``, ``device`` and
    ``requires_grad`` of a call are honoured; ``generator=`` is ignored.
    """
    queue = _flatten(draws)
    used = [0]
    real_randn, real_randn_like = torch.randn, torch.randn_like

    def take(shape, dtype, device, requires_grad, call):
        k = used[0]
        if k >= len(queue):
            raise CrosscheckError(f"{call} is draw #{k + 1} but only {len(queue)} noise tensors were prescribed")
        t = queue[k]
        if tuple(t.shape) != tuple(shape):
            raise CrosscheckError(f"{call} (draw #{k + 1}) asks for shape {tuple(shape)} but the prescribed "
                                  f"tensor #{k + 1} has shape {tuple(t.shape)}; prescribe the draws in the "
                                  "order and layout the code makes them")
        used[0] = k + 1
        out = t.detach().to(dtype=dtype or t.dtype, device=device or t.device, copy=True)
        return out.requires_grad_(True) if requires_grad else out

    def randn(*args, **kwargs):
        shape = _size(args, kwargs)
        return take(shape, kwargs.get("dtype"), kwargs.get("device"), kwargs.get("requires_grad", False),
                    f"torch.randn{shape}")

    def randn_like(a, **kwargs):
        return take(tuple(a.shape), kwargs.get("dtype") or a.dtype, kwargs.get("device") or a.device,
                    kwargs.get("requires_grad", False), f"torch.randn_like(<{tuple(a.shape)}>)")

    torch.randn, torch.randn_like = randn, randn_like
    try:
        yield
    finally:
        torch.randn, torch.randn_like = real_randn, real_randn_like
    if used[0] != len(queue):
        raise CrosscheckError(f"the code drew {used[0]} of the {len(queue)} prescribed noise tensors; "
                              "prescribe exactly the draws it makes")
