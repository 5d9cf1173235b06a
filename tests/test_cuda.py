"""The CUDA extension (built where nvcc is found): it imports on a machine without a GPU, and on a GPU
its kernels draw the CPU's samples bitwise (the same RF_HD headers; --fmad=false)."""
import numpy as np
import pytest

import reluflow as rf
from reluflow import _native_sampling

cuda = pytest.importorskip("reluflow._cuda",
                           reason="the CUDA extension is not built here (no nvcc, or RELUFLOW_CUDA=OFF)")
needs_gpu = pytest.mark.skipif(cuda.device_count() == 0, reason="no CUDA device on this machine")


def test_extension_loads_without_a_gpu():
    assert cuda.device_count() >= 0
    assert callable(cuda.mc_nodes) and callable(cuda.philox_uniforms)


def test_bad_input_is_refused_before_any_device_call():
    with pytest.raises(ValueError, match="kind"):
        cuda.mc_nodes(0, 0, 4, spec={"density_kind": "gaussian"})
    with pytest.raises(ValueError, match="low"):
        cuda.mc_nodes(0, 0, 4, spec={"density_kind": "uniform", "low": np.zeros(2), "high": np.ones(3)})


@needs_gpu
def test_philox_uniforms_equal_numpy():
    from reluflow import _philox

    u = cuda.philox_uniforms(7, 2, 3, 0, 1000, 3)
    np.testing.assert_array_equal(u, _philox.uniforms(7, 2, 3, 0, 1000, 3))


@needs_gpu
@pytest.mark.parametrize("dist", [rf.dists.Uniform([-1.0, 0.0, 2.0], [1.0, 3.0, 2.5]),
                                  rf.dists.PiecewisePolynomial([0.0, 0.3, 1.0], [[1.0, 2.0], [3.0, -1.0]])])
def test_mc_nodes_equal_cpu_bitwise(dist):
    args = _native_sampling.native_dist_args(dist)
    x_gpu = cuda.mc_nodes(11, 5, 4096, spec=args)
    x_cpu = _native_sampling.mc_nodes(dist, 11, 5, 4096)
    assert x_gpu.tobytes() == x_cpu.tobytes()
