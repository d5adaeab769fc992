"""Damaged data files and too-small data sets: one ValueError naming the file and the fix."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from srl import data

from .test_data import make_cifar, make_mnist, make_svhn, u8


def _png(path, rng):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(u8(rng, 4, 4), mode="L").save(path)


@pytest.mark.parametrize("content, problem", [
    (b"", r"is empty \(0 bytes\)"),
    (b"not an image at all", r"cannot be read as an image \(.*\)"),
    ("truncated", r"cannot be read as an image \(.*\)"),
])
def test_unreadable_file_in_an_image_folder(tmp_path, content, problem):
    rng = np.random.default_rng(0)
    for i in range(3):
        _png(tmp_path / f"ok{i}.png", rng)
    bad = tmp_path / "sub" / "bad.png"
    bad.parent.mkdir()
    if content == "truncated":
        _png(bad, rng)
        content = bad.read_bytes()[:40]
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=rf"image file {re.escape(str(bad))} {problem}; delete it or move it out of the folder"):
        data.load(str(tmp_path))


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_corrupt_cifar10_batch(tmp_path, damage):
    d = tmp_path / "cifar-10-batches-py"
    make_cifar(d, np.random.default_rng(0))
    path = d / "data_batch_3"
    raw = path.read_bytes()
    path.write_bytes({"garbage": b"\x80\x02garbage\x00", "empty": b"", "truncated": raw[:len(raw) // 2]}[damage])
    with pytest.raises(ValueError, match=rf"{path} is not a CIFAR-10 python batch .*replace it with an intact copy"):
        data.load("cifar10", root=tmp_path)


def test_refused_pickle_names_the_batch(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    make_cifar(d, np.random.default_rng(0))
    (d / "test_batch").write_bytes(pickle.dumps({b"data": print, b"labels": []}))
    with pytest.raises(ValueError, match=rf"{d / 'test_batch'} .*refusing to unpickle builtins.print"):
        data.load("cifar10", root=tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_corrupt_svhn_mat(tmp_path, damage):
    make_svhn(tmp_path, np.random.default_rng(0))
    path = tmp_path / "test_32x32.mat"
    raw = path.read_bytes()
    path.write_bytes({"garbage": b"garbage", "empty": b"", "truncated": raw[:300]}[damage])
    with pytest.raises(ValueError, match=rf"{path} is not a readable SVHN \.mat file .*replace it with an intact"):
        data.load("svhn", root=tmp_path)


def test_corrupt_gzipped_mnist_file(tmp_path):
    make_mnist(tmp_path, np.random.default_rng(0), gz=(True,) * 4)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match=rf"{path} is a corrupt or truncated gzip file"):
        data.load("mnist", root=tmp_path)


def test_image_folder_too_small_for_a_test_split(tmp_path):
    _png(tmp_path / "only.png", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"holds 1 image \(only.png\); a train/test split needs at least 2 images"):
        data.load(str(tmp_path))
    assert data.load(str(tmp_path), test_fraction=0).test.shape[0] == 0  # asked for explicitly: allowed
