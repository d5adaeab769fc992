"""srl — multi-layer generator models learned with short-run Langevin inference whose step
size is optimized variationally (Nijkamp et al., ECCV 2020, arXiv 1912.01909).

Array-API generic: the same code runs on NumPy, PyTorch (CPU/CUDA), CuPy and
array-api-strict, with every derivative written out by hand (no autograd in the core).
The math, with derivations, is in docs/math.md; its section and equation numbers are cited in each docstring.

    import srl
    gen = srl.models.mlp(latent_dims=(4, 8), hidden=32, out_shape=(1, 8, 8))
    params = gen.init(seed=0, backend="numpy", dtype="float64")
    z = gen.prior(16, seed=0)
    srl.energy(gen, params, x, z, sigma=0.15)
"""

from . import data, models, random, stepsize
from .energy import energy, grad_params, grad_z, hessian_z, hvp_z
from .errors import (
    BackendUnavailableError, DivergenceError, DTypeError, NonFiniteError, RunDirectoryError, RunLockedError,
    ShapeError,
)
from .generator import Generator
from .langevin import short_run
from .objectives import objective_values, stepsize_objective

__version__ = "0.1.0"

__all__ = [
    "models", "data", "random", "stepsize", "Generator",
    "energy", "grad_z", "grad_params", "hvp_z", "hessian_z",
    "short_run", "stepsize_objective", "objective_values",
    "ShapeError", "DTypeError", "NonFiniteError", "BackendUnavailableError", "DivergenceError",
    "RunDirectoryError", "RunLockedError",
]
