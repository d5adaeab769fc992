"""One learning iteration, as a pure function of an explicit state (docs/math.md §3, §4, §5, §8).

``train_step(state, x, ...) → (state, metrics)`` on a minibatch x (n examples):

1. ``z_K`` by short-run Langevin (eq. 2.1) from noise, with the current step sizes s;
2. θ ← Adam step along ``−(1/n) Σ_i ∇_θ E_θ(z_K,i; x_i)`` with ``z_K`` held constant
   (eq. 3.1: no gradient flows through the chain) — or, for the VAE baseline, along the
   reparameterised −ELBO gradient (§8);
3. every ``step_every`` iterations of the first ``step_iterations``, one step-size update
   (grid search or Adam on log s, on J_jac or the reverse-kernel bound) on the first
   ``step_subset`` examples; afterwards s is held.

Every random draw is keyed by ``(seed, iteration)``, so the same state and minibatch give
the same result: a run resumed from a checkpoint of the state reproduces the
uninterrupted run exactly. The loop, the data order and the run directory are
``srl.train`` and ``srl.rundir``.
"""

from __future__ import annotations

import json
import warnings
from typing import NamedTuple, Optional

from . import _backend, compiled, cuda_graphs
from .distributed import SINGLE, keep_rows, local_chain_noise
from .energy import _value_and_grad
from .langevin import _short_run, check_chain, short_run
from .optim import Adam, AdamState
from .random import chain_noise, host_rng, standard_normal_groups
from .stepsize import AdamLogStep, GridSearch, StepSizeWarning
from .errors import DivergenceError
from .validate import all_finite, check_step_size
from .vae import Encoder, neg_elbo, split_params


class ThetaDivergenceError(DivergenceError):
    """θ itself became NaN or inf in an update (its learning rate is too large)."""


class TrainState(NamedTuple):
    """Everything a training iteration reads and writes (what a checkpoint stores)."""

    params: dict  # θ (and the encoder's φ for the VAE baseline), backend arrays
    adam: AdamState  # θ's optimiser
    stepper: object  # the step-size optimiser's state (None for fixed step sizes and grid search)
    step_size: tuple  # s, one per latent group
    iteration: int  # iterations done


class Optimisers(NamedTuple):
    """The hyperparameters of the two optimisers (their states live in ``TrainState``)."""

    theta: Adam
    step: Optional[object]  # GridSearch, AdamLogStep or None (fixed step sizes)


def make_optimisers(cfg) -> Optimisers:
    """θ's Adam and the step-size optimiser named by the configuration."""
    theta = Adam(lr=cfg.lr, betas=(cfg.beta1, 0.999))
    if cfg.step_method == "fixed":
        step = None
    elif cfg.step_method == "grid":
        step = GridSearch(kind=cfg.step_objective, tied=cfg.tied)
    else:
        step = AdamLogStep(kind=cfg.step_objective, lr=cfg.step_lr, tied=cfg.tied,
                           keep_activations=cfg.step_keep_activations)
    return Optimisers(theta, step)


def init_state(cfg, gen, opt: Optimisers) -> TrainState:
    """The state before the first iteration: θ (and φ) initialised from ``cfg.seed``."""
    params = gen.init(seed=cfg.seed, backend=cfg.backend, dtype=cfg.dtype, device=cfg.device)
    if cfg.method == "vae":
        params.update(Encoder(gen).init(seed=[cfg.seed, 9], backend=cfg.backend, dtype=cfg.dtype,
                                        device=cfg.device))
    step_size = check_step_size(cfg.step_size, len(gen.latent_dims))
    stepper = opt.step.init() if opt.step is not None else None
    return TrainState(params, opt.theta.init(params), stepper, step_size, 0)


def chain_and_gradient(xp, gen, params, x, z0, noise, step_size, sigma):
    """The chain (eq. 2.1) from ``z0`` with ``noise`` (K tuples like z), then at ``z_K`` the
    energies ``(n,)``, ``Σ_i ∇_θ E`` (dict like θ, eq. 3.1) and the residual ``g(z_K) − x``:
    ``(z_K, energy, grads, residual)``. No host synchronisation (``srl.cuda_graphs`` records it)."""
    zK, _ = _short_run(xp, gen, params, x, z0, noise, step_size, sigma)
    energy, _, grads, residual = _value_and_grad(xp, gen, params, x, zK, sigma, want_params=True,
                                                 want_residual=True)
    return zK, energy, grads, residual


def batch_value_and_param_grad(xp, gen, params, x, z, sigma):
    """Mean energy, mean ∇_θ E and the per-pixel MSE at fixed z (docs/math.md eq. 3.1)."""
    energy, _, grads, residual = _value_and_grad(xp, gen, params, x, z, sigma, want_params=True,
                                                 want_residual=True)
    return batch_means(xp, energy, grads, residual)


def batch_means(xp, energy, grads, residual):
    """``(mean energy, mean ∇_θ E, per-pixel MSE)`` from the per-example energies ``(n,)``,
    ``Σ_i ∇_θ E`` and the residual ``(n, ...)``; the two floats are host reads."""
    n = residual.shape[0]
    return (float(xp.mean(energy)), {k: g * (1.0 / n) for k, g in grads.items()},
            float(xp.mean(residual * residual)))


def _shortrun_theta(xp, cfg, gen, params, x, step_size, it, workers):
    """Gradient of eq. (3.1) at ``z_K`` of a short-run chain: ``(grads, metrics)``.

    With several workers each runs the chains of its rows of the global batch ``x`` on the
    whole batch's noise (``srl.distributed``); the ∇θ sums, energies and squared errors
    are all-reduced, then divided by the global batch size.
    """
    seed, n = [cfg.seed, 1, it], x.shape[0]
    if workers.distributed:
        rows = workers.rows(n)
        x = x[rows]
        z0, noise = local_chain_noise(seed, n, gen.latent_dims, cfg.n_steps, rows=rows, xp=xp, dtype=x.dtype,
                                      device=_backend.device(x))
    else:
        z0, noise = chain_noise(seed, n, gen.latent_dims, cfg.n_steps, xp=xp, dtype=x.dtype,
                                device=_backend.device(x))
    # the inner chain (eq. 2.1) and ∇θ E at z_K: the configuration, data and step sizes were
    # validated once per run; with cuda_graphs, replayed from a recording (srl.cuda_graphs)
    if cfg.cuda_graphs:
        def chain(p, xx, z, nz):
            return chain_and_gradient(xp, gen, p, xx, z, nz, step_size, cfg.sigma)

        key = (json.dumps(gen.config, sort_keys=True, default=str), tuple(float(v) for v in step_size), cfg.sigma)
        zK, energy, grads, residual = cuda_graphs.RECORDINGS.replay(chain, (params, x, z0, noise), key=key)
    else:
        zK, energy, grads, residual = chain_and_gradient(xp, gen, params, x, z0, noise, step_size, cfg.sigma)
    check_chain(xp, zK, step_size=step_size, sigma=cfg.sigma, n_steps=cfg.n_steps)
    if not workers.distributed:
        energy, grads, mse = batch_means(xp, energy, grads, residual)
        return grads, {"energy": energy, "mse": mse}
    grads = workers.sum_dict(grads)  # Σ over the global batch of ∇θ E (eq. 3.1)
    e_sum, sq_sum = workers.sum_host([float(xp.sum(energy)), float(xp.sum(residual * residual))])
    return {k: g * (1.0 / n) for k, g in grads.items()}, {"energy": e_sum / n, "mse": sq_sum / (n * gen.D)}


def _vae_theta(xp, cfg, gen, params, x, it, workers):
    """The reparameterised −ELBO gradient of θ and φ (srl.vae, docs/math.md §8): ``(grads, metrics)``.

    With several workers: each its rows of ``x`` and of the whole batch's ε; sums all-reduced.
    """
    enc = Encoder(gen)
    gen_p, enc_p = split_params(params)
    n = x.shape[0]
    if workers.distributed:
        import array_api_compat.numpy as host

        rows = workers.rows(n)
        eps = keep_rows(standard_normal_groups(host_rng([cfg.seed, 1, it]), n, gen.latent_dims, xp=host,
                                               dtype=host.float64, device="cpu"),
                        rows, n=n, xp=xp, dtype=x.dtype, device=_backend.device(x))
        x = x[rows]
    else:
        eps = standard_normal_groups(host_rng([cfg.seed, 1, it]), n, gen.latent_dims, xp=xp, dtype=x.dtype,
                                     device=_backend.device(x))
    values, g_gen, g_enc, aux = neg_elbo(xp, gen, enc, gen_p, enc_p, x, eps, cfg.sigma)
    grads = workers.sum_dict({**g_gen, **g_enc})
    grads = {k: g * (1.0 / n) for k, g in grads.items()}
    r = aux["residual"]
    if workers.distributed:
        v_sum, sq_sum = workers.sum_host([float(xp.sum(values)), float(xp.sum(r * r))])
        return grads, {"energy": v_sum / n, "neg_elbo": v_sum / n, "mse": sq_sum / (n * gen.D)}
    return grads, {"energy": float(xp.mean(values)), "neg_elbo": float(xp.mean(values)),
                   "mse": float(xp.mean(r * r))}


def chain_diverges(params, state: TrainState, x, *, cfg, gen) -> bool:
    """Whether the chain of iteration ``state.iteration`` (same noise, same step sizes)
    diverges with ``params``: run on the θ before the last update, it tells a divergence
    caused by θ's learning rate from one caused by the step sizes."""
    try:
        short_run(gen, params, x, step_size=state.step_size, n_steps=cfg.n_steps, sigma=cfg.sigma,
                  seed=[cfg.seed, 1, state.iteration])
    except DivergenceError:
        return True
    return False


def _theta_diverged(it, lr):
    return ThetaDivergenceError(f"θ became NaN or inf in the update of iteration {it + 1} (θ learning rate "
                                f"{lr:.3g}): the θ learning rate is too large for this model; lower --lr")


def _compiled_theta_step(cfg, gen, state, x, opt, lr):
    """JAX: the chain, the θ-gradient and Adam's update as one compiled call
    (``srl.compiled.train_iteration``): ``(params, adam state, metrics)``, or None when the
    chain diverged (the eager path then re-runs it to raise its usual error)."""
    params, adam, energy, mse, ok, finite = compiled.train_iteration(
        gen, state.params, state.adam, x, adam=opt.theta, lr=lr, step_size=state.step_size, n_steps=cfg.n_steps,
        sigma=cfg.sigma, seed=[cfg.seed, 1, state.iteration])
    if not bool(ok):  # the one host read of the iteration (the others are then ready)
        return None
    if not bool(finite):
        raise _theta_diverged(state.iteration, lr)
    return params, adam, {"energy": float(energy), "mse": float(mse)}


def train_step(state: TrainState, x, *, cfg, gen, opt: Optimisers, lr: float, workers=SINGLE):
    """One iteration on the minibatch ``x``: ``(new state, metrics)``.

    ``lr`` is θ's learning rate for this iteration (``srl.config.learning_rate``). The
    metrics hold the energy and MSE at this iteration's θ, the step sizes used, and, when
    the step sizes were updated, the objective at the new ones.

    ``workers`` (``srl.distributed.Workers``): every worker passes the same global batch
    ``x`` and state, works on its rows, and gets the same new state and metrics — those of
    one process up to the order of floating-point summation (docs/distributed.md).
    """
    xp = _backend.array_namespace(x)
    it = state.iteration
    done = None
    if cfg.method != "vae" and compiled.active(xp) and not workers.distributed:
        done = _compiled_theta_step(cfg, gen, state, x, opt, lr)
    if done is not None:
        params, adam, metrics = done
    else:
        if cfg.method == "vae":
            grads, metrics = _vae_theta(xp, cfg, gen, state.params, x, it, workers)
        else:
            grads, metrics = _shortrun_theta(xp, cfg, gen, state.params, x, state.step_size, it, workers)
        params, adam = opt.theta.update(state.adam, state.params, grads, lr=lr)
        if not all_finite(xp, params.values()):  # one host synchronisation per iteration
            raise _theta_diverged(it, lr)
    metrics["step_size"] = [float(v) for v in state.step_size]
    step_size, stepper = state.step_size, state.stepper
    optimising_s = cfg.step_iterations == 0 or it < cfg.step_iterations  # then s is held (docs/math.md §5)
    if opt.step is not None and cfg.method != "vae" and optimising_s and it % cfg.step_every == 0:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StepSizeWarning)
            upd, stepper = opt.step.update(stepper, gen, params, x[:cfg.step_subset, ...], step_size,
                                           n_steps=cfg.n_steps, sigma=cfg.sigma, seed=[cfg.seed, 2, it],
                                           workers=workers)
        for w in caught:
            warnings.warn(f"iteration {it + 1}: {w.message}", StepSizeWarning, stacklevel=2)
        step_size = upd.step_size
        metrics["step_objective"] = upd.objective
        metrics["step_diverged"] = upd.diverged
        if upd.stability == upd.stability:  # checked (not nan): the chain's stability index, eq. (2.2)
            metrics["step_stability"] = upd.stability
            metrics["step_projected"] = upd.projected
    return TrainState(params, adam, stepper, step_size, it + 1), metrics
