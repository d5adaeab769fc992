"""Atomic checkpoints that resume training exactly.

A checkpoint is one ``.npz`` file: float arrays under ``params/<name>``,
``adam/m/<name>``, ``adam/v/<name>``, and a JSON document under ``meta`` (config,
iteration counters, step sizes, step-size optimiser state, metric history, RNG
positions). Arrays are stored in their training dtype, so a resumed run continues with
bit-identical numbers.

Writes are atomic: the file is written to a temporary name in the same directory,
flushed to disk, then renamed over the old checkpoint (``os.replace``). An interrupted
write leaves the previous checkpoint untouched and no partial file behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import _backend

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or from an incompatible version."""


def save(path, *, params: dict, adam: dict, meta: dict) -> Path:
    """Write a checkpoint atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"params/{k}": _backend.to_numpy(v) for k, v in params.items()}
    arrays.update({f"adam/m/{k}": np.asarray(v) for k, v in adam.get("m", {}).items()})
    arrays.update({f"adam/v/{k}": np.asarray(v) for k, v in adam.get("v", {}).items()})
    doc = dict(meta, format_version=FORMAT_VERSION, adam_t=int(adam.get("t", 0)))
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path) -> dict:
    """Read a checkpoint: ``{"params", "adam", "meta"}`` with NumPy arrays."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            params, m, v = {}, {}, {}
            for key in data.files:
                if key.startswith("params/"):
                    params[key[7:]] = data[key]
                elif key.startswith("adam/m/"):
                    m[key[7:]] = data[key]
                elif key.startswith("adam/v/"):
                    v[key[7:]] = data[key]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    return {"params": params, "adam": {"t": meta["adam_t"], "m": m, "v": v}, "meta": meta}
