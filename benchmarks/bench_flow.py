"""Benchmark of SGD on shallow 1-D nets: reluflow's gradient descent against the loops a skilled
PyTorch / JAX user writes, and gradient descent with exact quadrature.

(a) SGD for [1, H, 1], H in {10, 100, 1000}, K = 300 standard-normal initializations (``prob.init``),
    1024 fresh U[0,1] samples per step, target sin(3x), 10^4 steps with lr_n = 0.001 (n+1)^-0.1, float64.
    reluflow is measured twice (float64, the default of ``prob.init``):
      "rf C++ loop"  - target = a native PiecewisePolynomial (cubic Hermite interpolant of sin(3x),
                       128 pieces, max error < 1e-9): the whole loop (sampling, target, kernel,
                       update) runs in C++ (``run.info["loop"] == "C++"``);
      "rf Function"  - target = ``targets.Function(lambda x: np.sin(3 x))``: not native, so the C++
                       loop calls it back once per step (GIL taken) on that step's 1024 samples;
    and the C++ loop once more in float32 (the peers' dtype; shorter run, for steps/s).
    Peers (float32, their default; batched over the K networks, x shared across networks as in reluflow):
      torch autograd       - eager forward with broadcasting, loss.backward(), in-place SGD under no_grad;
      torch hand bwd       - eager, hand-written backward (one bmm for the (w, b) moments, v from them);
      torch.compile        - the hand-written functional step compiled by inductor (skipped when the
                             compile takes > --compile-limit s; run in a subprocess to enforce it);
      jax lax.scan         - jit-compiled value_and_grad step inside lax.scan over chunks of steps.
    The peers' step cost is constant, so they run a fixed number of steps after warm-up (fewer for
    H = 1000, under a time budget) and 10^4 steps are extrapolated. reluflow runs the full 10^4 steps
    where affordable, otherwise fewer steps and extrapolates (marked "*").
    Correctness (statistical: different random samples): the exact risk (Quadrature against the
    native target) of the K final networks of reluflow and of each peer after the same number of steps,
    medians compared; and deterministically: the hand-written torch step in float64, fed reluflow's own
    samples, against the C++ loop (16 networks, 10 steps). Histogram of reluflow's final exact risks per H -> results/flow_hist.png.
(b) Gradient descent with exact quadrature: [1, 256, 1], K = 256, PiecewiseLinear target, U[0,1],
    ``rf.Quadrature()``: steps/s of ``rf.gradient_descent(..., backend="cpu")`` (the C++ loop around
    the exact O(H log H) sweep).

Prints tables and writes JSON to benchmarks/results/flow_<cpu>.json (``--quick``: few steps,
``flow_<cpu>_quick.json``). Run with ``timeout 900 python benchmarks/bench_flow.py``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import reluflow as rf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, fmt_t, git_commit, slug  # noqa: E402

HERE = Path(__file__).resolve().parent
N_SAMPLES = 1024
LR0, LR_POW = 0.001, -0.1


def lr_at(n):
    return LR0 * (n + 1) ** LR_POW


# ---- utilities ------------------------------------------------------------------------------------


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sin3(x):
    return np.sin(3.0 * x)


def sin3_hermite(pieces=128):
    """Cubic Hermite interpolant of sin(3x) on [0, 1] as a native PiecewisePolynomial (local powers
    (x - breaks[i])^p), and its max error on a fine grid."""
    br = np.linspace(0.0, 1.0, pieces + 1)
    h = np.diff(br)
    f0, f1 = np.sin(3 * br[:-1]), np.sin(3 * br[1:])
    d0, d1 = 3 * np.cos(3 * br[:-1]), 3 * np.cos(3 * br[1:])
    c2 = (3 * (f1 - f0) / h - 2 * d0 - d1) / h
    c3 = (d0 + d1 - 2 * (f1 - f0) / h) / h**2
    tgt = rf.targets.PiecewisePolynomial(br, np.stack([f0, d0, c2, c3], axis=1))
    xs = np.linspace(0.0, 1.0, 200001)[:, None]
    err = float(np.max(np.abs(tgt(xs)[:, 0] - sin3(xs[:, 0]))))
    return tgt, err


def split_theta(theta, H):
    """reluflow's flat [1, H, 1] layout: W1 (H x 1), b1 (H), W2 (1 x H), b2 (1)."""
    return theta[:, :H], theta[:, H:2 * H], theta[:, 2 * H:3 * H], theta[:, 3 * H]


def join_theta(W, b, v, c):
    return np.concatenate([W, b, v, np.asarray(c).reshape(-1, 1)], axis=1).astype(np.float64)


# ---- peers ----------------------------------------------------------------------------------------
# Every peer: peer(theta0 (K, P) float64, H, warm, timed, seed, threads) -> dict with "s_per_step" (median
# over timed segments), "s_per_step_mean", "steps_total" (warm + timed), "theta" (K, P) after steps_total.

def segments(n0, timed, unit=1, nseg=10):
    """Split the timed steps [n0, n0 + timed) into about nseg segments of whole units (JAX chunks)."""
    units = timed // unit
    per = max(1, units // nseg)
    bounds, u = [], 0
    while u < units:
        v = min(units, u + per)
        bounds.append((n0 + u * unit, n0 + v * unit))
        u = v
    return bounds


def timed_run(run, warm, timed, unit=1):
    """run(n0, n1) advances the peer from step n0 to n1 and blocks until done. Warm-up [0, warm), then
    the timed steps in segments; returns (median s/step over segments, mean s/step, segment times)."""
    run(0, warm)
    seg_t = []
    for n0, n1 in segments(warm, timed, unit):
        t = time.perf_counter()
        run(n0, n1)
        seg_t.append((time.perf_counter() - t) / (n1 - n0))
    total = sum(seg_t[i] * (n1 - n0) for i, (n0, n1) in enumerate(segments(warm, timed, unit)))
    return float(np.median(seg_t)), total / timed, seg_t


def torch_setup(threads):
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    return torch


def torch_params(torch, theta0, H, requires_grad=False):
    return [torch.tensor(np.ascontiguousarray(a), dtype=torch.float32).requires_grad_(requires_grad)
            for a in split_theta(theta0, H)]


def peer_torch_autograd(theta0, H, warm, timed, seed, threads):
    torch = torch_setup(threads)
    torch.manual_seed(seed)
    W, b, v, c = torch_params(torch, theta0, H, requires_grad=True)
    params = (W, b, v, c)

    def step(n):
        x = torch.rand(N_SAMPLES)
        y = torch.sin(3 * x)
        z = x[None, :, None] * W[:, None, :] + b[:, None, :]                 # (K, N, H)
        out = torch.bmm(torch.relu(z), v[:, :, None]).squeeze(-1) + c[:, None]  # (K, N)
        loss = ((out - y) ** 2).mean(dim=1)                                  # (K,) per-network risk
        loss.sum().backward()                                                # independent gradients
        lr = lr_at(n)
        with torch.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
                p.grad = None
        return loss

    def run(n0, n1):
        for n in range(n0, n1):
            step(n)

    med, mean, seg = timed_run(run, warm, timed)
    with torch.no_grad():
        theta = join_theta(*(p.numpy() for p in params))
    return {"s_per_step": med, "s_per_step_mean": mean, "s_per_step_best": min(seg), "segments_s_per_step": seg,
            "steps_total": warm + timed, "theta": theta}


def torch_hand_step(torch, W, b, v, c, x, lr):
    """One SGD step with a hand-written backward, functional (for torch.compile too).

    With g_j = 2 (N(x_j) - y_j) / n and the mask M_ji = [z_ji > 0]:
    dL/db_i = v_i sum_j g_j M_ji, dL/dW_i = v_i sum_j g_j x_j M_ji (one bmm of (g, g x) with M),
    dL/dv_i = sum_j g_j relu(z_ji) = W_i (sum_j g_j x_j M_ji) + b_i (sum_j g_j M_ji), dL/dc = sum_j g_j.
    """
    y = torch.sin(3 * x)
    z = torch.addcmul(b[:, None, :], x[None, :, None], W[:, None, :])        # (K, N, H)
    out = torch.bmm(torch.relu(z), v[:, :, None]).squeeze(-1) + c[:, None]  # (K, N)
    r = out - y
    loss = (r * r).mean(dim=1)
    g = r * (2.0 / x.shape[0])                                                # (K, N)
    gx = torch.stack([g, g * x], dim=1)                                       # (K, 2, N)
    U = torch.bmm(gx, (z > 0).to(z.dtype))                                    # (K, 2, H)
    gb, gW = v * U[:, 0], v * U[:, 1]
    gv = W * U[:, 1] + b * U[:, 0]
    gc = g.sum(dim=1)
    return W - lr * gW, b - lr * gb, v - lr * gv, c - lr * gc, loss


def jax_step_fn(jax, jnp):
    """step(params, x, lr) -> (params', loss (K,)): jax.value_and_grad of the summed per-network risk."""

    def loss_fn(params, x):
        W, b, v, c = params
        z = x[None, :, None] * W[:, None, :] + b[:, None, :]
        out = jnp.einsum("knh,kh->kn", jax.nn.relu(z), v) + c[:, None]
        per_net = jnp.mean((out - jnp.sin(3 * x)) ** 2, axis=1)
        return per_net.sum(), per_net

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(params, x, lr):
        (_, per_net), g = grad_fn(params, x)
        return tuple(p - lr * gp for p, gp in zip(params, g)), per_net

    return step


def peer_torch_hand(theta0, H, warm, timed, seed, threads):
    torch = torch_setup(threads)
    torch.manual_seed(seed)
    state = torch_params(torch, theta0, H)

    def run(n0, n1):
        with torch.no_grad():
            for n in range(n0, n1):
                x = torch.rand(N_SAMPLES)
                state[:] = torch_hand_step(torch, *state, x, lr_at(n))[:4]

    med, mean, seg = timed_run(run, warm, timed)
    return {"s_per_step": med, "s_per_step_mean": mean, "s_per_step_best": min(seg), "segments_s_per_step": seg,
            "steps_total": warm + timed, "theta": join_theta(*(p.numpy() for p in state))}


def peer_torch_compile(theta0, H, warm, timed, seed, threads):
    """torch.compile (inductor) of the functional hand-written step; lr passed as a 0-d tensor so that
    the step is compiled once. Meant to run in a subprocess (the parent enforces the compile limit)."""
    torch = torch_setup(threads)
    torch.manual_seed(seed)
    state = torch_params(torch, theta0, H)
    step = torch.compile(lambda W, b, v, c, x, lr: torch_hand_step(torch, W, b, v, c, x, lr), dynamic=False)
    lr_t = torch.empty((), dtype=torch.float32)

    def run(n0, n1):
        with torch.no_grad():
            for n in range(n0, n1):
                x = torch.rand(N_SAMPLES)
                lr_t.fill_(lr_at(n))
                state[:] = step(*state, x, lr_t)[:4]

    t = time.perf_counter()
    run(0, 1)                       # compile + the first step
    compile_s = time.perf_counter() - t
    med, mean, seg = timed_run(lambda n0, n1: run(n0 + 1, n1 + 1), warm - 1, timed)
    return {"s_per_step": med, "s_per_step_mean": mean, "s_per_step_best": min(seg), "segments_s_per_step": seg,
            "steps_total": warm + timed, "compile_s": compile_s,
            "theta": join_theta(*(p.numpy() for p in state))}


def peer_jax_scan(theta0, H, warm, timed, seed, threads, chunk):
    """jit(lax.scan) over ``chunk`` steps; warm is one chunk (compile + run), timed a whole number of
    chunks. Samples: jax.random.uniform(fold_in(key, n))."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    key0 = jax.random.PRNGKey(seed)

    step = jax_step_fn(jax, jnp)

    def body(params, n):
        x = jax.random.uniform(jax.random.fold_in(key0, n), (N_SAMPLES,), dtype=jnp.float32)
        params, per_net = step(params, x, LR0 * (n.astype(jnp.float32) + 1.0) ** LR_POW)
        return params, per_net[0]

    @jax.jit
    def run_chunk(params, n0):
        return jax.lax.scan(body, params, n0 + jnp.arange(chunk, dtype=jnp.int32))

    state = [tuple(jnp.asarray(a, dtype=jnp.float32) for a in split_theta(theta0, H))]

    def run(n0, n1):
        for n in range(n0, n1, chunk):
            state[0], _ = run_chunk(state[0], n)
        jax.block_until_ready(state[0])

    t = time.perf_counter()
    run(0, chunk)                   # compile + the warm-up chunk
    compile_s = time.perf_counter() - t
    timed = max(chunk, timed // chunk * chunk)
    med, mean, seg = timed_run(lambda n0, n1: run(n0 + chunk, n1 + chunk), 0, timed, unit=chunk)
    return {"s_per_step": med, "s_per_step_mean": mean, "s_per_step_best": min(seg), "segments_s_per_step": seg,
            "steps_total": chunk + timed, "compile_plus_chunk_s": compile_s, "chunk": chunk,
            "theta": join_theta(*(np.asarray(p) for p in state[0]))}


def run_peer_subprocess(name, theta0, H, warm, timed, seed, threads, limit_s, extra=None):
    """Runs a peer in a child process (this script, --_peer) under a wall-clock limit; None on timeout."""
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "theta0.npy", theta0)
        spec = {"name": name, "H": H, "warm": warm, "timed": timed, "seed": seed, "threads": threads,
                "extra": extra or {}, "dir": d}
        try:
            # a fresh inductor cache: the compile time is that of a first run
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(Path(d) / "inductor"))
            proc = subprocess.run([sys.executable, __file__, "--_peer", json.dumps(spec)], capture_output=True,
                                  text=True, timeout=limit_s, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"skipped: did not finish within {limit_s:.0f} s (compile + warm-up + timed steps)"}
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"failed (rc {proc.returncode}): {' | '.join(tail)}"}
        res = json.loads(Path(d, "result.json").read_text())
        res["theta"] = np.load(Path(d) / "theta.npy")
        return res


def peer_child(spec_json):
    spec = json.loads(spec_json)
    theta0 = np.load(Path(spec["dir"]) / "theta0.npy")
    fn = {"torch.compile": peer_torch_compile}[spec["name"]]
    res = fn(theta0, spec["H"], spec["warm"], spec["timed"], spec["seed"], spec["threads"], **spec["extra"])
    np.save(Path(spec["dir"]) / "theta.npy", res.pop("theta"))
    Path(spec["dir"], "result.json").write_text(json.dumps(res))


# ---- reluflow -------------------------------------------------------------------------------------

def rf_sgd(prob, theta0, steps, start_step=0, seed=1, record_every=None):
    return rf.gradient_descent(prob, theta0, lr=lambda n: LR0 * (n + 1) ** LR_POW, steps=steps,
                               estimator=rf.MonteCarlo(N_SAMPLES, seed=seed, resample=True),
                               record_every=record_every or max(1, steps), backend="cpu",
                               start_step=start_step, progress=False)


def same_samples_check(prob, theta0, H, seed, threads, K=16, steps=10):
    """Deterministic check: the hand-written torch step in float64, fed reluflow's own samples of every
    step (``Problem.nodes``, bitwise those of the C++ loop), against reluflow's C++ loop on K networks."""
    try:
        torch = torch_setup(threads)
    except Exception as exc:  # noqa: BLE001
        return {"error": f"torch not available: {exc}"}
    run = rf_sgd(prob, theta0[:K], steps, seed=seed)
    state = [torch.tensor(np.ascontiguousarray(a), dtype=torch.float64) for a in split_theta(theta0[:K], H)]
    est = rf.MonteCarlo(N_SAMPLES, seed=seed, resample=True)
    with torch.no_grad():
        for n in range(steps):
            x = torch.from_numpy(np.ascontiguousarray(prob.nodes(est, n, "cpu").x[:, 0]))
            state[:] = torch_hand_step(torch, *state, x, lr_at(n))[:4]
    theta_t = join_theta(*(p.numpy() for p in state))
    diff = float(np.max(np.abs(theta_t - run.theta)) / np.max(np.abs(run.theta)))
    return {"K": K, "steps": steps, "loop": run.info.get("loop", "Python"), "max_rel_diff_theta": diff,
            "note": "torch float64 with sin(3x); reluflow with the Hermite target (error < 1e-9)"}


def exact_risk(prob_native, theta):
    """Exact risk (Quadrature) against the native Hermite target (within 1e-9 of sin(3x))."""
    return prob_native.risk(np.ascontiguousarray(theta, dtype=np.float64), rf.Quadrature(), backend="cpu")


def py_driver_kernel(prob, theta0):
    """Which C++ kernel a step uses (the planner's route, shared by the C++ loop)."""
    route = prob.plan(rf.MonteCarlo(N_SAMPLES, seed=1), "cpu", theta0).route
    return "point sweep" if route == "point_sweep" else "dense SIMD"


def bench_reluflow(prob, theta0, steps_target, budget, steps_cmp, seed):
    """SGD with reluflow in resumed segments (``start_step``: bitwise the same as one run): first
    ``steps_cmp`` steps (to compare with the peers), then segments of ~2 s up to ``steps_target`` steps
    or until the next segment would not fit ``budget`` seconds. Time per step: the median over the
    segments (robust to other jobs on the machine) and the mean (total wall time / steps)."""
    t = time.perf_counter()
    run = rf_sgd(prob, theta0, steps_cmp, seed=seed)
    first = time.perf_counter() - t
    loops = {run.info.get("loop", "Python")}
    theta_cmp = theta = run.theta.copy()
    diverged = run.diverged.copy()
    per = first / steps_cmp
    seg = int(min(1000, max(10, 2.0 / per)))
    seg = max(10, seg // 10 * 10)
    done, total, seg_t = steps_cmp, first, []
    while done < steps_target:
        n = min(seg, steps_target - done)
        if total + n * (np.median(seg_t) if seg_t else per) > budget:
            break
        t = time.perf_counter()
        run = rf_sgd(prob, theta, n, start_step=done, seed=seed)
        dt = time.perf_counter() - t
        total += dt
        seg_t.append(dt / n)
        theta = run.theta
        diverged |= run.diverged
        loops.add(run.info.get("loop", "Python"))
        done += n
    med = float(np.median(seg_t)) if seg_t else per
    return {"loop": "/".join(sorted(loops)), "steps": done, "seconds": total, "s_per_step": med,
            "s_per_step_mean": total / done, "s_per_step_best": min(seg_t) if seg_t else per,
            "segment_steps": seg, "segments_s_per_step": seg_t,
            "steps_per_s": 1.0 / med, "extrapolated": done < steps_target,
            "time_for_target_steps_s": med * steps_target, "diverged": int(diverged.sum()),
            "theta_cmp": theta_cmp, "theta_final": theta}


# ---- (b) GD with exact quadrature -----------------------------------------------------------------

def bench_quadrature_gd(H, K, steps, log):
    prob = rf.Problem([1, H, 1], rf.targets.PiecewiseLinear([0.0, 0.25, 0.5, 1.0], [0.0, 1.0, -0.5, 0.5]),
                      rf.dists.Uniform(0.0, 1.0))
    theta0 = prob.init(K, seed=0)
    rf.gradient_descent(prob, theta0, lr=0.01, steps=2, estimator=rf.Quadrature(), backend="cpu", progress=False)
    t = time.perf_counter()
    run = rf.gradient_descent(prob, theta0, lr=lambda n: LR0 * (n + 1) ** LR_POW, steps=steps,
                              estimator=rf.Quadrature(), record_every=steps, backend="cpu", progress=False)
    dt = time.perf_counter() - t
    t = time.perf_counter()
    prob.risk_and_grad(theta0, rf.Quadrature(), backend="cpu")
    call = time.perf_counter() - t
    res = {"widths": [1, H, 1], "K": K, "steps": steps, "seconds": dt, "steps_per_s": steps / dt,
           "loop": run.info.get("loop", "Python"), "risk_and_grad_call_s": call,
           "median_risk_start": float(np.median(run.risk[0])), "median_risk_end": float(np.median(run.risk[-1]))}
    log(f"  quadrature GD: {res['steps_per_s']:.1f} steps/s ({res['loop']} loop)")
    return res


# ---- main -----------------------------------------------------------------------------------------

def print_tables(result):
    m = result["machine"]
    print()
    print(f"machine: {m['cpu']}, {m['cores']} cores; rf.backends()['cpu']: {m['rf_cpu_backend']}; torch "
          f"{m.get('torch', '-')} ({m['torch_threads']} threads), jax {m.get('jax', '-')}; load average "
          f"{result['loadavg_start'][0]:.1f} at start, {result['loadavg_end'][0]:.1f} at end")
    s = result["sgd"]
    print(f"(a) SGD [1, H, 1], K = {s['K']} inits, {N_SAMPLES} fresh U[0,1] samples/step, target sin(3x), "
          f"lr = 0.001 (n+1)^-0.1, {s['steps_target']} steps")
    print(f"    native target: cubic Hermite PiecewisePolynomial of sin(3x), {s['hermite_pieces']} pieces, "
          f"max error {s['hermite_max_err']:.1e}")
    tcol = f"time {s['steps_target']} st."
    print(f"{'H':>5} | {'implementation':<26} | {'dtype':<7} | {'steps/s':>9} | {'time/step':>9} | "
          f"{'best/step':>9} | {'mean/step':>9} | {tcol:>13} | {'steps run':>9} | {'rf C++ / it':>11} | "
          f"{'median exact risk':>17}")
    for row in s["rows"]:
        H = row["H"]
        first = True
        entries = [("rf C++ loop (native tgt)", row["rf_native"], "float64"),
                   ("rf Function (callback)", row["rf_function"], "float64"),
                   ("rf C++ loop (native tgt)", row["rf_native_f32"], "float32")]
        entries += [(name, p, "float32") for name, p in row["peers"].items()]
        for name, e, dt in entries:
            h = f"{H:>5}" if first else " " * 5
            first = False
            if "error" in e:
                print(f"{h} | {name:<26} | {dt:<7} | {e['error']}")
                continue
            star = "*" if e.get("extrapolated") else ""
            ratio = row["rf_native"]["steps_per_s"] / e["steps_per_s"]
            med = e.get("median_exact_risk_cmp")
            print(f"{h} | {name:<26} | {dt:<7} | {e['steps_per_s']:>9.1f} | {fmt_t(e['s_per_step']):>9} | "
                  f"{fmt_t(e['s_per_step_best']):>9} | {fmt_t(e['s_per_step_mean']):>9} | "
                  f"{fmt_t(e['time_for_target_steps_s']) + star:>13} | {e['steps']:>9} | {ratio:>11.2f} | "
                  f"{'-' if med is None else f'{med:.4f}':>17}")
        print(f"{'':>5}   best peer: {row['best_peer']}, reluflow C++ loop / best peer = "
              f"{row['ratio_vs_best_peer']:.2f}x (target >= 50x; on best segments: "
              f"{row['ratio_vs_best_peer_bestseg']:.2f}x); Function target / best peer = "
              f"{row['ratio_py_driver_vs_best_peer']:.2f}x; C++ loop float32 / best peer = "
              f"{row['ratio_f32_vs_best_peer']:.2f}x; median exact risk after {row['steps_cmp']} steps "
              f"(last column; {row['median_exact_risk_init']:.4g} at init); rf final "
              f"({row['rf_native']['steps']} steps): median "
              f"{row['rf_final_exact_risk_median']:.4f}, diverged {row['rf_native']['diverged']}; load average "
              f"{row['loadavg_end'][0]:.1f}")
        print(f"{'':>5}   kernel per step: {row['py_driver_kernel']}; |risk(Function) - "
              f"risk(native)| after {row['steps_cmp']} steps: max {row['rf_function_vs_native_max_risk_diff']:.1e}")
        ss = row["same_samples_check"]
        print(f"{'':>5}   same samples (torch float64 hand-written step fed reluflow's samples, K = "
              f"{ss.get('K')}, {ss.get('steps')} steps): "
              + (ss["error"] if "error" in ss else f"max |dtheta| / max |theta| = {ss['max_rel_diff_theta']:.1e}"))
    print("  time/step: median over timed segments (steps/s and ratios use it); best/step: fastest segment; "
          "mean/step: timed wall time / timed steps (reluflow: all its steps, first call included)")
    print("  * extrapolated from the steps run (constant cost per step); peers: warm-up steps not timed, "
          "'steps run' = warm-up + timed")
    q = result["quadrature_gd"]
    print()
    print(f"(b) GD with exact quadrature, {q['widths']}, K = {q['K']}, PiecewiseLinear target, U[0,1]: "
          f"{q['steps_per_s']:.1f} steps/s over {q['steps']} steps ({q['loop']} loop around the C++ exact "
          f"sweep; one risk_and_grad call {fmt_t(q['risk_and_grad_call_s'])}); median risk "
          f"{q['median_risk_start']:.4f} -> {q['median_risk_end']:.4f}")


def plot_hist(result, finals, path):
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        import matplotlib.ticker  # noqa: PLC0415
    except ImportError:
        log("  matplotlib not installed: no histogram")
        return None
    fig, axes = plt.subplots(1, len(finals), figsize=(4.2 * len(finals), 3.4), squeeze=False)
    for ax, (H, (steps, risks)) in zip(axes[0], finals.items()):
        r = risks[np.isfinite(risks)]
        lo, hi = max(r.min(), 1e-6), max(r.max(), 1e-5)
        bins = np.logspace(np.log10(lo), np.log10(hi) + 1e-9, 40)
        ax.hist(r, bins=bins, color="C0")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axvline(np.median(r), color="C3", lw=1, label=f"median {np.median(r):.3g}")
        ax.set_title(f"[1, {H}, 1], {steps} SGD steps")
        ax.set_xlabel("final risk (exact quadrature)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"networks (of {len(next(iter(finals.values()))[1])})")
    fig.suptitle("reluflow SGD, sin(3x) on U[0,1], 1024 samples/step, lr 0.001(n+1)^-0.1, N(0,1) inits",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few steps: a smoke test (a minute or two)")
    ap.add_argument("--K", type=int, default=300)
    ap.add_argument("--H", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--steps", type=int, default=10_000, help="SGD steps of the issue")
    ap.add_argument("--rf-budget", type=float, default=None,
                    help="seconds per reluflow C++-loop run (default 120; the Py driver a quarter, float32 an eighth)")
    ap.add_argument("--peer-budget", type=float, default=None, help="seconds of timed steps per peer and H")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--compile-limit", type=float, default=120.0, help="skip torch.compile beyond this")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    ap.add_argument("--_peer", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._peer is not None:
        peer_child(args._peer)
        return
    warnings.simplefilter("ignore", RuntimeWarning)  # diverged networks are counted, not warned

    quick = args.quick
    steps_target = 200 if quick else args.steps
    rf_budget = args.rf_budget if args.rf_budget is not None else (10.0 if quick else 120.0)
    peer_budget = args.peer_budget if args.peer_budget is not None else (3.0 if quick else 15.0)
    K, seed = args.K, 1
    cpu = cpu_name()
    from reluflow import _core  # noqa: PLC0415

    commit = git_commit()
    machine = {"cpu": cpu, "cores": os.cpu_count(), "omp_threads": _core.max_threads(),
               "simd": _core.simd_path(), "rf_cpu_backend": rf.backends()["cpu"].detail,
               "python": platform.python_version(), "numpy": np.__version__, "torch_threads": args.threads}
    have_torch = have_jax = False
    try:
        import torch  # noqa: PLC0415

        machine["torch"] = torch.__version__
        have_torch = True
    except Exception as exc:  # noqa: BLE001
        machine["torch"] = f"not available ({exc})"
    try:
        import jax  # noqa: PLC0415

        machine["jax"] = jax.__version__
        machine["jax_devices"] = [str(d) for d in jax.devices()]
        have_jax = True
    except Exception as exc:  # noqa: BLE001
        machine["jax"] = f"not available ({exc})"
    log(f"{cpu}; {machine['rf_cpu_backend']}; torch threads {args.threads}")
    result = {"machine": machine, "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "commit": commit, "quick": quick, "loadavg_start": list(os.getloadavg())}

    native_tgt, herm_err = sin3_hermite(128)
    sgd = {"K": K, "n_samples": N_SAMPLES, "steps_target": steps_target, "lr": "0.001*(n+1)**-0.1",
           "init": "prob.init(K, seed=0): i.i.d. N(0,1)", "hermite_pieces": 128, "hermite_max_err": herm_err,
           "rf_dtype": "float64 (and float32 for steps/s)", "peer_dtype": "float32", "rows": []}
    finals = {}
    for H in args.H:
        log(f"H = {H}")
        prob_native = rf.Problem([1, H, 1], native_tgt, rf.dists.Uniform(0.0, 1.0))
        prob_fn = rf.Problem([1, H, 1], rf.targets.Function(sin3), rf.dists.Uniform(0.0, 1.0))
        theta0 = prob_native.init(K, seed=0)
        # peers: warm-up / timed steps from a short probe of the slowest peer (eager autograd)
        row = {"H": H, "peers": {}}
        probe = peer_torch_autograd(theta0, H, 1, 1, seed, args.threads) if have_torch else None
        per = probe["s_per_step"] if probe else 0.01
        timed = int(min(1000 if not quick else 100, max(2, peer_budget / per)))
        # warm-up steps (not timed), also the JAX scan length; timed steps a multiple of it
        warm = 100 if timed >= 500 else (10 if timed >= 20 else 2)
        timed = max(warm, timed // warm * warm)
        steps_cmp = warm + timed
        row["steps_cmp"] = steps_cmp
        log(f"  peers: {warm} warm-up + {timed} timed steps")
        peers = {}
        if have_torch:
            for name, fn in (("torch autograd", peer_torch_autograd), ("torch hand bwd", peer_torch_hand)):
                try:
                    peers[name] = fn(theta0, H, warm, timed, seed, args.threads)
                except Exception as exc:  # noqa: BLE001
                    peers[name] = {"error": f"failed: {type(exc).__name__}: {exc}"}
                log(f"  {name}: {fmt_t(peers[name].get('s_per_step'))}/step")
            if not args.no_compile:
                limit = args.compile_limit + 3 * per * steps_cmp + 30
                peers["torch.compile"] = run_peer_subprocess("torch.compile", theta0, H, warm, timed, seed,
                                                             args.threads, limit)
                log(f"  torch.compile: {fmt_t(peers['torch.compile'].get('s_per_step'))}/step, compile "
                    f"{fmt_t(peers['torch.compile'].get('compile_s'))}")
                if peers["torch.compile"].get("compile_s", 0) > args.compile_limit:
                    peers["torch.compile"] = {"error": f"skipped: compile took {peers['torch.compile']['compile_s']:.0f} s"
                                                       f" > {args.compile_limit:.0f} s"}
        if have_jax:
            try:
                peers["jax lax.scan"] = peer_jax_scan(theta0, H, warm, timed, seed, args.threads, chunk=warm)
            except Exception as exc:  # noqa: BLE001
                peers["jax lax.scan"] = {"error": f"failed: {type(exc).__name__}: {exc}"}
            log(f"  jax: {fmt_t(peers['jax lax.scan'].get('s_per_step'))}/step")
        for name, p in peers.items():
            if "error" in p:
                continue
            theta = p.pop("theta")
            r = exact_risk(prob_native, theta)
            p.update(steps=p["steps_total"], steps_per_s=1.0 / p["s_per_step"],
                     time_for_target_steps_s=p["s_per_step"] * steps_target, extrapolated=True,
                     median_exact_risk_cmp=float(np.nanmedian(r)),
                     nonfinite=int(np.sum(~np.isfinite(r))))
        row["peers"] = peers
        # reluflow: C++ loop with the native target, then with the Function target (one callback per step)
        rn = bench_reluflow(prob_native, theta0, steps_target, rf_budget, steps_cmp, seed)
        log(f"  rf native ({rn['loop']} loop): {fmt_t(rn['s_per_step'])}/step, {rn['steps']} steps")
        rfn = bench_reluflow(prob_fn, theta0, steps_target, rf_budget / 4, steps_cmp, seed)
        log(f"  rf Function ({rfn['loop']} loop): {fmt_t(rfn['s_per_step'])}/step, {rfn['steps']} steps")
        rn32 = bench_reluflow(prob_native, theta0.astype(np.float32), steps_target, rf_budget / 8,
                              steps_cmp, seed)
        log(f"  rf native float32 ({rn32['loop']} loop): {fmt_t(rn32['s_per_step'])}/step, {rn32['steps']} steps")
        rn32["median_exact_risk_cmp"] = float(np.nanmedian(exact_risk(prob_native, rn32.pop("theta_cmp"))))
        rn32.pop("theta_final")
        row["rf_native_f32"] = rn32
        r_cmp_native = exact_risk(prob_native, rn.pop("theta_cmp"))
        r_cmp_fn = exact_risk(prob_native, rfn.pop("theta_cmp"))
        r_final = exact_risk(prob_native, rn.pop("theta_final"))
        rfn.pop("theta_final")
        rn["median_exact_risk_cmp"] = float(np.nanmedian(r_cmp_native))
        rfn["median_exact_risk_cmp"] = float(np.nanmedian(r_cmp_fn))
        row["rf_native"], row["rf_function"] = rn, rfn
        row["rf_function_vs_native_max_risk_diff"] = float(np.nanmax(np.abs(r_cmp_fn - r_cmp_native)))
        row["py_driver_kernel"] = py_driver_kernel(prob_fn, theta0)
        row["same_samples_check"] = same_samples_check(prob_native, theta0, H, seed, args.threads)
        row["median_exact_risk_init"] = float(np.median(exact_risk(prob_native, theta0)))
        row["rf_final_exact_risk_median"] = float(np.nanmedian(r_final))
        row["rf_final_exact_risk_quantiles"] = {q: float(np.nanquantile(r_final, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
        row["rf_final_exact_risks"] = [float(r) for r in r_final]
        finals[H] = (rn["steps"], r_final)
        ok = {n: p for n, p in peers.items() if "error" not in p}
        if ok:
            best = max(ok, key=lambda n: ok[n]["steps_per_s"])
            row["best_peer"] = best
            row["ratio_vs_best_peer"] = rn["steps_per_s"] / ok[best]["steps_per_s"]
            row["ratio_py_driver_vs_best_peer"] = rfn["steps_per_s"] / ok[best]["steps_per_s"]
            row["ratio_f32_vs_best_peer"] = rn32["steps_per_s"] / ok[best]["steps_per_s"]
            row["ratio_vs_best_peer_bestseg"] = (min(p["s_per_step_best"] for p in ok.values())
                                                 / rn["s_per_step_best"])
        else:
            row["best_peer"] = None
            row["ratio_vs_best_peer"] = row["ratio_py_driver_vs_best_peer"] = row["ratio_f32_vs_best_peer"] = math.nan
            row["ratio_vs_best_peer_bestseg"] = math.nan
        row["loadavg_end"] = list(os.getloadavg())
        sgd["rows"].append(row)
    result["sgd"] = sgd
    log("(b) GD with exact quadrature")
    result["quadrature_gd"] = bench_quadrature_gd(256, 256, 20 if quick else 200, log)
    result["loadavg_end"] = list(os.getloadavg())
    print_tables(result)
    out = args.out or HERE / "results" / f"flow_{slug(cpu)}{'_quick' if quick else ''}.json"
    png = out.parent / ("flow_hist_quick.png" if quick else "flow_hist.png")
    result["histogram"] = plot_hist(result, finals, png)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"\nwrote {out}" + (f" and {png}" if result["histogram"] else ""))


if __name__ == "__main__":
    main()
