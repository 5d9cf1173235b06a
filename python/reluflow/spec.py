"""``ProblemSpec``: one immutable description of a problem (architecture, target, input density), with
one encoding per kind, built once per ``Problem``. Every backend and every native loop reads its
arrays from here; no other module inspects target or distribution classes.

Encodings (mirroring what the C++ side takes):

* target: ``"affine"`` (A (out, d), b (out,)), ``"piecewise_polynomial"`` (breaks (m+1,), coeffs
  (m, deg+1, out) in local powers; PiecewiseLinear is lowered to this), ``"teacher"`` (widths, theta
  (P,)) or ``"function"`` (a Python callable, evaluated in Python). In 1-D, Affine and piecewise
  polynomial targets also carry their ``pieces`` on the support (Affine lowered to one piece).
* density: ``"uniform"`` (low, high (d,)) or ``"piecewise_polynomial"``; in 1-D both carry the density
  as pieces in local powers (mass 1) with the antiderivative ``anti`` and cumulative masses ``cum``
  that the inverse-CDF samplers use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dists, targets
from .layout import Layout

__all__ = ["TargetSpec", "DensitySpec", "ProblemSpec", "LayoutShapes"]


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


@dataclass(frozen=True)
class TargetSpec:
    """The target f in one encoding (see the module docstring)."""

    kind: str
    dim: int | None
    out_dim: int
    degree: int | None              # polynomial degree per piece; None: not piecewise polynomial
    arrays: dict = field(default_factory=dict, repr=False)
    fn: Any = field(default=None, repr=False)  # the Target object (evaluated in Python)

    @property
    def native(self) -> bool:
        """Evaluated by C++ everywhere (affine, piecewise polynomial); a teacher only by some paths."""
        return self.kind in ("affine", "piecewise_polynomial")

    def native_args(self) -> dict | None:
        """Keyword arguments of the C++ target (``targets.h``), or None (teacher, function)."""
        if self.kind == "affine":
            return {"target_kind": "affine", "target_A": self.arrays["A"], "target_b": self.arrays["b"]}
        if self.kind == "piecewise_polynomial":
            return {"target_kind": "piecewise_polynomial", "target_breaks": self.arrays["breaks"],
                    "target_coeffs": self.arrays["coeffs"]}
        return None

    def teacher_args(self) -> dict:
        return {"target_kind": "teacher", "teacher_widths": list(self.arrays["widths"]),
                "teacher_theta": self.arrays["theta"]}

    @staticmethod
    def of(target: targets.Target) -> "TargetSpec":
        if isinstance(target, targets.Affine):
            return TargetSpec("affine", target.dim, target.out_dim, 1,
                              {"A": _f64(target.A), "b": _f64(target.b)}, target)
        if isinstance(target, targets.PiecewisePolynomial):  # PiecewiseLinear too
            return TargetSpec("piecewise_polynomial", 1, target.out_dim, target.degree,
                              {"breaks": _f64(target._breaks), "coeffs": _f64(target.coeffs)}, target)
        if isinstance(target, targets.Teacher):
            return TargetSpec("teacher", target.dim, target.out_dim, target.degree,
                              {"widths": target.layout.widths, "theta": _f64(target.theta)}, target)
        return TargetSpec("function", target.dim, target.out_dim, None, {}, target)

    def pieces(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray] | None:
        """1-D: (breaks (m+1,), coeffs (m, deg+1, out)) in local powers (the end pieces extend beyond
        the breaks), Affine lowered to one piece about ``lo``; None for teacher and function targets."""
        if self.kind == "piecewise_polynomial":
            return self.arrays["breaks"], self.arrays["coeffs"]
        if self.kind == "affine" and self.dim == 1:
            A, b = self.arrays["A"][:, 0], self.arrays["b"]         # (out,)
            coeffs = np.empty((1, 2, A.size))
            coeffs[0, 0] = A * lo + b                              # local powers about lo
            coeffs[0, 1] = A
            return np.array([lo, hi]), coeffs
        return None


@dataclass(frozen=True)
class DensitySpec:
    """The input distribution mu in one encoding (see the module docstring)."""

    kind: str                        # "uniform" | "piecewise_polynomial"
    dim: int
    low: np.ndarray = field(repr=False)
    high: np.ndarray = field(repr=False)
    degree: int = 0
    breaks: np.ndarray | None = field(default=None, repr=False)   # 1-D: density pieces (q+1,)
    coeffs: np.ndarray | None = field(default=None, repr=False)   # 1-D: (q, dd+1), mass 1
    anti: np.ndarray | None = field(default=None, repr=False)     # piecewise polynomial: CDF pieces
    cum: np.ndarray | None = field(default=None, repr=False)      # piecewise polynomial: (q+1,)

    @staticmethod
    def of(dist: dists.Distribution) -> "DensitySpec":
        if isinstance(dist, dists.Uniform):
            if dist.dim is None:
                raise ValueError("input: the Uniform box has no dimension yet; bind it (dist.bind(d)) "
                                 "or give low/high arrays")
            br = co = None
            if dist.dim == 1:
                br, co = (_f64(a) for a in dist.density_coeffs())
            return DensitySpec("uniform", dist.dim, _f64(dist.low), _f64(dist.high), 0, br, co)
        if isinstance(dist, dists.PiecewisePolynomial):
            br, co = dist.density_coeffs()
            return DensitySpec("piecewise_polynomial", 1, _f64(dist.low), _f64(dist.high), dist.degree,
                               _f64(br), _f64(np.atleast_2d(co)), _f64(dist.anti), _f64(dist.cum))
        raise TypeError(f"input: expected dists.Uniform or dists.PiecewisePolynomial, got "
                        f"{type(dist).__name__}")

    def sampler_args(self) -> dict:
        """Keyword arguments of the C++ samplers (``dists.h``: ``_core.mc_nodes`` and friends)."""
        if self.kind == "uniform":
            return {"kind": "uniform", "low": self.low, "high": self.high}
        return {"kind": "piecewise_polynomial", "breaks": self.breaks, "anti": self.anti, "cum": self.cum}

    def quad1d_args(self) -> dict:
        """Keyword arguments of the C++ 1-D partition path (``_core.quad1d_risk_and_grad``)."""
        if self.kind == "uniform":
            return {"dist_kind": "uniform", "low": self.low[:1], "high": self.high[:1]}
        return {"dist_kind": "piecewise_polynomial", "breaks": self.breaks, "anti": self.anti,
                "cum": self.cum, "density_coeffs": self.coeffs}


class LayoutShapes:
    """The shapes every problem description answers, read off its ``layout``."""

    layout: Layout

    @property
    def widths(self) -> tuple[int, ...]:
        """(l_0 = d, l_1, ..., l_L = out)."""
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


@dataclass(frozen=True)
class ProblemSpec(LayoutShapes):
    """Widths/layout, target and input density of a problem, each in one encoding (immutable).

    ``target`` and ``input`` are the user's objects (for Python evaluation and sampling by the
    reference backend); ``target_spec`` and ``density`` are their encodings for the native code.
    """

    layout: Layout
    target: targets.Target = field(repr=False)
    input: dists.Distribution = field(repr=False)
    target_spec: TargetSpec
    density: DensitySpec

    @staticmethod
    def build(layout: Layout, target: targets.Target, input: dists.Distribution) -> "ProblemSpec":  # noqa: A002
        return ProblemSpec(layout, target, input, TargetSpec.of(target), DensitySpec.of(input))

    @property
    def shallow_1d(self) -> bool:
        """A one-hidden-layer net of one input ``[1, H, out]``."""
        return len(self.widths) == 3 and self.widths[0] == 1

    @property
    def support(self) -> tuple[float, float]:
        """1-D: the support [lo, hi] of the input distribution."""
        return float(self.density.low[0]), float(self.density.high[0])

    def exact_sweep_unsupported(self) -> str | None:
        """None when the exact O(H log H) sweep computes this problem's exact quadrature risk, else why not."""
        if not self.shallow_1d:
            return f"the exact sweep needs a shallow 1-D network [1, H, out], got widths {list(self.widths)}"
        t = self.target_spec
        if t.kind not in ("affine", "piecewise_polynomial"):
            return (f"the exact sweep needs an Affine, PiecewiseLinear or PiecewisePolynomial target, got "
                    f"{type(self.target).__name__}")
        if t.dim != 1:
            return f"the exact sweep needs a 1-D Affine target, got input dimension {t.dim}"
        return None

    def exact_order(self) -> int:
        """Gauss–Legendre points per piece that integrate ``|N - f|^2 rho`` exactly in 1-D
        (``ceil((2 max(1, target degree) + density degree + 1) / 2)``); needs a piecewise-polynomial target."""
        integrand_degree = 2 * max(1, int(self.target_spec.degree)) + int(self.density.degree)
        return (integrand_degree + 2) // 2

    def sweep_args(self) -> dict:
        """Target and density pieces of the exact shallow sweep (``_core.shallow1d_exact`` and the
        ``exact_shallow1d`` field of the C++ loops)."""
        lo, hi = self.support
        tb, tc = self.target_spec.pieces(lo, hi)
        return {"lo": lo, "hi": hi, "tpoly_breaks": _f64(tb), "tpoly_coeffs": _f64(tc),
                "dpoly_breaks": self.density.breaks, "dpoly_coeffs": self.density.coeffs}
