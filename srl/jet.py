"""Truncated Taylor numbers for forward-mode derivatives of the hand-written passes.

The third-order term ``D³E(z)[t]`` of the step-size gradient (docs/math.md eq. 4.3) is
computed exactly by forward mode over the hand-written reverse pass of the energy; this
module is that forward mode (docs/math.md eqs. 1.3, 1.4), and it also gives the
Hessian-vector products (``srl.hvp_z``):

* a **first-order jet** ``a + Σ_p ε_p b_p`` (``ε_p ε_p' = 0``) pushed through the manual
  forward *and* reverse pass of the energy returns, in its ``b`` part, the directional
  derivative of the gradient, i.e. the Hessian-vector products ``H v_p`` for all P
  directions at once;
* a **second-order (hyper-dual) jet** ``a + Σ_p ε_p b_p + Σ_q δ_q c_q + Σ_pq ε_p δ_q d_pq``
  (``ε_p ε_p' = δ_q δ_q' = 0``, ``ε δ ≠ 0``) returns ``H v_p`` in ``b``, ``H t_q`` in ``c``
  and the third-order term ``D³E[t_q] v_p`` in ``d``.

Directions are stacked on leading axes, so one pass handles all Hessian columns and all
tangents (no Python loop over directions):

    a: (*S)        b: (P, *S)        c: (Q, *S)        d: (P, Q, *S)

Layers never see the components: they call ``linear`` for maps that are linear in the
jet (matmuls and convolutions with constant weights, reshapes, sums), ``elementwise`` for
nonlinearities given their hand-written derivative towers, and the arithmetic operators
(product rule). Parameters are always plain arrays (constants).
"""

from __future__ import annotations

from typing import Callable


class Jet:
    """A truncated Taylor number with stacked directions (see module docstring)."""

    __slots__ = ("a", "b", "c", "d")
    __array_ufunc__ = None  # make NumPy defer ``ndarray * Jet`` to ``Jet.__rmul__``

    def __init__(self, a, b, c=None, d=None):
        if (c is None) != (d is None):
            raise ValueError("a second-order jet needs both c and d")
        self.a, self.b, self.c, self.d = a, b, c, d

    @property
    def order(self) -> int:
        return 1 if self.c is None else 2

    @property
    def shape(self):
        return self.a.shape

    @property
    def dtype(self):
        return self.a.dtype

    def components(self):
        return (self.a, self.b) if self.c is None else (self.a, self.b, self.c, self.d)

    def __repr__(self):
        dims = ", ".join(f"{n}{tuple(x.shape)}" for n, x in zip("abcd", self.components()))
        return f"Jet(order={self.order}, {dims})"

    # ------------------------------------------------------------------ linear maps
    def map(self, xp, fn: Callable):
        """Apply a map that is linear in its argument and acts on the leading (batch) axis.

        Each component is flattened to ``(directions * n, ...)``, mapped with one call,
        and unflattened, so ``fn`` only has to accept a batch.
        """
        n = self.a.shape[0]

        def flat(x, lead):
            y = fn(xp.reshape(x, (-1, *x.shape[len(lead) + 1 :])))
            return xp.reshape(y, (*lead, n, *y.shape[1:]))

        P = self.b.shape[0]
        if self.c is None:
            return Jet(fn(self.a), flat(self.b, (P,)))
        Q = self.c.shape[0]
        return Jet(fn(self.a), flat(self.b, (P,)), flat(self.c, (Q,)), flat(self.d, (P, Q)))

    def map_fused(self, xp, fn: Callable):
        """Like ``map`` but stacks all components into one batch for a single call of ``fn``.

        Worth it for expensive maps with per-call overhead (convolutions, matmuls).
        """
        n = self.a.shape[0]
        parts = self.components()
        counts = [1] + [int(_prod(p.shape[: p.ndim - self.a.ndim])) for p in parts[1:]]
        stacked = xp.concat(
            [xp.reshape(p, (-1, *self.a.shape[1:])) for p in parts], axis=0
        )  # (Σ counts * n, *S[1:])
        y = fn(stacked)
        out, start = [], 0
        for p, cnt in zip(parts, counts):
            lead = p.shape[: p.ndim - self.a.ndim]
            piece = y[start * n : (start + cnt) * n, ...]
            out.append(xp.reshape(piece, (*lead, n, *y.shape[1:])) if lead else piece)
            start += cnt
        return Jet(*out)

    # ------------------------------------------------------------ elementwise maps
    def apply(self, derivs):
        """Compose with an elementwise f given ``derivs = [f(a), f'(a), f''(a)]``.

            f(x)_a = f(a)
            f(x)_b = f'(a) b                         f(x)_c = f'(a) c
            f(x)_d = f'(a) d + f''(a) (b ⊗ c)        (chain rule to second order)
        """
        f0, f1 = derivs[0], derivs[1]
        if self.c is None:
            return Jet(f0, f1 * self.b)
        f2 = derivs[2]
        bc = self.b[:, None, ...] * self.c[None, ...]  # (P, Q, *S)
        return Jet(f0, f1 * self.b, f1 * self.c, f1 * self.d + f2 * bc)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other):
        if isinstance(other, Jet):
            _check_compatible(self, other)
            return Jet(*(x + y for x, y in zip(self.components(), other.components())))
        return Jet(self.a + other, self.b, self.c, self.d)

    __radd__ = __add__

    def __neg__(self):
        return Jet(*(-x for x in self.components()))

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        """Product rule (constants scale every component)."""
        if not isinstance(other, Jet):
            return Jet(*(x * other for x in self.components()))
        _check_compatible(self, other)
        xa, ya = self.a, other.a
        a = xa * ya
        b = xa * other.b + self.b * ya
        if self.c is None:
            return Jet(a, b)
        c = xa * other.c + self.c * ya
        d = (
            xa * other.d
            + self.d * ya
            + self.b[:, None, ...] * other.c[None, ...]
            + other.b[:, None, ...] * self.c[None, ...]
        )
        return Jet(a, b, c, d)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, Jet):
            raise TypeError("division by a jet is not needed by srl and not implemented")
        return Jet(*(x / other for x in self.components()))


def _prod(shape):
    out = 1
    for s in shape:
        out *= int(s)
    return out


def _check_compatible(x: Jet, y: Jet):
    if x.order != y.order:
        raise ValueError(f"cannot combine jets of order {x.order} and {y.order}")


def linear(xp, fn: Callable, x, *, fused: bool = False):
    """``fn(x)`` for a map linear in ``x`` (plain arrays pass straight through)."""
    if isinstance(x, Jet):
        return x.map_fused(xp, fn) if fused else x.map(xp, fn)
    return fn(x)


def primal(x):
    """The value part of a jet (or the array itself)."""
    return x.a if isinstance(x, Jet) else x
