#!/usr/bin/env python3
"""SGD with the whole loop on one GPU (issue 13 part 4): reluflow's device loop against PyTorch and JAX
loops on the same GPU, and the large-width case.

(a) SGD experiment of bench_flow.py: [1, H, 1] for H in {10, 100, 1000}, K = 300 initializations
    (``prob.init``), 1024 fresh U[0, 1] samples per step, target sin(3x) (reluflow: the native
    PiecewisePolynomial cubic Hermite interpolant of bench_flow.py, error < 1e-9, evaluated in the kernel;
    the peers: torch.sin / jnp.sin), lr_n = 0.001 (n + 1)^-0.1; 10^4 steps extrapolated.
(b) Large width (examples/large_width.py's sizes): [1, 10^5, 1], K = 1000, float32, 128 fresh samples per
    step (--large-n), lr_n = (0.5 / H) (n + 1)^-0.1 (the example's stable step scale 0.5 / H; 0.001 would
    diverge at this width), same target as (a) so that every peer computes the same thing; initial
    parameters i.i.d. N(0, 1) drawn on the device by CuPy (prob.init's distribution; on the host it would
    take minutes for 3e8 parameters). Target of the issue: 10^4 steps in under a minute on an H100.

Peers (benchmarks/_gpu_flow_peers.py), each only if importable and a device is there, else the row says why:
  reluflow-cuda   ``rf.gradient_descent`` on CuPy theta: plan loop "CUDA" (samples, target, dense kernels,
                  update, divergence watch on the device; records copied back once per block)
  torch-eager     PyTorch eager on CUDA, the hand-written step of bench_flow.py (torch_hand_step: one bmm
                  for the moments), samples by torch.rand on the device
  torch-compile   torch.compile(mode="reduce-overhead", dynamic=False) of the same step on the flat theta:
                  inductor + CUDA graphs; lr a 0-d device tensor (one compile for all steps); the samples
                  by torch.rand on the device OUTSIDE the graph (copied into its static input at each
                  replay); the new theta cloned outside the graph (a graph output fed back as an input
                  raises in PyTorch <= 2.12, pytorch#152887); float32 only (compilation is its cost);
                  checked against torch-eager on the same samples (8 steps). (b): mode "default"
  jax-scan        the whole loop as one jit-compiled jax.lax.scan over the steps, samples
                  jax.random.uniform(fold_in(key, step index)) inside the scan, value_and_grad; float64 by
                  jax_enable_x64; float32 matmuls at "highest" precision (no TF32, as PyTorch's default)
In (b) the unchunked PyTorch step needs 3 K n H values (z, relu(z), mask): it does not fit in GPU memory,
so the torch peers run the networks in groups (exact: the networks are independent); no JAX peer there.
Timing: compilation first (its time reported, never in s/step), a warm-up run (steps 0 .. warm-1; every
run starts from theta0), then one run of up to --steps steps (fewer under the budget), host clock around
it, device synchronized at the end; s/step = that time / steps. "10^4 steps" = the time of one run of
10^4 steps: s/step * 10^4 for the peers (no cost per call); for reluflow, whose call has a fixed cost
(theta copied to the host and back: 1.2 GB each way in (b)), fixed + 10^4 * marginal, both from runs of
warm, 3 warm and the timed steps. Ratios: the "10^4 steps" of the best GPU peer (any dtype, any peer but
reluflow) of the same part and H over each reluflow row's.
Correctness here is statistical (different samples): the median exact risk (rf.Quadrature, host) after
the warm-up steps ((a) 20, all K networks; (b) 2, the first 32) per peer; tests/test_cuda.py holds the exact checks. A --budget in
seconds keeps the run inside the device window: jobs run in priority order (H = 1000 and the large width
first), those not reached say "budget"; the JSON is rewritten after every row. Without a GPU it prints
why and writes that into the JSON.

--smoke (no GPU needed; tests/test_bench_gpu_flow.py): the peers on --device (default cpu) at a tiny size
(H = 16, K = 32, n = 128, 40 steps, lr0 = 0.03; torch.compile mode "default" off CUDA): each peer's step
against torch autograd on the same samples, each run's median exact risk falls, and the peers' medians
agree with reluflow's cpu loop; exit status 1 if a check fails.

Usage: python benchmarks/bench_gpu_flow.py [--H 10,100,1000] [--K 300] [--steps 2000]
       [--dtypes float64,float32] [--budget 100] [--no-large] [--out FILE]
       python benchmarks/bench_gpu_flow.py --smoke [--device cpu] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _gpu_flow_peers as peers  # noqa: E402
from _common import cpu_name, fmt_t  # noqa: E402
from _gpu import open_gpu  # noqa: E402
from bench_flow import LR0, N_SAMPLES, sin3_hermite  # noqa: E402

STEPS_REPORTED = 10_000
WARM = 20
LARGE = {"H": 100_000, "K": 1000, "n": 128, "lr_scale": 0.5, "dtype": "float32"}
LARGE_EXACT = 32       # (b): networks whose exact risk after the warm-up steps is compared
SMOKE = {"H": 16, "K": 32, "n": 128, "steps": 40, "lr0": 0.03}
# first compile of a torch.compile peer (inductor + Triton) and of the two JAX scans, seconds: a job is
# not started when less than this (plus a few seconds of steps) is left of the budget
EST_COMPILE = {"torch-compile": 25.0, "jax-scan": 5.0}


def to_host(a) -> np.ndarray:
    """numpy copy of a numpy / CuPy / torch array."""
    if hasattr(a, "get"):
        return a.get()
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def make_reluflow(rf, prob, theta0, dtype, seed, n, lr0, backend, xp=np) -> peers.Peer:
    """reluflow's gradient_descent (backend "cuda" on CuPy theta, "cpu" on numpy theta), same samples
    convention as every peer: n fresh uniforms per step keyed by the global step index."""
    est = rf.MonteCarlo(n, seed=seed, resample=True)
    th0 = xp.asarray(theta0).astype(dtype)
    sync = (lambda: xp.cuda.get_current_stream().synchronize()) if xp is not np else (lambda: None)
    state = {}

    def run(steps, start, want_theta=False):
        r = rf.gradient_descent(prob, th0, lambda m: peers.lr_of(lr0, m), steps, est, record_every=max(1, steps),
                                start_step=start, backend=backend, progress=False)
        sync()
        state["info"] = {"loop": r.info.get("loop"), "blocks": r.info.get("blocks"),
                         "diverged": int(np.sum(to_host(r.diverged)))}
        theta = to_host(r.theta[peers.first_rows(want_theta)]).astype(np.float64) if want_theta else None
        return theta, to_host(r.risk[-1]).astype(np.float64)

    return peers.Peer(lambda steps: 0.0, run, f"Philox MonteCarlo({n}, resample=True) on the {backend} backend",
                      {"last": state})


def exact_median(rf, prob, theta) -> tuple[float, int]:
    """(median exact risk over the finite networks, number of non-finite ones) of host theta (K, P)."""
    r = prob.risk(np.ascontiguousarray(theta, dtype=np.float64), rf.Quadrature(), backend="cpu")
    fin = np.isfinite(r)
    return (float(np.median(r[fin])) if fin.any() else math.nan), int(np.sum(~fin))


# ---- the GPU run --------------------------------------------------------------------------------------

def add_ratios(rows: list) -> None:
    """speedup_vs_best_peer (any dtype) and _same_dtype on every reluflow row with a time: the time of
    10^4 steps in one run (extrapolated_s) of the fastest peer over that of the row."""
    for r in rows:
        if not (r["peer"].startswith("reluflow") and "s_per_step" in r):
            continue
        cands = [p for p in rows if p["part"] == r["part"] and p["H"] == r["H"] and "s_per_step" in p
                 and not p["peer"].startswith("reluflow") and not p.get("check_failed")]
        best = min(cands, key=lambda p: p["extrapolated_s"], default=None)
        same = [p["extrapolated_s"] for p in cands if p["dtype"] == r["dtype"]]
        r["best_peer"] = f"{best['peer']} {best['dtype']}" if best else None
        r["speedup_vs_best_peer"] = best["extrapolated_s"] / r["extrapolated_s"] if best else None
        r["speedup_vs_best_peer_same_dtype"] = min(same) / r["extrapolated_s"] if same else None


def print_table(result: dict) -> None:
    print(f"\n{'part':5} {'H':>6} {'peer':14} {'dtype':8} {'steps':>6} {'s/step':>9} {'10^4 steps':>10} "
          f"{'compile':>8} {'speedup':>8} {'med risk':>9}")
    for r in result["rows"]:
        head = f"{r['part']:5} {r['H']:6d} {r['peer']:14} {r['dtype']:8}"
        if "s_per_step" not in r:
            print(f"{head} {r.get('skipped') or r.get('error')}")
            continue
        sp = r.get("speedup_vs_best_peer")
        med = r.get("median_exact_risk_warm", math.nan)
        print(f"{head} {r['steps']:6d} {fmt_t(r['s_per_step']):>9} {fmt_t(r['extrapolated_s']):>10} "
              f"{fmt_t(r.get('compile_s') or None):>8} {('-' if sp is None else f'{sp:.1f}x'):>8} "
              f"{med:9.3g}" + ("  CHECK FAILED" if r.get("check_failed") else ""))
    print("  speedup: best GPU peer's 10^4 steps (any dtype) / this row's; med risk: median exact risk after the "
          f"warm-up steps ((a) {WARM}, all networks; (b) 2, the first {LARGE_EXACT}); compile time never in s/step")


def gpu_main(args) -> int:
    start = time.perf_counter()
    deadline = start + args.budget
    result = {"bench": "gpu_flow", "rows": [], "skipped": None, "steps_reported": STEPS_REPORTED,
              "budget_s": args.budget, "warm_steps": WARM}

    def write():
        add_ratios(result["rows"])
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1, default=str))

    import reluflow as rf

    device = args.device or "cuda"
    cuda = device == "cuda"
    if cuda:
        cp = open_gpu(result, write)
        if cp is None:
            return 0
    else:   # the driver on the CPU (reduced sizes: a check of this script, never a timing claim)
        cp = None
        result["device"] = f"cpu ({cpu_name()}): NOT a GPU run"
    print(f"device: {result['device']}", flush=True)
    own = "reluflow-cuda" if cuda else "reluflow-cpu"
    no_torch = no_jax = None
    try:
        import torch

        if cuda and not torch.cuda.is_available():
            no_torch = "torch: no CUDA device visible to PyTorch"
        result["torch"] = torch.__version__
    except ImportError as exc:
        no_torch, torch = f"torch not importable: {exc}", None
    try:
        import jax

        jax.config.update("jax_enable_x64", True)             # float64 rows; every array's dtype is explicit
        jax.config.update("jax_default_matmul_precision", "highest")
        jax.devices("gpu" if cuda else "cpu")
        result["jax"] = jax.__version__
    except Exception as exc:  # not installed, or no GPU plugin
        no_jax, jax = f"jax: {type(exc).__name__}: {str(exc)[:200]}", None
    target, err = sin3_hermite()
    result["target_max_err"] = err
    dtypes = args.dtypes.split(",")
    Hs = [int(h) for h in args.H.split(",")]
    sgd_cache, large_cache = {}, {}

    def sgd_setup(H):
        if H not in sgd_cache:
            prob = rf.Problem([1, H, 1], target, rf.dists.Uniform(0.0, 1.0))
            sgd_cache[H] = (prob, prob.init(args.K, seed=0))
        return sgd_cache[H]

    def large_setup():
        if not large_cache:
            H, K = args.large_H, args.large_K
            prob = rf.Problem([1, H, 1], target, rf.dists.Uniform(0.0, 1.0))
            rng = (cp.random if cuda else np.random).default_rng(0)
            theta = rng.standard_normal((K, prob.num_params), dtype=np.float32)
            if cuda:   # CuPy's stream, PyTorch's: both the legacy default stream; synchronized anyway
                cp.cuda.get_current_stream().synchronize()
            large_cache["v"] = (prob, theta)
        return large_cache["v"]

    def maker(part, H, peer, dt):
        """() -> Peer for one job (built when the job runs: its memory only then)."""
        if part == "sgd":
            n, lr0, chunk = N_SAMPLES, LR0, None
        else:
            n, lr0, chunk = args.large_n, LARGE["lr_scale"] / H, args.chunk_elems

        def make():
            prob, th = sgd_setup(H) if part == "sgd" else large_setup()
            if peer == own:
                return make_reluflow(rf, prob, th, dt, args.seed, n, lr0, device, cp if cuda else np), prob
            tsrc = torch.from_dlpack(th) if (cuda and part == "large") else th
            if peer == "torch-eager":
                return peers.make_torch_eager(torch, tsrc, H, dt, args.seed, device, n, lr0, chunk), prob
            if peer == "torch-compile":
                # CUDA graphs for (a) ("reduce-overhead"; off CUDA inductor skips them, the same code
                # runs); (b) is not launch-bound
                mode = "reduce-overhead" if part == "sgd" else "default"
                return peers.make_torch_compile(torch, tsrc, H, dt, args.seed, device, n, lr0, mode, chunk), prob
            return peers.make_jax_scan(jax, th, H, dt, args.seed, "gpu" if cuda else "cpu", n, lr0), prob

        return make, n

    # jobs in priority order: (a) at H = 1000 (the ratio) without torch.compile, reluflow in (b)
    # (the minute), torch.compile at H = 1000 (its compilation is the longest job), torch eager in
    # (b), then the other widths, the float64 peers, and the compile of (b) last
    jobs = []
    f32 = [d for d in dtypes if d == "float32"]
    for H in sorted(Hs, reverse=True):
        jobs += [("sgd", H, own, d) for d in dtypes]
        jobs += [("sgd", H, p, d) for p in ("torch-eager", "jax-scan") for d in f32]
        big = H == max(Hs) and not args.no_large
        jobs += [("large", args.large_H, own, "float32")] if big else []
        jobs += [("sgd", H, "torch-compile", d) for d in f32]
        jobs += [("large", args.large_H, "torch-eager", "float32")] if big else []
    jobs += [("sgd", H, p, d) for H in sorted(Hs, reverse=True) for p in ("torch-eager", "jax-scan")
             for d in dtypes if d != "float32"]
    if not args.no_large:
        jobs += [("large", args.large_H, "torch-compile", "float32")]
    compile_seen = {}
    for part, H, name, dt in jobs:
        make, n = maker(part, H, name, dt)
        K = args.K if part == "sgd" else args.large_K
        row = {"part": part, "H": H, "K": K, "n": n, "peer": name, "dtype": dt}
        result["rows"].append(row)
        why = (no_torch if name.startswith("torch") else no_jax if name == "jax-scan" else None)
        left = deadline - time.perf_counter()
        need = 3.0 + (compile_seen.get(name, EST_COMPILE.get(name, 0.0)) * 1.2)
        if why:
            row["skipped"] = why
        elif left < need:
            row["skipped"] = f"budget ({left:.0f} s left, about {need:.0f} s needed)"
        else:
            try:
                run_job(rf, row, make, part, left, args, compile_seen, torch)
            except Exception as exc:  # a peer that fails is reported, not fatal
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            finally:   # free this job's device memory before the next one
                if cuda:
                    cp.get_default_memory_pool().free_all_blocks()
                    if torch is not None and no_torch is None:
                        torch.cuda.empty_cache()
        print(f"  {part} H={H} {name} {dt}: " + (f"{fmt_t(row['s_per_step'])}/step" if "s_per_step" in row
                                                 else str(row.get("skipped") or row.get("error"))), flush=True)
        write()
    if not args.no_large:
        P = 3 * args.large_H + 1
        result["large_unchunked_torch_bytes"] = 3 * args.large_K * args.large_n * args.large_H * 4
        result["large_note"] = (f"the unchunked PyTorch step of (b) holds 3 K n H float32 values = "
                                f"{result['large_unchunked_torch_bytes'] / 1e9:.3g} GB (> an H100's 80 GB at "
                                f"the default size): "
                                f"timed in groups of networks (--chunk-elems {args.chunk_elems}); theta "
                                f"{args.large_K * P * 4 / 1e9:.1f} GB")
        for r in result["rows"]:
            if r["part"] == "large" and "extrapolated_s" in r:
                r["under_a_minute"] = r["extrapolated_s"] < 60.0
    write()
    print_table(result)
    if result.get("large_note"):
        print(f"  (b): {result['large_note']}")
    write()
    return 0


def run_job(rf, row, make, part, left, args, compile_seen, torch) -> None:
    """Compile, warm up, time one peer; fills ``row``."""
    t0 = time.perf_counter()
    peer, prob = make()
    row["samples"] = peer.samples
    warm = WARM if part == "sgd" else 2
    max_steps = args.steps if part == "sgd" else args.large_steps
    compile_s = peer.prepare(warm)
    t = time.perf_counter()
    # (b): the exact risk of the first networks only (a host copy and sweep of all 1000 would cost seconds)
    k_exact = True if part == "sgd" else min(row["K"], LARGE_EXACT)
    theta_w, loss_w = peer.run(warm, 0, want_theta=k_exact)
    warm_s = time.perf_counter() - t
    row["median_exact_risk_warm"], row["nonfinite_warm"] = exact_median(rf, prob, theta_w)
    row["exact_risk_networks"] = theta_w.shape[0]
    cap = min(args.job_cap, 0.3 * max(1.0, left - (time.perf_counter() - t0)))

    def timed(steps, start):
        t = time.perf_counter()
        out = peer.run(steps, start)
        return time.perf_counter() - t, out[1]

    fixed = 0.0
    if row["peer"].startswith("reluflow"):
        # one call has a fixed cost (theta to the host and back, the plan, the first block): two probes
        # of warm and 3 warm steps separate it from the cost per step
        t_a, _ = timed(warm, warm)
        t_c, _ = timed(3 * warm, warm)
        marg = max((t_c - t_a) / (2 * warm), 1e-7)
        fixed = max(0.0, t_a - warm * marg)
        steps = int(max(3 * warm, min(max_steps, (cap - fixed) / marg)))
    else:
        steps = int(max(warm, min(max_steps, cap / max(warm_s / warm, 1e-7))))
    compile_s += peer.prepare(steps)
    secs, loss = timed(steps, warm)
    if row["peer"].startswith("reluflow") and steps > warm:
        marg = max((secs - t_a) / (steps - warm), 1e-9)
        fixed = max(0.0, t_a - warm * marg)
        row.update(marginal_s_per_step=marg, fixed_s_per_call=fixed)
        extra = fixed + marg * STEPS_REPORTED          # one call of 10^4 steps
    else:
        extra = secs / steps * STEPS_REPORTED
    fin = np.isfinite(loss)
    row.update(steps=steps, seconds=secs, s_per_step=secs / steps, steps_per_s=steps / secs,
               extrapolated_s=extra, warm_s=warm_s, compile_s=compile_s,
               median_last_loss=float(np.median(loss[fin])) if fin.any() else math.nan,
               nonfinite_last=int(np.sum(~fin)))
    info = {k: v for k, v in peer.info.items() if k not in ("check", "step", "last", "device")}
    row.update(info)
    if "last" in peer.info:
        row.update(peer.info["last"].get("info", {}))
    if compile_s:
        compile_seen[row["peer"]] = compile_s
    if "check" in peer.info:   # torch.compile against eager on the same samples
        err = peer.info["check"]()
        tol = 1e-3 if row["dtype"] == "float32" else 1e-9
        row["check_vs_eager_rel"] = err
        row["check_failed"] = not err <= tol
        try:
            counters = torch._dynamo.utils.counters["inductor"]
            row["inductor_cudagraph_counters"] = {k: v for k, v in counters.items() if "cudagraph" in k}
        except Exception:  # noqa: BLE001 - only informative
            pass


# ---- the smoke mode (no GPU) --------------------------------------------------------------------------

def smoke_main(args) -> int:
    """The peers at a tiny size on --device: step checks, falling risk, agreement (see the docstring)."""
    import reluflow as rf

    device = args.device or "cpu"
    S = SMOKE
    H, K, n, steps, lr0 = S["H"], S["K"], S["n"], S["steps"], S["lr0"]
    target, _ = sin3_hermite()
    prob = rf.Problem([1, H, 1], target, rf.dists.Uniform(0.0, 1.0))
    theta0 = prob.init(K, seed=0)
    med0, _ = exact_median(rf, prob, theta0)
    result = {"bench": "gpu_flow_smoke", "device": device, "size": S, "median_exact_risk_init": med0,
              "checks": {}, "runs": {}, "missing": {}}
    ok = True

    def check(name, passed, value):
        nonlocal ok
        result["checks"][name] = {"passed": bool(passed), "value": value}
        ok &= bool(passed)
        print(f"  {'ok  ' if passed else 'FAIL'} {name}: {value}")

    try:
        import torch
    except ImportError as exc:
        torch = None
        result["missing"]["torch"] = str(exc)
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
        jax.devices("gpu" if device == "cuda" else "cpu")
    except Exception as exc:  # noqa: BLE001
        jax = None
        result["missing"]["jax"] = f"{type(exc).__name__}: {exc}"
    jdev = "gpu" if device == "cuda" else "cpu"
    mode = "reduce-overhead" if device == "cuda" else "default"
    runs = [("reluflow-cpu", "float64",
             lambda: make_reluflow(rf, prob, theta0, "float64", args.seed, n, lr0, "cpu"))]
    if torch is not None:
        runs += [("torch-eager", d, lambda d=d: peers.make_torch_eager(torch, theta0, H, d, args.seed, device, n,
                                                                        lr0)) for d in ("float64", "float32")]
        runs += [("torch-compile", "float32", lambda: peers.make_torch_compile(torch, theta0, H, "float32", args.seed,
                                                                               device, n, lr0, mode))]
    if jax is not None:
        runs += [("jax-scan", d, lambda d=d: peers.make_jax_scan(jax, theta0, H, d, args.seed, jdev, n, lr0))
                 for d in ("float64", "float32")]
    # one step on the same samples against torch autograd in float64
    x = np.random.default_rng(5).uniform(size=n)
    if torch is not None:
        tparts = [torch.tensor(np.ascontiguousarray(a)) for a in peers.split_theta(theta0, H)]
        ref = [t.numpy() for t in peers.torch_autograd_step(torch, *tparts, torch.tensor(x), lr0)]
    built = {}
    for name, dt, make in runs:
        t = time.perf_counter()
        peer = make()
        compile_s = peer.prepare(steps)
        built[(name, dt)] = peer
        if torch is not None and "step" in peer.info:
            tol = 1e-12 if dt == "float64" else 1e-5
            if name == "jax-scan":
                jnp = jax.numpy
                dev = peer.info["device"]
                args_ = [jax.device_put(np.ascontiguousarray(a, dtype=dt), dev)
                         for a in (*peers.split_theta(theta0, H), x)]
                new_p, loss = jax.jit(peer.info["step"])(tuple(args_[:4]), args_[4], jnp.asarray(lr0, dtype=dt))
                new = [np.asarray(a) for a in (*new_p, loss)]
            else:
                tdt = getattr(torch, dt)
                targs = [torch.tensor(np.ascontiguousarray(a), dtype=tdt, device=device)
                         for a in (*peers.split_theta(theta0, H), x)]
                lr_arg = torch.tensor(lr0, dtype=tdt, device=device) if name == "torch-compile" else lr0
                with torch.no_grad():
                    new = [a.cpu().numpy() for a in peer.info["step"](*targs, lr_arg)]
            check(f"{name} {dt}: one step vs torch autograd (float64), rel error <= {tol:g}",
                  peers.step_error(new, ref) <= tol, peers.step_error(new, ref))
        theta, loss = peer.run(steps, 0, want_theta=True)
        med, nonfin = exact_median(rf, prob, theta)
        result["runs"][f"{name} {dt}"] = {"median_exact_risk": med, "nonfinite": nonfin,
                                          "median_last_loss": float(np.median(loss)), "compile_s": compile_s,
                                          "seconds": time.perf_counter() - t, "samples": peer.samples}
        check(f"{name} {dt}: median exact risk falls over {steps} steps (< 0.8 x initial {med0:.4g})",
              nonfin == 0 and med < 0.8 * med0, med)
    ref_med = result["runs"]["reluflow-cpu float64"]["median_exact_risk"]
    for key, r in result["runs"].items():
        if key != "reluflow-cpu float64":
            check(f"{key}: median exact risk within {args.smoke_tol:.0%} of reluflow's cpu loop ({ref_med:.4g})",
                  peers.median_ratio_ok(r["median_exact_risk"], ref_med, args.smoke_tol), r["median_exact_risk"])
    if "torch-compile" in {k[0] for k in built}:
        err = built[("torch-compile", "float32")].info["check"]()
        check("torch-compile float32 vs torch-eager float32, same samples, 8 steps: rel <= 1e-4", err <= 1e-4, err)
    result["ok"] = ok
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    print("smoke: " + ("all checks passed" if ok else "SOME CHECKS FAILED")
          + "".join(f"; {k} missing ({v})" for k, v in result["missing"].items()))
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--H", default="10,100,1000")
    ap.add_argument("--K", type=int, default=300)
    ap.add_argument("--steps", type=int, default=2000, help="(a): timed steps per row (fewer under the budget)")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--budget", type=float, default=100.0, help="seconds for the whole run")
    ap.add_argument("--job-cap", type=float, default=3.0, help="seconds of timed steps per row at most")
    ap.add_argument("--no-large", action="store_true", help="skip (b), the large-width case")
    ap.add_argument("--large-H", type=int, default=LARGE["H"])
    ap.add_argument("--large-K", type=int, default=LARGE["K"])
    ap.add_argument("--large-n", type=int, default=LARGE["n"], help="(b): samples per step")
    ap.add_argument("--large-steps", type=int, default=500, help="(b): timed steps per row at most")
    ap.add_argument("--chunk-elems", type=int, default=1 << 28,
                    help="(b): torch peers' (network, sample, neuron) triples per group of networks")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU check of the peers (no GPU needed)")
    ap.add_argument("--device", default=None,
                    help="cuda (default) or cpu (the driver at reduced sizes, a check of the script); "
                         "--smoke: cpu (default) or cuda")
    ap.add_argument("--smoke-tol", type=float, default=0.1, help="--smoke: relative agreement of the medians")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    for key in ("K", "steps", "large_H", "large_K", "large_n", "large_steps", "chunk_elems"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')}: expected a positive integer, got {getattr(args, key)}")
    if not args.budget > 0:
        ap.error(f"--budget: expected a positive number of seconds, got {args.budget}")
    if args.device not in (None, "cpu", "cuda"):
        ap.error(f"--device: expected cpu or cuda, got {args.device!r}")
    # JAX would take 75% of the GPU's memory at its first use, starving CuPy and PyTorch; on --device cpu
    # it should not touch a GPU at all (the test suite runs this on the GPU machine too)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if (args.device or ("cpu" if args.smoke else "cuda")) == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    return smoke_main(args) if args.smoke else gpu_main(args)


if __name__ == "__main__":
    sys.exit(main())
