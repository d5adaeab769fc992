"""Forward sensitivities of the short-run chain to its step sizes (docs/math.md eq. 4.2).

Both step-size bounds (``srl.jacobian_bound``, ``srl.reverse_bound``) differentiate the
chain (2.1) in s by carrying ``t_k^{(j)} = ∂z_k/∂s_j`` for all L groups at once on a
leading "jet" axis, so memory does not grow with K (only the current state is kept):

    t_{k+1} = t_k − (∂A/∂s_j) g_k − A H_k t_k + 1_j ⊙ ξ_k,    t_0 = 0              (4.2)

with ``A = diag(s²/2)`` and ``∂A/∂s_j = diag(s_j 1_j)``. A tangent is a tuple like z of
``(L, n, d_l)`` stacks: row j of group l holds ``∂z_{k,l}/∂s_j``.

Also here: ``log N(z; 0, I)``, the z_0 term both bounds share.
"""

from __future__ import annotations

import numpy as np

from .energy import LOG_2PI


class ChainConstants:
    """Constants of one objective evaluation: step sizes, their per-group masks, A and ∂A/∂s."""

    def __init__(self, xp, gen, s, dtype, device):
        self.xp, self.gen, self.s = xp, gen, tuple(float(v) for v in s)
        self.dims = gen.latent_dims
        self.L = len(self.dims)
        self.d = gen.d
        self.dtype, self.device = dtype, device
        eye = np.eye(self.L)
        # masks[l]: (L, 1, 1) one-hot of group l, selects row j = l of a tangent stack
        self.masks = [xp.asarray(eye[:, l].reshape(self.L, 1, 1), dtype=dtype, device=device)
                      for l in range(self.L)]
        A = np.concatenate([np.full(dl, 0.5 * sl * sl) for dl, sl in zip(self.dims, self.s)])
        dA = np.zeros((self.L, self.d))  # diag of ∂A/∂s_j = s_j 1_{group j}
        off = 0
        for j, (dl, sl) in enumerate(zip(self.dims, self.s)):
            dA[j, off:off + dl] = sl
            off += dl
        self.A_vec = xp.asarray(A, dtype=dtype, device=device)  # (d,)
        self.dA = xp.asarray(dA, dtype=dtype, device=device)  # (L, d)

    def zeros_tangent(self, n):
        """``t_0 = 0``: a tuple of ``(L, n, d_l)`` zeros."""
        xp = self.xp
        return tuple(xp.zeros((self.L, n, dl), dtype=self.dtype, device=self.device) for dl in self.dims)

    def tangent_update(self, t, g, Ht, xi):
        """eq. (4.2) for every group l (rows j of each ``(L, n, d_l)`` stack)."""
        out = []
        for l, (tl, gl, htl, xil, sl) in enumerate(zip(t, g, Ht, xi, self.s)):
            out.append(tl - (0.5 * sl * sl) * htl + self.masks[l] * (xil - sl * gl)[None, ...])
        return tuple(out)

    def dot_tangent(self, g, t):
        """``(n, L)`` with entry ``[i, j] = Σ_l g_l[i] · t_l[j, i]``."""
        xp = self.xp
        acc = None
        for gl, tl in zip(g, t):
            term = xp.sum(tl * gl[None, ...], axis=2)  # (L, n)
            acc = term if acc is None else acc + term
        return xp.permute_dims(acc, (1, 0))


def sqnorm(xp, z):
    """``‖z‖²`` per example over all groups: ``(n,)``."""
    out = None
    for zl in z:
        q = xp.sum(zl * zl, axis=1)
        out = q if out is None else out + q
    return out


def log_normal(xp, z):
    """``log N(z; 0, I)`` per example, with its constant: ``(n,)``."""
    d = sum(zl.shape[1] for zl in z)
    return -0.5 * sqnorm(xp, z) - 0.5 * d * LOG_2PI
