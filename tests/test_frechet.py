"""Synthesis metrics: Fréchet distance, the digits classifier / digits-FD, and FID-Inception.

Everything is deterministic (fixed seeds, float64 for the Fréchet math). The digits data
are loaded here straight from the shipped CSV with the project's fixed split, so these
tests do not depend on ``srl.data`` helpers.
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np
import pytest
import scipy.linalg

from srl import frechet as fr
from srl.errors import NonFiniteError, ShapeError

# ---------------------------------------------------------------- data (independent loader)


def _load_digits():
    ref = resources.files("srl.data") / "digits.csv.gz"
    with ref.open("rb") as fh, gzip.open(fh, "rt") as text:
        data = np.loadtxt(text, delimiter=",")
    x = (data[:, :64] / 16 * 2 - 1).reshape(-1, 1, 8, 8)
    y = data[:, 64].astype(int)
    perm = np.random.default_rng(0).permutation(1797)
    return x[perm[:1497]], y[perm[:1497]], x[perm[1497:]], y[perm[1497:]]


@pytest.fixture(scope="module")
def digits():
    return _load_digits()


def _spd(rng, d, *, rank=None, shift=0.1):
    g = rng.standard_normal((d, rank or d))
    return g @ g.T / d + shift * np.eye(d)


def _fd_sqrtm(mu1, c1, mu2, c2):
    """The pytorch-fid / TF formula: tr sqrtm(c1 c2) through scipy's Schur-based sqrtm."""
    s = scipy.linalg.sqrtm(c1 @ c2)
    assert np.max(np.abs(np.imag(s))) < 1e-8 * np.max(np.abs(s))  # real up to round-off
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2 * np.trace(np.real(s)))


# ---------------------------------------------------------------- frechet_distance

# Tolerances: every route here is a backward-stable O(d³) float64 computation on O(1)
# matrices (d ≤ 20, condition numbers ≤ ~1e2), so the distance is accurate to ~d·κ·eps ≈
# 1e-12 absolute; 1e-9 relative leaves three orders of margin, while a wrong formula (a
# missing factor 2, a missing mean term, sqrt of the wrong product) is off by O(1).
RTOL = 1e-9


def test_diagonal_closed_form():
    rng = np.random.default_rng(1)
    d = 10
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    # N(mu1, diag a) vs N(mu2, diag b): ‖Δμ‖² + Σ (√a − √b)²
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fr.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert isinstance(got, float)
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    # The distance is invariant under a common rotation: Q diag(a) Qᵀ is a full matrix,
    # so this exercises the non-diagonal eigh path against the same closed form.
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    got_rot = fr.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    np.testing.assert_allclose(got_rot, expected, rtol=RTOL)


@pytest.mark.parametrize("d", [2, 7, 20])
def test_matches_scipy_sqrtm_on_random_spd(d):
    rng = np.random.default_rng(d)
    for _ in range(3):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        c1, c2 = _spd(rng, d), _spd(rng, d)
        np.testing.assert_allclose(fr.frechet_distance(mu1, c1, mu2, c2), _fd_sqrtm(mu1, c1, mu2, c2), rtol=RTOL)


def test_symmetric_and_zero_for_identical():
    rng = np.random.default_rng(3)
    d = 12
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    c1, c2 = _spd(rng, d), _spd(rng, d)
    np.testing.assert_allclose(fr.frechet_distance(mu1, c1, mu2, c2), fr.frechet_distance(mu2, c2, mu1, c1),
                               rtol=RTOL)
    # Identical full-rank statistics: only round-off remains (~eps·d·‖C‖).
    assert fr.frechet_distance(mu1, c1, mu1, c1) < 1e-10 * np.trace(c1)
    # Equal covariances: the distance is exactly the mean term.
    np.testing.assert_allclose(fr.frechet_distance(mu1, c1, mu2, c1), np.sum((mu1 - mu2) ** 2), rtol=RTOL)
    # Identical *singular* statistics (N = 5 < d, as FID with few samples): zero eigenvalues
    # come out as ±eps·‖C‖ and their square roots as ~1e-8·‖C‖ each, hence the looser bound.
    mu_s, c_s = fr.gaussian_stats(rng.standard_normal((5, d)))
    assert np.linalg.matrix_rank(c_s) == 4
    assert fr.frechet_distance(mu_s, c_s, mu_s, c_s) < 1e-6 * np.trace(c_s)


def test_gaussian_stats_and_bad_input():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((50, 6)) * 3 + 1
    mu, cov = fr.gaussian_stats(f)
    # NumPy's mean/cov and gaussian_stats sum the 50 rows in different orders: ulps
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(f, rowvar=False), rtol=1e-12)
    with pytest.raises(ShapeError, match="at least 2 samples"):
        fr.gaussian_stats(f[:1])
    with pytest.raises(ShapeError, match=r"expected \(N, d\)"):
        fr.gaussian_stats(f[0])
    with pytest.raises(ShapeError, match="dimensions 6 and 5"):
        fr.frechet_distance(mu, cov, mu[:5], cov[:5, :5])
    bad = cov.copy()
    bad[0, 1] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        fr.frechet_distance(mu, bad, mu, cov)
    with pytest.raises(NonFiniteError):
        fr.frechet_distance(mu * np.nan, cov, mu, cov)


# ---------------------------------------------------------------- digits classifier and digits-FD


def test_split_matches_independent_loader(digits):
    for a, b in zip(fr._digits_split(), digits):
        np.testing.assert_array_equal(a, b)


def test_classifier_deterministic_and_accurate(digits):
    x_tr, y_tr, x_te, y_te = digits
    c1 = fr.digits_classifier()  # trained once per process
    c2 = fr.DigitsClassifier().fit(x_tr, y_tr)  # an independent second training
    assert set(c1.params) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert c1.params["W1"].shape == (64, 128) and c1.params["W2"].shape == (128, 64)
    assert c1.params["W3"].shape == (64, 10)
    for k in c1.params:
        assert c1.params[k].dtype == np.float64
        np.testing.assert_array_equal(c1.params[k], c2.params[k], err_msg=k)  # bit-identical
    assert c1.fingerprint() == c2.fingerprint()
    assert c1.accuracy(x_te, y_te) >= 0.9
    feats = c1.features(x_te)
    assert feats.shape == (300, 64) and np.all(np.abs(feats) < 1)
    # The documented network: h2 = tanh(tanh(x W1 + b1) W2 + b2), logits = h2 W3 + b3.
    p = c1.params
    h2 = np.tanh(np.tanh(x_te.reshape(300, 64) @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"])
    np.testing.assert_allclose(feats, h2, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(c1.predict(x_te), np.argmax(h2 @ p["W3"] + p["b3"], axis=1))
    np.testing.assert_array_equal(c1.predict(x_te.reshape(300, 64)), c1.predict(x_te))
    # The seed matters: a different seed gives different weights (so the check above can fail).
    c3 = fr.DigitsClassifier(seed=1, epochs=1).fit(x_tr, y_tr)
    assert not np.array_equal(c3.params["W1"], c1.params["W1"])


def test_digits_frechet_reference_and_ordering(digits):
    x_tr, _, x_te, _ = digits
    # The test split against its own statistics: only round-off (clipped at 0).
    assert fr.digits_frechet(x_te) < 1e-9
    assert fr.digits_frechet(x_tr, reference="train") < 1e-9
    fd_train = fr.digits_frechet(x_tr)  # 1497 real digits vs the 300-image test reference
    assert 1e-3 < fd_train
    noise = np.random.default_rng(0).uniform(-1, 1, size=(1497, 1, 8, 8))
    fd_noise = fr.digits_frechet(noise)
    assert fd_noise > 5 * fd_train, (fd_noise, fd_train)  # ≈ 5.2 vs ≈ 0.51


def test_digits_frechet_other_array_libraries(digits):
    torch = pytest.importorskip("torch")
    x = digits[2][:300]
    sub = np.random.default_rng(5).permutation(x)[:150]
    expected = fr.digits_frechet(sub)
    assert fr.digits_frechet(torch.from_numpy(sub).float()) == pytest.approx(expected, rel=1e-5)  # float32 input
    assert fr.digits_frechet(torch.from_numpy(sub)) == expected


def test_digits_frechet_bad_input(digits):
    x = digits[2]
    with pytest.raises(ValueError, match=r"expected \(N, 1, 8, 8\)"):
        fr.digits_frechet(x.reshape(300, 64))
    with pytest.raises(ValueError, match=r"expected \[-1, 1\]"):
        fr.digits_frechet((x + 1) * 8)  # raw 0..16 pixels
    with pytest.raises(ValueError, match="NaN"):
        fr.digits_frechet(np.where(x > 0.9, np.nan, x))
    with pytest.raises(ValueError, match="at least 2"):
        fr.digits_frechet(x[:1])
    with pytest.raises(ValueError, match="reference must be"):
        fr.digits_frechet(x, reference="val")


# ---------------------------------------------------------------- FID Inception (random weights here)


def _expected_inception_params(num_classes=1008):
    """``{state_dict key: shape}`` that ``pt_inception-2015-12-05-6726825d.pth`` needs.

    Built from the published architecture, independently of srl.inception: Inception-v3
    (Szegedy et al. 2016, "Rethinking the Inception Architecture", Table 1 and Figs. 5–7:
    35×35×288 → 17×17×768 → 8×8×1280 → 8×8×2048) with the layer names of the TF
    2015-12-05 graph as used by torchvision's ``Inception3`` (``aux_logits=False``), into
    which pytorch-fid's ``fid_inception_v3()`` loads that file with strict
    ``load_state_dict``; the TF graph's classifier has 1008 outputs. Each conv is a
    "BasicConv2d": bias-free conv ``(out, in, kh, kw)`` + BatchNorm(out).
    Rows: (name, in, out, kh, kw).
    """
    def block_a(c, pool):
        return [("branch1x1", c, 64, 1, 1), ("branch5x5_1", c, 48, 1, 1), ("branch5x5_2", 48, 64, 5, 5),
                ("branch3x3dbl_1", c, 64, 1, 1), ("branch3x3dbl_2", 64, 96, 3, 3),
                ("branch3x3dbl_3", 96, 96, 3, 3), ("branch_pool", c, pool, 1, 1)], 64 + 64 + 96 + pool

    def block_b(c):
        return [("branch3x3", c, 384, 3, 3), ("branch3x3dbl_1", c, 64, 1, 1), ("branch3x3dbl_2", 64, 96, 3, 3),
                ("branch3x3dbl_3", 96, 96, 3, 3)], 384 + 96 + c

    def block_c(c, c7):
        return [("branch1x1", c, 192, 1, 1),
                ("branch7x7_1", c, c7, 1, 1), ("branch7x7_2", c7, c7, 1, 7), ("branch7x7_3", c7, 192, 7, 1),
                ("branch7x7dbl_1", c, c7, 1, 1), ("branch7x7dbl_2", c7, c7, 7, 1),
                ("branch7x7dbl_3", c7, c7, 1, 7), ("branch7x7dbl_4", c7, c7, 7, 1),
                ("branch7x7dbl_5", c7, 192, 1, 7), ("branch_pool", c, 192, 1, 1)], 4 * 192

    def block_d(c):
        return [("branch3x3_1", c, 192, 1, 1), ("branch3x3_2", 192, 320, 3, 3),
                ("branch7x7x3_1", c, 192, 1, 1), ("branch7x7x3_2", 192, 192, 1, 7),
                ("branch7x7x3_3", 192, 192, 7, 1), ("branch7x7x3_4", 192, 192, 3, 3)], 320 + 192 + c

    def block_e(c):
        return [("branch1x1", c, 320, 1, 1), ("branch3x3_1", c, 384, 1, 1), ("branch3x3_2a", 384, 384, 1, 3),
                ("branch3x3_2b", 384, 384, 3, 1), ("branch3x3dbl_1", c, 448, 1, 1),
                ("branch3x3dbl_2", 448, 384, 3, 3), ("branch3x3dbl_3a", 384, 384, 1, 3),
                ("branch3x3dbl_3b", 384, 384, 3, 1), ("branch_pool", c, 192, 1, 1)], 320 + 2 * 384 + 2 * 384 + 192

    convs = [("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
             ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3)]
    c = 192
    channels = {}
    for name, make, arg in [("Mixed_5b", block_a, 32), ("Mixed_5c", block_a, 64), ("Mixed_5d", block_a, 64),
                            ("Mixed_6a", block_b, None), ("Mixed_6b", block_c, 128), ("Mixed_6c", block_c, 160),
                            ("Mixed_6d", block_c, 160), ("Mixed_6e", block_c, 192), ("Mixed_7a", block_d, None),
                            ("Mixed_7b", block_e, None), ("Mixed_7c", block_e, None)]:
        rows, c = make(c) if arg is None else make(c, arg)
        convs += [(f"{name}.{r[0]}", *r[1:]) for r in rows]
        channels[name] = c
    # Channel bookkeeping against the paper's Table 1 grid sizes.
    assert [channels[k] for k in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6e", "Mixed_7a",
                                  "Mixed_7b", "Mixed_7c")] == [256, 288, 288, 768, 768, 1280, 2048, 2048]
    spec = {}
    for name, cin, cout, kh, kw in convs:
        spec[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for p in ("weight", "bias", "running_mean", "running_var"):
            spec[f"{name}.bn.{p}"] = (cout,)
        spec[f"{name}.bn.num_batches_tracked"] = ()
    spec["fc.weight"] = (num_classes, c)
    spec["fc.bias"] = (num_classes,)
    return spec


@pytest.fixture(scope="module")
def inception():
    inc = pytest.importorskip("srl.inception")
    import torch

    torch.manual_seed(0)
    return inc, inc.FIDInception()


def test_fid_inception_state_dict_matches_weights_file_layout(inception):
    import torch

    _, model = inception
    expected = _expected_inception_params()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(expected) - set(got)) == [], "missing keys"
    assert sorted(set(got) - set(expected)) == [], "unexpected keys"
    assert got == expected
    assert len(got) == 94 * 6 + 2  # 94 BasicConv2d + fc
    # torchvision documents inception_v3 (1000 classes, with the aux head) at 27,161,264
    # parameters; minus its aux head (1×1 768→128 conv+BN: 98,560; 5×5 128→768 conv+BN:
    # 2,459,136; fc 768→1000: 769,000) and plus 8 more fc classes (8·2048 + 8) that is:
    assert sum(p.numel() for p in model.parameters()) == 27_161_264 - 3_326_696 + 16_392
    # A state dict with exactly these keys/shapes loads strictly (as the weights file must).
    fake = {k: (torch.zeros(s, dtype=torch.long) if k.endswith("num_batches_tracked") else torch.full(s, 0.5))
            for k, s in expected.items()}
    fresh = type(model)()
    fresh.load_state_dict(fake, strict=True)
    assert float(fresh.Mixed_7c.branch_pool.bn.running_var[0]) == 0.5
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_fid_inception_forward_preprocessing_and_gray_images(inception):
    import torch
    import torch.nn.functional as F

    _, model = inception
    gray = torch.from_numpy(np.random.default_rng(6).uniform(-1, 1, (2, 1, 32, 32))).float()
    seen = []
    handle = model.Conv2d_1a_3x3.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    try:
        y1 = model(gray)
    finally:
        handle.remove()
    # The stem sees the [-1, 1] images, channel-repeated, resized to 299×299 bilinearly
    # (align_corners=False) and not rescaled.
    expected_in = F.interpolate(gray.repeat(1, 3, 1, 1), size=(299, 299), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen[0], expected_in, rtol=0, atol=1e-6)
    assert y1.shape == (2, 2048) and y1.dtype == torch.float32
    assert bool(torch.isfinite(y1).all()) and bool((y1 >= 0).all())  # average of ReLU outputs
    assert float((y1[0] - y1[1]).abs().max()) > 1e-3 * float(y1.abs().max())  # depends on the image
    y3 = model(gray[:1].repeat(1, 3, 1, 1))
    torch.testing.assert_close(y1[:1], y3, rtol=1e-5, atol=1e-6 * float(y1.abs().max()))
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        model(gray[:, 0])


@pytest.mark.parametrize("block, pool", [("Mixed_5b", "avg"), ("Mixed_6b", "avg"), ("Mixed_7b", "avg"),
                                         ("Mixed_7c", "max")])
def test_fid_inception_pool_branches(inception, block, pool):
    """The FID graph's pool branches: TF average pooling that ignores padded zeros in the A, C
    and first E blocks, and a 3×3 *max* pool in Mixed_7c (pytorch-fid's FIDInception* patches).

    The block's pool-branch 1×1 conv is set to copy input channel 0 and its BN to the
    identity, so that output channel (last 192/pool_features ones, first of them) must
    equal relu(pool(x)[:, 0]); the torchvision pooling (count_include_pad=True) differs at
    the borders, so the check discriminates.
    """
    import copy

    import torch
    import torch.nn.functional as F

    _, model = inception
    blk = copy.deepcopy(getattr(model, block))
    conv, bn = blk.branch_pool.conv, blk.branch_pool.bn
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # (x − 0) / sqrt(1 − eps + eps) = x
    cin = conv.in_channels
    x = torch.from_numpy(np.random.default_rng(10).uniform(0.5, 1.5, (1, cin, 5, 5))).float()
    with torch.no_grad():
        out = blk(x)
    got = out[:, out.shape[1] - conv.out_channels]
    if pool == "max":
        ref = F.max_pool2d(x, 3, stride=1, padding=1)[:, 0]
    else:
        ref = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    wrong = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)[:, 0]
    assert float((ref - wrong).abs().max()) > 0.1
    # float32 (eps 1.2e-7): the same 9-term pooling sums in another order, ≈ 10 ulps of values ≲ 1;
    # the wrong padding rule above differs by > 0.1
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_weights_file_roundtrip_and_fid(inception, tmp_path, monkeypatch):
    import torch

    inc, model = inception
    path = tmp_path / inc.WEIGHTS_FILE
    torch.save(model.state_dict(), path)
    monkeypatch.setenv("SRL_FID_WEIGHTS", str(tmp_path))  # a directory holding the file
    assert inc.find_weights() == path
    assert inc.find_weights(path) == path
    imgs = np.random.default_rng(7).uniform(-1, 1, (4, 3, 32, 32))
    with torch.no_grad():
        direct = model(torch.from_numpy(imgs[3:]).float()).double().numpy()
    feats = inc.inception_features(imgs, batch_size=3)  # loads the file found through the env var
    assert feats.shape == (4, 2048) and feats.dtype == np.float64
    np.testing.assert_allclose(feats[3:], direct, rtol=1e-5, atol=1e-6 * np.abs(direct).max())
    value = inc.fid(imgs[:2], imgs[2:], weights=path)
    expected = fr.frechet_distance(*fr.gaussian_stats(feats[:2]), *fr.gaussian_stats(feats[2:]))
    np.testing.assert_allclose(value, expected, rtol=1e-4)  # float32 network features
    assert value > 0


def test_inception_features_bad_input(inception):
    inc, model = inception
    x = np.zeros((2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expected \[-1, 1\]"):
        inc.inception_features(x + 255, model=model)
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        inc.inception_features(x[:, :2], model=model)
    with pytest.raises(NonFiniteError):
        inc.inception_features(x * np.nan, model=model)


def test_find_weights_reports_where_it_looked(inception, tmp_path, monkeypatch):
    inc, _ = inception
    monkeypatch.delenv("SRL_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as info:
        inc.find_weights()
    msg = str(info.value)
    for part in (inc.WEIGHTS_FILE, "$SRL_FID_WEIGHTS (not set)", str(tmp_path / "torch_home" / "hub" / "checkpoints"),
                 str(tmp_path / "home" / ".cache" / "torch" / "hub" / "checkpoints"), inc.WEIGHTS_URL):
        assert part in msg, part
    monkeypatch.setenv("SRL_FID_WEIGHTS", str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        inc.find_weights()
    with pytest.raises(FileNotFoundError, match="explicit path"):
        inc.find_weights(tmp_path / "missing.pth")


def _real_weights():
    try:
        from srl.inception import find_weights

        return find_weights()
    except (ImportError, FileNotFoundError):
        return None


@pytest.mark.skipif(_real_weights() is None, reason="FID Inception weights not available locally (never downloaded)")
def test_real_weights_load_and_behave():
    from srl import inception as inc

    model = inc.load_fid_inception()  # strict load of the published file
    rng = np.random.default_rng(8)
    a = rng.uniform(-1, 1, (8, 3, 32, 32))
    feats = inc.inception_features(a, model=model)
    assert feats.shape == (8, 2048) and np.all(feats >= 0) and np.all(np.isfinite(feats))
    smooth = np.clip(np.cumsum(rng.normal(0, 0.1, (8, 3, 32, 32)), axis=-1), -1, 1)
    # FID of identical sets is 0 up to the round-off of the 2048-d covariance square root,
    # orders of magnitude below the FID between different image sets
    assert inc.fid(a, a, model=model) < 1e-3 * inc.fid(a, smooth, model=model)
