"""Checkpoint writes that fail (full disk), leftovers of killed writers, permissions and
incomplete metadata."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from srl import checkpoint

ADAM = {"t": 1, "m": {}, "v": {}}


class _FullDisk:
    """A file object that accepts the first half of what is written, then reports ENOSPC."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        data = bytes(data)
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()
        return False


def test_full_disk_keeps_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, params={"w": np.arange(3.0)}, adam=ADAM, meta={"iteration": 1})
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k)))
    with pytest.raises(checkpoint.CheckpointWriteError,
                       match=rf"could not write checkpoint {path} \(No space left on device\); the previous "
                             r"checkpoint is unchanged: free space .* --resume") as info:
        checkpoint.save(path, params={"w": np.zeros(1000)}, adam=ADAM, meta={"iteration": 2})
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]  # the partial file is gone
    assert checkpoint.load(path)["meta"]["iteration"] == 1


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, params={"w": np.arange(3.0)}, adam=ADAM, meta={})
    left = [tmp_path / ".checkpoint.npz.1234.abcd.tmp", tmp_path / ".checkpoint.npz.x8f2k1.tmp"]  # new and old names
    for p in left:
        p.write_bytes(b"partial")
    other = tmp_path / ".other.npz.1.tmp"
    other.write_bytes(b"not ours")
    assert sorted(checkpoint.remove_temporaries(path)) == sorted(left)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.1.tmp", "checkpoint.npz"]


def test_checkpoint_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = checkpoint.save(tmp_path / "checkpoint.npz", params={"w": np.zeros(2)}, adam=ADAM, meta={})
        (tmp_path / "config.json").write_text("{}")  # any other output
    finally:
        os.umask(old)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644


def test_checkpoint_lacking_required_metadata_is_reported(tmp_path):
    path = checkpoint.save(tmp_path / "checkpoint.npz", params={"w": np.zeros(2)}, adam=ADAM,
                           meta={"iteration": 3})
    assert checkpoint.load(path, required=("iteration",))["meta"]["iteration"] == 3
    with pytest.raises(checkpoint.CheckpointError, match=r"lacks its 'config', 'generator' metadata"):
        checkpoint.load(path, required=("config", "generator", "iteration"))
