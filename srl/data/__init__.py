"""Image data sets for srl, as ``(N, C, H, W)`` float64 arrays scaled to ``[-1, 1]``.

The default, ``digits``, is embedded in the package: scikit-learn's 1797 handwritten digits
(8x8 gray images with pixel values 0..16, shipped as ``srl/data/digits.csv.gz``: 64 pixels
in row-major order and the label per row), scaled by ``x / 16 * 2 - 1``. Its train/test
split is fixed and does not depend on any argument::

    perm = np.random.default_rng(0).permutation(1797)
    train = x[perm[:1497]]      # 1497 images
    test = x[perm[1497:]]       # 300 images

Fashion-MNIST (``"fashion-mnist"``) is found without ``root`` where Debian's package
``dataset-fashion-mnist`` puts it (``apt-get install dataset-fashion-mnist``).
Loaders for the standard files of MNIST (idx), SVHN (cropped digits, ``.mat``) and CIFAR-10
(python pickles), and for a folder of png/jpg/jpeg/bmp images, read files from a local
directory only. **srl never downloads anything**: when files are absent,
:class:`DataFilesMissing` (a ``FileNotFoundError``) names every file expected and the
directories searched. 8-bit pixels are scaled by ``x / 255 * 2 - 1``.

``load(name, shape=(C, H, W))`` converts images to a model's shape: area averaging when an
axis shrinks, bilinear interpolation (pixel centres aligned, edges clamped) when it grows,
gray -> RGB by repetition and RGB -> gray by ITU-R BT.601 luma
(``0.299 R + 0.587 G + 0.114 B``). See :func:`resize`.

    from srl import data
    ds = data.load()                                   # digits, (1, 8, 8)
    ds = data.load("mnist", root="~/data/mnist", shape=(1, 16, 16), limit=10000)
    ds = data.load("fashion-mnist", pad=2)             # (1, 32, 32), Debian's package
    ds = data.load("/path/to/images", shape=(3, 32, 32), test_fraction=0.2, seed=1)
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, DTypeError, NonFiniteError, ShapeError

__all__ = [
    "Dataset", "DataFilesMissing", "DATASETS", "load", "load_digits", "load_mnist", "load_fashion_mnist", "load_svhn",
    "load_cifar10", "load_folder", "check_images", "resize",
    "DIGITS_N", "DIGITS_N_TEST", "DIGITS_SPLIT_SEED", "IMAGE_EXTENSIONS", "FASHION_MNIST_DIRS",
    "FASHION_MNIST_PACKAGE", "pad_images",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "svhn", "cifar10", "folder")

DIGITS_N = 1797
DIGITS_N_TEST = 300
DIGITS_SPLIT_SEED = 0

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
#: Where Debian's package ``dataset-fashion-mnist`` installs the four gzipped idx files.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"

# ITU-R BT.601 luma weights (R, G, B).
LUMA_601 = (0.299, 0.587, 0.114)

_NEVER = "srl never downloads data: fetch the files yourself and pass root=<directory holding them>."


# --------------------------------------------------------------------------------------------
# Types


class DataFilesMissing(FileNotFoundError):
    """The files of a data set are not where they were looked for.

    The message names every file expected and every directory searched, and says that srl
    never downloads. Attributes: ``dataset``, ``expected`` (file names), ``missing`` (the
    ones not found), ``searched`` (directories, as strings).
    """

    def __init__(self, dataset, expected, searched, missing=None, note=""):
        self.dataset = str(dataset)
        self.expected = tuple(expected)
        self.missing = tuple(self.expected if missing is None else missing)
        self.searched = tuple(str(s) for s in searched)
        where = ", ".join(self.searched) if self.searched else "(no directory given: pass root=...)"
        msg = (
            f"{self.dataset} data files not found. Searched: {where}. "
            f"Expected: {', '.join(self.expected)}"
        )
        if set(self.missing) != set(self.expected):
            msg += f"; missing: {', '.join(self.missing)}"
        msg += ". "
        if note:
            msg += note.rstrip(". ") + ". "
        msg += _NEVER
        super().__init__(msg)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images ``(N, C, H, W)``, float64 in ``[-1, 1]``, with optional labels.

    ``source`` says where the data came from: a path, or ``"embedded"`` for digits. The
    constructor checks the arrays (:func:`check_images`) and the label lengths.
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None
    source: str

    def __post_init__(self):
        for what in ("train", "test"):
            a = getattr(self, what)
            if not isinstance(a, np.ndarray) or a.dtype != np.float64:
                raise DTypeError(f"Dataset.{what} must be a float64 numpy array, got "
                                 f"{type(a).__name__} {getattr(a, 'dtype', '')}".rstrip())
        check_images(self.train, what="Dataset.train")
        if self.train.shape[0] < 1:
            raise ShapeError("Dataset.train is empty")
        check_images(self.test, self.train.shape[1:], what="Dataset.test")
        for what, x in (("train", self.train), ("test", self.test)):
            y = getattr(self, f"{what}_labels")
            if y is None:
                continue
            if not isinstance(y, np.ndarray) or y.dtype != np.int64:
                raise DTypeError(f"Dataset.{what}_labels must be an int64 numpy array or None")
            if y.shape != (x.shape[0],):
                raise ShapeError(f"Dataset.{what}_labels has shape {y.shape}, expected ({x.shape[0]},)")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-image shape ``(C, H, W)``."""
        return tuple(int(s) for s in self.train.shape[1:])

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, shape={self.shape}, n_train={self.train.shape[0]}, "
                f"n_test={self.test.shape[0]}, labels={self.train_labels is not None}, "
                f"source={self.source!r})")


# --------------------------------------------------------------------------------------------
# Checks, scaling, resizing


def check_images(x, shape=None, *, what: str = "images") -> None:
    """Check a batch of images ``(N, C, H, W)`` scaled to ``[-1, 1]``.

    Raises :class:`~srl.errors.ShapeError` when ``x`` is not 4-D or (with ``shape`` given)
    its per-image shape is not ``shape = (C, H, W)``; :class:`~srl.errors.DTypeError` for a
    non-numeric array; :class:`~srl.errors.NonFiniteError` for NaN/inf pixels; and
    ``ValueError`` for pixels outside ``[-1, 1]`` (e.g. data not scaled yet). ``N = 0`` is allowed.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ShapeError(f"{what} has shape {x.shape}; expected (N, C, H, W) (4-D), got {x.ndim}-D")
    if shape is not None:
        want = tuple(int(s) for s in shape)
        if len(want) != 3:
            raise ShapeError(f"shape must be (C, H, W), got {tuple(shape)}")
        if x.shape[1:] != want:
            raise ShapeError(f"{what} has shape {x.shape}, expected (N, {', '.join(map(str, want))})")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DTypeError(f"{what} has dtype {x.dtype}; expected real numbers (float64)")
    if x.size == 0:
        return
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            n_bad = int(bad.sum())
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise NonFiniteError(f"{what} has {n_bad} NaN/inf pixel(s), the first at index {first}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 or hi > 1.0:
        raise ValueError(f"{what} has values in [{lo:g}, {hi:g}], outside [-1, 1]; scale the pixels "
                         f"first (8-bit: x / 255 * 2 - 1)")


def _check_shape_arg(shape):
    if shape is None:
        return None
    try:
        s = tuple(int(v) for v in shape)
        ok = len(s) == 3 and all(int(v) == v for v in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or s[0] not in (1, 3) or s[1] < 1 or s[2] < 1:
        raise ShapeError(f"shape must be (C, H, W) with C in (1, 3) and H, W >= 1, got {shape!r}")
    return s


def _scale_uint8(x) -> np.ndarray:
    """uint8 pixels 0..255 -> float64 ``x / 255 * 2 - 1``."""
    return np.asarray(x, dtype=np.float64) / 255.0 * 2.0 - 1.0


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights: output pixel ``o`` averages input over ``[o, o+1) * n_in / n_out``."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    i = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` linear interpolation weights, pixel centres aligned, edges clamped."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = src - i0
    w = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(w, (rows, i0), 1.0 - f)
    np.add.at(w, (rows, i1), f)
    return w


def _axis_matrix(n_in: int, n_out: int) -> np.ndarray | None:
    if n_out == n_in:
        return None
    return _area_matrix(n_in, n_out) if n_out < n_in else _bilinear_matrix(n_in, n_out)


def resize(x, shape) -> np.ndarray:
    """Convert images ``x (N, C, H, W)`` to ``shape = (C', H', W')``; returns float64.

    Each spatial axis is resampled separately: area averaging when it shrinks (an integer
    factor gives the block mean; other factors weight input pixels by their overlap),
    bilinear interpolation when it grows (``src = (o + 0.5) * in / out - 0.5``, clamped at
    the edges). Channels: 1 -> 3 repeats the gray plane, 3 -> 1 takes the BT.601 luma
    ``0.299 R + 0.587 G + 0.114 B``. All weights are convex, so ``[-1, 1]`` data stays there
    (the result is clipped to the input range against rounding).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise ShapeError(f"images have shape {x.shape}; expected (N, C, H, W) (4-D)")
    c_out, h_out, w_out = _check_shape_arg(shape)
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ShapeError(f"cannot convert {c}-channel images; only 1 (gray) or 3 (RGB) channels are supported")
    if x.size == 0:
        return np.zeros((n, c_out, h_out, w_out))
    lo, hi = float(x.min()), float(x.max())
    if c == 3 and c_out == 1:
        x = np.tensordot(np.asarray(LUMA_601), x, axes=([0], [1]))[:, None]
    mw = _axis_matrix(w, w_out)
    if mw is not None:
        x = x @ mw.T
    out = np.empty((n, c_out, h_out, w_out))
    dst = out[:, :1] if (c == 1 and c_out == 3) else out
    mh = _axis_matrix(h, h_out)
    if mh is not None:
        np.matmul(mh, x, out=dst)
    else:
        dst[...] = x
    if dst is not out:  # gray -> RGB: repeat the plane
        out[:, 1] = out[:, 0]
        out[:, 2] = out[:, 0]
    np.clip(out, lo, hi, out=out)
    return out


def _finish(name, x_train, x_test, y_train, y_test, source, shape):
    if shape is not None and x_train.shape[1:] != shape:
        x_train = resize(x_train, shape)
        x_test = resize(x_test, shape)
    to_labels = (lambda y: None if y is None else np.ascontiguousarray(y, dtype=np.int64))
    return Dataset(name=name, train=np.ascontiguousarray(x_train), test=np.ascontiguousarray(x_test),
                   train_labels=to_labels(y_train), test_labels=to_labels(y_test), source=str(source))


def _check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise TypeError(f"limit must be a positive int or None, got {limit!r}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return int(limit)


def _head(a, limit):
    return a if (limit is None or a is None) else a[:limit]


def _root_dir(root, dataset, expected) -> Path:
    if root is None:
        raise DataFilesMissing(dataset, expected, ())
    return Path(os.path.expanduser(os.fspath(root)))


# --------------------------------------------------------------------------------------------
# digits (embedded)


@lru_cache(maxsize=1)
def _digits_table() -> np.ndarray:
    ref = resources.files(__name__).joinpath("digits.csv.gz")
    with ref.open("rb") as f, gzip.open(f, "rt") as g:
        a = np.loadtxt(g, delimiter=",", dtype=np.int64, ndmin=2)
    if a.shape != (DIGITS_N, 65) or a[:, :64].min() < 0 or a[:, :64].max() > 16:
        raise RuntimeError(f"srl/data/digits.csv.gz is corrupt: table {a.shape}, expected ({DIGITS_N}, 65) "
                           "with pixels 0..16; reinstall srl")
    a.setflags(write=False)
    return a


def load_digits(*, shape=None, limit=None) -> Dataset:
    """The embedded digits: 1497 train and 300 test 8x8 gray images in ``[-1, 1]`` with labels.

    Pixels (0..16) are scaled by ``x / 16 * 2 - 1``. The split is fixed:
    ``perm = np.random.default_rng(0).permutation(1797)``; ``perm[:1497]`` is train and
    ``perm[1497:]`` is test, in that order. No file access beyond the package, no download.
    """
    shape, limit = _check_shape_arg(shape), _check_limit(limit)
    a = _digits_table()
    x = a[:, :64].reshape(-1, 1, 8, 8).astype(np.float64) / 16.0 * 2.0 - 1.0
    y = a[:, 64]
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(DIGITS_N)
    tr, te = perm[: DIGITS_N - DIGITS_N_TEST], perm[DIGITS_N - DIGITS_N_TEST:]
    tr, te = _head(tr, limit), _head(te, limit)
    return _finish("digits", x[tr], x[te], y[tr], y[te], "embedded", shape)


# --------------------------------------------------------------------------------------------
# MNIST (idx files)

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path} is a corrupt or truncated gzip file ({e}); replace it with an intact "
                             "copy") from None
    return data


def _read_idx(path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): magic ``00 00 <type> <ndim>``, big-endian dims, data."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file: bad magic {data[:4].hex() or '(empty)'}, "
                         "expected 0000<type><ndim> with type 08 for unsigned bytes")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated: header needs {header} bytes, file has {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    count = math.prod(dims)
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {dims} ({count * dtype.itemsize} data bytes) "
                         f"but the file has {len(data) - header} data bytes")
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)


def _find_idx_files(dirs, dataset, note):
    """The four idx files (each possibly ``.gz``) from the first of ``dirs`` holding all four."""
    best = None
    for d in dirs:
        found, missing = {}, []
        for name in MNIST_FILES:
            for cand in (d / name, d / (name + ".gz")):
                if cand.is_file():
                    found[name] = cand
                    break
            else:
                missing.append(name)
        if not missing:
            return found
        if best is None or len(missing) < len(best):
            best = missing
    raise DataFilesMissing(dataset, MNIST_FILES, dirs, best, note=note)


def _find_mnist(root: Path):
    return _find_idx_files([root, root / "MNIST" / "raw"], "MNIST",
                           "each file may also be gzipped (name + '.gz'); Fashion-MNIST uses the same names")


def _mnist_split(img_path, lab_path, limit):
    images, labels = _read_idx(img_path), _read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ShapeError(f"{img_path} holds {images.dtype} data of shape {images.shape}; "
                         "expected unsigned bytes (N, H, W)")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ShapeError(f"{lab_path} holds labels of shape {labels.shape}; expected ({images.shape[0]},) "
                         f"to match {img_path}")
    images, labels = _head(images, limit), _head(labels, limit)
    return _scale_uint8(images[:, None]), labels.astype(np.int64)


def load_mnist(root, *, shape=None, limit=None) -> Dataset:
    """MNIST from its four idx files in ``root`` (or ``root/MNIST/raw``), each optionally ``.gz``.

    Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``. 60000 train / 10000 test (1, 28, 28) images; the idx header is
    checked. Fashion-MNIST files have the same names and load the same way.
    """
    shape, limit = _check_shape_arg(shape), _check_limit(limit)
    files = _find_mnist(_root_dir(root, "MNIST", MNIST_FILES))
    x_tr, y_tr = _mnist_split(files[MNIST_FILES[0]], files[MNIST_FILES[1]], limit)
    x_te, y_te = _mnist_split(files[MNIST_FILES[2]], files[MNIST_FILES[3]], limit)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ShapeError(f"MNIST train images are {x_tr.shape[2:]} but test images are {x_te.shape[2:]}")
    return _finish("mnist", x_tr, x_te, y_tr, y_te, files[MNIST_FILES[0]].parent, shape)


def load_fashion_mnist(root=None, *, shape=None, limit=None) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017, MIT licence): 60000 train / 10000 test (1, 28, 28)
    gray images of 10 clothing classes, from the four idx files of MNIST's names (each
    optionally ``.gz``).

    Without ``root`` the files are looked for where Debian's package
    ``dataset-fashion-mnist`` installs them (:data:`FASHION_MNIST_DIRS`); ``root`` is any
    directory holding them (or ``root/FashionMNIST/raw``, torchvision's layout). Absent
    files raise :class:`DataFilesMissing` naming the package and its install command.
    """
    shape, limit = _check_shape_arg(shape), _check_limit(limit)
    if root is None:
        dirs = [Path(d) for d in FASHION_MNIST_DIRS]
    else:
        r = Path(os.path.expanduser(os.fspath(root)))
        dirs = [r, r / "FashionMNIST" / "raw"]
    note = (f"Install the Debian package {FASHION_MNIST_PACKAGE} (apt-get install {FASHION_MNIST_PACKAGE}), "
            f"which puts them in {FASHION_MNIST_DIRS[0]}, or pass root=<directory holding the four files>; "
            "each file may be gzipped (name + '.gz')")
    files = _find_idx_files(dirs, "Fashion-MNIST", note)
    x_tr, y_tr = _mnist_split(files[MNIST_FILES[0]], files[MNIST_FILES[1]], limit)
    x_te, y_te = _mnist_split(files[MNIST_FILES[2]], files[MNIST_FILES[3]], limit)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ShapeError(f"Fashion-MNIST train images are {x_tr.shape[2:]} but test images are {x_te.shape[2:]}")
    return _finish("fashion-mnist", x_tr, x_te, y_tr, y_te, files[MNIST_FILES[0]].parent, shape)


# --------------------------------------------------------------------------------------------
# SVHN (cropped digits, .mat)


def _svhn_split(path: Path, limit):
    from scipy.io import loadmat

    try:
        m = loadmat(path, variable_names=["X", "y"])
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5)
        raise ValueError(f"{path} is a MATLAB v7.3 file; expected the v5 files of SVHN ({e})") from None
    except Exception as e:  # scipy raises MatReadError, OSError, ValueError... for damaged files
        raise ValueError(f"{path} is not a readable SVHN .mat file ({type(e).__name__}: {e}); replace it with "
                         "an intact copy of the original file") from None
    if "X" not in m or "y" not in m:
        raise ValueError(f"{path} lacks the variables X and y of SVHN (found {sorted(k for k in m if not k.startswith('__'))})")
    X, y = m["X"], np.asarray(m["y"]).reshape(-1)
    if X.ndim != 4 or X.shape[2] != 3:
        raise ShapeError(f"{path}: X has shape {X.shape}; expected (H, W, 3, N)")
    if X.shape[3] != y.shape[0]:
        raise ShapeError(f"{path}: X holds {X.shape[3]} images but y holds {y.shape[0]} labels")
    if X.dtype != np.uint8:
        raise DTypeError(f"{path}: X has dtype {X.dtype}; expected uint8")
    X, y = X[..., :limit] if limit else X, _head(y, limit)
    labels = y.astype(np.int64)
    labels[labels == 10] = 0  # SVHN labels digit 0 as 10
    return _scale_uint8(np.transpose(X, (3, 2, 0, 1))), labels


def load_svhn(root, *, shape=None, limit=None) -> Dataset:
    """SVHN cropped digits from ``train_32x32.mat`` and ``test_32x32.mat`` in ``root``.

    Each holds ``X (32, 32, 3, N)`` uint8 and ``y (N, 1)`` with labels 1..10, 10 meaning 0
    (mapped to 0 here). 73257 train / 26032 test (3, 32, 32) images; ``extra_32x32.mat`` is not used.
    """
    shape, limit = _check_shape_arg(shape), _check_limit(limit)
    d = _root_dir(root, "SVHN", SVHN_FILES)
    missing = [f for f in SVHN_FILES if not (d / f).is_file()]
    if missing:
        raise DataFilesMissing("SVHN", SVHN_FILES, [d], missing)
    x_tr, y_tr = _svhn_split(d / SVHN_FILES[0], limit)
    x_te, y_te = _svhn_split(d / SVHN_FILES[1], limit)
    return _finish("svhn", x_tr, x_te, y_tr, y_te, d, shape)


# --------------------------------------------------------------------------------------------
# CIFAR-10 (python pickles)


@lru_cache(maxsize=1)
def _pickle_globals():
    a = np.zeros(1, dtype=np.uint8)
    allowed = {
        "_reconstruct": a.__reduce__()[0],
        "_frombuffer": a.__reduce_ex__(5)[0],
        "scalar": np.float64(0).__reduce__()[0],
        "ndarray": np.ndarray,
        "dtype": np.dtype,
    }
    modules = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray",
               "numpy.core.numeric", "numpy._core.numeric"}
    return allowed, modules


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global is refused.

    The CIFAR-10 batches are pickles; refusing arbitrary globals means a tampered file
    cannot run code when it is loaded.
    """

    def find_class(self, module, name):
        import codecs

        if (module, name) == ("_codecs", "encode"):  # bytes pickled by Python 3 at protocol 2
            return codecs.encode
        allowed, modules = _pickle_globals()
        if module in modules and name in allowed:
            return allowed[name]
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: CIFAR-10 batches hold only "
                                     "numpy arrays, lists and bytes")


class CorruptBatchError(pickle.UnpicklingError, ValueError):
    """A CIFAR-10 batch that cannot be unpickled (damaged, or holding refused objects)."""


def _read_cifar_batch(path: Path, limit):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # truncated or garbage bytes, or a refused global
        raise CorruptBatchError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}); replace it "
                                "with an intact copy from the original archive") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch (unpickled a {type(d).__name__}, expected a dict)")
    get = (lambda k: d[k.encode()] if k.encode() in d else d.get(k))
    data, labels = get("data"), get("labels")
    if data is None or labels is None:
        raise ValueError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch")
    data, labels = np.asarray(data), np.asarray(labels, dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ShapeError(f"{path}: data has {data.dtype} shape {data.shape}; expected uint8 (N, 3072)")
    if labels.shape[0] != data.shape[0]:
        raise ShapeError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    data, labels = _head(data, limit), _head(labels, limit)
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_read(paths, limit):
    xs, ys, n = [], [], 0
    for p in paths:
        if limit is not None and n >= limit:
            break
        x, y = _read_cifar_batch(p, None if limit is None else limit - n)
        xs.append(x)
        ys.append(y)
        n += x.shape[0]
    return _scale_uint8(np.concatenate(xs)), np.concatenate(ys)


def load_cifar10(root, *, shape=None, limit=None) -> Dataset:
    """CIFAR-10, python version: ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``
    and ``test_batch``; ``root`` may be that directory or its parent.

    Each batch is a pickle with ``b"data"`` (N, 3072) uint8 rows in C, H, W order and
    ``b"labels"``. 50000 train (batches 1..5 in order) / 10000 test (3, 32, 32) images.
    Only numpy arrays and plain containers are unpickled (other globals are refused).
    """
    shape, limit = _check_shape_arg(shape), _check_limit(limit)
    root = _root_dir(root, "CIFAR-10", CIFAR10_FILES)
    if root.name == CIFAR10_DIR or (root / CIFAR10_FILES[0]).is_file():
        d = root  # the batches directory itself (possibly renamed)
    else:
        d = root / CIFAR10_DIR
    missing = [f for f in CIFAR10_FILES if not (d / f).is_file()]
    if missing:
        note = ""
        for a in dict.fromkeys((root / CIFAR10_ARCHIVE, root.parent / CIFAR10_ARCHIVE)):
            if a.is_file():
                note = f"found the archive {a}: extract it (tar xzf {a.name}) and pass its directory"
                break
        note = (note + "; " if note else "") + f"root may be the {CIFAR10_DIR} directory (python version) or its parent"
        raise DataFilesMissing("CIFAR-10", CIFAR10_FILES, [d], missing, note=note)
    x_tr, y_tr = _cifar_read([d / f for f in CIFAR10_FILES[:5]], limit)
    x_te, y_te = _cifar_read([d / CIFAR10_FILES[5]], limit)
    return _finish("cifar10", x_tr, x_te, y_tr, y_te, d, shape)


# --------------------------------------------------------------------------------------------
# Folder of images (Pillow)

_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise BackendUnavailableError(
            "reading a folder of images needs Pillow: pip install pillow"
        ) from None
    return Image


def _list_images(d: Path):
    files = [p for p in d.rglob("*")
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(d).parts)]
    return sorted(files, key=lambda p: p.relative_to(d).as_posix())


def _unreadable_image(path: Path, exc) -> ValueError:
    what = "is empty (0 bytes)" if path.stat().st_size == 0 else f"cannot be read as an image ({exc})"
    return ValueError(f"image file {path} {what}; delete it or move it out of the folder (every png, jpg, "
                      "jpeg and bmp file under the folder is read, subfolders included)")


# Pillow raises OSError, ValueError, SyntaxError or its DecompressionBombError (an Exception) for
# damaged or hostile files
_IMAGE_ERRORS = (Exception,)


def _read_image(Image, path: Path, channels: int | None):
    """One image as float64 ``(C, H, W)`` in [-1, 1]; ``channels=None`` keeps gray as 1, else 3."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            gray = mode in _GRAY_MODES
            c = channels if channels is not None else (1 if gray else 3)
            if mode.startswith("I;16") and c == 1:
                a = np.asarray(img, dtype=np.float64) / 65535.0 * 2.0 - 1.0
                return a[None]
            a = np.asarray(img.convert("L" if c == 1 else "RGB"))
    except _IMAGE_ERRORS as e:
        raise _unreadable_image(path, e) from None
    x = _scale_uint8(a)
    return x[None] if x.ndim == 2 else np.transpose(x, (2, 0, 1))


def _image_is_gray(Image, path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return img.mode in _GRAY_MODES
    except _IMAGE_ERRORS as e:
        raise _unreadable_image(path, e) from None


def load_folder(path, *, shape=None, test_fraction=None, seed=0, limit=None) -> Dataset:
    """Images (png, jpg, jpeg, bmp; subfolders included, hidden ones skipped) under ``path``.

    Files are sorted by relative path, permuted with ``np.random.default_rng(seed)``, and
    the last ``round(n * test_fraction)`` (default 0.1; at least one when the fraction is
    positive and n >= 2) become the test set. With ``shape=None`` the native size is kept
    (all images must then have the same size) and the images are gray (C = 1) when all are
    gray, RGB otherwise. Alpha is dropped; 16-bit gray keeps its precision. No labels.
    Reading needs Pillow (:class:`~srl.errors.BackendUnavailableError` otherwise).
    """
    shape, limit = _check_shape_arg(shape), _check_limit(limit)
    tf = 0.1 if test_fraction is None else float(test_fraction)
    if not 0.0 <= tf < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    d = Path(os.path.expanduser(os.fspath(path)))
    pattern = [f"*{e}" for e in IMAGE_EXTENSIONS]
    if not d.is_dir():
        raise DataFilesMissing("image folder", pattern, [d], note=f"{d} is not a directory")
    files = _list_images(d)
    if not files:
        raise DataFilesMissing("image folder", pattern, [d], note="no image files found (subfolders included)")
    Image = _pil()
    n = len(files)
    if tf > 0 and n < 2:
        raise ValueError(f"image folder {d} holds {n} image ({files[0].name}); a train/test split needs at least "
                         "2 images: add images, or pass test_fraction=0 for no test set")
    n_test = int(round(n * tf))
    if tf > 0 and n >= 2:
        n_test = max(n_test, 1)
    n_test = min(n_test, n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    tr, te = _head(perm[: n - n_test], limit), _head(perm[n - n_test:], limit)
    used = [files[i] for i in tr] + [files[i] for i in te]
    channels = shape[0] if shape is not None else (1 if all(_image_is_gray(Image, p) for p in used) else 3)
    images = []
    for p in used:
        x = _read_image(Image, p, channels)
        if shape is not None and x.shape[1:] != shape[1:]:
            x = resize(x[None], shape)[0]
        elif images and x.shape != images[0].shape:
            raise ShapeError(f"images differ in size: {used[0].name} is {images[0].shape[1:]} (H, W) but "
                             f"{p.name} is {x.shape[1:]}; pass shape=(C, H, W) to resize them")
        images.append(x)
    C, H, W = images[0].shape
    x_tr = np.stack(images[: len(tr)])
    x_te = np.stack(images[len(tr):]) if len(te) else np.zeros((0, C, H, W))
    return _finish("folder", x_tr, x_te, None, None, d, shape)


# --------------------------------------------------------------------------------------------
# Entry point


def pad_images(x, pad: int) -> np.ndarray:
    """Images ``(N, C, H, W)`` framed by ``pad`` pixels of value −1 (black) on every side:
    ``(N, C, H + 2 pad, W + 2 pad)``. ``pad=2`` makes 28×28 (Fashion-)MNIST 32×32, the size
    of the paper's MNIST-like experiments, without resampling a pixel."""
    pad = _check_pad(pad)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise ShapeError(f"images have shape {x.shape}; expected (N, C, H, W) (4-D)")
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-1.0)


def _check_pad(pad) -> int:
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"pad must be a non-negative int (pixels added on each side), got {pad!r}")
    return int(pad)


def load(name: str = "digits", *, root=None, shape=None, test_fraction=None, seed=0, limit=None,
         pad: int = 0) -> Dataset:
    """Load a data set as a :class:`Dataset` of ``(N, C, H, W)`` float64 images in ``[-1, 1]``.

    ``name``: one of :data:`DATASETS` or a path to a folder of images (same as
    ``name="folder", root=path``). ``root``: the directory holding the standard files
    (mnist, svhn, cifar10; fashion-mnist looks in :data:`FASHION_MNIST_DIRS` without it) or
    the image folder; not used by digits. ``pad``: frame the native images with this many
    black (−1) pixels per side (:func:`pad_images`; ``pad=2`` turns 28×28 into 32×32).
    ``shape``: target ``(C, H, W)`` after padding (see :func:`resize`), ``None`` keeps the
    (padded) native shape. ``test_fraction`` and ``seed``: the split of a folder (the other
    sets have fixed splits). ``limit``: keep at most this many train and this many test
    images, the first ones of each split. Nothing is ever downloaded; absent files raise
    :class:`DataFilesMissing`.
    """
    pad = _check_pad(pad)
    shape = _check_shape_arg(shape)
    ds = _load(name, root=root, shape=None if pad else shape, test_fraction=test_fraction, seed=seed, limit=limit)
    if not pad:
        return ds
    return _finish(ds.name, pad_images(ds.train, pad), pad_images(ds.test, pad), ds.train_labels, ds.test_labels,
                   ds.source, shape)


def _load(name, *, root, shape, test_fraction, seed, limit) -> Dataset:
    if isinstance(name, os.PathLike) or (isinstance(name, str) and name not in DATASETS):
        p = Path(os.path.expanduser(os.fspath(name)))
        looks_like_path = isinstance(name, os.PathLike) or "/" in name or os.sep in name or p.is_dir()
        if not looks_like_path:
            raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)} "
                             "or give the path of a folder of images")
        if root is not None:
            raise ValueError(f"give the folder either as name ({os.fspath(name)!r}) or as root ({root!r}), not both")
        name, root = "folder", p
    elif not isinstance(name, str):
        raise TypeError(f"name must be a str or a path, got {type(name).__name__}")
    if name != "folder" and test_fraction is not None:
        raise ValueError(f"{name} has a fixed train/test split; test_fraction applies to image folders only")
    if name == "digits":
        if root is not None:
            raise ValueError("digits is embedded in srl; root is not used (drop it, or pick another data set)")
        return load_digits(shape=shape, limit=limit)
    if name == "mnist":
        return load_mnist(root, shape=shape, limit=limit)
    if name == "fashion-mnist":
        return load_fashion_mnist(root, shape=shape, limit=limit)
    if name == "svhn":
        return load_svhn(root, shape=shape, limit=limit)
    if name == "cifar10":
        return load_cifar10(root, shape=shape, limit=limit)
    if root is None:
        raise DataFilesMissing("image folder", [f"*{e}" for e in IMAGE_EXTENSIONS], (),
                               note="pass root=<folder of images> or load('<path>')")
    return load_folder(root, shape=shape, test_fraction=test_fraction, seed=seed, limit=limit)
