"""Experiments from the command line (SPEC §9, ``reluflow.experiments``, ``reluflow.cli``): TOML configs
mapped onto the Python API, the Zarr store and ``rf.load``, resume after SIGKILL bitwise, bad configs
refused with status 2 and the key path."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import reluflow as rf
from reluflow.experiments import ConfigError, parse_config, run_config

pytest.importorskip("zarr")
pytest.importorskip("xarray")

GD = textwrap.dedent("""
    name = "tiny-gd"
    [problem]
    widths = [1, 8, 1]
    target = { kind = "piecewise_linear", knots = [0.0, 0.5, 1.0], values = [0.0, 1.0, 0.0] }
    input = { kind = "uniform", low = 0.0, high = 1.0 }
    [init]
    n = 6
    seed = 2
    [estimator]
    kind = "monte_carlo"
    n = 128
    seed = 1
    resample = true
    [integrator]
    method = "gd"
    lr = { schedule = "power", base = 0.05, exponent = 0.1 }
    steps = 200
    record_every = 10
    [run]
    backend = "cpu"
    dtype = "float64"
""")


def _cli(*args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "reluflow", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def test_run_equals_the_python_api(tmp_path):
    cfg = parse_config(GD)
    path = run_config(cfg, tmp_path / "s.zarr", quiet=True)
    ds = rf.load(path)
    prob = cfg.problem
    ref = rf.gradient_descent(prob, prob.init(6, seed=2), lambda n: 0.05 * (n + 1) ** -0.1, 200,
                              estimator=rf.MonteCarlo(128, seed=1), record_every=10, backend="cpu")
    assert ds.sizes == {"step": 21, "init": 6, "param": prob.num_params}
    np.testing.assert_array_equal(ds.t.values, ref.t)
    assert ds.risk.values.tobytes() == ref.risk.tobytes()
    assert ds.theta.values.tobytes() == ref.theta.tobytes()
    np.testing.assert_allclose(ds.energy.values, ref.energy, rtol=1e-12)
    assert list(ds.status.values) == ["ok"] * 6 and not ds.diverged.values.any()
    assert ds.attrs["config"] == GD and ds.attrs["name"] == "tiny-gd" and ds.attrs["finished"] == 1


def test_finished_run_is_not_recomputed_and_other_configs_refused(tmp_path):
    cfg = parse_config(GD)
    path = run_config(cfg, tmp_path / "s.zarr", quiet=True)
    stamp = (path / "checkpoint.json").stat().st_mtime_ns
    run_config(cfg, path, quiet=True)
    assert (path / "checkpoint.json").stat().st_mtime_ns == stamp
    run_config(cfg, path, force=True, quiet=True)
    assert (path / "checkpoint.json").stat().st_mtime_ns != stamp
    other = parse_config(GD.replace("seed = 2", "seed = 3"))
    with pytest.raises(ValueError, match="out: .* holds the results of another config"):
        run_config(other, path, quiet=True)


@pytest.mark.parametrize("integrator, records", [
    ('method = "rk4"\ndt = 0.01\nsteps = 60\nrecord_every = 20', 4),
    ('method = "dopri5"\nt_end = 0.5\nrecord_every = 0.1', 6),
    ('method = "rosenbrock"\nt_end = 0.5\nrecord_every = 0.1', 6),
])
def test_flows_run(tmp_path, integrator, records):
    text = GD.replace('kind = "monte_carlo"\nn = 128\nseed = 1\nresample = true', 'kind = "quadrature"')
    start = text.index("[integrator]")
    text = text[:start] + "[integrator]\n" + integrator + "\n" + text[text.index("[run]"):]
    ds = rf.load(run_config(parse_config(text), tmp_path / "f.zarr", quiet=True))
    assert ds.sizes["step"] == records and np.all(np.diff(ds.risk.values, axis=0) <= 1e-12)
    assert np.all(ds.accepted.values > 0) and np.all(ds.rejected.values >= 0)
    from reluflow.experiments import plot_store

    names = {p.name for p in plot_store(tmp_path / "f.zarr", tmp_path / "plots")}
    adaptive = "dopri5" if "dopri5" in integrator else "rosenbrock" if "rosenbrock" in integrator else None
    assert {n for n in names if n.endswith("_steps.png")} == ({f"{adaptive}_steps.png"} if adaptive else set())
    assert "risk.png" in names


def test_resume_after_sigkill_is_bitwise(tmp_path):
    """Kill the command mid-run (after a few checkpoints), run it again: the final store equals an
    uninterrupted run's bitwise."""
    text = GD.replace("widths = [1, 8, 1]", "widths = [1, 64, 1]").replace("n = 6", "n = 48") \
             .replace("n = 128", "n = 4096").replace("steps = 200", "steps = 3000")
    cfg_file = tmp_path / "big.toml"
    cfg_file.write_text(text)
    killed, whole = tmp_path / "killed.zarr", tmp_path / "whole.zarr"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "reluflow", "run", str(cfg_file), "--out", str(killed),
                             "--quiet"], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        ck = killed / "checkpoint.json"
        if ck.exists() and json.loads(ck.read_text())["records"] >= 40 or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    part = json.loads((killed / "checkpoint.json").read_text())
    assert not part["finished"] and 0 < part["next_step"] < 3000
    assert _cli("run", str(cfg_file), "--out", str(killed), "--quiet", env=env, timeout=300).returncode == 0
    assert _cli("run", str(cfg_file), "--out", str(whole), "--quiet", env=env, timeout=300).returncode == 0
    a, b = rf.load(killed), rf.load(whole)
    for key in ("risk", "grad_norm", "energy", "theta", "t", "diverged", "status"):
        assert a[key].values.tobytes() == b[key].values.tobytes(), key


# ---- bad configs -----------------------------------------------------------------------------------

BAD = [
    ("[problem]\nwidths = [1, 8, 1]", "", "estimator: missing"),
    ("bogus = 1", "", "bogus: unknown key"),
    ("widths = [1, 8, 1]", "widths = [1, -8, 1]", "problem: widths: expected every width >= 1"),
    ('kind = "piecewise_linear"', 'kind = "spline"', "problem.target.kind: expected one of"),
    ('input = { kind = "uniform", low = 0.0, high = 1.0 }', 'input = { kind = "uniform", low = 1.0, high = 0.0 }',
     "problem.input: high: expected high > low"),
    ('input = { kind = "uniform", low = 0.0, high = 1.0 }', 'input = { kind = "gaussian", mean = 0.0, cov = -1.0 }',
     "problem.input: cov: expected positive variances"),
    ('input = { kind = "uniform", low = 0.0, high = 1.0 }',
     'input = { kind = "gaussian", mean = 0.0, cov = [[1.0, 2.0], [2.0, 1.0]] }',
     "problem.input: cov: expected a symmetric positive definite matrix"),
    ('input = { kind = "uniform", low = 0.0, high = 1.0 }', 'input = { kind = "gaussian", mean = "zero" }',
     "problem.input: mean: expected an array of real numbers"),
    ('input = { kind = "uniform", low = 0.0, high = 1.0 }', 'input = { kind = "gaussian", mean = [0.0, 1.0] }',
     "problem: input: Gaussian has dimension 2, but widths[0] = 1"),
    ('input = { kind = "uniform", low = 0.0, high = 1.0 }', 'input = { kind = "gaussian", sd = 1.0 }',
     "problem.input.sd: unknown key"),
    ("n = 6", "n = 0", "init.n: must be >= 1"),
    ('kind = "monte_carlo"', 'kind = "mc"', "estimator.kind: expected one of"),
    ("n = 128", 'n = "many"', "estimator.n: expected an integer"),
    ('method = "gd"', 'method = "adam"', "integrator.method: expected one of"),
    ('lr = { schedule = "power", base = 0.05, exponent = 0.1 }', "lr = -1", "integrator.lr: must be > 0, got -1"),
    ('lr = { schedule = "power", base = 0.05, exponent = 0.1 }', 'lr = { schedule = "cosine", base = 1, exponent = 1 }',
     "integrator.lr.schedule: expected \"power\""),
    ("steps = 200", "steps = 2.5", "integrator.steps: expected an integer"),
    ("record_every = 10", "record_every = 10\nmomentum = 0.9", "integrator.momentum: unknown key"),
    ('backend = "cpu"', 'backend = "tpu"', "run.backend: expected"),
    ('dtype = "float64"', 'dtype = "float16"', "run.dtype: expected float32 or float64"),
]


@pytest.mark.parametrize("old, new, message", BAD, ids=[b[2].split(":")[0] for b in BAD])
def test_bad_configs_name_the_key(old, new, message):
    text = (old if not new else GD.replace(old, new)) if old.startswith("[problem]") else GD.replace(old, new or old)
    if old == "bogus = 1":
        text = "bogus = 1\n" + GD
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert message in str(exc.value)


def test_function_target_expression():
    cfg = parse_config(GD.replace('{ kind = "piecewise_linear", knots = [0.0, 0.5, 1.0], values = [0.0, 1.0, 0.0] }',
                                  '{ kind = "function", expr = "sin(3*x)" }'))
    x = np.linspace(0.0, 1.0, 5)[:, None]
    np.testing.assert_allclose(cfg.problem.target(x)[:, 0], np.sin(3 * x[:, 0]))
    with pytest.raises(ConfigError, match="problem.target.expr: cannot be evaluated: NameError"):
        parse_config(GD.replace('{ kind = "piecewise_linear", knots = [0.0, 0.5, 1.0], values = [0.0, 1.0, 0.0] }',
                                '{ kind = "function", expr = "foo(x)" }'))


def test_cli_exit_status_and_info(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GD.replace("lr = { schedule = \"power\", base = 0.05, exponent = 0.1 }", "lr = -1"))
    res = _cli("run", str(bad), "--out", str(tmp_path / "x.zarr"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"{bad}: integrator.lr: must be > 0, got -1"]
    res = _cli("info")
    assert res.returncode == 0 and "reluflow" in res.stdout and "cpu:" in res.stdout and "GPU:" in res.stdout
    res = _cli("--help")
    assert res.returncode == 0 and "run" in res.stdout
    good = tmp_path / "good.toml"
    good.write_text(GD)
    res = _cli("run", str(good), "--out", str(tmp_path / "g.zarr"))
    assert res.returncode == 0 and "results:" in res.stdout and Path(tmp_path / "g.zarr" / "checkpoint.json").exists()


def test_plot_writes_valid_pngs_and_pdfs(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(GD)
    store = tmp_path / "g.zarr"
    assert _cli("run", str(good), "--out", str(store), "--quiet").returncode == 0
    res = _cli("plot", str(store), "--out", str(tmp_path / "plots"))
    assert res.returncode == 0, res.stderr
    files = sorted(Path(p).name for p in res.stdout.split())
    assert files == sorted(f"{s}.{e}" for s in ("risk", "final_risk_hist", "realization") for e in ("png", "pdf"))
    for name in files:
        head = (tmp_path / "plots" / name).read_bytes()[:8]
        assert head.startswith(b"\x89PNG\r\n\x1a\n" if name.endswith("png") else b"%PDF-"), (name, head)
    assert _cli("plot", str(tmp_path / "nothing.zarr")).returncode == 2


# ---- sweeps on dask.distributed ----------------------------------------------------------------------

SWEEP = textwrap.dedent("""
    base = "tiny.toml"
    name = "tiny-sweep"
    [sweep]
    "problem.widths" = [[1, 4, 1], [1, 8, 1]]
    "init.seed" = [0, 1]
""")


def _sweep_files(tmp_path, sweep=SWEEP, base=GD):
    (tmp_path / "tiny.toml").write_text(base)
    f = tmp_path / "sweep.toml"
    f.write_text(sweep)
    return f


def test_sweep_points_equal_single_runs_and_restart_skips(tmp_path):
    pytest.importorskip("distributed")
    from reluflow.experiments import load_sweep, run_sweep

    f = _sweep_files(tmp_path)
    out, failed = run_sweep(f, tmp_path / "sw.zarr", workers=2, quiet=True)
    assert failed == {}
    tree = rf.load(out)
    spec = load_sweep(f)
    assert sorted(tree.children) == [f"point-{i:04d}" for i in range(4)]
    for i, text in enumerate(spec.point_texts):
        ds = tree[f"point-{i:04d}"].to_dataset()
        assert json.loads(tree[f"point-{i:04d}"].attrs["point"]) == spec.points[i]
        assert all(tree[f"point-{i:04d}"].attrs[k] == v for k, v in spec.points[i].items())
        ref = rf.load(run_config(parse_config(text), tmp_path / f"ref{i}.zarr", quiet=True))
        assert ds.risk.values.tobytes() == ref.risk.values.tobytes()
        assert ds.theta.values.tobytes() == ref.theta.values.tobytes()
    stamps = [(out / f"point-{i:04d}" / "checkpoint.json").stat().st_mtime_ns for i in range(4)]
    assert run_sweep(f, out, workers=2, quiet=True)[1] == {}
    assert stamps == [(out / f"point-{i:04d}" / "checkpoint.json").stat().st_mtime_ns for i in range(4)]


def test_sweep_failed_point_is_reported_and_others_finish(tmp_path):
    pytest.importorskip("distributed")
    sweep = SWEEP.replace('"problem.widths" = [[1, 4, 1], [1, 8, 1]]\n"init.seed" = [0, 1]',
                          '"problem.target" = [{ kind = "function", expr = "sin(x)" },\n'
                          '  { kind = "function", expr = "x if x.shape[0] < 10 else nope" }]')
    f = _sweep_files(tmp_path, sweep)
    res = _cli("sweep", str(f), "--out", str(tmp_path / "sw.zarr"), "--workers", "2", timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "point 0001" in res.stdout and "FAILED (NameError" in res.stdout and "point 0000" in res.stdout
    tree = rf.load(tmp_path / "sw.zarr")
    assert tree["point-0000"].attrs["finished"] == 1


def test_sweep_bad_point_names_point_and_key(tmp_path):
    f = _sweep_files(tmp_path, SWEEP.replace("[[1, 4, 1], [1, 8, 1]]", "[[1, 4, 1], [1, 0, 1]]"))
    res = _cli("sweep", str(f), "--out", str(tmp_path / "sw.zarr"))
    assert res.returncode == 2
    assert 'point 2 ({"problem.widths": [1, 0, 1], "init.seed": 0}): problem: widths' in res.stderr


def test_sweep_killed_and_resumed_is_bitwise(tmp_path):
    """SIGKILL the whole sweep (client, scheduler and workers) mid-run, run it again: every point
    equals an uninterrupted sweep's bitwise."""
    pytest.importorskip("distributed")
    big = GD.replace("n = 128", "n = 2048").replace("steps = 200", "steps = 1500")
    f = _sweep_files(tmp_path, base=big)
    killed = tmp_path / "killed.zarr"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "reluflow", "sweep", str(f), "--out", str(killed), "--workers",
                             "2", "--quiet"], env=env, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        cks = [killed / f"point-{i:04d}" / "checkpoint.json" for i in range(4)]
        if sum(json.loads(c.read_text())["records"] for c in cks if c.exists()) >= 60:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed: make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert _cli("sweep", str(f), "--out", str(killed), "--workers", "2", "--quiet", env=env, timeout=300).returncode == 0
    whole = tmp_path / "whole.zarr"
    assert _cli("sweep", str(f), "--out", str(whole), "--workers", "2", "--quiet", env=env, timeout=300).returncode == 0
    a, b = rf.load(killed), rf.load(whole)
    for i in range(4):
        da, db = a[f"point-{i:04d}"].to_dataset(), b[f"point-{i:04d}"].to_dataset()
        for key in ("risk", "energy", "theta", "t", "status"):
            assert da[key].values.tobytes() == db[key].values.tobytes(), (i, key)


def test_sweep_plot_and_final_risks(tmp_path):
    pytest.importorskip("distributed")
    from reluflow.experiments import run_sweep
    from reluflow.experiments.plots import final_risks

    f = _sweep_files(tmp_path)
    out, _ = run_sweep(f, tmp_path / "sw.zarr", workers=2, quiet=True)
    res = _cli("plot", str(out), "--out", str(tmp_path / "plots"), "--threshold", "0.05")
    assert res.returncode == 0, res.stderr
    assert sorted(Path(p).name for p in res.stdout.split()) == ["sweep.pdf", "sweep.png"]
    assert (tmp_path / "plots" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = rf.load(out)["point-0000"].to_dataset()
    exact = final_risks(ds)
    prob = parse_config(ds.attrs["config"]).problem
    np.testing.assert_array_equal(exact, prob.risk(ds.theta.values, rf.Quadrature()))


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "examples" / "configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_example_configs_parse(path):
    """Every config in examples/configs is valid (a sweep: every point)."""
    from reluflow.experiments import load_config, load_sweep

    if "[sweep]" in path.read_text():
        assert len(load_sweep(path).points) >= 2
    else:
        cfg = load_config(path)
        assert cfg.theta0.shape[1] == cfg.problem.num_params


def test_sweep_survives_a_killed_worker(tmp_path):
    """SIGKILL one dask worker mid-sweep: its point is rescheduled (resuming from its checkpoint),
    the sweep finishes, and every point equals an uninterrupted sweep's bitwise."""
    pytest.importorskip("distributed")
    psutil = pytest.importorskip("psutil")
    big = GD.replace("n = 128", "n = 2048").replace("steps = 200", "steps = 1500")
    f = _sweep_files(tmp_path, base=big)
    out = tmp_path / "hurt.zarr"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "reluflow", "sweep", str(f), "--out", str(out), "--workers", "2",
                             "--quiet"], env=env, start_new_session=True)
    try:
        deadline = time.time() + 120
        killed = False
        while time.time() < deadline and proc.poll() is None and not killed:
            cks = [out / f"point-{i:04d}" / "checkpoint.json" for i in range(4)]
            progress = sum(json.loads(c.read_text())["records"] for c in cks if c.exists())
            # the workers are the processes the nannies spawned (multiprocessing's spawn_main); not the
            # resource tracker
            workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if "spawn_main" in " ".join(p.cmdline())]
            if progress >= 20 and len(workers) == 2:
                workers[-1].send_signal(signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        assert killed, "no worker to kill before the sweep finished: make it longer"
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    whole = tmp_path / "whole.zarr"
    assert _cli("sweep", str(f), "--out", str(whole), "--workers", "2", "--quiet", env=env, timeout=300).returncode == 0
    a, b = rf.load(out), rf.load(whole)
    for i in range(4):
        da, db = a[f"point-{i:04d}"].to_dataset(), b[f"point-{i:04d}"].to_dataset()
        assert da.attrs["finished"] == 1
        for key in ("risk", "theta", "status"):
            assert da[key].values.tobytes() == db[key].values.tobytes(), (i, key)


def test_short_points_are_batched(tmp_path):
    from reluflow.experiments import load_sweep
    from reluflow.experiments.sweep import TASK_WORK, _batches

    spec = load_sweep(_sweep_files(tmp_path))
    assert len(spec.works) == 4 and all(0 < w < TASK_WORK / 4 for w in spec.works)
    assert _batches([0, 1, 2, 3], spec.works) == [[0, 1, 2, 3]]     # tiny points: one task
    big = load_sweep(_sweep_files(tmp_path, base=GD.replace("steps = 200", "steps = 2000000")))
    assert _batches([0, 1, 2, 3], big.works) == [[0], [1], [2], [3]]  # long points: alone


@pytest.mark.parametrize("method", ["gd", "dopri5"])
def test_run_save_and_load_round_trip(tmp_path, method):
    """Run.save writes the store layout of `reluflow run`; rf.load reads back every array bitwise."""
    prob = rf.Problem([1, 6, 1], rf.targets.PiecewiseLinear([0.0, 0.5, 1.0], [0.0, 1.0, 0.0]))
    theta = prob.init(4, seed=1)
    if method == "gd":
        run = rf.gradient_descent(prob, theta, lr=0.05, steps=30, estimator=rf.MonteCarlo(64), record_every=10)
    else:
        run = rf.gradient_flow(prob, theta, 0.5, method="dopri5", record_every=0.1, max_steps=40)
    ds = rf.load(run.save(tmp_path / "r.zarr", name="from-python"))
    assert ds.attrs["name"] == "from-python" and ds.attrs["method"] == run.method and ds.attrs["finished"] == 1
    for key in ("risk", "grad_norm", "energy"):
        assert ds[key].values.tobytes() == np.asarray(run.__dict__[key], dtype=np.float64).tobytes(), key
    assert ds.t.values.tobytes() == np.asarray(run.t, dtype=np.float64).tobytes()
    assert ds.theta.values.tobytes() == run.theta.tobytes()
    assert list(ds.status.values) == [str(s) for s in run.status]
    np.testing.assert_array_equal(ds.accepted.values, run.accepted)
    np.testing.assert_array_equal(ds.rejected.values, run.rejected)


def test_save_and_load_refuse_bad_arguments(tmp_path):
    prob = rf.Problem([1, 3, 1], rf.targets.Affine([1.0]))
    run = rf.gradient_descent(prob, prob.init(1), lr=0.01, steps=2, estimator=rf.MonteCarlo(8))
    with pytest.raises(TypeError, match="name: expected a non-empty string"):
        run.save(tmp_path / "a.zarr", name="")
    with pytest.raises(TypeError, match="path: expected a file-system path"):
        run.save(3)
    with pytest.raises(ValueError, match="path: .* is not a reluflow results store"):
        rf.load(tmp_path)


def test_gaussian_input_config():
    text = GD.replace('input = { kind = "uniform", low = 0.0, high = 1.0 }',
                      'input = { kind = "gaussian", mean = 0.5, cov = 0.25 }')
    cfg = parse_config(text)
    g = cfg.problem.input
    assert isinstance(g, rf.dists.Gaussian) and g.dim == 1
    assert g.mean.tolist() == [0.5] and g.cov.tolist() == [[0.25]]
    full = GD.replace("widths = [1, 8, 1]", "widths = [2, 8, 1]").replace(
        'target = { kind = "piecewise_linear", knots = [0.0, 0.5, 1.0], values = [0.0, 1.0, 0.0] }',
        'target = { kind = "affine", A = [[1.0, -1.0]] }').replace(
        'input = { kind = "uniform", low = 0.0, high = 1.0 }',
        'input = { kind = "gaussian", mean = [0.0, 1.0], cov = [[2.0, 0.5], [0.5, 1.0]] }')
    g = parse_config(full).problem.input
    assert g.dim == 2 and g.cov.tolist() == [[2.0, 0.5], [0.5, 1.0]]
    default = GD.replace('input = { kind = "uniform", low = 0.0, high = 1.0 }', 'input = { kind = "gaussian" }')
    assert repr(parse_config(default).problem.input) == "Gaussian(mean=0.0, cov=1.0, dim=1)"
    quad = text.replace('kind = "monte_carlo"\nn = 128\nseed = 1\nresample = true', 'kind = "quadrature"')
    assert 'kind = "quadrature"' in quad
    with pytest.raises(ConfigError) as exc:
        parse_config(quad)
    assert "estimator.kind: Quadrature integrates over a box" in str(exc.value)
