"""srl.reference -- the independent plain-NumPy float64 oracle for docs/math.md §1, §2, §4, §5.

Written separately from ``srl/`` on purpose (docs/math.md §6): it imports only NumPy and the
standard library, and favours clarity over speed (explicit loops over kernel offsets,
one Hessian column per forward-over-reverse pass).

Conventions: ``config`` is the dict of docs/models.md (kind "mlp" or "conv");
``params`` maps the parameter names of docs/models.md to arrays in PyTorch layouts;
``z`` is a tuple of L arrays (n, d_l), groups top-down; ``x`` is (n, *out_shape);
``step_size`` is a float or one value per group; ``noise`` is a list of K tuples like z.
"""

from .layers import (conv2d, conv2d_vjp, conv_transpose2d, conv_transpose2d_vjp,
                     gelu, gelu_d1, gelu_d2)
from .network import (param_specs, param_shapes, init_params, prior, chain_noise, forward)
from .derivatives import energy, grad_z, grad_params, hvp_z, hessian_z
from .chain import (short_run, jacobian_objective, reverse_objective, iw_reverse_objective,
                    Target, step_vector)

__all__ = [
    "param_specs", "param_shapes", "init_params", "prior", "chain_noise", "forward",
    "energy", "grad_z", "grad_params", "hvp_z", "hessian_z",
    "short_run", "jacobian_objective", "reverse_objective", "iw_reverse_objective",
    "conv2d", "conv2d_vjp", "conv_transpose2d", "conv_transpose2d_vjp",
    "gelu", "gelu_d1", "gelu_d2", "Target", "step_vector",
]
