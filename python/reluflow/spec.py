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
  that the inverse-CDF samplers use. ``"gaussian"``: mean (d,) and the lower Cholesky factor chol
  (d, d) of the covariance; low/high are -inf/+inf and it has no pieces (no 1-D quadrature).
"""
from __future__ import annotations

import functools
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

    def native_keys(self, support: tuple[float, float] | None = None) -> dict:
        """The target's keys of the C++ problem dict (see :meth:`ProblemSpec.native`); with the 1-D
        ``support``, also its pieces there (:meth:`pieces`) as ``target_breaks``/``target_coeffs``."""
        out: dict = {"target_kind": self.kind}
        if self.kind == "affine":
            out.update(target_A=self.arrays["A"], target_b=self.arrays["b"])
        elif self.kind == "teacher":
            out.update(teacher_widths=[int(w) for w in self.arrays["widths"]], teacher_theta=self.arrays["theta"])
        pieces = self.pieces(*support) if support is not None else (
            (self.arrays["breaks"], self.arrays["coeffs"]) if self.kind == "piecewise_polynomial" else None)
        if pieces is not None:
            out.update(target_breaks=_f64(pieces[0]), target_coeffs=_f64(pieces[1]))
        return out

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

    kind: str                        # "uniform" | "piecewise_polynomial" | "gaussian"
    dim: int
    low: np.ndarray = field(repr=False)
    high: np.ndarray = field(repr=False)
    degree: int = 0
    breaks: np.ndarray | None = field(default=None, repr=False)   # 1-D: density pieces (q+1,)
    coeffs: np.ndarray | None = field(default=None, repr=False)   # 1-D: (q, dd+1), mass 1
    anti: np.ndarray | None = field(default=None, repr=False)     # piecewise polynomial: CDF pieces
    cum: np.ndarray | None = field(default=None, repr=False)      # piecewise polynomial: (q+1,)
    mean: np.ndarray | None = field(default=None, repr=False)     # gaussian: (d,)
    chol: np.ndarray | None = field(default=None, repr=False)     # gaussian: (d, d) lower Cholesky factor

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
        if isinstance(dist, dists.Gaussian):
            if dist.dim is None:
                raise ValueError("input: the Gaussian has no dimension yet; bind it (dist.bind(d)) or give "
                                 "mean/cov arrays")
            return DensitySpec("gaussian", dist.dim, _f64(dist.low), _f64(dist.high), 0,
                               mean=_f64(dist.mean), chol=_f64(dist.chol))
        raise TypeError(f"input: expected dists.Uniform, dists.PiecewisePolynomial or dists.Gaussian, got "
                        f"{type(dist).__name__}")

    def native(self) -> dict:
        """The density's keys of the C++ problem dict (see :meth:`ProblemSpec.native`); the samplers
        (``_core.mc_nodes`` and friends) take this dict alone as their ``spec``."""
        if self.kind == "gaussian":
            return {"density_kind": "gaussian", "mean": self.mean, "chol": self.chol}
        out: dict = {"density_kind": self.kind, "low": self.low, "high": self.high}
        if self.breaks is not None:
            out.update(density_breaks=self.breaks, density_coeffs=self.coeffs)
        if self.anti is not None:
            out.update(density_anti=self.anti, density_cum=self.cum)
        if self.dim == 1:
            out.update(lo=float(self.low[0]), hi=float(self.high[0]))
        return out


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
        if self.density.kind == "gaussian":
            return "the exact sweep needs a bounded input distribution (a box or a piecewise-polynomial density)"
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

    def native(self) -> dict:
        """The problem as every ``_core`` entry point takes it (``spec=``; parsed once per call by
        ``cpp/src/bindings/bind_spec.h`` into the ``ProblemSpec`` of ``cpp/include/reluflow/spec.h``).

        A fresh dict (built once per spec, then copied) of float64 contiguous arrays and kind strings:

        * ``target_kind``: ``"affine"`` (``target_A`` (out, d), ``target_b`` (out,)),
          ``"piecewise_polynomial"``, ``"teacher"`` (``teacher_widths`` list of int, ``teacher_theta``
          (P,)) or ``"function"`` (evaluated in Python: no arrays);
        * ``target_breaks`` (m+1,), ``target_coeffs`` (m, deg+1, out): the target as 1-D pieces in local
          powers (a piecewise-polynomial target itself; a 1-D Affine lowered to one piece on the support);
        * ``density_kind``: ``"uniform"`` (``low``, ``high`` (d,)), ``"piecewise_polynomial"``
          (``density_anti`` (q, dd+1), ``density_cum`` (q+1,): the inverse-CDF data of the samplers) or
          ``"gaussian"`` (``mean`` (d,), ``chol`` (d, d) lower triangular);
        * ``density_breaks`` (q+1,), ``density_coeffs`` (q, dd+1): 1-D, the density as pieces (mass 1);
        * ``lo``, ``hi`` (float): 1-D, the support of the density (bounded distributions only).
        """
        return dict(self._native)

    @functools.cached_property
    def _native(self) -> dict:
        support = self.support if self.dim == 1 and self.density.kind != "gaussian" else None
        return {**self.density.native(), **self.target_spec.native_keys(support)}
