"""The runtime SIMD dispatch of the CPU kernels (cpp/src/cpu/simd_dispatch.cpp).

Every SIMD path this CPU runs is forced in turn (``_core.set_simd_path``) and compared with the scalar
path and with the numpy reference, on the shallow and the deep kernels, so that an AVX2-only machine
checks the AVX2 and scalar paths and an AVX-512 machine all three. Also: the automatic choice is the
widest path the CPU reports (read independently from /proc/cpuinfo), the RELUFLOW_SIMD override at
import, and the errors of a bad or unsupported path.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_data

import reluflow as rf
from reluflow.backends import reference as ref

core = pytest.importorskip("reluflow._core")

SUPPORTED = core.simd_paths_supported()
COMPILED = core.simd_paths_compiled()
# against the float64 reference: float64 to rounding, float32 (computed in float32) to a band
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
# shallow kernel ([d, H, out], H not a multiple of any vector width) and deep kernel (depth 3; d > 8)
WIDTHS = [[2, 37, 1], [3, 19, 3], [2, 33, 19, 1], [9, 21, 2]]


@pytest.fixture
def simd_path():
    """Sets a path for the test; the automatic choice again afterwards (the setting is process-wide)."""
    yield core.set_simd_path
    core.set_simd_path("auto")


def run_on(path, lay, theta, x, w, y):
    core.set_simd_path(path)
    assert core.simd_path() == path
    r, g = core.risk_and_grad(list(lay.widths), theta, x, w, y, True, "auto", 0)
    out = core.realization(list(lay.widths), theta, x, "auto")
    return r, g, out


def close(a, b, tol):
    return np.linalg.norm(np.ravel(a - b)) <= tol * np.linalg.norm(np.ravel(b)) + 1e-300


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("widths", WIDTHS, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("path", SUPPORTED)
def test_path_against_scalar_and_reference(simd_path, path, widths, dtype):
    dtype = np.dtype(dtype)
    lay, theta, x, w, y = make_data(widths, 3, 1031, dtype, seed=len(widths) + widths[1])
    r0, g0 = ref.risk_and_grad(lay, theta.astype(np.float64), x, w, y)
    r_s, g_s, out_s = run_on("scalar", lay, theta, x, w, y)
    r, g, out = run_on(path, lay, theta, x, w, y)
    tol = TOL[dtype]
    for a, b in ((r, r0), (g, g0), (r, r_s), (g, g_s), (out, out_s)):
        assert close(a, b, tol)
    # deterministic per path: the same call gives the same bits
    r2, g2, _ = run_on(path, lay, theta, x, w, y)
    assert np.array_equal(r, r2) and np.array_equal(g, g2)


@pytest.mark.parametrize("H,out", [(37, 1), (700, 1), (5000, 1), (23, 2)])
@pytest.mark.parametrize("path", SUPPORTED)
def test_point_sweep_path_bitwise_equal_to_scalar(simd_path, path, H, out):
    """The point sweep (sweep_points.cpp, one copy per path): every path runs each network's scalar
    operations in its own lane (2, 4 or 8 networks per register), so the bits equal the scalar path's
    for any K (11: full lane groups and a remainder), also where neurons are visited in kink order
    (H >= 4096) and for out > 1; and the reference agrees to rounding."""
    lay = rf.Problem([1, H, out], rf.targets.Affine(np.ones((out, 1)), np.zeros(out))).layout
    rng = np.random.default_rng(H + out)
    theta = rng.standard_normal((11, lay.num_params))
    x = rng.uniform(-1.0, 2.0, 3001)
    x[:40] = x[40:80]                                    # ties between nodes
    w = rng.uniform(0.5, 1.5, x.size) / x.size
    y = np.stack([np.sin(3 * x + o) for o in range(out)], axis=1)
    core.set_simd_path("scalar")
    r_s, g_s = core.shallow1d_points(theta, out, x, w, y)
    core.set_simd_path(path)
    r, g = core.shallow1d_points(theta, out, x, w, y)
    np.testing.assert_array_equal(r, r_s)
    np.testing.assert_array_equal(g, g_s)
    r0, g0 = ref.risk_and_grad(lay, theta, x[:, None], w, y)
    assert close(r, r0, 1e-12) and close(g, g0, 1e-11)


@pytest.mark.parametrize("path", SUPPORTED)
def test_kink_partition_path_bitwise_equal_to_scalar(simd_path, path):
    """The 1-D kink partition and the quadrature nodes (quad1d_cpu.cpp, one copy per path: its
    matrix-vector products in the path's registers, every output summed in input order): the bits of
    the scalar path's (two hidden layers: the vanishing check's pass runs on every grid; one network
    with all its layer-1 kinks at one point), and the whole exact quadrature through each path agrees
    with the reference to rounding."""
    from reluflow.quadrature import fixed_1d

    prob = rf.Problem([1, 37, 21, 1], rf.targets.PiecewiseLinear([0.0, 0.3, 1.0], [0.0, 1.0, -0.5]),
                      rf.dists.Uniform(0.0, 1.0))
    est = rf.Quadrature()
    _, _, fixed, q = fixed_1d(prob.spec, est)
    thetas = prob.init(3, seed=11)
    thetas[2, 37:74] = -thetas[2, :37] * 0.5             # layer-1 kinks at 0.5: shared breaks
    widths = list(prob.widths)
    outs = {}
    for p in ("scalar", path):
        core.set_simd_path(p)
        outs[p] = [(core.kink_partition_1d(widths, th, lo, hi),) + tuple(
                       core.quad1d_nodes(widths, th, fixed, q, spec=prob.spec.native()))
                   for th in thetas for lo, hi in ((0.0, 1.0), (-np.inf, np.inf))]
    for a, b in zip(outs["scalar"], outs[path]):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    core.set_simd_path(path)
    r, g = prob.risk_and_grad(thetas, est, backend="cpu")
    r0, g0 = prob.risk_and_grad(thetas, est, backend="numpy")
    assert close(r, r0, 1e-12) and close(g, g0, 1e-10)


@pytest.mark.skipif(len(SUPPORTED) < 2, reason="only the scalar path runs here")
def test_forcing_a_path_changes_the_kernel(simd_path):
    # float32 sums in vector lanes round differently from the one-lane scalar sums: different bits show
    # that the override really switches the compiled kernel (equal bits would mean it did not)
    lay, theta, x, w, y = make_data([2, 64, 1], 1, 4099, np.float32, seed=5)
    grads = {p: run_on(p, lay, theta, x, w, y)[1] for p in SUPPORTED}
    for p in SUPPORTED[1:]:
        assert not np.array_equal(grads[p], grads["scalar"]), p


def cpuinfo_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_auto_is_the_widest_path_the_cpu_reports(simd_path):
    core.set_simd_path("auto")
    assert core.simd_path() == SUPPORTED[-1]
    assert SUPPORTED[0] == "scalar" and set(SUPPORTED) <= set(COMPILED)
    flags = cpuinfo_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    avx2 = {"avx2", "fma", "bmi1", "bmi2", "popcnt"} <= flags
    avx512 = avx2 and {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512cd"} <= flags
    expected = ["scalar"] + [p for p, ok in (("avx2", avx2), ("avx512", avx512)) if ok and p in COMPILED]
    assert SUPPORTED == expected


def test_backends_reports_paths():
    detail = rf.backends()["cpu"].detail
    assert f"SIMD {core.simd_path()}" in detail
    assert f"compiled: {', '.join(COMPILED)}" in detail


def test_bad_path_names_the_choices(simd_path):
    with pytest.raises(ValueError, match=r"expected one of 'auto', 'scalar', 'avx2', 'avx512', got 'avx3'"):
        core.set_simd_path("avx3")
    assert core.simd_path() == SUPPORTED[-1]  # unchanged


@pytest.mark.skipif(set(COMPILED) == set(SUPPORTED), reason="this CPU runs every compiled path")
def test_unsupported_path_is_refused(simd_path):
    for p in sorted(set(COMPILED) - set(SUPPORTED)):
        with pytest.raises(ValueError, match=f"'{p}' does not run here: .* this CPU does not report"):
            core.set_simd_path(p)


def import_with_env(value, code="print(_core.simd_path())", **more):
    env = dict(os.environ, RELUFLOW_SIMD=value,
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(rf.__file__))] + sys.path), **more)
    code = "import reluflow as rf; from reluflow import _core\n" + code
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif("avx512" not in SUPPORTED, reason="needs a CPU that runs the AVX-512 path")
def test_disabling_avx512_behaves_like_an_avx2_machine():
    # RELUFLOW_SIMD_DISABLE=avx512 on an AVX-512 machine: auto picks avx2, and forcing avx512 is refused
    # by set_simd_path and at import, with the reason
    code = ("print(_core.simd_path(), _core.simd_paths_supported())\n"
            "try:\n    _core.set_simd_path('avx512')\nexcept ValueError as e:\n    print('refused:', e)")
    res = import_with_env("", code, RELUFLOW_SIMD_DISABLE="avx512")
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.strip().splitlines()
    assert first == "avx2 ['scalar', 'avx2']"
    assert second.startswith("refused: simd path: 'avx512' does not run here: it needs AVX-512")
    assert "RELUFLOW_SIMD_DISABLE turns off; it runs: scalar, avx2" in second
    res = import_with_env("avx512", RELUFLOW_SIMD_DISABLE="avx512")
    assert res.returncode != 0 and "RELUFLOW_SIMD=avx512: simd path: 'avx512' does not run here" in res.stderr
    res = import_with_env("", RELUFLOW_SIMD_DISABLE="avx2,avx512")
    assert res.returncode == 0 and res.stdout.strip() == "scalar", res.stderr


def test_disable_bad_value_fails_the_import():
    res = import_with_env("", RELUFLOW_SIMD_DISABLE="avx2,scalar")
    assert res.returncode != 0
    assert "RELUFLOW_SIMD_DISABLE=avx2,scalar: expected a comma-separated list of 'avx2', 'avx512'" in res.stderr


@pytest.mark.parametrize("path", SUPPORTED)
def test_env_override_at_import(path):
    res = import_with_env(path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == path


def test_env_override_bad_value_fails_the_import():
    res = import_with_env("sse9")
    assert res.returncode != 0
    assert "RELUFLOW_SIMD=sse9" in res.stderr and "expected one of" in res.stderr


def test_no_wide_instructions_outside_their_path():
    """The scalar and AVX2 paths run no AVX-512 instruction, and nothing outside the kernels runs AVX
    (tools/check_isa_leaks.py on the loaded module; needs its symbols: a RelWithDebInfo build)."""
    import importlib.util
    import shutil
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "check_isa_leaks.py"
    if not tool.exists() or shutil.which("objdump") is None or shutil.which("nm") is None:
        pytest.skip("needs the source tree's tools/ and binutils")
    if core.native_build:
        pytest.skip("a -march=native build may use the host's instructions everywhere")
    spec = importlib.util.spec_from_file_location("check_isa_leaks", tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    names = subprocess.run(["nm", "-C", core.__file__], capture_output=True, text=True).stdout
    if "isa_scalar" not in names:
        pytest.skip("the module is stripped (a Release build): configure with RelWithDebInfo to check it")
    bad, nfunc = mod.leaks(core.__file__)
    assert nfunc > 100 and "isa_avx512" in names
    assert not bad, bad


def test_leak_checker_finds_a_leak(tmp_path):
    """tools/check_isa_leaks.py itself: AVX-512 in a baseline function and in an AVX2 kernel is found."""
    import importlib.util
    import shutil
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "check_isa_leaks.py"
    cxx = shutil.which("g++") or shutil.which("c++")
    if not tool.exists() or cxx is None or shutil.which("objdump") is None:
        pytest.skip("needs the source tree's tools/, a C++ compiler and binutils")
    src = tmp_path / "leak.cpp"
    src.write_text(
        "#include <immintrin.h>\n"
        "namespace reluflow { namespace isa_avx2 {\n"
        "__attribute__((target(\"avx512f\"))) double k(const double* p) {\n"
        "  return _mm512_reduce_add_pd(_mm512_loadu_pd(p)); } }\n"
        "__attribute__((target(\"avx2\"))) double shared(const double* p) {\n"
        "  __m256d a = _mm256_loadu_pd(p); return _mm256_cvtsd_f64(_mm256_add_pd(a, a)); }\n"
        "double plain(const double* p) { return p[0] + p[1]; } }\n")
    so = tmp_path / "leak.so"
    subprocess.run([cxx, "-O2", "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    spec = importlib.util.spec_from_file_location("check_isa_leaks", tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bad, _ = mod.leaks(str(so))
    assert any("isa_avx2::k" in f for f in bad) and any("shared" in f for f in bad)
    assert not any("plain" in f for f in bad)
