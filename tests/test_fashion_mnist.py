"""Fashion-MNIST: the loader (generated idx files; Debian's location without ``root``),
padding to 32×32, the error naming the package, and one end-to-end run on the real
files when the package is installed."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from srl import data
from srl.cli import main
from srl.data import DataFilesMissing, load

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_fashion(d: Path, *, n=(6, 4), hw=(28, 28), gz=True, seed=0):
    """Four idx files (unsigned bytes), gzipped like Debian's, in ``d``; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (n[0], *hw), dtype=np.uint8), rng.integers(0, 10, n[0], dtype=np.uint8),
              rng.integers(0, 256, (n[1], *hw), dtype=np.uint8), rng.integers(0, 10, n[1], dtype=np.uint8)]
    d.mkdir(parents=True, exist_ok=True)
    for name, a in zip(FILES, arrays):
        raw = struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
        (d / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


def scaled(a):
    return a.astype(np.float64) / 255 * 2 - 1


@pytest.fixture
def system_dir(tmp_path, monkeypatch):
    """Stand-in for /usr/share/datasets/fashion-mnist (the package's directory)."""
    d = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (str(d),))
    return d


def test_found_without_root_where_the_package_puts_it(system_dir):
    arrays = write_fashion(system_dir)
    ds = load("fashion-mnist")
    assert ds.name == "fashion-mnist" and ds.shape == (1, 28, 28) and ds.source == str(system_dir)
    np.testing.assert_array_equal(ds.train[:, 0], scaled(arrays[0]))
    np.testing.assert_array_equal(ds.train_labels, arrays[1])
    np.testing.assert_array_equal(ds.test[:, 0], scaled(arrays[2]))
    np.testing.assert_array_equal(ds.test_labels, arrays[3])


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_root_is_honoured_before_the_system_directory(system_dir, tmp_path, layout):
    write_fashion(system_dir, seed=1)
    user = tmp_path / "mine"
    arrays = write_fashion(user if layout == "flat" else user / "FashionMNIST" / "raw", gz=False, seed=2)
    ds = load("fashion-mnist", root=user)
    np.testing.assert_array_equal(ds.train[:, 0], scaled(arrays[0]))  # the user's files, not the system's


def test_missing_files_name_the_package_and_the_install_command(system_dir, tmp_path):
    with pytest.raises(DataFilesMissing) as e:
        load("fashion-mnist")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and str(system_dir) in msg
    assert "\n" not in msg
    with pytest.raises(DataFilesMissing, match="apt-get install dataset-fashion-mnist") as e:
        load("fashion-mnist", root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value)


def test_pad_frames_the_images_with_black(system_dir):
    arrays = write_fashion(system_dir)
    ds = load("fashion-mnist", pad=2, limit=3)
    assert ds.shape == (1, 32, 32) and ds.train.shape[0] == 3
    np.testing.assert_array_equal(ds.train[:, 0, 2:30, 2:30], scaled(arrays[0][:3]))
    frame = np.ones((32, 32), bool)
    frame[2:30, 2:30] = False
    assert np.all(ds.train[:, 0][:, frame] == -1.0) and np.all(ds.test[:, 0][:, frame] == -1.0)


def test_pad_then_shape(system_dir):
    write_fashion(system_dir, hw=(6, 6))
    ds = load("fashion-mnist", pad=1, shape=(1, 4, 4))  # 8×8 after padding, then 2×2 block means
    raw = load("fashion-mnist", pad=1).train
    np.testing.assert_allclose(ds.train, raw.reshape(-1, 1, 4, 2, 4, 2).mean(axis=(3, 5)), rtol=0, atol=1e-15)


@pytest.mark.parametrize("pad", [-1, 1.5, True, "2"])
def test_bad_pad(pad):
    with pytest.raises(ValueError, match="pad must be a non-negative int"):
        load("digits", pad=pad)


def test_cli_missing_package_is_one_line_exit_2(system_dir, tmp_path, capsys):
    rc = main(["train", "--data", "fashion-mnist", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "apt-get install dataset-fashion-mnist" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


REAL = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not REAL.is_file(), reason="Debian package dataset-fashion-mnist not installed")
def test_end_to_end_on_the_installed_package(tmp_path, capsys):
    """The real files: full sizes, then a short 32×32 run through train and eval."""
    ds = load("fashion-mnist")
    assert ds.train.shape == (60000, 1, 28, 28) and ds.test.shape == (10000, 1, 28, 28)
    assert sorted(np.bincount(ds.train_labels)) == [6000] * 10  # balanced classes, as published
    out = tmp_path / "run"
    rc = main(["train", "--data", "fashion-mnist", "--pad", "2", "--limit", "200", "--epochs", "1",
               "--n-steps", "5", "--out", str(out), "--no-progress", "--no-eval"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["generator"]["out_shape"] == [1, 32, 32] and cfg["train"]["pad"] == 2
    capsys.readouterr()
    assert main(["eval", str(out), "--n-bound", "4", "--iw-chains", "2", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_test"] == 200 and np.isfinite(metrics["mse_per_pixel"])
