"""Shared fixtures: the backend enum, the ``xp`` fixture, and Hypothesis profiles.

Backends that are not installed (or have no device) are skipped, never failed, so the
default run works on a CPU-only machine; GPU backends carry the ``gpu`` marker.
"""

from __future__ import annotations

import contextlib
import enum
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Deterministic property tests: CI must not flake on a new random example.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=12, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", deadline=None, max_examples=40, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("SRL_HYPOTHESIS_PROFILE", "ci"))

# One intra-op thread per test process: the suite runs under pytest-xdist on small CI
# machines, and OpenMP workers spinning against another process's work make torch
# timings erratic (the numbers do not change).
try:
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass


class Backend(enum.Enum):
    """Backends the suite runs on, with the module each one needs."""

    NUMPY = "numpy"
    TORCH = "torch"
    ARRAY_API_STRICT = "array_api_strict"
    JAX = "jax"
    TORCH_CUDA = "torch:cuda"
    CUPY = "cupy"
    JAX_GPU = "jax:gpu"

    @property
    def module(self) -> str:
        return self.value.split(":")[0]

    @property
    def is_gpu(self) -> bool:
        return self in (Backend.TORCH_CUDA, Backend.CUPY, Backend.JAX_GPU)


def _gpu_available(backend: Backend) -> bool:
    if backend is Backend.TORCH_CUDA:
        import torch

        return torch.cuda.is_available()
    if backend is Backend.JAX_GPU:
        import jax

        try:
            return len(jax.devices("gpu")) > 0
        except RuntimeError:
            return False
    if backend is Backend.CUPY:
        try:
            import cupy

            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:
            return False
    return True


def _params(backends):
    return [pytest.param(b, id=b.value, marks=[pytest.mark.gpu] if b.is_gpu else []) for b in backends]


def _selected():
    """All backends, or those named in $SRL_TEST_BACKENDS (comma-separated), e.g. by tox."""
    names = os.environ.get("SRL_TEST_BACKENDS")
    if not names:
        return list(Backend)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    unknown = wanted - {b.value for b in Backend}
    if unknown:
        raise ValueError(f"SRL_TEST_BACKENDS names unknown backends {sorted(unknown)}")
    return [b for b in Backend if b.value in wanted]


ALL_BACKENDS = _selected()


def require(backend: Backend) -> Backend:
    pytest.importorskip(backend.module)
    if not _gpu_available(backend):
        pytest.skip(f"{backend.value}: no CUDA device")
    return backend


@contextlib.contextmanager
def _torch_ieee_float32():
    import torch

    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _scoped(backend: Backend):
    """Settings the frameworks leave to their users, scoped to a test.

    JAX runs float64 only in its 64-bit mode, which srl leaves to the caller: the tests
    enable it for their own duration with ``jax.enable_x64`` (thread-local). On GPUs, PyTorch's
    cuDNN convolutions and JAX's matrix products and convolutions compute float32 with
    TF32 inputs by default (10-bit mantissas); srl does not change these global settings,
    and the tests, which check float32 arithmetic against float64 (docs/math.md §6), switch
    them to IEEE float32 (README, "Backends": float32 on GPUs)."""
    stack = contextlib.ExitStack()
    if backend is Backend.TORCH_CUDA:
        stack.enter_context(_torch_ieee_float32())
    if backend.module == "jax":
        import jax

        stack.enter_context(jax.enable_x64(True))
        if backend is Backend.JAX_GPU:
            stack.enter_context(jax.default_matmul_precision("highest"))
    return stack


@pytest.fixture(params=_params(ALL_BACKENDS))
def backend(request) -> Backend:
    """Every backend that is usable here."""
    b = require(request.param)
    with _scoped(b):
        yield b


@pytest.fixture
def xp(backend):
    import srl._backend as B

    return B.namespace(backend.value)[0]


@pytest.fixture
def rng():
    return np.random.default_rng(20201912)


def pytest_configure(config):
    """JAX compiles every function it runs (XLA, seconds per program on a small CPU): its
    persistent compilation cache, in pytest's cache directory, lets the xdist workers and
    later runs reuse a program another test has compiled (keyed by the program itself, the
    compile options and the JAX version, so a hit is the same executable)."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return
    try:
        import jax
    except ImportError:
        return
    jax.config.update("jax_compilation_cache_dir", str(cache.mkdir("jax-compilation-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
