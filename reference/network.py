"""The generator g_theta(z) of docs/math.md §1 as a small explicit computation graph ("tape").

The graph is built from a config dict exactly as described in docs/models.md
(kinds "mlp" and "conv"; parameter names and PyTorch layouts of that page).
Each node is one layer with four hand-written rules:

(a) ``forward``      y = f(x; theta)
(b) ``vjp``          (gx, gtheta) from the output cotangent gy            (reverse mode)
(c) ``jvp``          dy from an input tangent dx, theta fixed             (forward mode)
(d) ``vjp_tangent``  dgx = d/de vjp(x + e dx, gy + e dgy), theta fixed    (forward over reverse)

Running (a), (b) gives gradients; running (c) forward and then (d) backward gives an
exact Hessian-vector product in z (docs/math.md eq. 1.3; exact, never finite differences).
"""

import math

import numpy as np

from . import layers as L

# Constants of the variance head, docs/models.md "Generator".
V_EPS = 1e-8
V_LO, V_HI = 0.0, 10.0

# Defaults for optional keys of a "conv" config: the values of the documented
# example config of srl.models.conv (docs/models.md "Config").
CONV_DEFAULTS = {"proj_channels": 4, "proj_kernel": 3, "res_kernels": (3, 3), "inj_kernel": 3}


# =========================================================================== #
# Nodes
# =========================================================================== #

class Node:
    """One layer of the generator (docs/math.md §1 layer vocabulary) with its four derivative rules.

    Common arguments: ``P`` the parameter dict; ``xs`` the list of input values of the
    node (each (n, ...)); ``dxs`` their tangents along a z-direction (same shapes);
    ``gy`` the cotangent of the output (shape of y) and ``dgy`` its tangent.
    Parameters are never perturbed by tangents: second order is in z only (docs/math.md §4).
    """

    params = ()              # (name, shape, fan_in) of the parameters this node owns

    def forward(self, P, xs):
        """(a) y = f(xs; P)."""
        raise NotImplementedError

    def jvp(self, P, xs, dxs):
        """(c) dy = Σ_j ∂f/∂x_j dx_j (shape of y)."""
        raise NotImplementedError

    def vjp(self, P, xs, gy):
        """(b) ([gy·∂f/∂x_j for each input j], {param name: gy·∂f/∂param summed over batch})."""
        raise NotImplementedError

    def vjp_tangent(self, P, xs, dxs, gy, dgy):
        """(d) [d/dε (gy + ε dgy)·∂f/∂x_j evaluated at xs + ε dxs, for each input j]."""
        raise NotImplementedError


class Input(Node):
    """Leaf node: latent group ``group`` (top-down index, docs/models.md)."""

    def __init__(self, group):
        """Leaf for z[group]."""
        self.group = group


class Dense(Node):
    """Dense(in -> out), docs/models.md: y = x @ W.T + b. Params ``name.weight``, ``name.bias``."""

    def __init__(self, name, n_in, n_out):
        """Parameters weight (out, in), bias (out,), fan_in = in (docs/models.md)."""
        self.name = name
        self.params = ((name + ".weight", (n_out, n_in), n_in), (name + ".bias", (n_out,), n_in))

    def forward(self, P, xs):
        """x (n, in) -> y (n, out)."""
        return L.dense(xs[0], P[self.name + ".weight"], P[self.name + ".bias"])

    def jvp(self, P, xs, dxs):
        """dy = dx @ W.T: (n, in) -> (n, out)."""
        return L.dense(dxs[0], P[self.name + ".weight"])

    def vjp(self, P, xs, gy):
        """gy (n, out) -> gx (n, in); gW (out, in), gb (out,)."""
        gx, gw, gb = L.dense_vjp(xs[0], P[self.name + ".weight"], gy)
        return [gx], {self.name + ".weight": gw, self.name + ".bias": gb}

    def vjp_tangent(self, P, xs, dxs, gy, dgy):
        """gx = gy @ W is linear in gy and independent of x: dgx = dgy @ W, (n, out) -> (n, in)."""
        return [dgy @ P[self.name + ".weight"]]


class Conv2d(Node):
    """Conv2d(cin -> cout, k, stride 1, pad p) with bias, docs/models.md."""

    def __init__(self, name, cin, cout, k, padding):
        """Parameters weight (cout, cin, k, k), bias (cout,), fan_in = cin k k (docs/models.md)."""
        self.name, self.padding = name, padding
        fan_in = cin * k * k
        self.params = ((name + ".weight", (cout, cin, k, k), fan_in), (name + ".bias", (cout,), fan_in))

    def forward(self, P, xs):
        """x (n, cin, H, W) -> y (n, cout, H + 2p - k + 1, W + 2p - k + 1)."""
        return L.conv2d(xs[0], P[self.name + ".weight"], P[self.name + ".bias"], 1, self.padding)

    def jvp(self, P, xs, dxs):
        """dy = conv2d(dx, W) without bias (linear in x); shapes as forward."""
        return L.conv2d(dxs[0], P[self.name + ".weight"], None, 1, self.padding)

    def vjp(self, P, xs, gy):
        """gy (n, cout, Ho, Wo) -> gx (n, cin, H, W); gW (cout, cin, k, k), gb (cout,)."""
        gx, gw, gb = L.conv2d_vjp(xs[0], P[self.name + ".weight"], gy, 1, self.padding)
        return [gx], {self.name + ".weight": gw, self.name + ".bias": gb}

    def vjp_tangent(self, P, xs, dxs, gy, dgy):
        """gx is linear in gy and independent of x: dgx = vjp_x(dgy), (n, cout, Ho, Wo) -> (n, cin, H, W)."""
        gx, _, _ = L.conv2d_vjp(xs[0], P[self.name + ".weight"], dgy, 1, self.padding)
        return [gx]


class ConvTranspose2d(Node):
    """ConvTranspose2d(cin -> cout, k, stride s, pad p), optional bias, docs/models.md."""

    def __init__(self, name, cin, cout, k, stride, padding, bias):
        """Parameters weight (cin, cout, k, k) [, bias (cout,)], fan_in = cout k k: PyTorch takes
        a transposed convolution's fan-in from weight.size(1) (docs/models.md)."""
        self.name, self.stride, self.padding, self.bias = name, stride, padding, bias
        fan_in = cout * k * k
        self.params = ((name + ".weight", (cin, cout, k, k), fan_in),)
        if bias:
            self.params += ((name + ".bias", (cout,), fan_in),)

    def forward(self, P, xs):
        """x (n, cin, H, W) -> y (n, cout, (H-1)s - 2p + k, (W-1)s - 2p + k)."""
        b = P[self.name + ".bias"] if self.bias else None
        return L.conv_transpose2d(xs[0], P[self.name + ".weight"], b, self.stride, self.padding)

    def jvp(self, P, xs, dxs):
        """dy = conv_transpose2d(dx, W) without bias; shapes as forward."""
        return L.conv_transpose2d(dxs[0], P[self.name + ".weight"], None, self.stride, self.padding)

    def vjp(self, P, xs, gy):
        """gy (n, cout, Ho, Wo) -> gx (n, cin, H, W); gW (cin, cout, k, k) [, gb (cout,)]."""
        gx, gw, gb = L.conv_transpose2d_vjp(xs[0], P[self.name + ".weight"], gy, self.stride, self.padding)
        g = {self.name + ".weight": gw}
        if self.bias:
            g[self.name + ".bias"] = gb
        return [gx], g

    def vjp_tangent(self, P, xs, dxs, gy, dgy):
        """dgx = vjp_x(dgy) (linear layer); (n, cout, Ho, Wo) -> (n, cin, H, W)."""
        gx, _, _ = L.conv_transpose2d_vjp(xs[0], P[self.name + ".weight"], dgy, self.stride, self.padding)
        return [gx]


class Elementwise(Node):
    """y = f(x) elementwise, given f, f', f'' (see reference.layers). All shapes equal x's."""

    def __init__(self, label, f, d1, d2):
        """``f``, its first derivative ``d1`` and second derivative ``d2`` (elementwise callables)."""
        self.label, self.f, self.d1, self.d2 = label, f, d1, d2

    def forward(self, P, xs):
        """y = f(x)."""
        return self.f(xs[0])

    def jvp(self, P, xs, dxs):
        """dy = f'(x) dx."""
        return self.d1(xs[0]) * dxs[0]

    def vjp(self, P, xs, gy):
        """gx = f'(x) gy."""
        return [self.d1(xs[0]) * gy], {}

    def vjp_tangent(self, P, xs, dxs, gy, dgy):
        """d/dε [f'(x + ε dx) (gy + ε dgy)] = f''(x) dx gy + f'(x) dgy."""
        return [self.d2(xs[0]) * dxs[0] * gy + self.d1(xs[0]) * dgy]


def gelu_node():
    """Exact GELU node (docs/models.md): f = xΦ, f' = Φ + xφ, f'' = (2 − x²)φ."""
    return Elementwise("gelu", L.gelu, L.gelu_d1, L.gelu_d2)


def tanh_node():
    """Output tanh node (docs/math.md §1): f' = 1 − tanh², f'' = −2 tanh (1 − tanh²)."""
    return Elementwise("tanh", L.tanh, L.tanh_d1, L.tanh_d2)


def variance_node():
    """v <- clamp(softplus(v) + 1e-8, 0, 10), docs/models.md "Generator", as one elementwise map.

    f(x) = clamp(softplus(x) + eps, lo, hi); f' = 1{lo < f < hi} sigmoid(x);
    f'' = 1{lo < f < hi} sigmoid(x) sigmoid(-x)  (1{.} = clamp', 0 on the boundary).
    """
    def f(x):
        """clamp(softplus(x) + 1e-8, 0, 10)."""
        return L.clamp(L.softplus(x) + V_EPS, V_LO, V_HI)

    def inside(x):
        """clamp' at softplus(x) + 1e-8: 1 strictly inside (0, 10), else 0."""
        return L.clamp_d1(L.softplus(x) + V_EPS, V_LO, V_HI)

    def d1(x):
        """f'(x) = clamp' * sigmoid(x)."""
        return inside(x) * L.softplus_d1(x)

    def d2(x):
        """f''(x) = clamp' * sigmoid(x) sigmoid(-x) (clamp'' = 0)."""
        return inside(x) * L.softplus_d2(x)

    return Elementwise("clamp_softplus", f, d1, d2)


class Reshape(Node):
    """Per-example reshape in C order (docs/models.md "Reshape / Flatten")."""

    def __init__(self, shape):
        """``shape``: the per-example output shape."""
        self.shape = tuple(shape)

    def forward(self, P, xs):
        """(n, *in_shape) -> (n, *shape)."""
        return xs[0].reshape((xs[0].shape[0],) + self.shape)

    def jvp(self, P, xs, dxs):
        """Linear: reshape the tangent the same way."""
        return dxs[0].reshape((dxs[0].shape[0],) + self.shape)

    def vjp(self, P, xs, gy):
        """(n, *shape) -> (n, *in_shape)."""
        return [gy.reshape(xs[0].shape)], {}

    def vjp_tangent(self, P, xs, dxs, gy, dgy):
        """Linear: reshape the tangent cotangent back."""
        return [dgy.reshape(xs[0].shape)]


class Add(Node):
    """Residual / skip addition y = a + b (docs/math.md §1)."""

    def forward(self, P, xs):
        """y = a + b (same shapes)."""
        return xs[0] + xs[1]

    def jvp(self, P, xs, dxs):
        """dy = da + db."""
        return dxs[0] + dxs[1]

    def vjp(self, P, xs, gy):
        """ga = gb = gy."""
        return [gy, gy], {}

    def vjp_tangent(self, P, xs, dxs, gy, dgy):
        """dga = dgb = dgy."""
        return [dgy, dgy]


class Inject(Node):
    """Stochastic injection u = mu + exp(v/2) * z (docs/math.md §1; docs/models.md "Injection").

    Inputs (mu, v, z), all (n, d). With e = exp(v/2):
      forward       u    = mu + e z
      jvp           du   = dmu + e (z dv/2 + dz)
      vjp           gmu  = gu,  gv = gu e z / 2,  gz = gu e
      vjp tangent   dgmu = dgu
                    dgv  = (dgu e z + gu e (dv/2) z + gu e dz) / 2
                    dgz  = dgu e + gu e dv/2
    """

    def forward(self, P, xs):
        """u = mu + exp(v/2) z, (n, d)."""
        mu, v, z = xs
        return mu + np.exp(0.5 * v) * z

    def jvp(self, P, xs, dxs):
        """du = dmu + e (z dv/2 + dz), (n, d)."""
        mu, v, z = xs
        dmu, dv, dz = dxs
        e = np.exp(0.5 * v)
        return dmu + e * (0.5 * dv * z + dz)

    def vjp(self, P, xs, gy):
        """[gmu, gv, gz], each (n, d)."""
        mu, v, z = xs
        e = np.exp(0.5 * v)
        return [gy, 0.5 * gy * e * z, gy * e], {}

    def vjp_tangent(self, P, xs, dxs, gy, dgy):
        """[dgmu, dgv, dgz], each (n, d) (see the class docstring)."""
        mu, v, z = xs
        dmu, dv, dz = dxs
        e = np.exp(0.5 * v)
        de = 0.5 * e * dv                      # tangent of e
        return [dgy,
                0.5 * (dgy * e * z + gy * de * z + gy * e * dz),
                dgy * e + gy * de]


# =========================================================================== #
# Graph construction from a config (docs/models.md)
# =========================================================================== #

class Graph:
    """A topologically ordered list of (node, input ids); records parameter specs in order."""

    def __init__(self):
        """An empty graph."""
        self.nodes = []          # list of (node, tuple of input node ids)
        self.specs = []          # list of (name, shape, fan_in) in creation (= documented) order
        self.inputs = []         # node id of each latent group, top-down
        self.output = None

    def add(self, node, *inputs):
        """Append ``node`` fed by the node ids ``inputs``; returns the new node id."""
        self.nodes.append((node, tuple(inputs)))
        for spec in node.params:
            self.specs.append(spec)
        return len(self.nodes) - 1

    def input(self, group):
        """Append the leaf of latent group ``group`` (top-down); returns its node id."""
        i = self.add(Input(group))
        self.inputs.append(i)
        return i


def _normalize(config):
    """Validated copy of a docs/models.md config, optional "conv" keys filled from CONV_DEFAULTS."""
    cfg = dict(config)
    kind = cfg.get("kind")
    if kind not in ("mlp", "conv"):
        raise ValueError(f"config kind must be 'mlp' or 'conv', got {kind!r}")
    cfg["latent_dims"] = tuple(int(d) for d in cfg["latent_dims"])
    cfg["out_shape"] = tuple(int(s) for s in cfg["out_shape"])
    if kind == "conv":
        for key, val in CONV_DEFAULTS.items():
            cfg.setdefault(key, val)
        cfg["res_kernels"] = tuple(int(k) for k in cfg["res_kernels"])
        if len(cfg["out_shape"]) != 3:
            raise ValueError("conv out_shape must be (C, H, W)")
        _, H, W = cfg["out_shape"]
        if H % 2 or W % 2:
            raise ValueError("conv out_shape needs even H, W (grid G = (H/2, W/2))")
        for k in (cfg["proj_kernel"],) + cfg["res_kernels"]:
            if k % 2 == 0:
                raise ValueError("'same' kernels must be odd")
    return cfg


def _mlp_graph(cfg):
    """kind "mlp" of docs/models.md (docs/math.md §1 with Dense layers)."""
    dims, Hd, out_shape = cfg["latent_dims"], int(cfg["hidden"]), cfg["out_shape"]
    D = int(np.prod(out_shape))
    g = Graph()

    def dense(name, x, n_in, n_out):
        """Dense(n_in -> n_out) node on x."""
        return g.add(Dense(name, n_in, n_out), x)

    def gelu(x):
        """GELU node on x."""
        return g.add(gelu_node(), x)

    def residual(prefix, x):      # Residual(Dense -> GELU -> Dense -> GELU)
        """res / out.res block of the mlp: body(x) + x."""
        y = gelu(dense(prefix + ".dense1", x, Hd, Hd))
        y = gelu(dense(prefix + ".dense2", y, Hd, Hd))
        return g.add(Add(), y, x)

    def head(prefix, h, d):       # Dense(H -> H) -> GELU -> Dense(H -> d)
        """inj{i}.mu / inj{i}.v head of the mlp."""
        return dense(prefix + ".dense2", gelu(dense(prefix + ".dense1", h, Hd, Hd)), Hd, d)

    h = None
    for i, d in enumerate(dims):
        z = g.input(i)
        if i == 0:
            u = z
        else:
            mu = head(f"inj{i}.mu", h, d)
            v = g.add(variance_node(), head(f"inj{i}.v", h, d))
            u = g.add(Inject(), mu, v, z)
        p = gelu(dense(f"proj{i}.dense", u, d, Hd))
        r = residual(f"res{i}", p)
        h = r if i == 0 else g.add(Add(), r, h)
    o = residual("out.res", h)
    o = dense("out.dense", o, Hd, D)
    o = g.add(Reshape(out_shape), o)
    g.output = g.add(tanh_node(), o)
    return g


def _conv_graph(cfg):
    """kind "conv" of docs/models.md (docs/math.md §1, the authors' layer types)."""
    dims, c, out_shape = cfg["latent_dims"], int(cfg["channels"]), cfg["out_shape"]
    q, kp, (k1, k2), ki = int(cfg["proj_channels"]), int(cfg["proj_kernel"]), cfg["res_kernels"], int(cfg["inj_kernel"])
    C, Himg, Wimg = out_shape
    Gh, Gw = Himg // 2, Wimg // 2
    Gh2, Gw2 = Gh - ki + 1, Gw - ki + 1          # injection conv has padding 0
    if Gh2 < 1 or Gw2 < 1:
        raise ValueError("inj_kernel larger than the grid")
    g = Graph()

    def gelu(x):
        """GELU node on x."""
        return g.add(gelu_node(), x)

    def residual(prefix, x):      # Residual(Conv2d(k1) -> GELU -> Conv2d(k2) -> GELU), "same" padding
        """res / out.res block of the conv model: body(x) + x, (n, c, Gh, Gw) -> same."""
        y = gelu(g.add(Conv2d(prefix + ".conv1", c, c, k1, (k1 - 1) // 2), x))
        y = gelu(g.add(Conv2d(prefix + ".conv2", c, c, k2, (k2 - 1) // 2), y))
        return g.add(Add(), y, x)

    def head(prefix, h, d):       # Conv2d(c -> d, ki, pad 0) -> GELU -> flatten -> Dense(d*G'h*G'w -> d)
        """inj{i}.mu / inj{i}.v head of the conv model: (n, c, Gh, Gw) -> (n, d)."""
        y = gelu(g.add(Conv2d(prefix + ".conv", c, d, ki, 0), h))
        y = g.add(Reshape((d * Gh2 * Gw2,)), y)
        return g.add(Dense(prefix + ".dense", d * Gh2 * Gw2, d), y)

    h = None
    for i, d in enumerate(dims):
        z = g.input(i)
        if i == 0:
            u = z
        else:
            mu = head(f"inj{i}.mu", h, d)
            v = g.add(variance_node(), head(f"inj{i}.v", h, d))
            u = g.add(Inject(), mu, v, z)
        # proj: Dense(d -> q*Gh*Gw) -> GELU -> reshape (q, Gh, Gw) -> ConvT(q -> c, kp, s1, p(kp-1)/2, no bias) -> GELU
        p = gelu(g.add(Dense(f"proj{i}.dense", d, q * Gh * Gw), u))
        p = g.add(Reshape((q, Gh, Gw)), p)
        p = gelu(g.add(ConvTranspose2d(f"proj{i}.convt", q, c, kp, 1, (kp - 1) // 2, bias=False), p))
        r = residual(f"res{i}", p)
        h = r if i == 0 else g.add(Add(), r, h)
    o = residual("out.res", h)
    o = g.add(ConvTranspose2d("out.convt", c, C, 4, 2, 1, bias=True), o)
    g.output = g.add(tanh_node(), o)
    return g


def build_graph(config):
    """Build the generator graph of docs/math.md §1 / docs/models.md for ``config``."""
    cfg = _normalize(config)
    return _mlp_graph(cfg) if cfg["kind"] == "mlp" else _conv_graph(cfg)


# =========================================================================== #
# Parameters and noise (docs/models.md "Parameter order and initialisation", "Noise")
# =========================================================================== #

def param_specs(config):
    """List of (name, shape, fan_in) in the documented evaluation order (docs/models.md)."""
    return list(build_graph(config).specs)


def param_shapes(config):
    """dict name -> shape, in the documented order (docs/models.md)."""
    return {name: shape for name, shape, _ in param_specs(config)}


def init_params(config, seed=0):
    """Parameters as documented: one default_rng(seed), uniform(-b, b), b = 1/sqrt(fan_in),
    drawn in param_specs order (docs/models.md "Parameter order and initialisation")."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape, fan_in in param_specs(config):
        b = 1.0 / math.sqrt(fan_in)
        out[name] = rng.uniform(-b, b, size=shape)
    return out


def latent_dims(config):
    """(d_1, ..., d_L) of the config, top-down (docs/math.md §1)."""
    return tuple(int(d) for d in config["latent_dims"])


def prior(config, n, seed=0):
    """Prior draw z ~ N(0, I), docs/models.md "Noise": per group, rng.standard_normal((n, d_l))."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((n, d)) for d in latent_dims(config))


def chain_noise(config, n, n_steps, seed=0):
    """Chain noise (z0, [xi_0..xi_{K-1}]) for docs/math.md §2 drawn as in docs/models.md "Noise"."""
    rng = np.random.default_rng(seed)
    dims = latent_dims(config)
    z0 = tuple(rng.standard_normal((n, d)) for d in dims)
    noise = [tuple(rng.standard_normal((n, d)) for d in dims) for _ in range(n_steps)]
    return z0, noise


# =========================================================================== #
# Passes over the graph
# =========================================================================== #

def prepare_params(graph, params):
    """Check that ``params`` has every documented name with its documented shape
    (docs/models.md) and return a float64 copy restricted to those names."""
    out = {}
    for name, shape, _ in graph.specs:
        if name not in params:
            raise KeyError(f"missing parameter {name!r}")
        a = np.asarray(params[name], dtype=np.float64)
        if a.shape != tuple(shape):
            raise ValueError(f"parameter {name!r} has shape {a.shape}, expected {tuple(shape)}")
        out[name] = a
    return out


def _check_z(graph, z):
    """z must have one array per latent group."""
    if len(z) != len(graph.inputs):
        raise ValueError(f"expected {len(graph.inputs)} latent groups, got {len(z)}")


def forward_values(graph, params, z):
    """(a) forward: the value of every node. Returns a list aligned with graph.nodes."""
    _check_z(graph, z)
    vals = [None] * len(graph.nodes)
    for idx, (node, ins) in enumerate(graph.nodes):
        if isinstance(node, Input):
            vals[idx] = np.asarray(z[node.group], dtype=np.float64)
        else:
            vals[idx] = node.forward(params, [vals[j] for j in ins])
    return vals


def forward_tangents(graph, params, vals, dz):
    """(c) forward-mode tangents of every node along the z-direction ``dz`` (theta fixed)."""
    _check_z(graph, dz)
    tans = [None] * len(graph.nodes)
    for idx, (node, ins) in enumerate(graph.nodes):
        if isinstance(node, Input):
            tans[idx] = np.asarray(dz[node.group], dtype=np.float64)
        else:
            tans[idx] = node.jvp(params, [vals[j] for j in ins], [tans[j] for j in ins])
    return tans


def _accumulate(store, j, g):
    """store[j] += g (a node used by several consumers sums their cotangents)."""
    store[j] = g if store[j] is None else store[j] + g


def reverse(graph, params, vals, g_out, want_params=False):
    """(b) reverse mode from the output cotangent ``g_out``.

    Returns (cots, gz, gparams): the cotangent of every node, the cotangent of each
    latent group (tuple, top-down) and, if asked, the parameter gradients (dict).
    """
    n_nodes = len(graph.nodes)
    cots = [None] * n_nodes
    cots[graph.output] = g_out
    gparams = {}
    gz = [None] * len(graph.inputs)
    for idx in range(n_nodes - 1, -1, -1):
        node, ins = graph.nodes[idx]
        gy = cots[idx]
        if gy is None:
            continue
        if isinstance(node, Input):
            gz[node.group] = gy
            continue
        gxs, gps = node.vjp(params, [vals[j] for j in ins], gy)
        for j, gx in zip(ins, gxs):
            _accumulate(cots, j, gx)
        if want_params:
            for name, gp in gps.items():
                gparams[name] = gparams[name] + gp if name in gparams else gp
    gz = tuple(np.zeros_like(vals[i]) if g is None else g
               for g, i in zip(gz, graph.inputs))
    return cots, gz, gparams


def reverse_tangent(graph, params, vals, tans, cots, dg_out):
    """(d) tangent of the reverse pass: d/de of the z-cotangents when z -> z + e dz and
    g_out -> g_out + e dg_out. Needs the primal values, tangents and cotangents."""
    n_nodes = len(graph.nodes)
    dcots = [None] * n_nodes
    dcots[graph.output] = dg_out
    dgz = [None] * len(graph.inputs)
    for idx in range(n_nodes - 1, -1, -1):
        node, ins = graph.nodes[idx]
        dgy = dcots[idx]
        if dgy is None:
            continue
        if isinstance(node, Input):
            dgz[node.group] = dgy
            continue
        dgxs = node.vjp_tangent(params, [vals[j] for j in ins], [tans[j] for j in ins],
                                cots[idx], dgy)
        for j, dgx in zip(ins, dgxs):
            _accumulate(dcots, j, dgx)
    return tuple(np.zeros_like(vals[i]) if g is None else g
                 for g, i in zip(dgz, graph.inputs))


def forward(config, params, z):
    """x_hat = g_theta(z), docs/math.md §1 / docs/models.md "Generator". z: tuple of (n, d_l) -> (n, *out_shape)."""
    graph = build_graph(config)
    return forward_values(graph, prepare_params(graph, params), z)[graph.output]
