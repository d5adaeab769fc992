"""float32 accuracy per backend under the frameworks' precision settings.

    python benchmarks/precision.py [OUT.json]

Computes the generator's forward pass, ∇z E, a Hessian-vector product, a K = 10 chain and
the reverse-kernel bound with its s-gradient (docs/math.md eqs. 1.1, 2.1, 5.1) in float32
on every backend present, and prints the normwise relative error ‖a − b‖/‖b‖ of each
against NumPy float64. On GPUs it runs each framework with its defaults and with IEEE
float32 (PyTorch: ``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32``; JAX: ``jax.default_matmul_precision``), because
their defaults may compute float32 products with TF32 inputs (README, "Backends").
Results in benchmarks/gpu-run-log.txt.
"""
import json
import sys

import numpy as np
import srl
from srl import _backend as B

gen = srl.models.conv(latent_dims=(8, 16), out_shape=(1, 16, 16), channels=32)
n, sigma, s, K = 32, 0.15, (0.05, 0.05), 10
host_x = np.tanh(np.random.default_rng(13).standard_normal((n, *gen.out_shape)))


def outputs(backend, dtype):
    p = gen.init(seed=1, backend=backend, dtype=dtype)
    z = gen.prior(n, seed=2, backend=backend, dtype=dtype)
    v = gen.prior(n, seed=3, backend=backend, dtype=dtype)
    xp, dev = B.namespace(backend)
    x = B.from_numpy(xp, host_x, dtype=B.resolve_dtype(xp, dtype), device=dev)
    val, grad = srl.stepsize_objective(gen, p, x, step_size=s, n_steps=K, sigma=sigma, seed=4, kind="reverse")
    out = {"forward": gen.forward(p, z), "grad_z": srl.grad_z(gen, p, x, z, sigma=sigma),
           "hvp_z": srl.hvp_z(gen, p, x, z, v, sigma=sigma),
           "short_run": srl.short_run(gen, p, x, step_size=s, n_steps=K, sigma=sigma, seed=4),
           "reverse_value": val, "reverse_grad": grad}
    flat = {}
    for k, a in out.items():
        leaves = a if isinstance(a, (tuple, list)) else [a]
        flat[k] = np.concatenate([np.ravel(B.to_numpy(t)).astype(np.float64) for t in leaves])
    return flat


def err(got, ref):
    return {k: float(np.linalg.norm(got[k] - ref[k]) / np.linalg.norm(ref[k])) for k in ref}


def _has(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def main(outfile):
    ref = outputs("numpy", "float64")
    rows = {}

    def add(name, backend):
        rows[name] = err(outputs(backend, "float32"), ref)
        print(name, json.dumps(rows[name]), flush=True)
        with open(outfile, "w") as f:  # after every row: a run stopped early keeps what it measured
            json.dump(rows, f, indent=1)

    add("numpy float32", "numpy")
    if _has("torch"):
        import torch

        add("torch float32", "torch")
        if torch.cuda.is_available():
            print("torch defaults:", {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                                      "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32})
            add("torch:cuda float32, defaults", "torch:cuda")
            old = torch.backends.cuda.matmul.allow_tf32
            try:
                torch.backends.cuda.matmul.allow_tf32 = False
                with torch.backends.cudnn.flags(allow_tf32=False):
                    add("torch:cuda float32, IEEE", "torch:cuda")
                torch.backends.cuda.matmul.allow_tf32 = True
                with torch.backends.cudnn.flags(allow_tf32=True):
                    add("torch:cuda float32, TF32 everywhere", "torch:cuda")
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
    if _has("cupy"):
        add("cupy float32", "cupy")
    if _has("jax"):
        import jax

        add("jax float32 (CPU)", "jax:cpu")
        if any(d.platform == "gpu" for d in jax.devices()):
            add("jax:gpu float32, defaults", "jax:gpu")
            with jax.default_matmul_precision("highest"):
                add("jax:gpu float32, highest", "jax:gpu")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "precision.json")
