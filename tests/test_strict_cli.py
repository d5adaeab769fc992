"""The conformance backend (array_api_strict) runs every command of the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srl import _backend
from srl.cli import main

strict = pytest.importorskip("array_api_strict")


def test_namespace_accepts_the_strict_device_object():
    xp, dev = _backend.namespace("array_api_strict")
    assert _backend.namespace("array_api_strict", device=dev) == (xp, dev)
    x = _backend.from_numpy(xp, np.zeros(2), dtype=xp.float64, device=dev)
    assert _backend.namespace("array_api_strict", device=_backend.device(x))[1] == dev


def test_train_sample_reconstruct_eval_on_array_api_strict(tmp_path, capsys):
    out = tmp_path / "run"
    # default evaluation at the end of training (no --no-eval)
    assert main(["train", "--backend", "array_api_strict", "--limit", "60", "--latent-dims", "2,3", "--hidden", "8",
                 "--batch-size", "30", "--n-steps", "3", "--epochs", "1", "--step-every", "1", "--step-subset", "8",
                 "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert np.isfinite(summary["neg_elbo_reverse_nats"]) and np.isfinite(summary["frechet_digits"])
    for backend in ([], ["--backend", "array_api_strict"], ["--backend", "numpy"]):
        assert main(["sample", str(out), "-n", "4", "-o", str(tmp_path / "s.png"), *backend]) == 0
        assert main(["reconstruct", str(out), "-n", "4", "-o", str(tmp_path / "r.png"), *backend]) == 0
        capsys.readouterr()
        assert main(["eval", str(out), "--n-bound", "5", "--iw-chains", "2", "--json", *backend]) == 0
        assert np.isfinite(json.loads(capsys.readouterr().out)["neg_elbo_jacobian_nats"])
