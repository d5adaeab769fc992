"""FID with the standard Inception-v3 features, for 32×32 (or any size) RGB image datasets.

Standard FID (Heusel et al. 2017) compares Gaussian fits of the 2048-d "pool3" features
of the Inception-v3 network that TensorFlow's reference FID code uses (the 2015-12-05
ImageNet graph). This module rebuilds that network in plain PyTorch — the variant
ported by the ``pytorch-fid`` package (``pt_inception-2015-12-05-6726825d.pth``) — so
its features, and hence FID values, match ``pytorch-fid``'s:

* input ``(N, 3, H, W)`` in [−1, 1] (1-channel images are repeated to 3 channels);
  pytorch-fid takes [0, 1] and computes ``2x − 1`` after resizing, which is the same
  thing because bilinear interpolation commutes with affine maps;
* resized to 299×299 with ``F.interpolate(mode="bilinear", align_corners=False)``
  (upsampling, no antialiasing); note that TF's original FID and clean-fid resize
  differently, so absolute numbers are comparable with pytorch-fid only;
* Inception-v3 up to the global average pool (2048-d); the classifier ``fc`` (1008
  classes) is part of the weights file, and of this module so that the file loads with
  ``strict=True``, but is not used;
* the FID-specific patches of the TF graph: in the A, C and first E blocks the 3×3
  average pool of the pool branch ignores padded zeros (``count_include_pad=False``,
  TF semantics), and the last E block (``Mixed_7c``) uses a 3×3 *max* pool there.

Nothing is ever downloaded. Put the weights file where :func:`find_weights` looks
(explicit path, ``$SRL_FID_WEIGHTS``, or the torch hub checkpoint cache). The file is
published by pytorch-fid at
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
(≈ 91 MiB); if you ever ran pytorch-fid it is already in ``~/.cache/torch/hub/checkpoints``.

Generated images are usually saved as 8-bit PNGs before FID tools read them; pass
``quantize=True`` to :func:`inception_features` / :func:`fid` to round to 256 levels the
same way. Report N (FID is biased upwards for small N; 10 000 or 50 000 samples is the
convention, and covariances are singular for N ≤ 2048).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without torch
    # ModuleNotFoundError (an ImportError): what pytest.importorskip treats as "not installed"
    raise ModuleNotFoundError("srl.inception needs PyTorch: pip install 'srl[torch]'", name="torch") from exc

from .errors import NonFiniteError, ShapeError
from .frechet import frechet_distance, gaussian_stats

__all__ = ["WEIGHTS_FILE", "WEIGHTS_URL", "ENV_VAR", "find_weights", "FIDInception", "load_fid_inception",
           "inception_features", "fid"]

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE
ENV_VAR = "SRL_FID_WEIGHTS"
NUM_CLASSES = 1008  # the 2015-12-05 TF graph has 1008 outputs (1000 ImageNet classes + 8 unused)
FEATURE_DIM = 2048


# ---------------------------------------------------------------- weights file


def _cache_dirs() -> list[Path]:
    dirs = [Path(torch.hub.get_dir()) / "checkpoints"]  # honours $TORCH_HOME / $XDG_CACHE_HOME
    default = Path("~/.cache/torch/hub/checkpoints").expanduser()
    if default not in dirs:
        dirs.append(default)
    return dirs


def find_weights(path=None) -> Path:
    """Locate the FID Inception weights file; never downloads.

    Looks, in order, at ``path`` (a file, or a directory holding ``WEIGHTS_FILE``), then
    ``$SRL_FID_WEIGHTS`` (same), then ``<torch hub dir>/checkpoints/WEIGHTS_FILE`` and
    ``~/.cache/torch/hub/checkpoints/WEIGHTS_FILE``. An explicit ``path`` that does not
    exist is an error (no silent fallback). Raises ``FileNotFoundError`` listing every
    place searched and where to get the file.
    """
    searched: list[str] = []

    def resolve(p) -> Path | None:
        p = Path(p).expanduser()
        cand = p / WEIGHTS_FILE if p.is_dir() else p
        searched.append(str(cand))
        return cand if cand.is_file() else None

    if path is not None:
        found = resolve(path)
        if found is None:
            raise FileNotFoundError(f"FID Inception weights not found at {searched[0]} (explicit path); "
                                    f"expected the file {WEIGHTS_FILE} from {WEIGHTS_URL}")
        return found
    env = os.environ.get(ENV_VAR)
    if env:
        found = resolve(env)
        if found is not None:
            return found
    else:
        searched.append(f"${ENV_VAR} (not set)")
    for d in _cache_dirs():
        found = resolve(d / WEIGHTS_FILE)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"FID Inception weights {WEIGHTS_FILE} not found. Searched: " + "; ".join(searched) + ". "
        f"srl never downloads it: fetch {WEIGHTS_URL} (the pytorch-fid weights, ~91 MiB) yourself and "
        f"put it in ~/.cache/torch/hub/checkpoints/, or set {ENV_VAR}=/path/to/{WEIGHTS_FILE}, "
        "or pass weights=... explicitly."
    )


# ---------------------------------------------------------------- network


class _ConvBN(nn.Module):
    """Conv (no bias) → BatchNorm (eps 1e-3, TF's value) → ReLU; parameters ``conv.*``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x):
    # TF's 3×3/1 SAME average pool divides by the number of real (non-padded) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1 (64 + 64 + 96 + pool)."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool_features, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([a, b, c, d], 1)


class _ReductionB(nn.Module):
    """35→17 reduction (Mixed_6a): 3×3/2 | 1×1→3×3→3×3/2 | maxpool 3×3/2 (384 + 96 + cin)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (192 × 4 outputs)."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            c = layer(c)
        d = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([a, b, c, d], 1)


class _ReductionD(nn.Module):
    """17→8 reduction (Mixed_7a): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool 3×3/2 (320 + 192 + cin)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedE(nn.Module):
    """8×8 block with split 1×3 / 3×1 outputs: 320 + 768 + 768 + 192 = 2048 channels.

    ``pool="avg"`` (Mixed_7b: TF average pool without padded zeros) or ``"max"``
    (Mixed_7c: the FID graph uses a 3×3/1 max pool here).
    """

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
        if self.pool == "max":
            p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            p = _avg_pool_tf(x)
        return torch.cat([a, b, c, self.branch_pool(p)], 1)


class FIDInception(nn.Module):
    """Inception-v3 of the TF FID graph (pytorch-fid's ``pt_inception-2015-12-05``), pool3 output.

    ``forward(images)``: ``(N, 3, H, W)`` (or ``(N, 1, H, W)``, repeated to 3 channels)
    float tensor in [−1, 1] → ``(N, 2048)``. Images are resized to 299×299 (bilinear,
    ``align_corners=False``) inside. Parameter names follow torchvision's ``Inception3``
    (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, …, ``fc.*``)
    so the weights file loads with ``strict=True``. The constructor gives a *random*
    network (use :meth:`from_weights` or :func:`load_fid_inception` for the real one):
    Kaiming-normal convolutions (ReLU gain, torch's global RNG) and identity BatchNorm,
    so activations keep their scale through the 94 conv layers; PyTorch's default init
    would shrink them into the denormal range, which is also very slow on CPU. The
    module is put in eval mode with gradients off: BatchNorm must use the stored
    statistics, never batch statistics.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _MixedA(192, pool_features=32)
        self.Mixed_5c = _MixedA(256, pool_features=64)
        self.Mixed_5d = _MixedA(288, pool_features=64)
        self.Mixed_6a = _ReductionB(288)
        self.Mixed_6b = _MixedC(768, c7=128)
        self.Mixed_6c = _MixedC(768, c7=160)
        self.Mixed_6d = _MixedC(768, c7=160)
        self.Mixed_6e = _MixedC(768, c7=192)
        self.Mixed_7a = _ReductionD(768)
        self.Mixed_7b = _MixedE(1280, pool="avg")
        self.Mixed_7c = _MixedE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # unused; present so the weights file loads strictly
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        self.eval()
        self.requires_grad_(False)

    @classmethod
    def from_weights(cls, weights=None, device="cpu") -> "FIDInception":
        """The pretrained network from the local weights file (see :func:`find_weights`)."""
        path = find_weights(weights)
        fix = f"it must be the pytorch-fid weights {WEIGHTS_FILE} ({WEIGHTS_URL}); fetch that file again"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, garbage or a pickle of other objects
            raise ValueError(f"FID weights file {path} is not a readable torch weights file "
                             f"({type(exc).__name__}); {fix}") from None
        model = cls()
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError):  # a state dict of some other network
            raise ValueError(f"FID weights file {path} does not hold the FID Inception network (its parameter "
                             f"names or shapes differ); {fix}") from None
        return model.to(device).eval()

    def forward(self, images):
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ShapeError(f"images have shape {tuple(images.shape)}, expected (N, 3, H, W) or (N, 1, H, W)")
        x = images
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = self.Conv2d_1a_3x3(x)  # 32 × 149 × 149
        x = self.Conv2d_2a_3x3(x)  # 32 × 147 × 147
        x = self.Conv2d_2b_3x3(x)  # 64 × 147 × 147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 64 × 73 × 73
        x = self.Conv2d_3b_1x1(x)  # 80 × 73 × 73
        x = self.Conv2d_4a_3x3(x)  # 192 × 71 × 71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 192 × 35 × 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d,  # 256, 288, 288 × 35 × 35
                      self.Mixed_6a,  # 768 × 17 × 17
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a,  # 1280 × 8 × 8
                      self.Mixed_7b, self.Mixed_7c):  # 2048 × 8 × 8
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # pool3: N × 2048


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, device: str) -> FIDInception:
    return FIDInception.from_weights(path, device=device)


def load_fid_inception(weights=None, device="cpu") -> FIDInception:
    """:meth:`FIDInception.from_weights`, cached per (file, device) within the process."""
    return _cached_model(str(find_weights(weights).resolve()), str(torch.device(device)))


# ---------------------------------------------------------------- features and FID


def _as_torch(images, device) -> "torch.Tensor":
    if isinstance(images, torch.Tensor):
        x = images.detach()
    else:
        from .frechet import _to_numpy

        x = torch.from_numpy(np.ascontiguousarray(_to_numpy(images)))
    return x.to(device=device, dtype=torch.float32)


def inception_features(images, *, weights=None, batch_size: int = 50, device="cpu", quantize: bool = False,
                       model: FIDInception | None = None) -> np.ndarray:
    """Pool3 features ``(N, 2048)`` float64 of ``images`` ``(N, 3|1, H, W)`` in [−1, 1].

    ``images`` may come from any array library (torch tensors stay on their way to
    ``device``; others go through NumPy). Values more than 1e-6 outside [−1, 1], a wrong
    shape or non-finite values raise ``ValueError`` (``ShapeError``/``NonFiniteError``).
    ``quantize=True`` rounds to 8-bit levels first, as saving PNGs would. ``model``
    overrides the network (default :func:`load_fid_inception` with ``weights``); batches
    of ``batch_size`` run under ``torch.no_grad()`` in float32.
    """
    x = _as_torch(images, "cpu" if not isinstance(images, torch.Tensor) else images.device)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ShapeError(f"images have shape {tuple(x.shape)}, expected (N, 3, H, W) or (N, 1, H, W) in [-1, 1]")
    if x.shape[0] == 0:
        raise ShapeError("images is empty")
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError("images contain NaN or infinity")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(f"images have values in [{lo:.4g}, {hi:.4g}], expected [-1, 1] "
                         "(for [0, 1] data pass 2*x - 1; for uint8 pass x/127.5 - 1)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    net = model if model is not None else load_fid_inception(weights, device)
    dev = next(net.parameters()).device
    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size].to(dev).clamp(-1.0, 1.0)
            if quantize:
                xb = torch.round((xb + 1.0) * 127.5) / 127.5 - 1.0
            out.append(net(xb).double().cpu().numpy())
    return np.concatenate(out, axis=0)


def fid(images_a, images_b, *, weights=None, batch_size: int = 50, device="cpu", quantize: bool = False,
        model: FIDInception | None = None) -> float:
    """FID between two image sets ``(N, 3|1, H, W)`` in [−1, 1] (pytorch-fid's network and resize).

    ``frechet_distance(*gaussian_stats(inception_features(a)), *gaussian_stats(inception_features(b)))``;
    the matrix square root uses symmetric eigendecompositions (see
    :func:`srl.frechet.frechet_distance`), not pytorch-fid's ``sqrtm`` + ``1e-6·I`` fallback,
    so values agree with pytorch-fid up to that numerical difference. Report N.
    """
    kw = dict(weights=weights, batch_size=batch_size, device=device, quantize=quantize, model=model)
    mu_a, cov_a = gaussian_stats(inception_features(images_a, **kw))
    mu_b, cov_b = gaussian_stats(inception_features(images_b, **kw))
    return frechet_distance(mu_a, cov_a, mu_b, cov_b)
