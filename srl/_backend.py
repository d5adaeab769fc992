"""Array backends by name, dtypes, devices and host transfers (docs/math.md §7).

``backend`` arguments accept ``"numpy"``, ``"torch"``, ``"jax"``, ``"cupy"`` and
``"array_api_strict"``, optionally with a device as ``"torch:cuda"``/``"jax:gpu"`` or
through the ``device=`` keyword. Everything else in srl works on whatever namespace
``array_api_compat.array_namespace`` returns for the arrays it is given.

float64 on JAX needs JAX's 64-bit mode, which is JAX's own setting: srl never switches it
behind the caller's back. Enable it for the process with
``jax.config.update("jax_enable_x64", True)`` or for a block with
``with jax.enable_x64(True): ...``; asking for float64 without it raises ``DTypeError``
naming both fixes (float32 needs nothing).
"""

from __future__ import annotations

import importlib

import numpy as np
from array_api_compat import array_namespace as _array_namespace
from array_api_compat import device as _device

from .errors import BackendUnavailableError, DTypeError

BACKENDS = ("numpy", "torch", "jax", "cupy", "array_api_strict")
DTYPES = ("float32", "float64")

_INSTALL_HINT = {
    "numpy": "pip install numpy",
    "torch": "pip install 'srl[torch]'",
    "jax": "pip install 'srl[jax]'",
    "cupy": "pip install 'srl[cupy]' (needs a CUDA GPU)",
    "array_api_strict": "pip install 'srl[strict]'",
}


def _split(backend: str, device):
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string such as 'numpy' or 'torch:cuda', got {backend!r}")
    name, _, dev = backend.partition(":")
    name = name.strip().lower().replace("-", "_")
    if dev and device is not None and dev != str(device):
        raise ValueError(f"backend {backend!r} names device {dev!r} but device={device!r} was also given")
    return name, (dev or device)


def namespace(backend: str = "numpy", device=None):
    """Return ``(xp, device)`` for a backend name such as ``"torch"`` or ``"torch:cuda"``.

    Raises ``BackendUnavailableError`` naming the missing package or device, and
    ``ValueError`` for an unknown name.
    """
    name, device = _split(backend, device)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    try:
        lib = importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} is not installed ({_INSTALL_HINT[name]})"
        ) from exc
    if name == "numpy":
        if device not in (None, "cpu"):
            raise BackendUnavailableError(f"the numpy backend only has device 'cpu', not {device!r}")
        import array_api_compat.numpy as xp

        return xp, "cpu"
    if name == "array_api_strict":
        if isinstance(device, lib.Device):  # its own device object, e.g. from device(x) of a strict array
            return lib, device
        if device not in (None, "cpu", "CPU_DEVICE"):
            raise BackendUnavailableError(
                f"array_api_strict has only its default CPU device, not {device!r}"
            )
        return lib, lib.Device("CPU_DEVICE")
    if name == "jax":
        return lib.numpy, _jax_device(lib, device)
    if name == "torch":
        import array_api_compat.torch as xp

        try:
            dev = lib.device(device if device is not None else "cpu")
        except RuntimeError as exc:
            raise ValueError(f"torch does not understand device {device!r}: {exc}") from exc
        if dev.type == "cuda" and not lib.cuda.is_available():
            raise BackendUnavailableError(
                f"torch device {str(dev)!r} requested but torch.cuda.is_available() is False"
            )
        if dev.type == "cuda" and dev.index is not None and dev.index >= lib.cuda.device_count():
            raise BackendUnavailableError(
                f"torch device {str(dev)!r} requested but only {lib.cuda.device_count()} CUDA device(s) exist"
            )
        if dev.type == "cuda" and dev.index is None:  # "cuda" is the current device: name it as arrays do
            dev = lib.device("cuda", lib.cuda.current_device())
        return xp, dev
    # cupy
    import array_api_compat.cupy as xp

    try:
        count = lib.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver/runtime missing
        raise BackendUnavailableError(f"CuPy is installed but no CUDA device is usable: {exc}") from exc
    if count == 0:
        raise BackendUnavailableError("CuPy is installed but no CUDA device was found")
    index = lib.cuda.runtime.getDevice()  # the current device: 0 unless set (srl.distributed sets LOCAL_RANK)
    if device is not None:
        text = str(device)
        index = int(text.split(":")[-1]) if text not in ("cuda", "gpu") else index
    if index >= count:
        raise BackendUnavailableError(f"CuPy device {index} requested but only {count} exist")
    return xp, lib.cuda.Device(index)


def _jax_device(jax, device):
    """A ``jax.Device`` from ``None`` (JAX's default), ``"cpu"``, ``"gpu"``/``"cuda"``,
    ``"gpu:1"`` or a ``jax.Device``."""
    if device is None:
        return jax.devices()[0]
    if isinstance(device, jax.Device):
        return device
    text = str(device).strip().lower()
    kind, _, idx = text.partition(":")
    kind = {"cuda": "gpu"}.get(kind, kind)
    try:
        index = int(idx) if idx else 0
    except ValueError:
        raise ValueError(f"jax does not understand device {device!r}; use 'cpu', 'gpu' or 'gpu:N'") from None
    try:
        found = jax.devices(kind)
    except RuntimeError as exc:
        raise BackendUnavailableError(f"jax device {text!r} requested but JAX has no {kind!r} platform ({exc})") from None
    if index >= len(found):
        raise BackendUnavailableError(f"jax device {text!r} requested but only {len(found)} {kind} device(s) exist")
    return found[index]


def _is_jax(xp) -> bool:
    return xp.__name__ == "jax.numpy"


def jax_x64_enabled() -> bool:
    """Whether JAX's 64-bit mode is on in this thread (global setting or ``jax.enable_x64``)."""
    import jax

    return bool(jax.config.jax_enable_x64)


def require_jax_x64(what: str = "float64") -> None:
    """Raise ``DTypeError`` naming the fix when float64 is asked of JAX without 64-bit mode."""
    if not jax_x64_enabled():
        raise DTypeError(
            f"{what} on the jax backend needs JAX's 64-bit mode: call "
            "jax.config.update('jax_enable_x64', True) at startup, or run inside "
            "`with jax.enable_x64(True):` (or use dtype='float32')"
        )


def x64_scope(backend: str):
    """``jax.enable_x64(True)`` for a JAX backend name (restored on exit), else a no-op: for
    commands such as ``srl check`` whose float64 results are the point of the command."""
    import contextlib

    if isinstance(backend, str) and _split(backend, None)[0] == "jax":
        try:
            import jax
        except ImportError:
            return contextlib.nullcontext()  # namespace() reports the missing package
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def resolve_dtype(xp, dtype):
    """Map ``"float32"``/``"float64"`` (or an ``xp`` dtype) to the namespace's dtype."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise DTypeError(f"dtype {dtype!r} is not supported; use 'float32' or 'float64'")
        dtype = getattr(xp, dtype)
    for name in DTYPES:
        if dtype == getattr(xp, name):
            if name == "float64" and _is_jax(xp):
                require_jax_x64()
            return dtype
    raise DTypeError(f"dtype {dtype!r} is not supported; use float32 or float64")


def dtype_name(xp, dtype) -> str:
    """``"float32"`` or ``"float64"`` for a namespace dtype (error for anything else)."""
    for name in DTYPES:
        if dtype == getattr(xp, name):
            return name
    raise DTypeError(f"arrays must be float32 or float64, got {dtype}")


def array_namespace(*arrays):
    """``array_api_compat.array_namespace`` with an error that says what was mixed."""
    try:
        return _array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in arrays})
        raise TypeError(
            f"srl needs arrays from one array library; got {', '.join(kinds)} ({exc})"
        ) from exc


def device(x):
    """The device of an array (``array_api_compat.device``)."""
    return _device(x)


def from_numpy(xp, a: np.ndarray, *, dtype, device):
    """Copy a host NumPy array to ``xp`` with the given dtype and device.

    All randomness in srl is drawn in float64 on the host and moved here, which is what
    makes the same seed give the same numbers on every backend (docs/math.md §7).
    """
    if xp.__name__.startswith("array_api_strict"):
        # array_api_strict accepts buffers only through asarray on Python/NumPy objects.
        return xp.asarray(np.asarray(a, dtype=np.float64 if dtype == xp.float64 else np.float32), device=device)
    if _is_jax(xp):
        import jax

        if dtype == xp.float64:
            require_jax_x64()
        # round on the host (as NumPy does), then one transfer
        return jax.device_put(np.asarray(a, dtype=np.dtype(dtype)), device)
    return xp.asarray(a, dtype=dtype, device=device)


def to_numpy(a) -> np.ndarray:
    """A NumPy copy of any supported array (moves GPU data to the host)."""
    if isinstance(a, np.ndarray):
        return a
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        return a.detach().cpu().numpy()
    if mod == "cupy":
        return a.get()
    if mod in ("jax", "jaxlib"):
        return np.asarray(a)
    if mod == "array_api_strict":
        return np.asarray(a._array)  # array_api_strict wraps a NumPy array
    return np.asarray(a)


def blas_threads(n):
    """Context manager limiting NumPy's BLAS to ``n`` threads (``None``: leave it alone).

    On small models the matmuls are tiny and interleaved with elementwise work; idle
    OpenBLAS workers then spin on the other cores and slow the main thread down (measured
    2-3× on 2-core machines), so ``srl train`` and the benchmarks use one BLAS thread for
    the NumPy backend by default.
    """
    import contextlib

    if not n:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


def backend_name(xp) -> str:
    """The backend name (``"numpy"``, ``"torch"``, ...) of a namespace."""
    for name in BACKENDS:
        if is_namespace(xp, name):
            return name
    raise ValueError(f"namespace {xp.__name__} is not one of srl's backends {BACKENDS}")


def is_namespace(xp, name: str) -> bool:
    """True when ``xp`` is (the compat wrapper of) the library ``name``."""
    mod = xp.__name__
    return mod == name or mod == f"array_api_compat.{name}" or (name == "jax" and mod == "jax.numpy")
