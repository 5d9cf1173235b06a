"""reluflow: risk, generalized gradient and gradient flows of deep ReLU networks.

    import reluflow as rf
    prob = rf.Problem(widths=[1, 64, 1],
                      target=rf.targets.PiecewiseLinear([0, .5, 1], [0, 1, 0]),
                      input=rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(n=512, seed=0)                               # (512, P)
    risk, grad = prob.risk_and_grad(theta, rf.MonteCarlo(4096, seed=1))

See SPEC.md for the conventions: flat parameter layout (W_1, b_1, ..., W_L, b_L, row-major),
relu'(0) = 0, risk without a factor 1/2.
"""
from . import diagnostics, dists, landscape, targets
from .backends import BackendInfo, backends
from .flows import Run, gradient_descent, gradient_flow, normalized_gradient_flow
from .estimators import Exact, MonteCarlo, Nodes, Points, QuasiMonteCarlo, Quadrature
from .landscape import Polished, polish
from .layout import Layout
from .problem import Problem
from .experiments import load
from ._version import __version__


__all__ = ["Problem", "Layout", "MonteCarlo", "QuasiMonteCarlo", "Quadrature", "Exact", "Points", "Nodes",
           "targets", "dists", "diagnostics", "landscape", "Run", "gradient_descent", "gradient_flow", "normalized_gradient_flow", "polish", "Polished", "backends", "BackendInfo", "load", "__version__"]
