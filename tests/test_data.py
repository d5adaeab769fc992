"""srl.data: embedded digits, standard-file loaders (written here as tiny synthetic files),
resizing and channel conversion, and the errors for missing files and bad images."""

from __future__ import annotations

import gzip
import pickle
import struct
import sys

import numpy as np
import pytest

from srl import data
from srl.data import DataFilesMissing, check_images, load, resize
from srl.errors import BackendUnavailableError, DTypeError, NonFiniteError, ShapeError


def u8(rng, *shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def scaled(a):
    return np.asarray(a, dtype=np.float64) / 255 * 2 - 1


# ---------------------------------------------------------------------------------------------
# digits


def _digits_csv():
    from importlib import resources

    with resources.files("srl.data").joinpath("digits.csv.gz").open("rb") as f:
        return np.loadtxt(gzip.open(f, "rt"), delimiter=",", dtype=np.int64)


def test_digits_shape_range_and_sizes():
    ds = data.load_digits()
    assert ds.name == "digits" and ds.source == "embedded"
    assert ds.shape == (1, 8, 8)
    assert ds.train.shape == (1497, 1, 8, 8) and ds.test.shape == (300, 1, 8, 8)
    assert ds.train.dtype == np.float64 and ds.test.dtype == np.float64
    assert ds.train_labels.dtype == np.int64 and ds.train_labels.shape == (1497,)
    assert ds.test_labels.shape == (300,)
    both = np.concatenate([ds.train, ds.test])
    assert both.min() == -1.0 and both.max() == 1.0
    # 17 gray levels 0..16 -> k / 16 * 2 - 1 exactly
    levels = (both + 1) / 2 * 16
    np.testing.assert_array_equal(levels, np.round(levels))
    assert set(np.unique(levels)) <= set(range(17))


def test_digits_label_counts():
    ds = data.load_digits()
    total = np.bincount(np.concatenate([ds.train_labels, ds.test_labels]), minlength=10)
    np.testing.assert_array_equal(total, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    np.testing.assert_array_equal(np.bincount(ds.test_labels, minlength=10),
                                  [33, 33, 42, 22, 37, 26, 31, 23, 22, 31])


def test_digits_split_is_the_documented_permutation():
    a = _digits_csv()
    x = a[:, :64].reshape(-1, 1, 8, 8) / 16 * 2 - 1
    perm = np.random.default_rng(0).permutation(1797)
    ds = load("digits")
    np.testing.assert_array_equal(ds.train, x[perm[:1497]])
    np.testing.assert_array_equal(ds.test, x[perm[1497:]])
    np.testing.assert_array_equal(ds.train_labels, a[perm[:1497], 64])
    np.testing.assert_array_equal(ds.test_labels, a[perm[1497:], 64])
    # pinned values: the split must never move
    np.testing.assert_array_equal(ds.test_labels[:12], [6, 5, 5, 0, 4, 4, 8, 4, 9, 2, 6, 8])
    np.testing.assert_array_equal(ds.train_labels[:12], [6, 6, 6, 2, 5, 6, 6, 2, 2, 1, 1, 9])
    assert ds.train.sum() == -37229.125


def test_digits_deterministic_and_fresh_arrays():
    a, b = load(), load()
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    a.train[0] = 0.0  # callers own their arrays
    assert not np.array_equal(load().train[0], a.train[0])


def test_digits_limit_and_shape():
    full = load()
    ds = load("digits", shape=(3, 16, 16), limit=10)
    assert ds.train.shape == (10, 3, 16, 16) and ds.test.shape == (10, 3, 16, 16)
    np.testing.assert_array_equal(ds.train_labels, full.train_labels[:10])
    np.testing.assert_array_equal(ds.train[:, 0], ds.train[:, 2])
    np.testing.assert_allclose(ds.test, resize(full.test[:10], (3, 16, 16)))
    check_images(ds.train, (3, 16, 16))


def test_dataset_repr_is_short():
    r = repr(load(limit=3))
    assert "shape=(1, 8, 8)" in r and "n_train=3" in r and len(r) < 200


# ---------------------------------------------------------------------------------------------
# MNIST


def write_idx(path, array, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    array = np.asarray(array)
    raw = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim)
    raw += struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def make_mnist(d, rng, gz=(False,) * 4, n=(5, 3), hw=(6, 4)):
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": u8(rng, n[0], *hw),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n[0]).astype(np.uint8),
        "t10k-images-idx3-ubyte": u8(rng, n[1], *hw),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n[1]).astype(np.uint8),
    }
    for (name, a), z in zip(arrays.items(), gz):
        write_idx(d / name, a, z)
    return arrays


@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4, (True, False, False, True)])
def test_mnist_exact_pixels(tmp_path, gz):
    arrays = make_mnist(tmp_path, np.random.default_rng(1), gz)
    ds = load("mnist", root=tmp_path)
    assert ds.name == "mnist" and ds.shape == (1, 6, 4)
    np.testing.assert_array_equal(ds.train, scaled(arrays["train-images-idx3-ubyte"])[:, None])
    np.testing.assert_array_equal(ds.test, scaled(arrays["t10k-images-idx3-ubyte"])[:, None])
    np.testing.assert_array_equal(ds.train_labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert ds.train_labels.dtype == np.int64


def test_mnist_extremes_map_to_minus_one_and_one(tmp_path):
    make_mnist(tmp_path, np.random.default_rng(0), hw=(1, 2))
    write_idx(tmp_path / "train-images-idx3-ubyte", np.array([[[0, 255]], [[128, 1]]] * 3, np.uint8)[:5])
    ds = data.load_mnist(tmp_path)
    assert ds.train[0, 0, 0, 0] == -1.0 and ds.train[0, 0, 0, 1] == 1.0
    assert ds.train[1, 0, 0, 0] == 128 / 255 * 2 - 1


def test_mnist_torchvision_layout_limit_and_resize(tmp_path):
    arrays = make_mnist(tmp_path / "MNIST" / "raw", np.random.default_rng(2), n=(7, 4), hw=(8, 8))
    ds = load("mnist", root=tmp_path, limit=3, shape=(1, 4, 4))
    assert ds.train.shape == (3, 1, 4, 4) and ds.test.shape == (3, 1, 4, 4)
    x = scaled(arrays["train-images-idx3-ubyte"][:3])
    # a mean of 4 values in [−1, 1]: a few roundings (≤ 4.4e-16) whatever the summation order
    np.testing.assert_allclose(ds.train[:, 0], x.reshape(3, 4, 2, 4, 2).mean(axis=(2, 4)), rtol=0, atol=1e-15)


def test_mnist_bad_magic_and_truncated(tmp_path):
    make_mnist(tmp_path, np.random.default_rng(0))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte is not an idx file"):
        load("mnist", root=tmp_path)
    make_mnist(tmp_path, np.random.default_rng(0))
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: header says shape \(5, 6, 4\)"):
        load("mnist", root=tmp_path)


def test_mnist_train_and_test_sizes_must_agree(tmp_path):
    make_mnist(tmp_path, np.random.default_rng(0))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 4, 6), np.uint8))
    with pytest.raises(ShapeError, match=r"train images are \(6, 4\) but test images are \(4, 6\)"):
        load("mnist", root=tmp_path)


def test_mnist_label_count_mismatch(tmp_path):
    make_mnist(tmp_path, np.random.default_rng(0))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ShapeError, match=r"expected \(5,\)"):
        load("mnist", root=tmp_path)


# ---------------------------------------------------------------------------------------------
# SVHN


def make_svhn(d, rng, n=(4, 3), hw=(7, 5)):
    from scipy.io import savemat

    out = {}
    for name, k in zip(("train_32x32.mat", "test_32x32.mat"), n):
        X = u8(rng, *hw, 3, k)
        y = rng.integers(1, 11, (k, 1)).astype(np.uint8)
        y[0, 0] = 10
        savemat(d / name, {"X": X, "y": y})
        out[name] = (X, y)
    return out


def test_svhn_exact_pixels_and_label_ten_is_zero(tmp_path):
    files = make_svhn(tmp_path, np.random.default_rng(3))
    ds = load("svhn", root=tmp_path)
    assert ds.name == "svhn" and ds.shape == (3, 7, 5)
    for x, labels, name in ((ds.train, ds.train_labels, "train_32x32.mat"),
                            (ds.test, ds.test_labels, "test_32x32.mat")):
        X, y = files[name]
        np.testing.assert_array_equal(x, scaled(X.transpose(3, 2, 0, 1)))
        # pixel (n=1, c=2, h=3, w=4) is X[3, 4, 2, 1]
        assert x[1, 2, 3, 4] == X[3, 4, 2, 1] / 255 * 2 - 1
        want = y[:, 0].astype(np.int64) % 10
        np.testing.assert_array_equal(labels, want)
        assert labels[0] == 0 and labels.max() <= 9


def test_svhn_limit_and_gray(tmp_path):
    files = make_svhn(tmp_path, np.random.default_rng(4))
    ds = data.load_svhn(tmp_path, limit=2, shape=(1, 7, 5))
    X = scaled(files["train_32x32.mat"][0][..., :2].transpose(3, 2, 0, 1))
    luma = 0.299 * X[:, 0] + 0.587 * X[:, 1] + 0.114 * X[:, 2]
    # three O(1) products summed, possibly in another order: a few ulps
    np.testing.assert_allclose(ds.train[:, 0], luma, rtol=0, atol=1e-14)


def test_svhn_wrong_array_shape(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 5), np.uint8), "y": np.ones((5, 1))})
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 5), np.uint8), "y": np.ones((5, 1))})
    with pytest.raises(ShapeError, match=r"X has shape \(32, 32, 5\); expected \(H, W, 3, N\)"):
        load("svhn", root=tmp_path)


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def make_cifar(d, rng, n=3, protocol=2):
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in data.CIFAR10_FILES:
        x = u8(rng, n, 3072)
        y = rng.integers(0, 10, n).tolist()
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": y, b"data": x,
                         b"filenames": [b"a.png"] * n}, f, protocol=protocol)
        out[name] = (x, y)
    return out


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("point_at", ["parent", "dir"])
def test_cifar10_exact_pixels(tmp_path, protocol, point_at):
    d = tmp_path / "cifar-10-batches-py"
    files = make_cifar(d, np.random.default_rng(5), protocol=protocol)
    ds = load("cifar10", root=tmp_path if point_at == "parent" else d)
    assert ds.name == "cifar10" and ds.shape == (3, 32, 32) and ds.train.shape[0] == 15
    x_tr = np.concatenate([files[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(ds.train, scaled(x_tr.reshape(15, 3, 32, 32)))
    np.testing.assert_array_equal(ds.test, scaled(files["test_batch"][0].reshape(3, 3, 32, 32)))
    # row-major CHW: channel 1 (green), row 2, column 5 is column 1024 + 2 * 32 + 5
    assert ds.test[2, 1, 2, 5] == files["test_batch"][0][2, 1024 + 64 + 5] / 255 * 2 - 1
    np.testing.assert_array_equal(ds.train_labels, sum((files[f"data_batch_{i}"][1] for i in range(1, 6)), []))
    np.testing.assert_array_equal(ds.test_labels, files["test_batch"][1])


def test_cifar10_limit_spans_batches(tmp_path):
    files = make_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(6))
    ds = load("cifar10", root=tmp_path, limit=4)
    assert ds.train.shape[0] == 4 and ds.test.shape[0] == 3
    np.testing.assert_array_equal(ds.train[3], scaled(files["data_batch_2"][0][0].reshape(3, 32, 32)))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar10_refuses_foreign_pickles(tmp_path, capsys):
    d = tmp_path / "cifar-10-batches-py"
    make_cifar(d, np.random.default_rng(0))
    (d / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        load("cifar10", root=tmp_path)
    assert "pwned" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# folder of images


def test_folder_png_exact_pixels_and_split(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(7)
    imgs = [u8(rng, 5, 4) for _ in range(10)]
    for i, a in enumerate(imgs):
        Image.fromarray(a, mode="L").save(tmp_path / f"img{i:02d}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load(str(tmp_path), test_fraction=0.3, seed=4)
    assert ds.name == "folder" and ds.shape == (1, 5, 4)
    assert ds.train.shape[0] == 7 and ds.test.shape[0] == 3 and ds.train_labels is None
    perm = np.random.default_rng(4).permutation(10)
    want = np.stack([scaled(imgs[i])[None] for i in perm])
    np.testing.assert_array_equal(np.concatenate([ds.train, ds.test]), want)
    # same seed, same split; default fraction 0.1 -> one test image
    np.testing.assert_array_equal(load("folder", root=tmp_path, test_fraction=0.3, seed=4).test, ds.test)
    assert load(tmp_path).test.shape[0] == 1


def test_folder_rgb_and_resize(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(8)
    a = u8(rng, 4, 6, 3)
    Image.fromarray(a, mode="RGB").save(tmp_path / "a.png")
    Image.fromarray(u8(rng, 8, 12, 3), mode="RGB").save(tmp_path / "b.bmp")
    with pytest.raises(ShapeError, match="pass shape"):
        load(tmp_path)
    ds = load(tmp_path, shape=(3, 4, 6), test_fraction=0.0)
    assert ds.train.shape == (2, 3, 4, 6) and ds.test.shape == (0, 3, 4, 6)
    i = [k for k in range(2) if np.allclose(ds.train[k], scaled(a.transpose(2, 0, 1)))]
    assert len(i) == 1


def test_folder_without_pillow(tmp_path, monkeypatch):
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(BackendUnavailableError, match="pip install pillow"):
        load(tmp_path)


# ---------------------------------------------------------------------------------------------
# resizing and channels


def test_shrink_by_integer_factor_is_block_mean():
    x = np.random.default_rng(9).uniform(-1, 1, (2, 3, 6, 9))
    y = resize(x, (3, 3, 3))
    # a mean of 9 values in [−1, 1]: a few roundings whatever the summation order
    np.testing.assert_allclose(y, x.reshape(2, 3, 3, 2, 3, 3).mean(axis=(3, 5)), rtol=0, atol=1e-15)


def test_shrink_by_other_factor_keeps_the_mean():
    x = np.random.default_rng(10).uniform(-1, 1, (2, 1, 7, 5))
    y = resize(x, (1, 3, 2))
    # area-weighted resampling keeps the mean exactly in real arithmetic; 35 weighted terms of round-off
    np.testing.assert_allclose(y.mean(axis=(2, 3)), x.mean(axis=(2, 3)), rtol=0, atol=1e-14)
    assert not np.allclose(y[..., 0, 0], x[..., 0, 0])


def test_grow_constant_stays_constant():
    x = np.full((1, 3, 3, 5), -0.375)
    np.testing.assert_array_equal(resize(x, (3, 7, 11)), np.full((1, 3, 7, 11), -0.375))
    one = resize(np.ones((1, 1, 2, 2)), (1, 5, 3))
    assert one.max() == 1.0 and one.min() == 1.0


def test_grow_is_bilinear_with_aligned_centres():
    x = np.array([[[[-1.0, 1.0]]]])
    # bilinear weights 1/4, 3/4 on ±1: at most one rounding each
    np.testing.assert_allclose(resize(x, (1, 1, 4)), [[[[-1.0, -0.5, 0.5, 1.0]]]], rtol=0, atol=1e-15)
    col = np.array([0.0, 0.4, -0.8]).reshape(1, 1, 3, 1)  # 3 -> 6 rows
    np.testing.assert_allclose(resize(col, (1, 6, 1))[0, 0, :, 0],
                               [0.0, 0.1, 0.3, 0.1, -0.5, -0.8], rtol=0, atol=1e-15)


def test_channel_conversions():
    rng = np.random.default_rng(11)
    g = rng.uniform(-1, 1, (2, 1, 4, 4))
    rgb = resize(g, (3, 4, 4))
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, c], g[:, 0])
    red = np.array([1.0, -1.0, -1.0]).reshape(1, 3, 1, 1) * np.ones((1, 3, 2, 2))
    # the same three terms summed in another order: ≤ 2 ulps
    np.testing.assert_allclose(resize(red, (1, 2, 2)), np.full((1, 1, 2, 2), 0.299 - 0.587 - 0.114), atol=1e-15)
    np.testing.assert_allclose(resize(rgb, (1, 4, 4)), g, rtol=0, atol=1e-15)  # luma weights sum to 1
    np.testing.assert_array_equal(resize(g, (1, 4, 4)), g)


def test_resize_stays_in_range():
    x = np.random.default_rng(12).choice([-1.0, 1.0], (3, 3, 5, 7))
    for shape in [(3, 13, 4), (1, 2, 17), (3, 1, 1)]:
        y = resize(x, shape)
        assert y.shape == (3,) + shape and y.min() >= -1.0 and y.max() <= 1.0


def test_resize_rejects_bad_shapes():
    with pytest.raises(ShapeError, match="4-D"):
        resize(np.zeros((3, 8, 8)), (1, 4, 4))
    with pytest.raises(ShapeError, match="C in"):
        resize(np.zeros((1, 1, 8, 8)), (2, 4, 4))
    with pytest.raises(ShapeError, match="2-channel"):
        resize(np.zeros((1, 2, 8, 8)), (1, 4, 4))


# ---------------------------------------------------------------------------------------------
# missing files


def test_missing_mnist_names_every_file(tmp_path):
    with pytest.raises(DataFilesMissing) as e:
        load("mnist", root=tmp_path)
    msg = str(e.value)
    for f in data.MNIST_FILES:
        assert f in msg
    assert str(tmp_path) in msg and "never download" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_some_mnist_files_lists_those(tmp_path):
    make_mnist(tmp_path, np.random.default_rng(0), gz=(True,) * 4)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataFilesMissing, match="missing: t10k-images-idx3-ubyte[.] ") as e:
        load("mnist", root=tmp_path)
    assert e.value.missing == ("t10k-images-idx3-ubyte",)


def test_missing_svhn_and_cifar_name_every_file(tmp_path):
    with pytest.raises(DataFilesMissing) as e:
        load("svhn", root=tmp_path)
    assert "train_32x32.mat" in str(e.value) and "test_32x32.mat" in str(e.value)
    assert str(tmp_path) in str(e.value) and "never download" in str(e.value)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataFilesMissing) as e:
        load("cifar10", root=tmp_path)
    msg = str(e.value)
    for f in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        assert f in msg
    assert "cifar-10-batches-py" in msg and "extract" in msg and "never download" in msg


def test_missing_root_and_empty_folder(tmp_path):
    with pytest.raises(DataFilesMissing, match="pass root="):
        load("cifar10")
    with pytest.raises(DataFilesMissing, match=r"\*\.png"):
        load(tmp_path)
    with pytest.raises(DataFilesMissing, match="not a directory"):
        load(str(tmp_path / "nope") + "/")


# ---------------------------------------------------------------------------------------------
# bad images and arguments


def test_nan_pixels_raise_nonfinite():
    x = np.zeros((2, 1, 3, 3))
    x[1, 0, 2, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"1 NaN/inf pixel\(s\), the first at index \(1, 0, 2, 1\)"):
        check_images(x)
    x[1, 0, 2, 1] = -np.inf
    with pytest.raises(NonFiniteError):
        check_images(x, (1, 3, 3))
    with pytest.raises(NonFiniteError):
        data.Dataset("t", x, x[:1], None, None, "here")


def test_wrong_shapes_raise_shape_error():
    with pytest.raises(ShapeError, match="4-D"):
        check_images(np.zeros((2, 8, 8)))
    with pytest.raises(ShapeError, match=r"expected \(N, 1, 8, 8\)"):
        check_images(np.zeros((2, 3, 8, 8)), (1, 8, 8))
    with pytest.raises(ShapeError):
        data.Dataset("t", np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 5)), None, None, "here")
    with pytest.raises(ShapeError):
        data.Dataset("t", np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 4)), np.zeros(3, np.int64), None, "here")
    with pytest.raises(ShapeError):
        load(shape=(2, 8, 8))
    with pytest.raises(ShapeError):
        load(shape=(1, 8))


def test_out_of_range_and_dtype():
    with pytest.raises(ValueError, match=r"outside \[-1, 1\]") as e:
        check_images(np.full((1, 1, 2, 2), 255.0))
    assert not isinstance(e.value, (ShapeError, NonFiniteError))
    with pytest.raises(DTypeError):
        check_images(np.zeros((1, 1, 2, 2), dtype=bool))
    check_images(np.zeros((0, 1, 2, 2)), (1, 2, 2))
    check_images(np.linspace(-1, 1, 8).reshape(2, 1, 2, 2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'.*digits, mnist, fashion-mnist, svhn, cifar10, folder"):
        load("imagenet")
    with pytest.raises(ValueError, match="fixed train/test split"):
        load("digits", test_fraction=0.2)
    with pytest.raises(ValueError, match="root is not used"):
        load("digits", root=".")
    with pytest.raises(ValueError, match="limit"):
        load(limit=0)
    with pytest.raises(TypeError):
        load(limit=2.5)
