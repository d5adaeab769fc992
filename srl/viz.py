"""Pictures: image grids and training curves (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import _backend


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def output_path(path) -> Path:
    """The file a picture is written to: ``path``, with ``.png`` added when it has no suffix,
    its directory created; ``ValueError`` naming the path when that is impossible."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory; give a file name such as {path / 'image.png'}")
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot write {path}: a part of {path.parent} is a file, not a directory; "
                         "choose another output path") from None
    return path


def tile(images, *, ncol=None, pad: int = 1, upscale=None) -> np.ndarray:
    """``(N, C, H, W)`` in [−1, 1] → one ``(rows·H', cols·W', 3)`` image in [0, 1]."""
    x = np.asarray(_backend.to_numpy(images), dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {x.shape}")
    n, c, h, w = x.shape
    if c == 1:
        x = np.repeat(x, 3, axis=1)
    elif c != 3:
        x = np.repeat(x.mean(axis=1, keepdims=True), 3, axis=1)
    x = np.clip((x + 1.0) / 2.0, 0.0, 1.0).transpose(0, 2, 3, 1)  # (N, H, W, 3)
    if upscale is None:
        upscale = max(1, 32 // max(h, w))
    if upscale > 1:
        x = np.repeat(np.repeat(x, upscale, axis=1), upscale, axis=2)
        h, w = h * upscale, w * upscale
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    canvas = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3))
    for i in range(n):
        r, q = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return canvas


def save_grid(path, images, *, ncol=None, upscale=None, title=None) -> Path:
    """Write a PNG grid of images in [−1, 1]."""
    path = output_path(path)
    canvas = tile(images, ncol=ncol, upscale=upscale)
    plt = _mpl()
    if title is None:
        plt.imsave(path, canvas)
        return path
    fig, ax = plt.subplots(figsize=(canvas.shape[1] / 60 + 0.5, canvas.shape[0] / 60 + 0.8), dpi=100)
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_reconstructions(path, x, x_hat, *, n: int = 16, title=None) -> Path:
    """Data (odd rows) above their reconstructions (even rows)."""
    x, x_hat = _backend.to_numpy(x)[:n], _backend.to_numpy(x_hat)[:n]
    ncol = min(n, 8)
    rows = []
    for start in range(0, len(x), ncol):
        rows += [x[start:start + ncol], x_hat[start:start + ncol]]
    return save_grid(path, np.concatenate(rows, axis=0), ncol=ncol, title=title)


def plot_training(path, history: list, *, title: str = "") -> Path:
    """Loss, reconstruction MSE and per-group step sizes over iterations."""
    plt = _mpl()
    path = output_path(path)
    it = np.array([h["iteration"] for h in history])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(it, [h["energy"] for h in history], lw=1)
    axes[0].set_title("energy E(z_K; x) per example [nats]")
    axes[1].plot(it, [h["mse"] for h in history], lw=1, color="C1")
    axes[1].set_yscale("log")
    axes[1].set_title("reconstruction MSE per pixel (data in [−1, 1])")
    s = np.array([h["step_size"] for h in history])
    for j in range(s.shape[1]):
        axes[2].plot(it, s[:, j], lw=1.2, label=f"group {j}" + (" (top)" if j == 0 else ""))
    axes[2].set_yscale("log")
    axes[2].set_title("Langevin step size s per group")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_objective_curve(path, step_sizes, curves: dict, *, title: str = "", ylabel: str = "objective [nats]") -> Path:
    """Objective(s) against a grid of tied step sizes (log x axis)."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, values in curves.items():
        ax.plot(step_sizes, values, marker="o", ms=3, label=label)
    ax.set_xscale("log")
    finite = [v for vals in curves.values() for v in vals if np.isfinite(v)]
    if finite and min(finite) > 0:
        ax.set_yscale("log")  # the minima sit orders of magnitude below the divergent end
    ax.set_xlabel("step size s (tied)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = output_path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
