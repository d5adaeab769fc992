"""The loop over the K steps of a chain (docs/math.md eq. 2.1), written once for every backend.

``fold(xp, step, carry, xs)`` is ``lax.scan``'s contract: ``step(carry, x_k) -> (carry, y_k)``
for every slice ``x_k`` of the stacked per-step inputs ``xs`` (a tuple tree of ``(K, ...)``
arrays), returning the last carry and the stacked outputs ``ys`` (``(K, ...)`` per leaf, or
None when ``step`` returns None).

* Eagerly (NumPy, PyTorch, CuPy, array-api-strict, JAX without compilation) it is a Python
  loop over ``k``; ``x_k`` are views of ``xs``.
* Inside a compiled JAX trace (``srl.compiled``) it is one ``jax.lax.scan``: the step is
  traced once, so the compiled program does not grow with K.

The step functions of the chain, the Jacobian bound, the reverse-kernel bound and its
adjoint sweep (``srl.langevin``, ``srl.jacobian_bound``, ``srl.reverse_bound``) go through
here, so the eager and the compiled code are the same code.
"""

from __future__ import annotations

from . import compiled


class Steps(list):
    """Eager per-step outputs kept as a list of K trees instead of stacked (``fold(...,
    stack=False)``): a leaf whose slice ``[k]`` is step k's tree. Saves a copy of large
    per-step outputs (the adjoint sweep's stored linearisations)."""


def tree_map(fn, tree):
    """``fn`` on every array leaf of a tree of tuples/lists (None stays None)."""
    if tree is None:
        return None
    if isinstance(tree, Steps):
        return fn(tree)
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, t) for t in tree)
    return fn(tree)


def _leaves(tree):
    if tree is None:
        return []
    if isinstance(tree, (tuple, list)) and not isinstance(tree, Steps):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [tree]


def _stack(xp, trees):
    """A list of equally shaped trees → one tree of ``(K, ...)`` stacks."""
    first = trees[0]
    if first is None:
        return None
    if isinstance(first, (tuple, list)):
        return type(first)(_stack(xp, [t[i] for t in trees]) for i in range(len(first)))
    return xp.stack(trees, axis=0)


def length(xs) -> int:
    """K, the leading axis of the stacked inputs."""
    first = _leaves(xs)[0]
    return len(first) if isinstance(first, Steps) else int(first.shape[0])


def fold(xp, step, carry, xs, *, reverse=False, stack=True):
    """``(carry, ys)`` after ``step`` over k = 0..K−1 (K−1..0 with ``reverse``); see module docstring.

    ``stack=False``: eagerly, ``ys`` is a ``Steps`` list of the K per-step trees (no copy);
    a compiled scan stacks them as always. Either form is a valid ``xs`` of another fold.
    A tuple of bools chooses per element of a tuple ``y_k``.
    """
    if compiled.tracing():
        from jax import lax

        return lax.scan(step, carry, xs, reverse=reverse)
    K = length(xs)
    ys = []
    for k in (range(K - 1, -1, -1) if reverse else range(K)):
        carry, y = step(carry, tree_map(lambda a: a[k] if isinstance(a, Steps) else a[k, ...], xs))
        ys.append(y)
    if reverse:
        ys.reverse()
    if not ys or ys[0] is None:
        return carry, None
    if isinstance(stack, tuple):
        return carry, tuple(_stack(xp, [y[i] for y in ys]) if st else Steps([y[i] for y in ys])
                            for i, st in enumerate(stack))
    return carry, (_stack(xp, ys) if stack else Steps(ys))
