"""Benchmark of exact quadrature and the shallow 1-D sweeps (reluflow.backends.cpu.shallow1d_*).

(a) Exact quadrature of a shallow [1, H, 1] net, H = 10^3 .. 10^6, K = 1: time of the O(H log H) sweep,
    the general partition path where it is affordable, and what Monte-Carlo buys in the same time:
    how many MC samples the dense reference kernel and the point sweep evaluate in the sweep's time,
    and the error of that MC estimate against the exact value (RMS over seeds).
(b) Case E: d = 1, H = 65536, N = 262144, K = 1, fixed points: the point sweep against the dense
    numpy reference, the C++ cpu backend (``reluflow.backends.cpu``, if importable), PyTorch eager
    autograd, ``torch.compile`` and ``jax.jit`` (float64 and float32, benchmarks/_peers_shallow1d.py;
    timed after compilation on a prefix of whole chunks), each if importable. Dense peers are chunked (bounded memory) and run under a time
    budget: when a full run would exceed it, they run on a prefix of the nodes and the full time is
    extrapolated linearly (their cost is linear in N), marked "extrap.".
(c) Deep [1, 128, 128, 1], K = 64: exact quadrature per call with the general (partition) path: the numpy
    reference, the Python loop feeding the C++ dense kernel, and the whole pipeline in C++
    (``_core.quad1d_risk_and_grad``), seconds per call and the ratios.
(d) The point sweep against a vectorized numpy sorted sweep (argsort once, searchsorted, bincount,
    cumsum: benchmarks/_peers_shallow1d.numpy_sorted_sweep): [1, H, 1], H = 1000 and 50000, N = 200000
    weighted points, K = 1 and 2, both best of several calls, in one process.

Prints a table and writes JSON to benchmarks/results/quadrature_<cpu>.json (``--quick``: smaller
sizes, ``quadrature_<cpu>_quick.json``). Run with ``timeout 900 python benchmarks/bench_quadrature.py``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import reluflow as rf
from reluflow.backends import cpu as cpu_backend
from reluflow.backends import reference
from reluflow.quadrature import quadrature_nodes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers_shallow1d as peers  # noqa: E402
from _common import cpu_name, fmt_t, git_commit, slug  # noqa: E402

HERE = Path(__file__).resolve().parent


# ---- utilities ------------------------------------------------------------------------------------


def best_time(fn, min_repeats=3, min_total=0.3, max_repeats=50):
    """Best wall time of fn() over repeats (at least min_repeats, until min_total seconds), and its result."""
    times, out, start = [], None, time.perf_counter()
    while len(times) < max_repeats:
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if len(times) >= min_repeats and time.perf_counter() - start >= min_total:
            break
    return min(times), out


def rel_err(a, b):
    return float(abs(a - b) / abs(b)) if b != 0 else float(abs(a - b))


def grad_err(g, g_ref):
    n = float(np.linalg.norm(g_ref))
    return float(np.linalg.norm(np.asarray(g) - g_ref) / n) if n else float(np.linalg.norm(g))


def fmt_e(e):
    return "-" if e is None else f"{e:.1e}"


# ---- (a) exact shallow quadrature vs Monte-Carlo at equal time -------------------------------------

def shallow_problem(H, out=1):
    target = rf.targets.PiecewiseLinear([0.0, 0.25, 0.5, 1.0], [0.0, 1.0, -0.5, 0.5])
    return rf.Problem([1, H, out], target, rf.dists.Uniform(0.0, 1.0))


def mc_inputs(prob, n, seed):
    nodes = rf.MonteCarlo(n, seed=seed, resample=False).nodes(prob, 0)
    return nodes.x, nodes.w, prob.target_values(nodes)


def samples_at_equal_time(run, t_target, n_probe, n_max):
    """Largest N (<= n_max) with run(N) taking about t_target, from a linear cost model t = t0 + c N
    fitted on two probes; None when even N = 1 takes longer."""
    t1, _ = best_time(lambda: run(1), min_repeats=5, min_total=0.2)
    if t1 >= t_target:
        return None, t1
    n2 = max(2, n_probe)
    t2, _ = best_time(lambda: run(n2), min_repeats=3, min_total=0.2)
    c = max((t2 - t1) / (n2 - 1), 1e-12)
    n = int((t_target - t1) / c) + 1
    return max(1, min(n, n_max)), t1


def bench_exact(Hs, seeds, partition_max_h, log):
    rows = []
    for H in Hs:
        prob = shallow_problem(H)
        theta = prob.init(1, seed=0)
        t_sweep, (r_ex, g_ex) = best_time(lambda: cpu_backend.shallow1d_exact(prob.spec, theta))
        r_ex, g_ex = float(r_ex[0]), g_ex[0]
        row = {"H": H, "K": 1, "sweep_s": t_sweep, "risk_exact": r_ex}
        # the general partition path (Gauss–Legendre on the kink partition, dense kernel): O(H^2)
        if H <= partition_max_h:
            t_part, (r_p, g_p) = best_time(
                lambda: prob.risk_and_grad(theta, rf.Quadrature(), backend="numpy"),
                min_repeats=1, min_total=0.0)
            row.update(partition_s=t_part, partition_risk_rel_diff=rel_err(float(r_p[0]), r_ex),
                       partition_grad_rel_diff=grad_err(g_p[0], g_ex))
        # Monte-Carlo at equal time: dense reference kernel, and the point sweep
        x_big, w_big, y_big = mc_inputs(prob, 1 << 20, seed=12345)

        def dense(n):
            return reference.risk_and_grad(prob.layout, theta, x_big[:n], np.full(n, 1.0 / n), y_big[:n])

        def points(n):
            return cpu_backend.shallow1d_points(prob.layout, theta, x_big[:n, 0], np.full(n, 1.0 / n), y_big[:n])

        for name, run, probe in (("dense", dense, max(1, (1 << 21) // H)), ("points", points, 1 << 16)):
            n, t1 = samples_at_equal_time(run, t_sweep, probe, 1 << 20)
            if n is None:
                row[f"mc_{name}"] = {"samples": 0, "note": f"one sample already takes {t1:.3g} s"}
                continue
            rerr, gerr, times = [], [], []
            for s in seeds:
                x, w, y = mc_inputs(prob, n, seed=s)
                fn = (lambda: reference.risk_and_grad(prob.layout, theta, x, w, y)) if name == "dense" else \
                     (lambda: cpu_backend.shallow1d_points(prob.layout, theta, x[:, 0], w, y))
                t = time.perf_counter()
                r, g = fn()
                times.append(time.perf_counter() - t)
                rerr.append(rel_err(float(r[0]), r_ex))
                gerr.append(grad_err(g[0], g_ex))
            row[f"mc_{name}"] = {"samples": n, "time_s": float(np.median(times)),
                                 "risk_rel_err_rms": float(np.sqrt(np.mean(np.square(rerr)))),
                                 "grad_rel_err_rms": float(np.sqrt(np.mean(np.square(gerr)))),
                                 "seeds": len(seeds)}
        rows.append(row)
        log(f"  H={H}: sweep {fmt_t(t_sweep)}")
    return rows


# ---- (b) case E -----------------------------------------------------------------------------------

def torch_risk_and_grad(torch, theta, x, w, y, H, out, chunk):
    th = torch.tensor(theta[0], dtype=torch.float64, requires_grad=True)
    X = torch.from_numpy(np.ascontiguousarray(x[:, 0]))
    Wt = torch.from_numpy(np.ascontiguousarray(w))
    Y = torch.from_numpy(np.ascontiguousarray(y))
    risk = 0.0
    for s in range(0, X.shape[0], chunk):
        wv, bv = th[:H], th[H:2 * H]
        V, c = th[2 * H:2 * H + out * H].view(out, H), th[2 * H + out * H:]
        z = X[s:s + chunk, None] * wv[None, :] + bv[None, :]
        o = torch.relu(z) @ V.T + c
        r = o - Y[s:s + chunk]
        loss = (Wt[s:s + chunk, None] * r * r).sum()
        loss.backward()
        risk += float(loss.detach())
    return np.array([risk]), th.grad.numpy()[None, :].copy()


def run_with_budget(fn, N, budget, first_frac=256):
    """Time fn(n) on a prefix of n nodes, growing n by 4 until N or until the next step would not fit
    the budget; returns (seconds for all N (measured or extrapolated), n measured, result at n)."""
    n = max(1, N // first_frac)
    spent = 0.0
    while True:
        t = time.perf_counter()
        res = fn(n)
        dt = time.perf_counter() - t
        spent += dt
        if n == N:
            return dt, n, res
        predicted_full = dt * N / n
        if predicted_full <= budget - spent:
            n = N
        elif 4 * dt <= (budget - spent) / 2:
            n = min(N, 4 * n)
        else:
            return predicted_full, n, res


def bench_case_e(H, N, budget, log):
    out = 1
    prob = shallow_problem(H, out)
    theta = prob.init(1, seed=0)
    x, w, y = mc_inputs(prob, N, seed=7)
    t_sweep, (r_sw, g_sw) = best_time(lambda: cpu_backend.shallow1d_points(prob.layout, theta, x[:, 0], w, y))
    res = {"H": H, "N": N, "K": 1, "sweep_s": t_sweep, "peers": {}}
    log(f"  sweep {fmt_t(t_sweep)}")

    def check(name, fn):
        try:
            t_full, n, (r, g) = run_with_budget(fn, N, budget)
        except Exception as exc:  # a peer that fails is reported, not fatal
            res["peers"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"  {name}: failed ({exc})")
            return
        # the same prefix through the sweep, for the accuracy check
        if n == N:
            r_ref, g_ref = r_sw, g_sw
        else:
            r_ref, g_ref = cpu_backend.shallow1d_points(prob.layout, theta, x[:n, 0], w[:n], y[:n])
        res["peers"][name] = {"time_s": t_full, "extrapolated": n < N, "measured_nodes": n,
                              "ratio_vs_sweep": t_full / t_sweep,
                              "risk_rel_diff": rel_err(float(np.asarray(r)[0]), float(r_ref[0])),
                              "grad_rel_diff": grad_err(np.asarray(g)[0], g_ref[0])}
        log(f"  {name}: {fmt_t(t_full)}{' (extrap.)' if n < N else ''}")

    check("numpy dense", lambda n: reference.risk_and_grad(prob.layout, theta, x[:n], w[:n], y[:n]))
    try:
        cpu_backend.risk_and_grad(prob.layout, theta, x[:4], w[:4], y[:4])
    except Exception as exc:
        res["peers"]["cpu backend"] = {"error": f"not available: {type(exc).__name__}: {exc}"}
        log(f"  cpu backend: not available ({exc})")
    else:
        check("cpu backend", lambda n: cpu_backend.risk_and_grad(prob.layout, theta, x[:n], w[:n], y[:n]))
    try:
        import torch  # noqa: PLC0415

        torch.set_num_threads(os.cpu_count() or 1)
        res["torch_version"] = torch.__version__
    except Exception as exc:
        res["peers"]["torch eager"] = {"error": f"not available: {type(exc).__name__}: {exc}"}
        log(f"  torch: not available ({exc})")
    else:
        chunk = max(1, (1 << 22) // H)
        res["torch_chunk"] = chunk
        check("torch eager", lambda n: torch_risk_and_grad(torch, theta, x[:n], w[:n], y[:n], H, out, chunk))
    # compiled peers: fused by inductor / XLA, compiled once per chunk shape; timed (after a warm-up
    # call that compiles) on a prefix of whole chunks and extrapolated linearly
    chunk = max(1, (1 << 22) // H)
    n_meas = min(N, chunk * max(1, min(64, N // chunk)))
    for name, factory in (("torch.compile f64", lambda: peers.torch_compiled(H, out, chunk, "float64")),
                          ("torch.compile f32", lambda: peers.torch_compiled(H, out, chunk, "float32")),
                          ("jax jit f64", lambda: peers.jax_jit(H, out, chunk, "float64")),
                          ("jax jit f32", lambda: peers.jax_jit(H, out, chunk, "float32"))):
        try:
            run = factory()
            t0 = time.perf_counter()
            run(theta, x[:n_meas, 0], w[:n_meas], y[:n_meas])              # compile + run
            compile_s = time.perf_counter() - t0
            t_meas, (r, g) = best_time(lambda: run(theta, x[:n_meas, 0], w[:n_meas], y[:n_meas]),
                                       min_repeats=2, min_total=0.5, max_repeats=5)
        except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, not fatal
            res["peers"][name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            log(f"  {name}: failed ({type(exc).__name__})")
            continue
        r_ref, g_ref = cpu_backend.shallow1d_points(prob.layout, theta, x[:n_meas, 0], w[:n_meas], y[:n_meas])
        t_full = t_meas * N / n_meas
        res["peers"][name] = {"time_s": t_full, "extrapolated": n_meas < N, "measured_nodes": n_meas,
                              "compile_plus_first_s": compile_s, "chunk": chunk,
                              "ratio_vs_sweep": t_full / t_sweep,
                              "risk_rel_diff": rel_err(float(np.asarray(r)[0]), float(r_ref[0])),
                              "grad_rel_diff": grad_err(np.asarray(g)[0], g_ref[0])}
        log(f"  {name}: {fmt_t(t_full)}{' (extrap.)' if n_meas < N else ''}")
    ok = {k: v["time_s"] for k, v in res["peers"].items() if "time_s" in v and k != "cpu backend"}
    if ok:
        best = min(ok, key=ok.get)
        res["best_peer"] = best
        res["ratio_best_peer_vs_sweep"] = ok[best] / t_sweep
    return res


# ---- (c) deep general path ------------------------------------------------------------------------

def bench_deep(widths, K, log):
    """Exact quadrature of K deep nets per call: the numpy partition path (the reference), the same
    Python loop feeding the C++ dense kernel network by network, and the whole pipeline in C++
    (``_core.quad1d_risk_and_grad``: kinks, nodes, target and dense kernel, OpenMP over networks)."""
    prob = rf.Problem(widths, rf.targets.PiecewiseLinear([0.0, 0.25, 0.5, 1.0], [0.0, 1.0, -0.5, 0.5]),
                      rf.dists.Uniform(0.0, 1.0))
    theta = prob.init(K, seed=0)
    est = rf.Quadrature(method="partition")
    t, (r_np, g_np) = best_time(lambda: prob.risk_and_grad(theta, est, backend="numpy"),
                                min_repeats=2, min_total=0.0)
    nodes = [quadrature_nodes(prob, theta[k], est).x.shape[0] for k in range(K)]
    log(f"  {widths} K={K}: numpy partition {fmt_t(t)} per call")
    row = {"widths": list(widths), "K": K, "init": "normal", "seconds_per_call": t, "seconds_per_network": t / K,
           "nodes_per_network_mean": float(np.mean(nodes)), "nodes_per_network_max": int(np.max(nodes))}
    # before the C++ pipeline: the Python loop building each network's nodes, the C++ dense kernel
    t_loop, _ = best_time(lambda: reference.partition_loop(prob.spec, theta, est, True, cpu_backend.risk_and_grad),
                          min_repeats=2, min_total=0.0)
    row["python_loop_cpu_kernel_seconds_per_call"] = t_loop
    log(f"  python loop + C++ dense kernel {fmt_t(t_loop)} per call")
    t_cpp, (r_c, g_c) = best_time(lambda: prob.risk_and_grad(theta, est, backend="cpu"))
    row["cpp"] = {"seconds_per_call": t_cpp, "seconds_per_network": t_cpp / K, "speedup_vs_numpy": t / t_cpp,
                  "speedup_vs_python_loop_cpu_kernel": t_loop / t_cpp,
                  "risk_rel_diff_max": max(rel_err(float(a), float(b)) for a, b in zip(r_c, r_np)),
                  "grad_rel_diff_max": max(grad_err(g_c[k], g_np[k]) for k in range(K))}
    log(f"  C++ pipeline {fmt_t(t_cpp)} per call ({t / t_cpp:.1f}x numpy)")
    return row


# ---- (d) point sweep vs a numpy sorted sweep ----------------------------------------------------------

def bench_numpy_sweep(cases, N, log, rounds=3):
    rows = []
    for H, K in cases:
        prob = shallow_problem(H)
        rng = np.random.default_rng([H, K, 5])
        theta = rng.normal(size=(K, prob.num_params))
        x = rng.uniform(-1.0, 1.0, N)
        w = rng.uniform(0.0, 1.0, N) / N
        y = np.sin(3.0 * x)
        # alternating rounds, the best of each: a burst of load on this shared host then hits both; each
        # timing starts after a pause, so that the other side's idle threads have stopped spinning
        # (OpenBLAS's pool, woken by the numpy sweep's np.dot, spins for ~0.1 s and took a core from
        # the point sweep's two threads: 8 ms instead of 4 at H = 50000)
        t_c = t_n = np.inf
        for _ in range(rounds):
            time.sleep(0.25)
            t, (r_c, g_c) = best_time(lambda: cpu_backend.shallow1d_points(prob.layout, theta, x, w, y[:, None]),
                                      min_repeats=7)
            t_c = min(t_c, t)
            time.sleep(0.25)
            t, (r_n, g_n) = best_time(lambda: peers.numpy_sorted_sweep(theta, x, w, y), min_repeats=7)
            t_n = min(t_n, t)
        row = {"H": H, "K": K, "N": N, "sweep_s": t_c, "numpy_sweep_s": t_n, "ratio": t_n / t_c,
               "risk_rel_diff": float(np.max(np.abs(r_c - r_n) / np.abs(r_n))), "grad_rel_diff": grad_err(g_c, g_n)}
        log(f"  H={H} K={K}: point sweep {fmt_t(t_c)}, numpy sweep {fmt_t(t_n)}, {row['ratio']:.1f}x")
        rows.append(row)
    return rows


# ---- main -----------------------------------------------------------------------------------------

def print_numpy_sweep(rows):
    print()
    print(f"(d) point sweep vs numpy sorted sweep: [1, H, 1], N = {rows[0]['N']} weighted points")
    print(f"{'H':>6} | {'K':>2} | {'point sweep':>11} | {'numpy sweep':>11} | {'ratio':>6} | {'risk diff':>9} | "
          f"{'grad diff':>9}")
    for r in rows:
        print(f"{r['H']:>6} | {r['K']:>2} | {fmt_t(r['sweep_s']):>11} | {fmt_t(r['numpy_sweep_s']):>11} | "
              f"{r['ratio']:>6.1f} | {fmt_e(r['risk_rel_diff']):>9} | {fmt_e(r['grad_rel_diff']):>9}")


def print_tables(result):
    m = result["machine"]
    print()
    print(f"{m['cpu']}, {m['cores']} cores, {m['omp_threads']} OpenMP threads, SIMD {m['simd']}; load average "
          f"{result['loadavg_start'][0]:.1f} at start, {result['loadavg_end'][0]:.1f} at end (other jobs share "
          f"the machine: timings of the multi-threaded peers vary with it)")
    print("(a) exact quadrature, shallow [1, H, 1], K = 1, U[0,1], piecewise-linear target")
    print(f"{'H':>8} | {'sweep':>9} | {'partition':>9} | {'MC dense: N':>11} {'risk err':>8} {'grad err':>8}"
          f" | {'MC points: N':>12} {'risk err':>8} {'grad err':>8}")
    for row in result["exact_shallow"]:
        cells = []
        for name in ("mc_dense", "mc_points"):
            mc = row[name]
            if mc["samples"] == 0:
                cells.append((0, None, None))
            else:
                cells.append((mc["samples"], mc["risk_rel_err_rms"], mc["grad_rel_err_rms"]))
        print(f"{row['H']:>8} | {fmt_t(row['sweep_s']):>9} | {fmt_t(row.get('partition_s')):>9} | "
              f"{cells[0][0]:>11} {fmt_e(cells[0][1]):>8} {fmt_e(cells[0][2]):>8} | "
              f"{cells[1][0]:>12} {fmt_e(cells[1][1]):>8} {fmt_e(cells[1][2]):>8}")
    if any(r[k]["samples"] == 0 for r in result["exact_shallow"] for k in ("mc_dense", "mc_points")):
        print("  N = 0: one sample through that kernel already takes longer than the exact sweep (the point "
              "sweep sorts the same kinks)")
    print("  MC errors: RMS over seeds of |risk - exact| / exact and |grad - exact| / |exact|")
    print("  sweep vs partition (where run): " + ", ".join(
        f"H={r['H']}: risk {fmt_e(r['partition_risk_rel_diff'])}, grad {fmt_e(r['partition_grad_rel_diff'])}"
        for r in result["exact_shallow"] if "partition_s" in r))
    e = result["case_E"]
    print()
    print(f"(b) case E: d = 1, H = {e['H']}, N = {e['N']}, K = 1, fixed points")
    print(f"{'method':>14} | {'time':>10} | {'ratio':>9} | {'risk diff':>9} | {'grad diff':>9}")
    print(f"{'point sweep':>14} | {fmt_t(e['sweep_s']):>10} | {'1':>9} | {'-':>9} | {'-':>9}")
    for name, p in e["peers"].items():
        if "error" in p:
            print(f"{name:>14} | {p['error']}")
            continue
        t = fmt_t(p["time_s"]) + ("*" if p["extrapolated"] else "")
        print(f"{name:>14} | {t:>10} | {p['ratio_vs_sweep']:>9.0f} | {fmt_e(p['risk_rel_diff']):>9} | "
              f"{fmt_e(p['grad_rel_diff']):>9}")
    if "best_peer" in e:
        print(f"  best peer (not counting our own dense cpu backend): {e['best_peer']}, "
              f"{e['ratio_best_peer_vs_sweep']:.0f}x the point sweep's time")
    if any(p.get("extrapolated") for p in e["peers"].values()):
        print("  * extrapolated linearly from a prefix of the nodes (time budget); diffs on that prefix")
    d = result["deep_general"]
    print()
    print(f"(c) deep {d['widths']}, K = {d['K']}, exact quadrature per call, general partition path, "
          f"{d['nodes_per_network_mean']:.0f} nodes per network on average")
    print(f"{'path':>30} | {'per call':>9} | {'per network':>11} | {'ratio':>6}")
    print(f"{'numpy partition':>30} | {fmt_t(d['seconds_per_call']):>9} | {fmt_t(d['seconds_per_network']):>11} | "
          f"{'1':>6}")
    if "python_loop_cpu_kernel_seconds_per_call" in d:
        t_loop = d["python_loop_cpu_kernel_seconds_per_call"]
        print(f"{'Python loop + C++ dense kernel':>30} | {fmt_t(t_loop):>9} | {fmt_t(t_loop / d['K']):>11} | "
              f"{d['seconds_per_call'] / t_loop:>6.1f}")
    c = d.get("cpp", {})
    if "error" in c:
        print(f"{'C++ pipeline':>30} | {c['error']}")
    elif c:
        print(f"{'C++ pipeline (quad1d)':>30} | {fmt_t(c['seconds_per_call']):>9} | "
              f"{fmt_t(c['seconds_per_network']):>11} | {c['speedup_vs_numpy']:>6.1f}")
        print(f"  ratio = numpy time / time; C++ vs numpy: risk {fmt_e(c['risk_rel_diff_max'])}, "
              f"grad {fmt_e(c['grad_rel_diff_max'])} (max relative difference over the networks)")
    if "numpy_sweep" in result:
        print_numpy_sweep(result["numpy_sweep"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, a minute or so")
    ap.add_argument("--budget", type=float, default=None, help="seconds per dense peer in case E")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    ap.add_argument("--only-numpy-sweep", action="store_true", help="run only (d), the point sweep against "
                    "the numpy sorted sweep (seconds)")
    args = ap.parse_args(argv)
    if not rf.backends()["cpu"].available:
        sys.exit(f"the cpu backend is not available: {rf.backends()['cpu'].detail}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.quick:
        Hs, seeds, part_max, (eH, eN), budget, (dK) = [10**3, 10**4, 10**5], [0, 1, 2], 10**3, (4096, 16384), 10.0, 8
    else:
        Hs, seeds, part_max, (eH, eN), budget, (dK) = [10**3, 10**4, 10**5, 10**6], [0, 1, 2, 3, 4], 10**4, \
            (65536, 262144), 120.0, 64
    if args.budget is not None:
        budget = args.budget
    cpu = cpu_name()
    from reluflow import _core  # noqa: PLC0415

    commit = git_commit()
    result = {"machine": {"cpu": cpu, "cores": os.cpu_count(), "omp_threads": _core.max_threads(),
                          "simd": _core.simd_path(), "python": platform.python_version(),
                          "numpy": np.__version__},
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit,
              "quick": args.quick, "loadavg_start": list(os.getloadavg())}
    sweep_cases, sweep_n = ([(1000, 1), (1000, 2)], 20_000) if args.quick else \
        ([(1000, 1), (1000, 2), (50000, 1), (50000, 2)], 200_000)
    if args.only_numpy_sweep:
        result["numpy_sweep"] = bench_numpy_sweep(sweep_cases, sweep_n, log)
        print_numpy_sweep(result["numpy_sweep"])
        out = args.out or HERE / "results" / f"point_sweep_vs_numpy_{slug(cpu)}{'_quick' if args.quick else ''}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nwrote {out}")
        return
    log("(a) exact shallow quadrature")
    result["exact_shallow"] = bench_exact(Hs, seeds, part_max, log)
    log("(b) case E")
    result["case_E"] = bench_case_e(eH, eN, budget, log)
    log("(c) deep general path")
    result["deep_general"] = bench_deep([1, 128, 128, 1], dK, log)
    log("(d) point sweep vs numpy sorted sweep")
    result["numpy_sweep"] = bench_numpy_sweep(sweep_cases, sweep_n, log)
    result["loadavg_end"] = list(os.getloadavg())
    print_tables(result)
    out = args.out or HERE / "results" / f"quadrature_{slug(cpu)}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
