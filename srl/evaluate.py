"""Evaluation: reconstructions, samples, bounds on log p(x), synthesis metrics.

Units: data are scaled to [−1, 1]; MSE is per pixel in that scale. Bounds are in nats
per example and in bits per dimension, ``nats / (D ln 2)``, for the *continuous* density
of the Gaussian observation model on [−1, 1]-scaled pixels (no dequantisation), so they
compare runs of this library, not published discrete-data numbers.

* ``−J_jac`` (docs/math.md eq. 4.1) is an ELBO: E[J_jac] ≥ −log p(x).
* ``log w`` (eq. 5.1) is an ELBO, and ``log (1/M) Σ_m w_m`` over M chains a tighter one.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend, code_gaussian
from .distributed import SINGLE, local_chain_noise
from .langevin import short_run
from .objectives import objective_values
from .random import host_rng


def _batches(n, size):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _positive_int(name, value, *, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _check_evaluation(x_test, *, batch_size, n_bound, iw_chains, n_samples) -> np.ndarray:
    """Validated ``x_test`` as float64 (with at least one image) and the evaluation sizes."""
    x_test = np.asarray(x_test, dtype=np.float64)
    if x_test.ndim < 1 or x_test.shape[0] == 0:
        raise ValueError("x_test holds no images: evaluation needs a non-empty test set (for an image folder, "
                         "keep test_fraction > 0 and at least 2 images)")
    _positive_int("batch_size", batch_size)
    _positive_int("n_bound", n_bound, allow_none=True)
    _positive_int("iw_chains", iw_chains)
    _positive_int("n_samples", n_samples)
    return x_test


def to_backend(x_host, like):
    xp = _backend.array_namespace(like)
    return _backend.from_numpy(xp, np.asarray(x_host), dtype=like.dtype, device=_backend.device(like))


def reconstruct(gen, params, x, *, step_size, n_steps, sigma, seed=0, z0=None, noise=None):
    """Short-run inference then decode: ``(x̂ = g(z_K), z_K)`` (explicit ``z0``/``noise`` override ``seed``)."""
    zK = short_run(gen, params, x, step_size=step_size, n_steps=n_steps, sigma=sigma, seed=seed, z0=z0, noise=noise)
    return gen.forward(params, zK), zK


def _shard_noise(workers, gen, like, seed, n, rows, n_steps, n_chains=1) -> dict:
    """``z0=``/``noise=`` of a worker's rows of a batch of ``n`` (nothing in one process: ``seed`` draws it)."""
    if not workers.distributed:
        return {}
    z0, noise = local_chain_noise(seed, n, gen.latent_dims, n_steps, rows=rows, xp=_backend.array_namespace(like),
                                  dtype=like.dtype, device=_backend.device(like), n_chains=n_chains)
    return {"z0": z0, "noise": noise}


def sample(gen, params, n: int, *, seed=0, codes=None):
    """Images ``g(z)`` (the mean of p(x|z), without pixel noise) for ``z ~ N(0, I)``, or,
    with ``codes`` (``srl.code_gaussian.CodeGaussian``, from ``fit_codes``), for z from the
    Gaussian fitted to the chains' codes (docs/math.md eq. 3.3)."""
    n = _positive_int("n", n)
    p0 = next(iter(params.values()))
    xp = _backend.array_namespace(p0)
    dt = _backend.dtype_name(xp, p0.dtype)
    dev = _backend.device(p0)
    if codes is None:
        z = gen.prior(n, seed=seed, backend=_backend.backend_name(xp), dtype=dt, device=dev)
    else:
        if codes.mean.shape[0] != gen.d:
            raise ValueError(f"the codes' Gaussian has {codes.mean.shape[0]} dimensions but the generator's latent "
                             f"space has {gen.d}: fit it to this generator's codes (fit_codes)")
        eps = host_rng(seed).standard_normal((n, gen.d))  # (n, d), float64 on the host
        z = code_gaussian.latents(codes, eps, gen.latent_dims, xp=xp, dtype=p0.dtype, device=dev)
    return gen.forward(params, z)


def chain_codes(gen, params, x_host, *, step_size, n_steps, sigma, seed=0, batch_size=100) -> tuple:
    """The codes ``z_K`` of one short-run chain per image of ``x_host`` (host array
    ``(N, *out_shape)``, training images), in batches (chain seeds ``[seed, first row]``):
    one host float64 array ``(N, d_l)`` per group."""
    def codes(x, a):
        return reconstruct(gen, params, x, step_size=step_size, n_steps=n_steps, sigma=sigma, seed=[seed, a])[1]

    return _codes_in_batches(gen, params, x_host, codes, batch_size)


def fit_codes(gen, params, x_host, *, step_size, n_steps, sigma, seed=0, batch_size=100):
    """The Gaussian of eq. (3.3) (docs/math.md) fitted to ``chain_codes`` of ``x_host``."""
    return code_gaussian.fit(chain_codes(gen, params, x_host, step_size=step_size, n_steps=n_steps, sigma=sigma,
                                         seed=seed, batch_size=batch_size))


def fit_vae_codes(gen, enc, params, enc_params, x_host, *, seed=0, batch_size=100):
    """The VAE's counterpart of ``fit_codes``: one posterior sample
    ``z = μ_φ(x) + exp(λ_φ(x)/2) ⊙ ε`` (eq. 8.1) per image, ε drawn from ``seed``."""
    from .random import standard_normal_groups
    from .vae import posterior_sample

    p0 = next(iter(params.values()))
    xp = _backend.array_namespace(p0)

    def codes(x, a):
        mu, lv, _ = enc.forward(xp, enc_params, x)
        eps = standard_normal_groups(host_rng([seed, a]), x.shape[0], gen.latent_dims, xp=xp, dtype=p0.dtype,
                                     device=_backend.device(p0))
        return posterior_sample(xp, mu, lv, eps)

    return code_gaussian.fit(_codes_in_batches(gen, params, x_host, codes, batch_size))


def fit_run_codes(gen, params, enc, enc_params, x_host, *, step_size, n_steps, sigma, seed):
    """The codes' Gaussian of a trained run, as ``srl train``, ``srl eval`` and ``srl sample``
    fit it: ``fit_vae_codes`` for a VAE (``enc`` given), else ``fit_codes``; chains or
    posterior noise seeded ``[seed, 7]``."""
    if enc is not None:
        return fit_vae_codes(gen, enc, params, enc_params, x_host, seed=[seed, 7])
    return fit_codes(gen, params, x_host, step_size=step_size, n_steps=n_steps, sigma=sigma, seed=[seed, 7])


def _codes_in_batches(gen, params, x_host, codes, batch_size) -> tuple:
    x_host = np.asarray(x_host, dtype=np.float64)
    if x_host.ndim < 1 or x_host.shape[0] < 2:
        raise ValueError(f"fitting the codes' Gaussian needs at least 2 images, got "
                         f"{x_host.shape[0] if x_host.ndim else 0}")
    p0 = next(iter(params.values()))
    parts = []
    for a, b in _batches(x_host.shape[0], _positive_int("batch_size", batch_size)):
        parts.append([_backend.to_numpy(z) for z in codes(to_backend(x_host[a:b], p0), a)])
    return tuple(np.concatenate([p[l] for p in parts]).astype(np.float64) for l in range(len(gen.latent_dims)))


def evaluate(gen, params, x_test, *, step_size, n_steps, sigma, seed=0, batch_size=100, n_bound=None,
             iw_chains=8, frechet=True, n_samples=1000, fid_weights=None, workers=SINGLE,
             dataset=None, x_codes=None, codes=None) -> dict:
    """Held-out metrics (see the module docstring for units).

    ``x_test``: host array ``(N, *out_shape)``. ``n_bound`` limits how many test examples
    the (more expensive) bounds use; ``iw_chains`` is M of the importance-weighted bound;
    ``frechet``: the digits Fréchet distance of ``n_samples`` samples (8×8 data), or the
    FID against the test images when Inception weights are available (``fid_weights``).
    ``x_codes`` (host array of training images, optional): the Fréchet distance is also
    reported for samples from the Gaussian fitted to these images' codes (``*_codes``,
    docs/math.md eq. 3.3); ``codes`` (``fit_codes``'s result) gives that Gaussian instead.

    ``workers`` (``srl.distributed.Workers``): each batch is split across the workers, every
    worker drawing the noise of the whole batch and keeping its rows, and the sums are
    all-reduced, so the metrics do not depend on the number of workers (up to the order of
    summation). The synthesis metrics are computed by worker 0 only.
    """
    p0 = next(iter(params.values()))
    x_test = _check_evaluation(x_test, batch_size=batch_size, n_bound=n_bound, iw_chains=iw_chains,
                               n_samples=n_samples)
    N, D = x_test.shape[0], gen.D
    nb = N if n_bound is None else min(N, int(n_bound))

    def decode(x, a, n, rows):
        return reconstruct(gen, params, x, step_size=step_size, n_steps=n_steps, sigma=sigma, seed=[seed, a],
                           **_shard_noise(workers, gen, p0, [seed, a], n, rows, n_steps))[0]

    out = _reconstruction_mse(gen, p0, x_test, decode, batch_size, workers)
    sums = {"jacobian": 0.0, "reverse": 0.0, "reverse_iw": 0.0}
    for a, b in _batches(nb, batch_size):
        rows = workers.rows(b - a)
        if rows.stop == rows.start:
            continue  # fewer examples than workers in this batch
        x = to_backend(x_test[a:b][rows], p0)
        common = dict(step_size=step_size, n_steps=n_steps, sigma=sigma)

        def total(kind, key, n_chains=1):
            noise = _shard_noise(workers, gen, p0, [seed, key, a], b - a, rows, n_steps, n_chains)
            values = objective_values(gen, params, x, kind=kind, seed=[seed, key, a], n_chains=n_chains,
                                      **noise, **common)
            return float(np.sum(_backend.to_numpy(values)))

        sums["jacobian"] += total("jacobian", 1)
        sums["reverse"] += total("reverse", 2)
        if iw_chains and iw_chains > 1:
            sums["reverse_iw"] += total("reverse", 3, iw_chains)
    if workers.distributed:
        sums = dict(zip(sums, workers.sum_host(list(sums.values())).tolist()))
    to_bpd = 1.0 / (D * math.log(2.0))
    for key, label in (("jacobian", "neg_elbo_jacobian"), ("reverse", "neg_elbo_reverse"),
                       ("reverse_iw", f"neg_iw{iw_chains}_elbo_reverse")):
        if key == "reverse_iw" and not (iw_chains and iw_chains > 1):
            continue
        nats = sums[key] / nb
        out[f"{label}_nats"] = nats
        out[f"{label}_bpd"] = nats * to_bpd
    out["n_bound"] = nb
    if frechet and workers.is_main:
        out.update(_synthesis_metrics(gen, params, seed=seed, n_samples=n_samples, x_reference=x_test,
                                      fid_weights=fid_weights, dataset=dataset))
        if codes is None and x_codes is not None and len(x_codes):
            codes = fit_codes(gen, params, x_codes, step_size=step_size, n_steps=n_steps, sigma=sigma,
                              seed=[seed, 7], batch_size=batch_size)
        if codes is not None:
            out.update(_codes_metrics(gen, params, codes, seed=seed, n_samples=n_samples, x_reference=x_test,
                                      fid_weights=fid_weights, dataset=dataset))
    return out


def _codes_metrics(gen, params, codes, **synthesis) -> dict:
    """The synthesis metrics of samples from the codes' Gaussian, named ``*_codes``."""
    syn = _synthesis_metrics(gen, params, codes=codes, **synthesis)
    return {**{f"{k}_codes": syn[k] for k in ("frechet_digits", "frechet_fashion", "fid") if k in syn},
            "n_codes": codes.n}


def _reconstruction_mse(gen, like, x_test, decode, batch_size, workers=SINGLE) -> dict:
    """Per-pixel MSE of ``decode(x, start, n, rows)`` over the held-out set, in batches of ``n``
    examples of which this worker decodes ``rows``; the squared errors are all-reduced."""
    sq = 0.0
    for a, b in _batches(x_test.shape[0], batch_size):
        rows = workers.rows(b - a)
        if rows.stop == rows.start:
            continue  # fewer examples than workers in this batch
        x_host = x_test[a:b][rows]
        x_hat = decode(to_backend(x_host, like), a, b - a, rows)
        sq += float(np.sum((_backend.to_numpy(x_hat).astype(np.float64) - x_host) ** 2))
    if workers.distributed:
        sq = float(workers.sum_host([sq])[0])
    return {"mse_per_pixel": sq / (x_test.shape[0] * gen.D), "n_test": int(x_test.shape[0])}


def _synthesis_metrics(gen, params, *, seed, n_samples, x_reference=None, fid_weights=None, dataset=None,
                       codes=None) -> dict:
    """``image_metrics`` of ``n_samples`` samples g(z), z ~ N(0, I) drawn with ``[seed, 4]``
    (or, with ``codes``, z from the codes' Gaussian, eq. 3.3)."""
    xs = _backend.to_numpy(sample(gen, params, n_samples, seed=[seed, 4], codes=codes))
    return image_metrics(gen, xs, x_reference=x_reference, fid_weights=fid_weights, dataset=dataset)


def image_metrics(gen, xs, *, x_reference=None, fid_weights=None, dataset=None) -> dict:
    """Synthesis metrics of the images ``xs`` (host array ``(n, *gen.out_shape)``), however
    they were drawn.

    8×8 digits: the digits Fréchet distance (``srl.frechet``). ``dataset="fashion-mnist"``
    (28×28 or padded 32×32 gray images, or those repeated to RGB for ``paper()``, which are
    compared in gray): the Fashion-MNIST Fréchet distance against
    ``x_reference`` (the run's held-out images; ``srl.fashion_frechet``), plus FID when Inception weights are
    given explicitly (``fid_weights``). Other images: FID with the
    standard Inception features against ``x_reference`` when the Inception weights are
    found locally (``srl.inception.find_weights``: ``fid_weights``, ``$SRL_FID_WEIGHTS`` or
    the torch hub cache; never downloaded) — otherwise no FID is reported.
    """
    n_samples = int(xs.shape[0])
    if tuple(gen.out_shape) == (1, 8, 8):
        from .frechet import digits_frechet

        return {"frechet_digits": float(digits_frechet(xs)), "n_samples": n_samples}
    out = {}
    if dataset == "fashion-mnist" and tuple(gen.out_shape) in ((1, 28, 28), (1, 32, 32), (3, 32, 32)):
        from .fashion_frechet import fashion_frechet

        gray, ref = xs, x_reference
        if gen.out_shape[0] == 3:  # paper(): gray images repeated to RGB; back to gray by BT.601 luma
            from .data import resize

            gray = resize(xs, (1, 32, 32))
            ref = None if x_reference is None else resize(x_reference, (1, 32, 32))
        out = {"frechet_fashion": float(fashion_frechet(gray, ref)), "n_samples": n_samples,
               "frechet_reference_images": None if x_reference is None else int(len(x_reference))}
        if fid_weights is None:
            return out
    if x_reference is None:
        return out
    try:
        from . import inception

        weights = inception.find_weights(fid_weights)
    except (ImportError, FileNotFoundError):
        if fid_weights is not None:
            raise  # an explicit path that does not work is an error
        return out
    return {**out, "fid": float(inception.fid(xs, x_reference, weights=weights)), "n_samples": n_samples,
            "fid_reference_images": int(len(x_reference))}


def evaluate_vae(gen, enc, params, enc_params, x_test, *, sigma, seed=0, batch_size=100, n_bound=None,
                 iw_chains=8, elbo_samples=4, frechet=True, n_samples=1000, fid_weights=None,
                 dataset=None, x_codes=None, codes=None) -> dict:
    """The VAE's held-out metrics in the same units as ``evaluate``: MSE of ``g(μ(x))``,
    −ELBO (mean of ``elbo_samples`` reparameterised draws) and the IWAE bound; with
    ``x_codes``, also the synthesis metrics of samples from the Gaussian of the encoder's
    posterior samples on those images (``fit_vae_codes``; ``codes``: that Gaussian, fitted
    already)."""
    from . import vae
    from .random import standard_normal_groups

    p0 = next(iter(params.values()))
    xp = _backend.array_namespace(p0)
    x_test = _check_evaluation(x_test, batch_size=batch_size, n_bound=n_bound, iw_chains=iw_chains,
                               n_samples=n_samples)
    _positive_int("elbo_samples", elbo_samples)
    N, D = x_test.shape[0], gen.D
    nb = N if n_bound is None else min(N, int(n_bound))
    out = _reconstruction_mse(gen, p0, x_test, lambda x, a, n, rows: vae.reconstruct(xp, gen, enc, params, enc_params,
                                                                                      x), batch_size)
    elbo, iw = 0.0, 0.0
    rng = host_rng([seed, 7])
    for a, b in _batches(nb, batch_size):
        x = to_backend(x_test[a:b], p0)
        for _ in range(elbo_samples):
            eps = standard_normal_groups(rng, b - a, gen.latent_dims, xp=xp, dtype=p0.dtype,
                                         device=_backend.device(p0))
            v = vae.neg_elbo(xp, gen, enc, params, enc_params, x, eps, sigma, want_grads=False)[0]
            elbo += float(np.sum(_backend.to_numpy(v))) / elbo_samples
        iw += float(np.sum(_backend.to_numpy(vae.iw_bound(xp, gen, enc, params, enc_params, x, sigma,
                                                            n_samples=iw_chains, seed=[seed, 8, a]))))
    to_bpd = 1.0 / (D * math.log(2.0))
    out["neg_elbo_vae_nats"] = elbo / nb
    out["neg_elbo_vae_bpd"] = elbo / nb * to_bpd
    out[f"neg_iw{iw_chains}_elbo_vae_nats"] = iw / nb
    out[f"neg_iw{iw_chains}_elbo_vae_bpd"] = iw / nb * to_bpd
    out["n_bound"] = nb
    if frechet:
        out.update(_synthesis_metrics(gen, params, seed=seed, n_samples=n_samples, x_reference=x_test,
                                      fid_weights=fid_weights, dataset=dataset))
        if codes is None and x_codes is not None and len(x_codes):
            codes = fit_vae_codes(gen, enc, params, enc_params, x_codes, seed=[seed, 7], batch_size=batch_size)
        if codes is not None:
            out.update(_codes_metrics(gen, params, codes, seed=seed, n_samples=n_samples, x_reference=x_test,
                                      fid_weights=fid_weights, dataset=dataset))
    return out

