"""Atomic checkpoints that resume training exactly.

A checkpoint is one ``.npz`` file: float arrays under ``params/<name>``,
``adam/m/<name>``, ``adam/v/<name>``, and a JSON document under ``meta`` (config,
iteration counters, step sizes, step-size optimiser state, metric history, RNG
positions). Arrays are stored in their training dtype, so a resumed run continues with
bit-identical numbers.

Writes are atomic: the file is written to a temporary name in the same directory,
flushed to disk, then renamed over the old checkpoint (``os.replace``). An interrupted
or failed write (e.g. a full disk: :class:`CheckpointWriteError`) leaves the previous
checkpoint untouched and no partial file behind; a temporary file that a killed process
could not remove is removed by :func:`remove_temporaries` (``srl train`` calls it when it
starts). The file gets the permissions of any other file the process creates
(``0o666`` less the umask).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import zipfile
from pathlib import Path

import numpy as np

from . import _backend

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or from an incompatible version."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, I/O error); the previous one is unchanged."""


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_temporaries(path) -> list:
    """Remove temporary files of interrupted writes of checkpoint ``path``; returns their paths.

    Call it only while no other process writes that checkpoint (``srl train`` holds the run
    directory's lock, ``srl.runlock``).
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


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
    tmp = _temporary_name(path)
    try:
        # 0o666 less the umask, like every other output file
        with os.fdopen(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, CheckpointWriteError):
            err = CheckpointWriteError(f"could not write checkpoint {path} ({exc.strerror or exc}); the previous "
                                       "checkpoint is unchanged: free space (or fix the disk) and continue with --resume")
            err.errno = exc.errno
            raise err from exc
        raise
    return path


def load(path, *, required=()) -> dict:
    """Read a checkpoint: ``{"params", "adam", "meta"}`` with NumPy arrays.

    ``required``: entries the metadata must hold (``CheckpointError`` naming the missing ones).
    """
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
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise CheckpointError(f"checkpoint {path} has format {version}, expected {FORMAT_VERSION}")
    missing = [k for k in ("adam_t", *required) if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks its {', '.join(map(repr, missing))} metadata: it was not "
                              "written by this version of srl, or was edited; use a checkpoint written by srl train")
    return {"params": params, "adam": {"t": meta["adam_t"], "m": m, "v": v}, "meta": meta}
