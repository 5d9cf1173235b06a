"""The fused C++ CPU kernels (reluflow.backends.cpu) against the numpy reference.

Every kernel ("shallow" SIMD, "deep" blocked SIMD, "scalar" per node from net.h) is compared with
reluflow.backends.reference on the same nodes: float64 to 1e-12, float32 theta (computed in float32)
to 1e-5 against the float64 reference on the float32 values. Also: degenerate neurons, tile edges,
bitwise determinism across thread counts and runs, and argument errors.
"""
import hashlib
import textwrap

import numpy as np
import pytest
from conftest import make_data, run_with_threads

from reluflow.layout import Layout
from reluflow.backends import reference as ref

cpu = pytest.importorskip("reluflow.backends.cpu")
core = pytest.importorskip("reluflow._core")

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
HIDDEN = [37, 19, 33]          # hidden widths: not multiples of any vector width
NK = [(1, 1), (7, 3), (1000, 3), (4099, 1)]  # (nodes, networks): nodes not multiples of tiles/vectors


def make_widths(depth, d, out):
    return [d] + HIDDEN[:depth - 1] + [out]


def check_close(lay, theta, x, w, y, kernel="auto", tile=0):
    dt = theta.dtype
    r0, g0 = ref.risk_and_grad(lay, theta.astype(np.float64), x, w, y)
    if tile:
        r, g = core.risk_and_grad(list(lay.widths), theta, x, w, y, True, kernel, tile)
    else:
        r, g = cpu.risk_and_grad(lay, theta, x, w, y, want_grad=True, kernel=kernel)
    assert r.dtype == np.float64 and g.dtype == np.float64
    assert r.shape == (theta.shape[0],) and g.shape == theta.shape
    tol = TOL[dt]
    np.testing.assert_array_less(np.abs(r - r0), tol * np.abs(r0) + 1e-300)
    for k in range(theta.shape[0]):
        err = np.linalg.norm(g[k] - g0[k])
        assert err <= tol * np.linalg.norm(g0[k]), (k, err / np.linalg.norm(g0[k]))
    if tile:
        r2, g2 = core.risk_and_grad(list(lay.widths), theta, x, w, y, False, kernel, tile)
    else:
        r2, g2 = cpu.risk_and_grad(lay, theta, x, w, y, want_grad=False, kernel=kernel)
    assert g2 is None
    assert np.array_equal(r2, r), "the risk must not depend on want_grad"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("out", [1, 2, 3])
@pytest.mark.parametrize("d", [1, 2, 3, 8])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_matches_reference(depth, d, out, dtype):
    widths = make_widths(depth, d, out)
    for i, (N, K) in enumerate(NK):
        lay, theta, x, w, y = make_data(widths, K, N, dtype, seed=i)
        check_close(lay, theta, x, w, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("widths,kernels", [
    ([1, 37, 1], ["shallow", "deep", "scalar"]),
    ([1, 300, 1], ["shallow", "deep", "scalar"]),     # several pass-2 blocks + tail
    ([2, 61, 3], ["shallow", "deep", "scalar"]),
    ([8, 45, 2], ["shallow", "deep", "scalar"]),
    ([9, 20, 1], ["deep", "scalar"]),                 # beyond the shallow kernel: d > 8
    ([2, 20, 5], ["deep", "scalar"]),                 # out > 3
    ([3, 17, 40, 2], ["deep", "scalar"]),
    ([2, 70, 5, 33, 1], ["deep", "scalar"]),
    ([1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1], ["deep", "scalar"]),  # 16 layers
])
def test_every_kernel(widths, kernels, dtype):
    lay, theta, x, w, y = make_data(widths, 3, 1001, dtype, seed=5)
    for kernel in kernels:
        check_close(lay, theta, x, w, y, kernel=kernel)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,widths", [("shallow", [2, 23, 2]), ("deep", [2, 23, 9, 1]),
                                           ("scalar", [2, 23, 9, 1])])
@pytest.mark.parametrize("tile", [1, 3, 8, 17])
def test_tile_edges(kernel, widths, tile, dtype):
    lay, theta, x, w, y = make_data(widths, 2, 101, dtype, seed=2)
    check_close(lay, theta, x, w, y, kernel=kernel, tile=tile)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    widths=st.lists(st.integers(1, 40), min_size=2, max_size=5),
    N=st.integers(0, 600), K=st.integers(1, 3), tile=st.sampled_from([0, 1, 5, 64]),
    kernel=st.sampled_from(["auto", "deep", "scalar"]), f32=st.booleans(), seed=st.integers(0, 2**16))
def test_fuzz_against_reference(widths, N, K, tile, kernel, f32, seed):
    lay, theta, x, w, y = make_data(widths, K, N, np.float32 if f32 else np.float64, seed=seed)
    r0, g0 = ref.risk_and_grad(lay, theta.astype(np.float64), x, w, y)
    r, g = core.risk_and_grad(list(lay.widths), theta, x, w, y, True, kernel, tile)
    tol = 1e-5 if f32 else 1e-12
    assert np.all(np.abs(r - r0) <= tol * np.abs(r0) + 1e-300)
    assert np.linalg.norm(g - g0) <= tol * np.linalg.norm(g0) + 1e-300


def test_kernel_choice():
    assert core.risk_kernel([1, 64, 1]) == "shallow"
    assert core.risk_kernel([8, 64, 3]) == "shallow"
    assert core.risk_kernel([9, 64, 1]) == "deep"
    assert core.risk_kernel([1, 8, 8, 1]) == "deep"
    assert core.risk_kernel([1, 8, 8, 1], "scalar") == "scalar"
    assert core.simd_path() in ("avx512", "avx2", "scalar")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("widths", [[1, 8, 1], [2, 8, 2], [3, 7, 6, 1], [9, 5, 1]])
@pytest.mark.parametrize("kernel", ["auto", "deep", "scalar"])
def test_degenerate_neuron(widths, kernel, dtype):
    # a hidden neuron with (w_i, b_i) = 0 has pre-activation exactly 0: relu'(0) = 0, so its incoming
    # weights and bias get exactly zero gradient, and so do its outgoing weights (a_i = 0)
    lay, theta, x, w, y = make_data(widths, 2, 513, dtype, seed=3)
    params = lay.unpack(theta)
    for layer in range(lay.num_layers - 1):
        W, b = params[layer]
        W[:, 1, :] = 0
        b[:, 1] = 0
    _, g = cpu.risk_and_grad(lay, theta, x, w, y, kernel=kernel)
    gp = lay.unpack(g)
    for layer in range(lay.num_layers - 1):
        gW, gb = gp[layer]
        assert np.all(gW[:, 1, :] == 0) and np.all(gb[:, 1] == 0)
        assert np.all(gp[layer + 1][0][:, :, 1] == 0)  # outgoing weights of the dead neuron
    check_close(lay, theta, x, w, y, kernel=kernel)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("widths", [[1, 37, 1], [3, 20, 2], [8, 100, 3], [2, 19, 33, 2], [1, 1]])
@pytest.mark.parametrize("kernel", ["auto", "deep", "scalar"])
def test_realization(widths, kernel, dtype):
    lay, theta, x, _, _ = make_data(widths, 3, 777, dtype, seed=4)
    out = cpu.realization(lay, theta, x, kernel=kernel)
    expect = ref.realization(lay, theta.astype(np.float64), x)
    assert out.shape == expect.shape == (3, 777, widths[-1]) and out.dtype == np.float64
    tol = TOL[np.dtype(dtype)]
    scale = np.abs(expect).max() if dtype == np.float64 else np.abs(expect).max() * 10
    np.testing.assert_allclose(out, expect, rtol=tol, atol=tol * scale)


def test_float32_is_computed_in_float32():
    # the float32 path does not widen theta: its result differs from the float64 path on the same values
    lay, theta, x, w, y = make_data([1, 200, 1], 1, 4099, np.float32, seed=7)
    r32, g32 = cpu.risk_and_grad(lay, theta, x, w, y)
    r64, g64 = cpu.risk_and_grad(lay, theta.astype(np.float64), x, w, y)
    assert not np.array_equal(g32, g64)
    assert np.linalg.norm(g32 - g64) <= 1e-5 * np.linalg.norm(g64)


def test_empty_and_tiny():
    lay = Layout([2, 5, 1])
    theta = np.ones((2, lay.num_params))
    r, g = cpu.risk_and_grad(lay, theta, np.zeros((0, 2)), np.zeros(0), np.zeros((0, 1)))
    assert np.all(r == 0) and np.all(g == 0) and g.shape == (2, lay.num_params)
    r, g = cpu.risk_and_grad(lay, np.zeros((0, lay.num_params)), np.zeros((3, 2)), np.ones(3), np.zeros((3, 1)))
    assert r.shape == (0,) and g.shape == (0, lay.num_params)


# ---- determinism ---------------------------------------------------------------------------------
_DET_SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from reluflow.layout import Layout
    from reluflow.backends import cpu
    h = hashlib.sha256()
    for widths, K, N in [([1, 300, 1], 1, 70001), ([3, 37, 2], 3, 4099), ([1, 256, 1], 40, 3000),
                         ([2, 33, 19, 1], 3, 9001)]:
        rng = np.random.default_rng(0)
        lay = Layout(widths)
        theta = rng.normal(size=(K, lay.num_params))
        x = rng.uniform(-1, 1, size=(N, widths[0])); w = rng.uniform(size=N) / N
        y = rng.normal(size=(N, widths[-1]))
        for dt in (np.float32, np.float64):
            for kernel in ("auto", "deep", "scalar"):
                r, g = cpu.risk_and_grad(lay, theta.astype(dt), x, w, y, kernel=kernel)
                h.update(r.tobytes()); h.update(g.tobytes())
                h.update(cpu.realization(lay, theta.astype(dt), x, kernel=kernel).tobytes())
    print(h.hexdigest())
""")


def _digest(threads):
    return run_with_threads(_DET_SCRIPT, threads).strip()


def test_bitwise_same_for_1_and_2_threads():
    d1 = _digest(1)
    assert d1 == _digest(2)
    assert d1 == _digest(3)


def test_bitwise_same_run_to_run():
    lay, theta, x, w, y = make_data([1, 300, 1], 2, 20001, np.float32, seed=9)
    digests = set()
    for _ in range(4):
        r, g = cpu.risk_and_grad(lay, theta, x, w, y)
        digests.add(hashlib.sha256(r.tobytes() + g.tobytes()).hexdigest())
    assert len(digests) == 1


# ---- bad input -----------------------------------------------------------------------------------
def test_bad_input_names_the_argument():
    lay, theta, x, w, y = make_data([2, 5, 1], 2, 10, np.float64)
    with pytest.raises(ValueError, match="theta"):
        cpu.risk_and_grad(lay, theta[:, :-1], x, w, y)
    with pytest.raises(ValueError, match="theta"):
        cpu.risk_and_grad(lay, theta[0], x, w, y)
    with pytest.raises(ValueError, match="x"):
        cpu.risk_and_grad(lay, theta, np.zeros((10, 3)), w, y)
    with pytest.raises(ValueError, match="w"):
        cpu.risk_and_grad(lay, theta, x, w[:-1], y)
    with pytest.raises(ValueError, match="y"):
        cpu.risk_and_grad(lay, theta, x, w, y[:-1])
    with pytest.raises(ValueError, match="y"):
        cpu.risk_and_grad(lay, theta, x, w, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="x"):
        cpu.realization(lay, theta, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="theta"):
        cpu.realization(lay, theta[:, 1:], x)
    with pytest.raises(ValueError, match="kernel"):
        cpu.risk_and_grad(Layout([2, 5, 5, 1]), np.zeros((1, Layout([2, 5, 5, 1]).num_params)), x, w, y,
                          kernel="shallow")
    with pytest.raises(ValueError, match="kernel"):
        cpu.risk_and_grad(lay, theta, x, w, y, kernel="fast")
    with pytest.raises(ValueError, match="widths"):
        core.risk_and_grad([2], theta, x, w, y, True)
    with pytest.raises(ValueError, match="widths"):
        core.risk_and_grad([2, 0, 1], theta, x, w, y, True)
