"""The Fashion-MNIST Fréchet distance: the shipped classifier, its input handling, the
metric's basic properties, and (with Debian's dataset-fashion-mnist installed) its
documented held-out accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srl import fashion_frechet as ff
from srl.errors import ShapeError


def blobs(n, seed):
    """Synthetic 28×28 'garments': a bright rectangle of random size on black, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    x = -np.ones((n, 1, 28, 28))
    for i in range(n):
        h, w = rng.integers(8, 24, size=2)
        r, c = rng.integers(0, 28 - h), rng.integers(0, 28 - w)
        x[i, 0, r:r + h, c:c + w] = rng.uniform(0.0, 1.0)
    return x


def test_shipped_weights_load_with_the_documented_architecture():
    clf = ff.fashion_classifier()
    assert clf.fingerprint() == ff.FASHION_FINGERPRINT
    assert clf.params["W1"].shape == (196, 128) and clf.params["W3"].shape == (64, 10)
    assert ff.fashion_features(blobs(5, 0)).shape == (5, 64)


def test_padded_images_are_cropped_back():
    x = blobs(6, 1)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-1.0)
    np.testing.assert_array_equal(ff.fashion_features(padded), ff.fashion_features(x))


def test_frechet_properties():
    a, b = blobs(400, 2), blobs(400, 3)
    assert ff.fashion_frechet(a, a) == pytest.approx(0.0, abs=1e-6)  # sqrtm round-off only
    same_law = ff.fashion_frechet(a, b)
    noise = np.random.default_rng(4).uniform(-1, 1, size=(400, 1, 28, 28))
    assert ff.fashion_frechet(noise, b) > 5 * same_law  # a different law is far away


@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (3, 3, 28, 28), (1, 1, 28, 28)])
def test_bad_shapes(shape):
    with pytest.raises(ShapeError):
        ff.fashion_frechet(np.zeros(shape), blobs(3, 0))


def test_out_of_range_images_are_rejected():
    with pytest.raises(ValueError, match=r"expected \[-1, 1\]"):
        ff.fashion_features(blobs(3, 0) * 255)


def test_training_is_deterministic():
    x, y = blobs(120, 5), np.arange(120) % 10
    a = ff.FashionClassifier(epochs=2).fit(x, y)
    b = ff.FashionClassifier(epochs=2).fit(x, y)
    assert a.fingerprint() == b.fingerprint()
    assert ff.FashionClassifier(epochs=2, seed=1).fit(x, y).fingerprint() != a.fingerprint()


def test_save_load_round_trip(tmp_path):
    a = ff.FashionClassifier(epochs=1).fit(blobs(50, 6), np.arange(50) % 10)
    a.save(tmp_path / "w.npz")
    assert ff.FashionClassifier.load(tmp_path / "w.npz").fingerprint() == a.fingerprint()


REAL = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@pytest.mark.skipif(not REAL.is_file(), reason="Debian package dataset-fashion-mnist not installed")
def test_documented_held_out_accuracy():
    from srl import data

    ds = data.load("fashion-mnist")
    acc = ff.fashion_classifier().accuracy(ds.test, ds.test_labels)
    assert acc == pytest.approx(ff.FASHION_TEST_ACCURACY, abs=5e-5)  # printed to 4 decimals


def test_paper_model_rgb_samples_are_compared_in_gray(monkeypatch):
    """paper() makes (3, 32, 32) images; on Fashion-MNIST (gray repeated to RGB) its samples
    and the held-out images are taken back to gray by BT.601 luma, which returns the gray
    plane exactly (the weights sum to 1), so the distance equals that of the gray images."""
    from srl import evaluate, models

    gray = np.pad(blobs(300, 6), ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-1.0)
    ref = np.pad(blobs(300, 7), ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-1.0)
    rgb = np.repeat(gray, 3, axis=1)
    monkeypatch.setattr(evaluate, "sample", lambda gen, params, n, seed, codes=None: rgb[:n])
    got = evaluate._synthesis_metrics(models.paper(), None, seed=0, n_samples=300,
                                      x_reference=np.repeat(ref, 3, axis=1), dataset="fashion-mnist")
    want = ff.fashion_frechet(gray, ref)
    assert got["frechet_fashion"] == pytest.approx(want, rel=1e-9)  # luma of equal planes: rounding only
    assert want > 0.01  # two different draws: a non-trivial distance was compared
