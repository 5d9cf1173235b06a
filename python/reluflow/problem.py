"""``rf.Problem``: architecture, target and input distribution; the entry point of every computation."""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from . import _philox
from ._arrays import from_host, from_native, is_foreign, to_host, to_native
from ._validate import array_namespace, as_bool, as_dtype, as_int, as_points, as_theta, dtype_name
from .dists import Distribution, Uniform
from .backends import cpu as cpu_backend
from .backends import get as backend_for
from .backends import reference as reference_backend
from .estimators import Estimator, Nodes
from .geometry import neuron_norms
from .layout import Layout
from .plan import Plan, plan
from .registry import resolve
from .spec import LayoutShapes, ProblemSpec
from .targets import Target

__all__ = ["Problem"]

_INIT_SCHEMES = ("normal", "he", "lecun")


def _warn_if_not_finite(risk, theta) -> None:
    """theta is finite (checked), so a non-finite risk is an overflow: say so instead of returning NaN
    silently (the integrators also freeze such networks and flag them)."""
    xp = array_namespace(risk)
    bad = ~xp.isfinite(risk)
    if bool(xp.any(bad)):
        idx = [int(i) for i in np.flatnonzero(to_host(bad))]
        largest = float(xp.max(xp.abs(theta)))
        warnings.warn(f"risk: overflowed to inf/NaN for network(s) {idx[:10]}{' ...' if len(idx) > 10 else ''} "
                      f"(largest |theta| = {largest:.3g}, dtype {theta.dtype}); the parameters or the "
                      f"input domain are too large for this dtype", RuntimeWarning, stacklevel=3)


class Problem(LayoutShapes):
    """A risk minimization problem for ReLU networks of one architecture (SPEC §1–2).

    Parameters
    ----------
    widths : [l_0 = d, l_1, ..., l_L = out], every hidden layer ReLU, no activation on the output.
    target : a ``reluflow.targets`` target f with input dimension d and output dimension out.
    input : the input distribution mu (``reluflow.dists``), default ``Uniform(0, 1)`` on [0, 1]^d.

    The risk is ``L(theta) = ∫ |N_theta(x) - f(x)|^2 mu(dx)`` (no factor 1/2).
    """

    def __init__(self, widths: Sequence[int], target: Target, input: Distribution | None = None):  # noqa: A002
        self.layout = Layout(widths, name="widths")
        if not isinstance(target, Target):
            raise TypeError(f"target: expected a reluflow.targets target (Affine, PiecewiseLinear, ...), "
                            f"got {type(target).__name__}")
        d, out = self.layout.widths[0], self.layout.widths[-1]
        if target.dim is not None and target.dim != d:
            raise ValueError(f"target: takes inputs of dimension {target.dim}, but widths[0] = {d}")
        if input is None:
            input = Uniform(0.0, 1.0)  # noqa: A001
        if not isinstance(input, Distribution):
            raise TypeError(f"input: expected a reluflow.dists distribution, got {type(input).__name__}")
        self.input = input.bind(d)
        self.target = target
        if not target.native:
            # check the callable's output once, on two points of the domain
            lo, hi = self.input.typical_box()
            probe = np.vstack([lo, 0.5 * (lo + hi)])
            target.out_dim = target(probe).shape[1]
        if target.out_dim != out:
            raise ValueError(f"target: has output dimension {target.out_dim}, but widths[-1] = {out}")
        #: the immutable description every backend and loop reads (one encoding per kind)
        self.spec = ProblemSpec.build(self.layout, self.target, self.input)

    def __repr__(self) -> str:
        return f"Problem(widths={list(self.widths)}, target={self.target!r}, input={self.input!r})"

    # ---- parameters ----------------------------------------------------------------------------
    def init(self, n: int, seed: int = 0, dtype: Any = "float64", scheme: str = "normal") -> np.ndarray:
        """Random initial parameters of ``n`` networks: (n, P).

        ``scheme="normal"``: i.i.d. standard normal entries (the seeds' setting). ``"he"``: weights
        N(0, 2/fan_in), biases 0. ``"lecun"``: weights N(0, 1/fan_in), biases 0. Network k's
        parameters depend only on (seed, k), not on n (Philox stream ``init``, Box–Muller).
        """
        n = as_int(n, "n", minimum=1)
        seed = as_int(seed, "seed", minimum=0)
        dt = as_dtype(dtype)
        if scheme not in _INIT_SCHEMES:
            raise ValueError(f"scheme: expected one of {_INIT_SCHEMES}, got {scheme!r}")
        theta = _philox.standard_normals(seed, _philox.STREAM_INIT, 0, n, self.num_params)
        if scheme != "normal":
            gain = 2.0 if scheme == "he" else 1.0
            for W, b in self.layout.unpack(theta):
                W *= np.sqrt(gain / W.shape[2])
                b[...] = 0.0
        return theta.astype(dt)

    def mask(self, layers=None, weights: bool = True, biases: bool = True) -> np.ndarray:
        """(P,) bool: the parameters of the given layers (1-based; default all) and kinds (SPEC §8), for
        ``frozen=`` of the integrators. ``prob.mask(layers=[2], biases=False)``: the output weights of a
        shallow net; ``prob.mask(weights=False)``: every bias (a bias-free net: set them to 0, freeze)."""
        L = self.layout.num_layers
        if layers is None:
            layers = list(range(1, L + 1))
        elif isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
            layers = [int(layers)]
        try:
            layers = [as_int(k, "layers") for k in layers]
        except TypeError as exc:
            raise TypeError(f"layers: expected layer numbers 1..{L} (1-based), got {layers!r}") from exc
        if any(not 1 <= k <= L for k in layers):
            raise ValueError(f"layers: expected layer numbers in 1..{L} (1-based), got {layers}")
        weights, biases = as_bool(weights, "weights"), as_bool(biases, "biases")
        out = np.zeros(self.num_params, dtype=bool)
        for k in layers:
            lo, li = self.widths[k], self.widths[k - 1]
            if weights:
                out[self.layout.w_offsets[k - 1]:self.layout.w_offsets[k - 1] + lo * li] = True
            if biases:
                out[self.layout.b_offsets[k - 1]:self.layout.b_offsets[k - 1] + lo] = True
        return out

    def normalize(self, theta):
        """Move theta onto the normalized manifold without changing the realization (SPEC §4).

        Every hidden neuron's incoming (w_i, b_i) is scaled to unit norm, its outgoing weights by the
        inverse factor (ReLU is positively homogeneous). theta (K, P) -> (K, P), same dtype and library
        (any array-API namespace).
        """
        theta, origin = to_native(theta, "theta")
        theta = as_theta(theta, self.num_params)
        xp = array_namespace(theta)
        params = [list(p) for p in self.layout.unpack(theta)]
        for k in range(self.layout.num_layers - 1):
            W, b = params[k]
            norm = neuron_norms(W, b, xp)                   # (K, l_k), after layer k-1's rescaling
            if bool(xp.any(norm == 0)):
                raise ValueError("theta: a hidden neuron has (w_i, b_i) = 0 and cannot be normalized")
            params[k] = [W / norm[:, :, None], b / norm]
            params[k + 1][0] = params[k + 1][0] * norm[:, None, :]
        return from_native(self.layout.pack(params, xp), origin)

    # ---- planning and evaluation ----------------------------------------------------------------
    def plan(self, estimator: Estimator, backend: str = "auto", theta=None, method: str = "auto") -> Plan:
        """The route and loop that would run ``estimator`` here (``reluflow.plan``).

        ``backend="auto"`` is resolved from ``theta``'s array type (numpy when theta is None).
        ``method``: for point estimators on shallow 1-D nets, "dense", "sweep" or "auto".
        """
        probe = np.empty((0, self.num_params)) if theta is None else theta
        name = resolve(backend, probe)
        dtype = dtype_name(getattr(theta, "dtype", np.float64))
        return plan(self.spec, estimator, name, dtype, method)

    def explain(self, estimator: Estimator, backend: str = "auto", K: int = 1, method: str = "auto") -> str:
        """As text: the route and loop that would run ``estimator`` for K networks, and why (SPEC §7).

        The route depends only on the problem, the estimator and the shapes, never on K, the thread
        count or the load; K is shown for the reader.
        """
        K = as_int(K, "K", minimum=1)
        return self.plan(estimator, backend, method=method).explain(K)

    def realization(self, theta, x, backend: str = "auto"):
        """Network outputs: theta (K, P), x (N, d) -> (K, N, out), in theta's dtype and library (any
        array-API namespace; x is read on the host and moved to theta's device once)."""
        theta, origin = to_native(theta, "theta")
        theta = as_theta(theta, self.num_params)
        name = resolve(backend, theta)
        xp = array_namespace(theta)
        x = as_points(x, self.dim, "x")
        if name == "cpu":
            out = cpu_backend.realization(self.layout, theta, x)
        else:
            out = reference_backend.realization(self.layout, theta, from_host(xp, x, theta), xp)
        return from_native(xp.astype(out, theta.dtype), origin)

    def target_values(self, nodes: Nodes, backend: str = "numpy") -> np.ndarray:
        """y (N, out): the data of ``nodes`` or the target evaluated at them (float64).

        On the ``cpu`` backend native targets are evaluated in C++ (Affine, piecewise polynomials by
        ``targets.h``, a Teacher by the C++ realization); a ``Function`` is always called in Python.
        """
        impl = cpu_backend if backend == "cpu" else reference_backend
        return impl.target_values(self.spec, nodes)

    def nodes(self, estimator: Estimator, step: int = 0, backend: str = "numpy") -> Nodes:
        """The weighted nodes of a point estimator at ``step``; on the ``cpu`` backend Monte-Carlo and
        QMC nodes are drawn by the C++ samplers (bitwise the same as numpy's)."""
        if backend == "cpu":
            return cpu_backend.point_nodes(self.spec, estimator, step)
        return estimator.nodes(self.spec, step)

    def risk_and_grad(self, theta, estimator: Estimator, backend: str = "auto", step: int = 0,
                      want_grad: bool = True, method: str = "auto"):
        """Risk estimate and its generalized gradient for every network.

        Parameters
        ----------
        theta : (K, P) float32 or float64: numpy, CuPy, torch, JAX, or any array-API array (the
            reference backend then computes in its namespace).
        estimator : Points, MonteCarlo, QuasiMonteCarlo, Quadrature or Exact (the population risk in
            closed form: shallow nets under Gaussian input; the exact quadrature in 1-D).
        backend : "auto", "numpy", "cupy", "cpu", "cuda" (see ``rf.backends()``).
        step : integration step (selects the Monte-Carlo samples when ``resample=True``).
        method : point estimators on shallow 1-D nets: "dense" (the fused kernel), "sweep" (sort nodes
            and kinks, prefix sums: O(N + H) per network after one sort, ``cpu`` only) or "auto" (the
            planner's choice, a function of N and H only). Quadrature has its own ``method``.
            ``prob.explain(estimator)`` says which route runs and why.

        Returns
        -------
        risk (K,), grad (K, P), in theta's dtype (accumulated in float64) and library: numpy, CuPy,
        torch (same device) or JAX arrays as theta was (SPEC §7; read without a copy where possible).
        """
        theta, origin = to_native(theta, "theta")
        theta = as_theta(theta, self.num_params)
        if not isinstance(estimator, Estimator):
            raise TypeError(f"estimator: expected Points, MonteCarlo, QuasiMonteCarlo, Quadrature or Exact, "
                            f"got {type(estimator).__name__}")
        step = as_int(step, "step", minimum=0)
        want_grad = as_bool(want_grad, "want_grad")
        xp = array_namespace(theta)
        p = self.plan(estimator, backend, theta, method)
        impl = backend_for(p)
        if impl is cpu_backend and is_foreign(theta):
            # a C++-only route (Quadrature(method="sweep")) for an array of another namespace: on the host
            risk, grad = impl.evaluate(p, self.spec, to_host(theta), step, want_grad)
            risk = from_host(xp, risk, theta)
            grad = from_host(xp, grad, theta) if want_grad else None
        else:
            risk, grad = impl.evaluate(p, self.spec, theta, step, want_grad, xp)
        risk = xp.astype(xp.asarray(risk), theta.dtype)
        _warn_if_not_finite(risk, theta)
        grad = xp.astype(xp.asarray(grad), theta.dtype) if want_grad else None
        return from_native(risk, origin), from_native(grad, origin)

    # ---- second order (SPEC §8) ------------------------------------------------------------------

    def hvp(self, theta, V, estimator: Estimator, backend: str = "auto", step: int = 0):
        """Hessian-vector products: theta (K, P), V (K, P) or (K, B, P) -> H V, the same shape as V.

        For a sampled risk (Points, MonteCarlo, QuasiMonteCarlo; tensor-grid Quadrature in d >= 2) the
        exact Hessian of that weighted sum, with relu'' = 0 and relu'(0) = 0 (what autodiff of the
        sampled risk gives). For ``Exact()`` under Gaussian input: the Hessian of the population risk
        in closed form (``reluflow.gaussian_exact``). For ``Quadrature()`` in 1-D the Hessian of the true risk: the same on the
        network's own kink partition, plus one rank-one term per kink that moves with theta (residual
        times density there; ``quadrature.kink_hessian_terms``), which autodiff of no sampled risk
        sees (generic networks: a kink on another kink or on a fixed break is not differentiable).
        Computed in float64: on the ``cpu`` backend in C++ (``reluflow/hvp.h``; bitwise the same for any
        thread count and batch), elsewhere by the array-API reference; the nodes are the backend's
        (bitwise the same). Results in theta's dtype and library.
        """
        theta, origin = to_native(theta, "theta")
        theta = as_theta(theta, self.num_params)
        xp = array_namespace(theta)
        V, _ = to_native(V, "V")
        if array_namespace(V) is not xp:
            V = from_host(xp, to_host(V), theta)        # numpy directions for a theta on a device
        V = xp.asarray(V, dtype=xp.float64)
        if V.ndim not in (2, 3) or V.shape[0] != theta.shape[0] or V.shape[-1] != self.num_params:
            raise ValueError(f"V: expected a (K, P) or (K, B, P) array with K = {theta.shape[0]}, "
                             f"P = {self.num_params}, got shape {tuple(V.shape)}")
        if not bool(xp.all(xp.isfinite(V))):
            raise ValueError("V: expected finite directions, found NaN or inf")
        step = as_int(step, "step", minimum=0)
        V3 = V[:, None, :] if V.ndim == 2 else V
        p = self.plan(estimator, backend, theta)
        quad = p.route in ("exact_sweep", "partition")
        if p.route == "gaussian_closed_form":   # Exact() under Gaussian input: the closed form (numpy)
            hv = reference_backend.gaussian_hvp(self.spec, theta, V3, xp)
        elif p.backend == "cpu":    # C++ (reluflow/hvp.h) on the host, float64
            th, V3h = to_host(theta), to_host(V3)
            if quad:
                hv = cpu_backend.quadrature_hvp(self.spec, th, V3h, p.estimator)
            else:
                nodes = cpu_backend.fixed_nodes(p, self.spec, step)
                hv = cpu_backend.risk_grad_hvp(self.layout, th, V3h, nodes.x, nodes.w, nodes.y)[2]
            hv = from_host(xp, hv, theta)
        elif quad:
            hv = reference_backend.quadrature_hvp(self.spec, theta, V3, p.estimator, xp)
        else:
            nodes = backend_for(p).fixed_nodes(p, self.spec, step)
            _, _, hv = reference_backend.risk_grad_hvp(self.layout, theta, V3, from_host(xp, nodes.x, theta),
                                                       from_host(xp, nodes.w, theta),
                                                       from_host(xp, nodes.y, theta), xp)
        hv = hv[:, 0, :] if V.ndim == 2 else hv
        return from_native(xp.astype(hv, theta.dtype), origin)

    def hessian(self, theta, estimator: Estimator, backend: str = "auto", step: int = 0):
        """The Hessian of the risk estimate: theta (K, P) -> (K, P, P), symmetric (see :meth:`hvp`)."""
        theta, origin = to_native(theta, "theta")
        theta = as_theta(theta, self.num_params)
        xp = array_namespace(theta)
        K, P = theta.shape
        eye = from_host(xp, np.ascontiguousarray(np.broadcast_to(np.eye(P), (K, P, P))), theta)
        H = self.hvp(theta, eye, estimator, backend, step)
        return from_native(0.5 * (H + xp.matrix_transpose(H)), origin)   # symmetric to the last bit

    def risk(self, theta, estimator: Estimator, backend: str = "auto", step: int = 0, method: str = "auto"):
        """Risk estimate of every network: theta (K, P) -> (K,), in theta's dtype."""
        return self.risk_and_grad(theta, estimator, backend, step, want_grad=False, method=method)[0]
