"""Energy (docs/math.md eq. 1.1) and its exact first and second derivatives in z and theta.

    E(z; x) = ½‖z‖² + ‖x − g(z)‖² / (2σ²) + (d/2) log 2π + (D/2) log(2πσ²)          (1.1)

With r = g(z) − x (shape (n, *out_shape)):
    ∇_z E    = z + J_gᵀ r / σ²                     (reverse pass seeded with r/σ²)
    ∇_θ ΣE   = Σ_i J_θ,iᵀ r_i / σ²
    H(z) v   = v + d/dε [J_g(z+εv)ᵀ r(z+εv)] / σ²   (forward-over-reverse; the tangent
               of the seed r/σ² is J_g v / σ²)
"""

import math

import numpy as np

from . import network as N


def _sum_sq(a):
    """Per-example sum of squares over all but the batch axis: (n, ...) -> (n,)."""
    return (a.reshape(a.shape[0], -1) ** 2).sum(axis=1)


def energy(config, params, x, z, sigma):
    """Per-example energy E_θ(z_i; x_i) of docs/math.md eq. (1.1), with all constants. -> (n,)"""
    x = np.asarray(x, dtype=np.float64)
    graph = N.build_graph(config)
    params = N.prepare_params(graph, params)
    x_hat = N.forward_values(graph, params, z)[graph.output]        # (n, *out_shape)
    d = sum(zl.shape[1] for zl in z)
    D = int(np.prod(x.shape[1:]))
    prior_term = 0.5 * sum(_sum_sq(np.asarray(zl, dtype=np.float64)) for zl in z)
    lik_term = _sum_sq(x - x_hat) / (2.0 * sigma ** 2)
    const = 0.5 * d * math.log(2.0 * math.pi) + 0.5 * D * math.log(2.0 * math.pi * sigma ** 2)
    return prior_term + lik_term + const


def _grad(graph, params, x, z, sigma, want_params):
    """Forward + reverse pass for eq. (1.1): returns (values, cotangents, ∇_z E tuple, ∇_θ ΣE dict)."""
    params = N.prepare_params(graph, params)
    vals = N.forward_values(graph, params, z)
    g_out = (vals[graph.output] - x) / sigma ** 2                  # (n, *out_shape): ∂E/∂x̂
    cots, gz, gp = N.reverse(graph, params, vals, g_out, want_params)
    gz = tuple(np.asarray(zl, dtype=np.float64) + g for zl, g in zip(z, gz))   # + ∇ of ½‖z‖²
    return vals, cots, gz, gp


def grad_z(config, params, x, z, sigma):
    """∇_z Σ_i E_i (docs/math.md eq. 1.2), a tuple like z; row i is ∇_{z_i} E_i."""
    graph = N.build_graph(config)
    x = np.asarray(x, dtype=np.float64)
    return _grad(graph, params, x, z, sigma, False)[2]


def grad_params(config, params, x, z, sigma):
    """∇_θ Σ_i E_i (docs/math.md eq. 1.2, used in 3.1): dict name -> array like params[name]."""
    graph = N.build_graph(config)
    x = np.asarray(x, dtype=np.float64)
    gp = _grad(graph, params, x, z, sigma, True)[3]
    # every parameter reaches the output; zeros only as a guard
    return {name: gp.get(name, np.zeros(shape)) for name, shape, _ in graph.specs}


def _hvp(graph, params, x, z, v, sigma, vals=None, cots=None):
    """Per-example H(z_i) v_i by forward-over-reverse on the graph (docs/math.md eq. 1.3: exact HVP)."""
    params = N.prepare_params(graph, params)
    if vals is None:
        vals = N.forward_values(graph, params, z)
        cots = N.reverse(graph, params, vals, (vals[graph.output] - x) / sigma ** 2)[0]
    tans = N.forward_tangents(graph, params, vals, v)              # tangents of every node
    dg_out = tans[graph.output] / sigma ** 2                       # tangent of the seed (x̂ − x)/σ²
    dgz = N.reverse_tangent(graph, params, vals, tans, cots, dg_out)
    return tuple(np.asarray(vl, dtype=np.float64) + dg for vl, dg in zip(v, dgz))  # + I v (prior)


def hvp_z(config, params, x, z, v, sigma):
    """Per-example Hessian-vector product H(z_i) v_i, H = ∇²_z E (docs/math.md eq. 1.3), exact. Tuple like z."""
    graph = N.build_graph(config)
    x = np.asarray(x, dtype=np.float64)
    return _hvp(graph, params, x, z, v, sigma)


def hessian_z(config, params, x, z, sigma):
    """Exact per-example Hessian ∇²_z E (docs/math.md eq. 1.3; H_k of §4) in the concatenated z (groups top-down).

    Column j is H e_j, one forward-over-reverse pass per unit vector. -> (n, d, d)
    """
    graph = N.build_graph(config)
    x = np.asarray(x, dtype=np.float64)
    z = tuple(np.asarray(zl, dtype=np.float64) for zl in z)
    n = z[0].shape[0]
    dims = [zl.shape[1] for zl in z]
    d = sum(dims)
    offsets = np.cumsum([0] + dims)
    params = N.prepare_params(graph, params)
    vals = N.forward_values(graph, params, z)
    cots = N.reverse(graph, params, vals, (vals[graph.output] - x) / sigma ** 2)[0]
    H = np.zeros((n, d, d))
    for j in range(d):
        e = np.zeros((n, d))
        e[:, j] = 1.0
        v = tuple(e[:, offsets[l]:offsets[l + 1]] for l in range(len(dims)))
        Hv = _hvp(graph, params, x, z, v, sigma, vals, cots)
        H[:, :, j] = np.concatenate(Hv, axis=1)                   # (n, d)
    return H
