"""A PyTorch implementation of the paper's multi-layer generator, in its own style.

Nothing here follows srl's conventions: the parameter names and their registration order
are different, the top latent is ``(n, d)`` but the lower ones are ``(n, d, 1, 1)``, the
transposed convolution keeps its kernel in a parameter of its own, the energy is a summed
squared error / 2σ², and the Langevin loop draws its noise with ``torch.randn``.
``build()`` tells ``srl crosscheck`` how to compare it with srl.
"""

import torch
import torch.nn.functional as F
from torch import nn

import srl
from srl.interop.torch import prescribed_noise

GEN = srl.models.conv(latent_dims=(2, 3, 4), out_shape=(2, 8, 8), channels=4, proj_channels=2, proj_kernel=3,
                      res_kernels=(3, 3), inj_kernel=3)


def act(t):
    return F.gelu(t)


class UpConv(nn.Module):
    """Stride-1 transposed convolution with "same" padding and no bias."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(cin, cout, k, k))
        self.pad = (k - 1) // 2

    def forward(self, t):
        return F.conv_transpose2d(t, self.kernel, padding=self.pad)


class Lift(nn.Module):
    """A latent (n, d) or (n, d, 1, 1) to a feature map (n, width, g, g)."""

    def __init__(self, d, lift_channels, grid, width, k):
        super().__init__()
        self.fc = nn.Linear(d, lift_channels * grid * grid)
        self.up = UpConv(lift_channels, width, k)
        self.shape = (lift_channels, grid, grid)

    def forward(self, eps):
        t = act(self.fc(eps.flatten(1))).view(-1, *self.shape)
        return act(self.up(t))


class Block(nn.Module):
    """Residual block: t + act(b(act(a(t))))."""

    def __init__(self, width, k1, k2):
        super().__init__()
        self.b = nn.Conv2d(width, width, k2, padding=k2 // 2)
        self.a = nn.Conv2d(width, width, k1, padding=k1 // 2)

    def forward(self, t):
        return t + act(self.b(act(self.a(t))))


class MeanHead(nn.Module):
    def __init__(self, width, d, k, grid):
        super().__init__()
        self.conv = nn.Conv2d(width, d, k)
        self.fc = nn.Linear(d * (grid - k + 1) ** 2, d)

    def forward(self, h):
        return self.fc(act(self.conv(h)).flatten(1))


class VarianceHead(MeanHead):
    """Log-variance of the lower latent: softplus, + 1e-8, clamped to [0, 10]."""

    def forward(self, h):
        return torch.clamp(F.softplus(super().forward(h)) + 1e-8, 0.0, 10.0)


class Decoder(nn.Module):
    def __init__(self, dims, image, width, lift_channels, lift_kernel, block_kernels, head_kernel):
        super().__init__()
        channels, rows, _ = image
        grid = rows // 2
        self.dims = list(dims)
        self.to_image = nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1)
        self.final = Block(width, *block_kernels)
        self.var_heads = nn.ModuleList(VarianceHead(width, d, head_kernel, grid) for d in dims[1:])
        self.mean_heads = nn.ModuleList(MeanHead(width, d, head_kernel, grid) for d in dims[1:])
        self.blocks = nn.ModuleList(Block(width, *block_kernels) for _ in dims)
        self.lifts = nn.ModuleList(Lift(d, lift_channels, grid, width, lift_kernel) for d in dims)

    def forward(self, eps):
        """``eps[0]`` (n, d_0) is the top latent, ``eps[i]`` (n, d_i, 1, 1) the lower ones."""
        h = self.blocks[0](self.lifts[0](eps[0]))
        for i in range(1, len(eps)):
            mean, var = self.mean_heads[i - 1](h), self.var_heads[i - 1](h)
            u = mean[:, :, None, None] + torch.exp(0.5 * var)[:, :, None, None] * eps[i]
            h = self.blocks[i](self.lifts[i](u)) + h
        return torch.tanh(self.to_image(self.final(h)))


def reconstruction_energy(model, x, eps, sigma):
    """Summed squared error / 2σ², one value per example."""
    return F.mse_loss(model(eps), x, reduction="none").flatten(1).sum(1) / (2 * sigma ** 2)


def energy(model, x, eps, sigma):
    return reconstruction_energy(model, x, eps, sigma) + 0.5 * sum(e.flatten(1).pow(2).sum(1) for e in eps)


def langevin(model, x, n_steps, step, sigma):
    """Short-run Langevin from noise: eps <- eps - step²/2 ∇E(eps) + step · noise."""
    n = x.shape[0]
    eps = [torch.randn(n, model.dims[0], dtype=x.dtype)]
    eps += [torch.randn(n, d, 1, 1, dtype=x.dtype) for d in model.dims[1:]]
    for _ in range(n_steps):
        eps = [e.detach().requires_grad_(True) for e in eps]
        grads = torch.autograd.grad(reconstruction_energy(model, x, eps, sigma).sum(), eps)
        eps = [e - 0.5 * step ** 2 * (g + e) + step * torch.randn_like(e) for e, g in zip(eps, grads)]
    return [e.detach() for e in eps]


# ---------------------------------------------------------------- how to compare with srl
def srl_to_mine(name):
    """srl parameter name (docs/models.md) -> this module's parameter name."""
    layer, _, leaf = name.rpartition(".")
    parts = layer.split(".")
    block, level = parts[0].rstrip("0123456789"), parts[0][len(parts[0].rstrip("0123456789")):]
    if block == "proj":
        return f"lifts.{level}.fc.{leaf}" if parts[1] == "dense" else f"lifts.{level}.up.kernel"
    if block == "res":
        return f"blocks.{level}.{'a' if parts[1] == 'conv1' else 'b'}.{leaf}"
    if block == "inj":
        heads = "mean_heads" if parts[1] == "mu" else "var_heads"
        return f"{heads}.{int(level) - 1}.{'conv' if parts[2] == 'conv' else 'fc'}.{leaf}"
    if parts[1] == "res":
        return f"final.{'a' if parts[2] == 'conv1' else 'b'}.{leaf}"
    return f"to_image.{leaf}"


def mine(z):
    """srl's latents (a tuple of (n, d_l)) in this module's layout."""
    return [z[0]] + [zl[:, :, None, None] for zl in z[1:]]


def chain(model, x, z0, noise, step_size, sigma, n_steps):
    """Run the unmodified loop on srl's noise, drawn in the loop's order and layout."""
    with prescribed_noise([mine(z0)] + [mine(xi) for xi in noise]):
        eps = langevin(model, x, n_steps=n_steps, step=step_size, sigma=sigma)
    return [e.flatten(1) for e in eps]


def build():
    cfg = GEN.config
    model = Decoder(cfg["latent_dims"], cfg["out_shape"], cfg["channels"], cfg["proj_channels"],
                    cfg["proj_kernel"], cfg["res_kernels"], cfg["inj_kernel"])
    return {
        "module": model,
        "gen": GEN,
        "forward": lambda m, z: m(mine(z)),
        "mapping": srl_to_mine,
        "energy": lambda m, x, z, sigma: energy(m, x, mine(z), sigma),
        "chain": chain,
        # The autograd J_jac needs d Hessian-vector products per step kept for a third
        # derivative: fine for small models, minutes and gigabytes for the paper's d = 416.
        "objectives": ("jacobian", "reverse") if GEN.d <= 64 else ("reverse",),
    }
