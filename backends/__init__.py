"""Native fast paths per array library (installed as ``srl.backends``).

The core (``srl/``) is written once against the array API. A backend module here may
supply a faster implementation of a few primitives for its library — the normal CDF,
exact GELU and its VJP, clipping, 2-D convolutions and their VJPs (the fields of
``NativeOps``).
The core asks for them in exactly one place per primitive — ``srl.conv``'s dispatch
functions for convolutions, ``srl.elementwise.ndtr`` for Φ and
``srl.elementwise._gelu_kernels`` for GELU, ``srl.elementwise.clip`` — and uses them for plain arrays and for the
stacked components of jets alike. Every native op is tested equal to the generic one
(``tests/test_backends.py``), and can be switched off:

    with srl.backends.use_native(False):
        ...   # generic array-API code only

Adding fast paths for a library: write ``backends/<name>.py`` with a function
``ops() -> NativeOps`` (import the library inside it; leave a field ``None`` to keep the
generic code for that primitive) and map the namespace's ``__name__`` to ``<name>`` in
``_MODULES``. A mapped module that does not exist, or whose library is missing, means no
native ops. The signatures each field must follow are the comments in ``NativeOps``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from typing import Callable, Optional


@dataclasses.dataclass(frozen=True)
class NativeOps:
    """Optional native implementations; ``None`` means "use the generic code"."""

    name: str
    ndtr: Optional[Callable] = None  # Φ(x)
    gelu: Optional[Callable] = None  # x Φ(x)
    gelu_vjp: Optional[Callable] = None  # (x, g) -> g ⊙ GELU'(x)   (used only together with gelu)
    clip: Optional[Callable] = None  # (x, lo, hi) -> min(max(x, lo), hi), lo and hi Python floats
    conv2d: Optional[Callable] = None  # (x, w, b, stride, pad) -> y
    conv2d_vjp: Optional[Callable] = None  # (gy, x, w, stride, pad, want_params) -> (gx, gw, gb)
    conv_transpose2d: Optional[Callable] = None  # (x, w, b, stride, pad) -> y
    conv_transpose2d_vjp: Optional[Callable] = None  # (gy, x, w, stride, pad, want_params) -> (gx, gw, gb)
    conv2d_input_vjp: Optional[Callable] = None  # (gy, w, in_hw, stride, pad) -> gx   (linear in gy)
    conv_transpose2d_input_vjp: Optional[Callable] = None  # (gy, w, stride, pad) -> gx   (linear in gy)


_MODULES = {
    "array_api_compat.numpy": "numpy",
    "numpy": "numpy",
    "array_api_compat.torch": "torch",
    "torch": "torch",
    "array_api_compat.cupy": "cupy",
    "cupy": "cupy",
    "jax.numpy": "jax",
    "jax": "jax",
}
_cache: dict = {}
_enabled = True


def native(xp) -> Optional[NativeOps]:
    """The native ops for namespace ``xp`` (``None`` if none or if disabled)."""
    if not _enabled:
        return None
    key = xp.__name__
    if key not in _cache:
        mod = _MODULES.get(key)
        ops = None
        if mod is not None:
            try:
                module = importlib.import_module(f"{__name__}.{mod}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{mod}":
                    raise
                module = None
            ops = None if module is None else module.ops()
        _cache[key] = ops
    return _cache[key]


def native_enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def use_native(enabled: bool = True):
    """Temporarily enable or disable all native fast paths."""
    global _enabled
    old = _enabled
    _enabled = bool(enabled)
    try:
        yield
    finally:
        _enabled = old
