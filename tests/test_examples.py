"""The seed example scripts run end to end (``--quick``: a few seconds each), write their PNG and JSON,
and the JSON holds finite numbers that support the claim (the risk decreased)."""
from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, out: pathlib.Path) -> dict:
    # the cpu backend opens an OpenMP region per network and call; with libgomp's default spinning
    # waits a busy machine makes those tiny regions ~10x slower, so the child waits passively
    env = {**os.environ}
    env.setdefault("OMP_WAIT_POLICY", "passive")
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    png, js = out / f"{name}.png", out / f"{name}.json"
    assert png.is_file() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert js.is_file()
    return json.loads(js.read_text())


def finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def test_seed000_affine_target(tmp_path):
    data = run_example("seed000_affine_target", tmp_path)
    rows = data["rows"]
    assert rows and {r["start"] for r in rows} == {"perturbed", "random"}
    assert any(r["H"] == 1 for r in rows)  # the width-1 case of the paper
    for r in rows:
        assert finite(r["risk0"], r["risk_final"], r["max_abs_energy_defect"], r["balancedness_drift"])
        assert r["risk_final"] <= r["risk0"]
        assert r["rel_energy_defect"] < 1e-3
        assert r["balancedness_drift"] < 1e-5
    for r in rows:
        if r["start"] == "perturbed":  # small initial risk: the risk goes (numerically) to 0
            assert r["risk0"] <= 3.1e-2
            assert r["risk_final"] < 1e-3 * r["risk0"]
    assert finite(*data["summary"]["width1_final_risks"])


def test_seed001_normalized_flow(tmp_path):
    data = run_example("seed001_normalized_flow", tmp_path)
    rows = data["rows"]
    assert {r["flow"] for r in rows} == {"plain", "normalized"}
    for r in rows:
        assert finite(r["risk0"], r["risk_final"], r["norm0"], r["sup_norm"], r["sup_vmax"])
        assert r["risk_final"] < r["risk0"]
        assert r["status"] == "ok"
    s = data["summary"]
    assert s["all_risk_decreased"]
    assert s["normalize_invariance"] < 1e-12          # normalize(theta_s) does not depend on s
    assert s["normalized_max_sphere_deviation"] < 1e-10
    assert finite(s["normalized_sup_norm"], s["plain_sup_norm"])


def test_seed002_piecewise_polynomial(tmp_path):
    data = run_example("seed002_piecewise_polynomial", tmp_path)
    rows = data["rows"]
    assert rows
    for r in rows:
        assert finite(r["risk0"], r["risk_T"], r["l_inf"], r["C_sup_1pt_excess"])
        assert r["risk_decreased"]
        assert 0 <= r["l_inf"] <= r["risk_T"]
        assert r["status"] == "ok"
    assert data["summary"]["all_risk_decreased"]
    assert data["summary"]["fitted"] >= 1
    assert finite(data["summary"]["alpha_median"])


def test_readme_quickstart_runs():
    """The README's Quickstart block runs as written (it is what a new user pastes first)."""
    import re
    from pathlib import Path

    pytest.importorskip("torch")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md:Quickstart", "exec"), namespace)
    assert namespace["H"].shape[0] == 4 and namespace["run"].theta.shape == (512, namespace["prob"].num_params)


def test_teacher_student(tmp_path):
    """Gaussian input, bias-free student with output weights fixed: every start classified, the global
    minima polished to |G| <= 1e-12 with a positive definite Hessian over the free weights."""
    data = run_example("teacher_student", tmp_path)
    rows = data["rows"]
    assert [r["k"] for r in rows] == [4, 6]
    for r in rows:
        assert sum(r["counts"].values()) == r["inits"]
        assert r["counts"]["global"] >= 1                        # small k: the flow finds the teacher
        for lab, risk, g, e in zip(r["labels"], r["polished_risk"], r["grad_norm"], r["min_eig"]):
            assert finite(risk, g, e)
            if lab == "global":
                assert risk <= 1e-12 and g <= 1e-12 and e > 1e-3
            if lab != "not converged":
                assert g <= 1e-12


def _load_example(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_large_width(tmp_path):
    """SGD in chunks of 100 steps (start_step) with the exact risk between chunks: the outputs exist, the
    last record is the exact quadrature risk of the saved final theta, the chunked run's final theta is
    bitwise the theta of one uninterrupted gradient_descent run (cpu backend), and the JSON says which
    size was requested and which ran."""
    import numpy as np

    import reluflow as rf

    data = run_example("large_width", tmp_path)
    ex = _load_example("large_width")
    assert data["run"] == data["requested"] == ex.QUICK and data["reduced"] is False
    assert data["backend"] == "cpu" and data["dtype"] == "float64" and not data["interrupted"]
    H, K, steps = data["run"]["H"], data["run"]["K"], data["run"]["steps"]
    assert data["records"]["step"] == list(range(0, steps + 1, data["every"]))
    assert data["next_step"] == steps
    rec = np.load(tmp_path / "large_width.npz")
    assert rec["exact_risk"].shape == (len(data["records"]["step"]), K)
    assert np.all(np.isfinite(rec["exact_risk"]))
    prob = ex.make_problem(H)
    theta0 = prob.init(n=K, seed=data["seed"], dtype=data["dtype"])
    # the first record is the exact risk at initialization, the last that of the saved final theta
    np.testing.assert_array_equal(rec["exact_risk"][0], prob.risk(theta0, rf.Quadrature()))
    np.testing.assert_array_equal(rec["exact_risk"][-1], prob.risk(rec["theta"], rf.Quadrature()))
    assert data["final_exact_risk"] == list(rec["exact_risk"][-1])
    # SGD makes progress from a risk of order H: the exact risk fell by orders of magnitude
    assert np.all(rec["exact_risk"][-1] < 1e-2 * rec["exact_risk"][0])
    # one uninterrupted run draws the same samples at the same step indices: bitwise the same theta
    one = rf.gradient_descent(prob, theta0, lr=data["lr"], steps=steps,
                              estimator=rf.MonteCarlo(data["n"], seed=data["sample_seed"], resample=True),
                              record_every=steps, backend="cpu", progress=False)
    assert not one.diverged.any()
    np.testing.assert_array_equal(one.theta, rec["theta"])
    assert data["records"]["success_fraction"][-1] == float(np.mean(rec["exact_risk"][-1] < data["threshold"]))


def test_large_width_refuses_full_size_on_cpu(tmp_path):
    """--full without a GPU and without --force: a polite refusal (exit status nonzero, nothing run)."""
    import reluflow as rf

    if rf.backends()["cuda"].available or rf.backends()["cupy"].available:
        pytest.skip("a GPU is available here: --full runs")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "large_width.py"), "--full", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--force" in proc.stderr and "no GPU" in proc.stderr
    assert not (tmp_path / "large_width.json").exists()


def test_large_width_ctrl_c_keeps_what_was_computed(tmp_path):
    """SIGINT during a long run: the script stops at the next chunk boundary and writes its records, the
    PNG, and the theta of the last record (the exact risk recorded is that theta's), which equals one
    uninterrupted run of that many steps bitwise."""
    import signal
    import time

    import numpy as np

    import reluflow as rf

    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "large_width.py"), "--H", "64", "--K", "4",
                             "--steps", "1000000", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    js = tmp_path / "large_width.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if js.is_file() and json.loads(js.read_text())["next_step"] >= 300:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{out}\n{err}"
    data = json.loads(js.read_text())
    assert data["interrupted"] and "interrupted" in out
    s = data["next_step"]
    assert 300 <= s < 1000000 and s % 100 == 0 and data["records"]["step"][-1] == s
    assert (tmp_path / "large_width.png").is_file()
    ex = _load_example("large_width")
    prob = ex.make_problem(64)
    rec = np.load(tmp_path / "large_width.npz")
    np.testing.assert_array_equal(rec["exact_risk"][-1], prob.risk(rec["theta"], rf.Quadrature()))
    one = rf.gradient_descent(prob, prob.init(n=4, seed=data["seed"]), lr=data["lr"], steps=s,
                              estimator=rf.MonteCarlo(data["n"], seed=data["sample_seed"], resample=True),
                              record_every=s, backend="cpu", progress=False)
    np.testing.assert_array_equal(one.theta, rec["theta"])


def test_large_width_config_is_the_script(tmp_path):
    """examples/configs/large_width.toml describes the script's experiment: shrunk to the --quick size,
    ``reluflow run`` ends at the script's final theta bitwise (segments resumed with start_step)."""
    pytest.importorskip("zarr")
    pytest.importorskip("xarray")
    import numpy as np

    import reluflow as rf
    from reluflow.experiments import parse_config, run_config

    data = run_example("large_width", tmp_path / "script")
    H, K, steps = data["run"]["H"], data["run"]["K"], data["run"]["steps"]
    text = (EXAMPLES / "configs" / "large_width.toml").read_text()
    for old, new in (("widths = [1, 1000, 1]", f"widths = [1, {H}, 1]"), ("n = 100\n", f"n = {K}\n"),
                     ("lr = 0.0005", f"lr = {data['lr']!r}"), ("steps = 10000", f"steps = {steps}")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    cfg = parse_config(text)
    assert repr(cfg.estimator) == data["estimator"] and cfg.lr == data["lr"]
    ds = rf.load(run_config(cfg, tmp_path / "lw.zarr", quiet=True))
    theta = np.load(tmp_path / "script" / "large_width.npz")["theta"]
    np.testing.assert_array_equal(ds.theta.values, theta)


def test_large_width_sizes():
    """Which size runs: the full one on a GPU, the reduced one on a CPU (saying why), --quick and explicit
    sizes as asked, --full on a CPU only with --force."""
    import argparse

    ex = _load_example("large_width")

    def args(**kw):
        base = dict(quick=False, full=False, force=False, H=None, K=None, steps=None)
        return argparse.Namespace(**{**base, **kw})

    assert ex.sizes(args(), gpu=True) == (ex.FULL, ex.FULL, "")
    requested, run, why = ex.sizes(args(), gpu=False)
    assert requested == ex.FULL and run == ex.REDUCED and "no GPU" in why
    assert run["H"] * run["K"] < requested["H"] * requested["K"]
    assert ex.sizes(args(quick=True), gpu=False) == (ex.QUICK, ex.QUICK, "")
    assert ex.sizes(args(H=7, K=3, steps=5), gpu=False)[1] == {"H": 7, "K": 3, "steps": 5}
    with pytest.raises(SystemExit, match="--force"):
        ex.sizes(args(full=True), gpu=False)
    assert ex.sizes(args(full=True, force=True), gpu=False)[1] == ex.FULL
