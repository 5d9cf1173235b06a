"""``rf.Problem``: architecture, target and input distribution; the entry point of every computation."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _philox
from ._validate import as_dtype, as_int, as_points, as_theta, array_namespace
from .backends import reference, resolve
from .dists import Distribution, Uniform
from .estimators import Estimator, MonteCarlo, Nodes, QuasiMonteCarlo, Quadrature
from .layout import Layout
from .targets import Target

__all__ = ["Problem"]

_INIT_SCHEMES = ("normal", "he", "lecun")


class Problem:
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
            probe = np.vstack([self.input.low, 0.5 * (self.input.low + self.input.high)])
            target.out_dim = target(probe).shape[1]
        if target.out_dim != out:
            raise ValueError(f"target: has output dimension {target.out_dim}, but widths[-1] = {out}")

    # ---- shapes --------------------------------------------------------------------------------
    @property
    def widths(self) -> tuple[int, ...]:
        return self.layout.widths

    @property
    def dim(self) -> int:
        """Input dimension d = widths[0]."""
        return self.layout.widths[0]

    @property
    def out_dim(self) -> int:
        """Output dimension = widths[-1]."""
        return self.layout.widths[-1]

    @property
    def num_params(self) -> int:
        """P = sum_k l_k (l_{k-1} + 1)."""
        return self.layout.num_params

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

    def normalize(self, theta):
        """Move theta onto the normalized manifold without changing the realization (SPEC §4).

        Every hidden neuron's incoming (w_i, b_i) is scaled to unit norm, its outgoing weights by the
        inverse factor (ReLU is positively homogeneous). theta (K, P) -> (K, P), same dtype.
        """
        theta = as_theta(theta, self.num_params)
        xp = array_namespace(theta)
        out = theta.copy()
        params = self.layout.unpack(out)
        for k in range(self.layout.num_layers - 1):
            W, b = params[k]
            norm = xp.sqrt(xp.sum(W * W, axis=2) + b * b)  # (K, l_k)
            if bool(xp.any(norm == 0)):
                raise ValueError("theta: a hidden neuron has (w_i, b_i) = 0 and cannot be normalized")
            W /= norm[:, :, None]
            b /= norm
            params[k + 1][0][...] *= norm[:, None, :]
        return out

    # ---- evaluation ----------------------------------------------------------------------------
    def realization(self, theta, x, backend: str = "auto"):
        """Network outputs: theta (K, P), x (N, d) -> (K, N, out), in theta's dtype."""
        theta = as_theta(theta, self.num_params)
        name = resolve(backend, theta)
        xp = array_namespace(theta)
        x = as_points(x, self.dim, "x")
        if name == "cpu":
            from .backends import cpu  # noqa: PLC0415

            out = cpu.realization(self.layout, theta, x)
        else:
            out = reference.realization(self.layout, theta, xp.asarray(x), xp)
        return out.astype(theta.dtype)

    def target_values(self, nodes: Nodes, backend: str = "numpy") -> np.ndarray:
        """y (N, out): the data of ``nodes`` or the target evaluated at them (float64).

        On the ``cpu`` backend native targets are evaluated in C++ (Affine, piecewise polynomials by
        ``targets.h``, a Teacher by the C++ realization); a ``Function`` is always called in Python.
        """
        if nodes.y is not None:
            return nodes.y
        if backend == "cpu":
            from .targets import Teacher, native_target_args  # noqa: PLC0415

            args = native_target_args(self.target)
            if args is not None:
                from . import _core  # noqa: PLC0415

                return _core.target_values(list(self.widths), np.ascontiguousarray(nodes.x), **args)
            if isinstance(self.target, Teacher):
                from .backends import cpu  # noqa: PLC0415

                return cpu.realization(self.target.layout, self.target.theta[None, :], nodes.x)[0]
        return self.target(nodes.x)

    def nodes(self, estimator: Estimator, step: int = 0, backend: str = "numpy") -> Nodes:
        """The weighted nodes of a point estimator at ``step``; on the ``cpu`` backend Monte-Carlo and
        QMC nodes are drawn by the C++ samplers (bitwise the same as numpy's)."""
        if backend == "cpu" and isinstance(estimator, (MonteCarlo, QuasiMonteCarlo)):
            from . import _native_sampling as ns  # noqa: PLC0415

            if isinstance(estimator, MonteCarlo):
                x = ns.mc_nodes(self.input, estimator.seed, step if estimator.resample else 0, estimator.n)
            else:
                x = ns.qmc_nodes(self.input, estimator.seed, estimator.n)
            return Nodes(x, np.full(estimator.n, 1.0 / estimator.n))
        return estimator.nodes(self, step)

    def risk_and_grad(self, theta, estimator: Estimator, backend: str = "auto", step: int = 0,
                      want_grad: bool = True, method: str = "auto"):
        """Risk estimate and its generalized gradient for every network.

        Parameters
        ----------
        theta : (K, P) float32 or float64.
        estimator : Points, MonteCarlo, QuasiMonteCarlo or Quadrature.
        backend : "auto", "numpy", "cupy", "cpu", "cuda" (see ``rf.backends()``).
        step : integration step (selects the Monte-Carlo samples when ``resample=True``).
        method : point estimators on shallow 1-D nets: "dense" (the fused kernel), "sweep" (sort nodes
            and kinks, prefix sums: O((N+H) log(N+H)), ``cpu`` only) or "auto" (the sweep on ``cpu``
            when its cost model says it is faster). Quadrature has its own ``method``.

        Returns
        -------
        risk (K,), grad (K, P), in theta's dtype (accumulated in float64).
        """
        theta = as_theta(theta, self.num_params)
        if not isinstance(estimator, Estimator):
            raise TypeError(f"estimator: expected Points, MonteCarlo, QuasiMonteCarlo or Quadrature, "
                            f"got {type(estimator).__name__}")
        step = as_int(step, "step", minimum=0)
        if method not in ("auto", "dense", "sweep"):
            raise ValueError(f"method: expected 'auto', 'dense' or 'sweep', got {method!r}")
        name = resolve(backend, theta)
        xp = array_namespace(theta)
        kernel = _dense_kernel(name, xp)
        if isinstance(estimator, Quadrature):
            from .quadrature import quadrature_risk_and_grad  # noqa: PLC0415

            risk, grad = quadrature_risk_and_grad(self, theta, estimator, want_grad, xp, backend=name,
                                                  kernel=kernel)
        else:
            nodes = self.nodes(estimator, step, name)
            y = self.target_values(nodes, name)
            if _use_point_sweep(self, theta, nodes, name, method):
                from .sweep import points_shallow1d  # noqa: PLC0415

                risk, grad = points_shallow1d(self, theta, nodes.x, nodes.w, y)
            else:
                risk, grad = kernel(self.layout, theta, xp.asarray(nodes.x), xp.asarray(nodes.w),
                                    xp.asarray(y), want_grad)
        risk = risk.astype(theta.dtype)
        return (risk, grad.astype(theta.dtype)) if want_grad else (risk, None)

    def risk(self, theta, estimator: Estimator, backend: str = "auto", step: int = 0, method: str = "auto"):
        """Risk estimate of every network: theta (K, P) -> (K,), in theta's dtype."""
        return self.risk_and_grad(theta, estimator, backend, step, want_grad=False, method=method)[0]


def _dense_kernel(name: str, xp):
    """``kernel(layout, theta, x, w, y, want_grad) -> (risk, grad)`` of the backend ``name``."""
    if name == "cpu":
        from .backends import cpu  # noqa: PLC0415

        return cpu.risk_and_grad
    return lambda layout, theta, x, w, y, want_grad: reference.risk_and_grad(layout, theta, x, w, y,
                                                                             want_grad, xp)


def _use_point_sweep(problem: Problem, theta, nodes: Nodes, backend: str, method: str) -> bool:
    """Whether a point estimator on a shallow 1-D net goes through the O((N+H) log) sweep."""
    if method == "dense":
        return False
    from . import sweep  # noqa: PLC0415

    applicable = (problem.dim == 1 and problem.layout.num_layers == 2 and backend == "cpu"
                  and sweep.core_available())
    if method == "sweep":
        if not applicable:
            raise ValueError("method: 'sweep' needs a shallow 1-D net [1, H, out] on the cpu backend")
        return True
    if not applicable:
        return False
    # cost model (measured on the 2-core CI machines): the dense SIMD kernel does ~13 flops per
    # node-neuron pair at ~20 GFLOP/s per core, parallel over nodes and networks; the sweep sorts the
    # nodes once (~3 ns per element and level, one core), then costs ~5 ns per node and ~25 ns per
    # neuron and network, parallel over networks only
    N, H, K = nodes.x.shape[0], problem.widths[1], theta.shape[0]
    threads = max(1, int(sweep._core().max_threads()))
    dense = K * N * H * 13 / (20e9 * threads)
    sort = N * np.log2(N + 2) * 3e-9
    per_net = (5 * N + 25 * H) * 1e-9
    return sort + per_net * K / min(threads, K) < dense
