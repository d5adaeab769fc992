"""A training iteration's chain and θ-gradient replayed as one CUDA graph (PyTorch on CUDA).

On a GPU the short-run chain of a small generator is bound by kernel launches and Python,
not by arithmetic (docs/BENCHMARKS.md, "GPU"): each of the K Langevin steps (docs/math.md
eq. 2.1) launches the forward and the reverse pass's kernels one by one from Python. With
``TrainConfig(cuda_graphs=True)`` (``srl train --cuda-graphs``) the training loop records
the iteration's chain and θ-gradient (eq. 3.1) once with ``torch.cuda.graph`` and replays
the recording on later iterations: the same kernels, in the same order, on the same
inputs, with no Python between them. The arithmetic is that of the eager code
(``srl.learning.chain_and_gradient``, recorded as it is).

What a recording holds and when it is made again:

* the array inputs (θ, the minibatch, z_0 and the K noise draws) are copied into the
  recording's own buffers before each replay; the outputs (z_K, the energies, Σ_i ∇_θ E and
  the residual) live in its buffers and are valid until the next replay;
* everything else the function uses is a constant of the recording and belongs in its
  ``key`` (the generator, s and σ), with the arrays' shapes, dtypes and devices: a new s
  (every ``step_every`` iterations of the step-size optimisation window) or a new minibatch
  size records again;
* each recording is preceded by one eager run on a side stream (lazy initialisation of the
  libraries stays out of the recording), whose result is the iteration's; the last
  ``KEEP`` recordings are kept (the training loop's minibatches all have one size, so one
  suffices and bounds the GPU memory held).

The divergence check and the metrics read the outputs after the replay, as the eager loop
does. Only the short-run method in one process uses it; ``TrainConfig.validate`` names the
options that must go with it.
"""

from __future__ import annotations

from collections import OrderedDict

#: recordings kept per process
KEEP = 1


def _clone(tree):
    if isinstance(tree, dict):
        return {k: v.clone() for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_clone(t) for t in tree)
    return tree.clone()


def _copy_into(dst, src):
    if isinstance(dst, dict):
        for k in dst:
            dst[k].copy_(src[k])
    elif isinstance(dst, (tuple, list)):
        for d, s in zip(dst, src):
            _copy_into(d, s)
    else:
        dst.copy_(src)


def _signature(tree):
    """Shapes, dtypes and devices of a tree of arrays (dicts, tuples, lists)."""
    if isinstance(tree, dict):
        return tuple((k, _signature(v)) for k, v in tree.items())
    if isinstance(tree, (tuple, list)):
        return tuple(_signature(t) for t in tree)
    return (tuple(tree.shape), str(tree.dtype), str(tree.device))


def _first_device(tree):
    if isinstance(tree, dict):
        return _first_device(next(iter(tree.values())))
    if isinstance(tree, (tuple, list)):
        return _first_device(tree[0])
    return tree.device


def _torch_capture(fn, device):
    """Record ``fn()`` as a CUDA graph on ``device``: ``(graph, its outputs, the eager warm-up run's outputs)``."""
    import torch

    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            warm = _clone(fn())  # cuBLAS/cuDNN initialise outside the recording
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
    return graph, out, warm


class Recording:
    """One recorded call: its input buffers, its graph and its output buffers."""

    def __init__(self, fn, arrays, *, capture=_torch_capture):
        self.inputs = _clone(arrays)
        self.graph, self.outputs, self.first = capture(lambda: fn(*self.inputs), _first_device(arrays))

    def replay(self, arrays):
        _copy_into(self.inputs, arrays)
        self.graph.replay()
        return self.outputs


class Recordings:
    """The last ``KEEP`` recordings, by key and array signature (see module docstring)."""

    def __init__(self, *, capture=_torch_capture, keep: int = KEEP):
        self._capture, self._keep = capture, keep
        self._by_key: OrderedDict = OrderedDict()
        self.recorded = 0  # recordings made (for tests and reports)

    def replay(self, fn, arrays: tuple, *, key):
        """``fn(*arrays)``, by replay of the recording for ``key`` and the arrays' signature
        (recorded first where there is none). ``key``: hashable, everything ``fn`` depends on
        besides ``arrays``."""
        full = (key, _signature(arrays))
        rec = self._by_key.get(full)
        if rec is None:
            while len(self._by_key) >= self._keep:
                self._by_key.popitem(last=False)  # the least recently used
            rec = Recording(fn, arrays, capture=self._capture)
            self._by_key[full] = rec
            self.recorded += 1
            return rec.first
        self._by_key.move_to_end(full)
        return rec.replay(arrays)

    def clear(self):
        self._by_key.clear()


#: the process's recordings, used by ``srl.learning`` when ``cuda_graphs`` is on
RECORDINGS = Recordings()
