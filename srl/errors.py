"""Exceptions raised by srl.

Each one subclasses the standard exception a caller would already catch (``ValueError``,
``TypeError``, ``ImportError``, ``FloatingPointError``), so ``except ValueError`` keeps
working, while the class name says which input was wrong.
"""


class ShapeError(ValueError):
    """An array has the wrong shape for the model (x, z, v, params or noise)."""


class DTypeError(TypeError):
    """Arrays of different or unsupported floating dtypes were mixed."""


class NonFiniteError(ValueError):
    """Data (or an argument) contains NaN or infinity."""


class BackendUnavailableError(ImportError):
    """The requested array backend, device or dtype is not available here."""


class DivergenceError(FloatingPointError):
    """A Langevin chain or a step-size objective became non-finite or singular.

    Raised when ``z_K`` or an energy is NaN/inf (the step size is too large for the
    model's curvature) or when ``I - A H_k`` is singular (docs/math.md §4).
    """


class RunDirectoryError(ValueError):
    """A run directory cannot be used as asked: it holds another run, holds no run to
    resume, or its files do not match the run's configuration."""


class RunLockedError(RunDirectoryError):
    """Another process holds the run directory's lock (``srl.runlock``)."""
