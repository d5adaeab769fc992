"""log|det(I − A H)| and its s-derivative, exact or stochastic (docs/math.md §4, §4.1, §4.2).

Exact (small d): from the per-example Hessian ``H (n, d, d)`` and third-order matrices
``D³E[t_j] (L, n, d, d)`` (both from one hyper-dual jet pass, ``srl.jet``):

    log|det M|,  M = I − A H
    ∂/∂s_j (−log|det M|) = tr(M⁻¹ (∂A/∂s_j) H) + tr(M⁻¹ A D³E[t_j])              (4.3)

Stochastic (large d, docs/math.md §4.2): with ``B = A H`` and ρ(B) < 1,
``log det(I − B) = −Σ_{m≥1} tr(Bᵐ)/m`` (4.4). The estimator truncates the series after T
terms and estimates each trace with P Rademacher probes v (Hutchinson):

    value ≈ −Σ_{m=1}^{T} (1/m) mean_p vₚ·Bᵐvₚ                                          (4.5)
    ∂/∂s_j log det ≈ −Σ_{m=0}^{T−1} mean_p (∂B_jᵀ vₚ)·Bᵐvₚ,
    ∂B_jᵀ v = s_j H(1_j ⊙ v) + D³E[t_j](A v)                                             (4.6)

Its expectation is the truncated series, which differs from the exact value by
``Σ_{m>T} tr(Bᵐ)/m``, at most ``d ρ^{T+1} / ((T+1)(1−ρ))`` in magnitude (4.7); the
series diverges when ρ(B) ≥ 1 (large steps): use ``logdet="exact"`` there. The
estimator itself is ``srl.objectives._hutchinson_step``;
``tests/test_objectives.py::test_hutchinson_logdet_is_unbiased_for_its_series_and_bias_is_bounded``
checks the bound and the unbiasedness, and
``::test_hutchinson_objective_and_gradient_agree_with_exact`` compares value and gradient
with the exact ones.
"""

from __future__ import annotations

from ._backend import device
from .errors import DivergenceError


def exact_logdet_terms(xp, H, D3, A_vec, dA):
    """Exact per-example ``log|det(I − A H)|`` and ``∂(−log|det|)/∂s_j``.

    H: (n, d, d) Hessian.   D3: (L, n, d, d) with ``D3[j] = D³E[t_j]`` or None.
    A_vec: (d,) diagonal of A.   dA: (L, d) diagonal of ∂A/∂s_j.
    Returns ``(logabsdet (n,), grad (n, L) or None)``.
    """
    n, d = H.shape[0], H.shape[1]
    eye = xp.eye(d, dtype=H.dtype, device=device(H))
    M = eye - A_vec[:, None] * H  # (n, d, d): I − A H (A scales rows)
    sign, logabs = xp.linalg.slogdet(M)  # (n,), (n,)
    if not (bool(xp.all(sign != 0)) and bool(xp.all(xp.isfinite(logabs)))):
        raise DivergenceError(
            "I − A H_k is singular or non-finite for some example: the step size is too "
            "large for the model's curvature (docs/math.md §4)"
        )
    if D3 is None:
        return logabs, None
    Minv = xp.linalg.inv(M)  # (n, d, d)
    # tr(M⁻¹ dA_j H) = Σ_b dA_j[b] Σ_a M⁻¹[a, b] H[b, a];  H symmetric → H[a, b]
    Y = xp.sum(Minv * H, axis=1)  # (n, d): Y[n, b] = Σ_a M⁻¹[n, a, b] H[n, a, b]
    term1 = Y @ dA.T  # (n, L)
    # tr(M⁻¹ A D3_j) = Σ_{a,b} (M⁻¹ A)[a, b] D3_j[b, a];  D3_j symmetric → D3_j[a, b]
    W = Minv * A_vec[None, None, :]  # (n, d, d): M⁻¹ A (A scales columns)
    term2 = xp.sum(xp.reshape(D3 * W[None, ...], (D3.shape[0], n, d * d)), axis=2)  # (L, n)
    return logabs, term1 + xp.permute_dims(term2, (1, 0))  # (n, L)
