"""benchmarks/bench_gpu_flow.py without a GPU: the peers' steps and loops (--smoke) and the whole driver
(--device cpu, reduced sizes), so that the GPU window runs code that has run. Never a timing assertion."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_gpu_flow.py"


def _need(name):
    return pytest.importorskip(name, reason=f"{name} is not installed here: its peer of bench_gpu_flow.py "
                                            f"cannot run")


def _run(tmp_path, *args, timeout=900):
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(BENCH), *args, "--out", str(out)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_hand_step_agrees_with_autograd_and_the_check_sees_a_wrong_step():
    torch = _need("torch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _gpu_flow_peers as peers

    rng = np.random.default_rng(3)
    K, H, n = 5, 7, 50
    theta = rng.standard_normal((K, 3 * H + 1))
    parts = [torch.tensor(np.ascontiguousarray(a)) for a in peers.split_theta(theta, H)]
    x = torch.tensor(rng.uniform(size=n))
    ref = [t.numpy() for t in peers.torch_autograd_step(torch, *parts, x, 0.1)]
    good = [t.numpy() for t in peers.torch_hand_step(torch, *parts, x, 0.1)]
    assert peers.step_error(good, ref) < 1e-13
    # a step that forgets the gradient of the output bias is caught
    bad = good[:3] + [parts[3].numpy(), good[4]]
    assert peers.step_error(bad, ref) > 1e-4
    # the loss is the risk at the parameters before the step: the mean squared residual, by numpy
    W, b, v, c = (p.numpy() for p in parts)
    xs = x.numpy()
    out = np.maximum(xs[None, :, None] * W[:, None, :] + b[:, None, :], 0) @ v[:, :, None]
    np.testing.assert_allclose(good[4], np.mean((out[..., 0] + c[:, None] - np.sin(3 * xs)) ** 2, axis=1),
                               rtol=1e-13)
    assert peers.median_ratio_ok(1.0, 1.04, 0.05) and not peers.median_ratio_ok(1.0, 1.2, 0.05)
    assert not peers.median_ratio_ok(float("nan"), 1.0, 0.5)


def test_smoke_mode_runs_every_peer_on_the_cpu(tmp_path):
    _need("torch")
    _need("jax")
    res, stdout = _run(tmp_path, "--smoke", "--device", "cpu")
    assert res["ok"], stdout
    assert set(res["runs"]) == {"reluflow-cpu float64", "torch-eager float64", "torch-eager float32",
                                "torch-compile float32", "jax-scan float64", "jax-scan float32"}
    assert all(c["passed"] for c in res["checks"].values())
    # every peer but reluflow has its one-step check against autograd
    steps = [k for k in res["checks"] if "one step vs torch autograd" in k]
    assert len(steps) == 5
    for r in res["runs"].values():
        assert r["median_exact_risk"] < 0.8 * res["median_exact_risk_init"]


def test_driver_on_the_cpu_fills_every_row_and_the_ratios(tmp_path):
    _need("torch")
    _need("jax")
    res, stdout = _run(tmp_path, "--device", "cpu", "--H", "6", "--K", "6", "--steps", "30", "--dtypes",
                       "float64,float32", "--large-H", "40", "--large-K", "4", "--large-n", "16",
                       "--large-steps", "6", "--chunk-elems", "1500", "--budget", "400", "--job-cap", "1")
    assert res["device"].startswith("cpu") and res["skipped"] is None
    rows = res["rows"]
    key = {(r["part"], r["H"], r["peer"], r["dtype"]) for r in rows}
    for H in (6,):
        assert {("sgd", H, "reluflow-cpu", "float64"), ("sgd", H, "reluflow-cpu", "float32"),
                ("sgd", H, "torch-eager", "float32"), ("sgd", H, "torch-eager", "float64"),
                ("sgd", H, "jax-scan", "float32"), ("sgd", H, "jax-scan", "float64"),
                ("sgd", H, "torch-compile", "float32")} <= key
    assert {("large", 40, p, "float32") for p in ("reluflow-cpu", "torch-eager", "torch-compile")} <= key
    for r in rows:
        assert "s_per_step" in r, r
        if r["peer"].startswith("reluflow"):   # one call of 10^4 steps: fixed cost + 10^4 marginal
            assert r["extrapolated_s"] == pytest.approx(r["fixed_s_per_call"] + 1e4 * r["marginal_s_per_step"])
        else:
            assert r["extrapolated_s"] == pytest.approx(r["s_per_step"] * 10_000)
        assert np.isfinite(r["median_exact_risk_warm"]) and r["nonfinite_warm"] == 0
        if r["peer"] == "torch-compile":
            assert r["check_failed"] is False and r["compile_s"] > 0
        if r["peer"].startswith("reluflow"):
            best = min(p["extrapolated_s"] for p in rows if p["part"] == r["part"] and p["H"] == r["H"]
                       and not p["peer"].startswith("reluflow"))
            assert r["speedup_vs_best_peer"] == pytest.approx(best / r["extrapolated_s"])
    # the large-width torch peers ran in groups of networks: 1500 // (16 * 40) = 2 networks per group
    assert all(r["chunks"] == 2 for r in rows if r["part"] == "large" and r["peer"].startswith("torch"))
    # statistical agreement of the peers after the same warm-up steps (different samples)
    for part, H in {(r["part"], r["H"]) for r in rows}:
        meds = [r["median_exact_risk_warm"] for r in rows if (r["part"], r["H"]) == (part, H)]
        assert max(meds) / min(meds) < 1.5, (part, H, meds)


def test_budget_skips_rows_but_writes_them(tmp_path):
    res, _ = _run(tmp_path, "--device", "cpu", "--H", "6", "--K", "4", "--no-large", "--budget", "0.001")
    assert res["rows"] and all("skipped" in r and "s_per_step" not in r for r in res["rows"])
    assert any(r["skipped"].startswith("budget") for r in res["rows"] if r["peer"] == "reluflow-cpu")
