"""Benchmark of the second-order tools (issue 18): Hessians and the polish to |G| <= 1e-12.

(a) The Hessian of ``[1, 256, 1]`` nets (P = 769), K = --K (default 64), PiecewiseLinear target on U[0, 1]:
      rf Quadrature cpu    - ``prob.hessian(theta, rf.Quadrature(), backend="cpu")``: the Hessian of the
                             *true* risk (fixed-pattern part on each network's kink partition plus the
                             moving-kink terms), which no sampled risk has; all K networks in one call;
      rf Points cpu        - the exact Hessian of a sampled risk on N fixed points (N = --points);
      rf ... numpy         - the same on the numpy reference backend;
      torch.func.hessian   - ``hessian(risk)`` of the same sampled risk per network (float64, CPU; a
                             vmap over K would hold K P N H tangents), the reference a PyTorch user
                             writes; max |difference| to rf Points reported; best of 1.
    numpy and torch go one network at a time (~10 s each for torch here): they are timed on the first
    --peer-networks (default 8) networks and their time is scaled to K (said in the table).
(b) Polish to |G| <= 1e-12 from the end of a flow, ``[1, H, 1]`` for H in --polish-H (default 32 256),
    K = --polish-k networks (--polish-k-wide = 4 for the wide nets): a tight dopri5 flow (rtol 1e-10) of the exact risk to t = --polish-t (default
    1e3, not timed), then:
      rf.polish(Quadrature()[, TR|LM]) - Newton (pseudo-inverse) / trust-region (Levenberg-Marquardt on
                                       G = 0) / levenberg-marquardt (on the residuals) on the exact 1-D risk;
      rf.polish(Points[, TR|LM])     - the same on the sampled risk;
      torch Newton                   - ``torch.func.grad`` + ``torch.func.hessian`` + ``torch.linalg.lstsq``
                                       per network on the sampled risk, step halving until |G| decreases
                                       (rf.polish's "newton"); wider than --torch-polish-max-H only one
                                       iteration is timed.
      Reported: time, Newton iterations, networks converged, largest final |G|. A wide net's flow ends far
      from a regular critical point (kinks gather at the target's kinks and at the interval's ends, where
      the risk is not twice differentiable): the table says how many networks reach 1e-12.

Prints tables and writes JSON to benchmarks/results/landscape_<cpu>.json (``--quick``: K = 8, smaller
sizes, ``landscape_<cpu>_quick.json``). Run alone on an idle machine:
``timeout 900 python benchmarks/bench_landscape.py``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import reluflow as rf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, fmt_t, slug  # noqa: E402

HERE = Path(__file__).resolve().parent
GTOL = 1e-12


def problem(H: int) -> rf.Problem:
    target = rf.targets.PiecewiseLinear([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 1.0, -0.5, 0.5, 0.2])
    return rf.Problem([1, H, 1], target, rf.dists.Uniform(0.0, 1.0))


def best_time(fn, repeats: int = 3):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def torch_risk(torch, x, w, y, H):
    """The sampled risk sum_j w_j (N(x_j) - y_j)^2 of one flat theta (P,) as a torch function."""
    def risk(theta):
        W, b = theta[:H], theta[H:2 * H]
        v, c = theta[2 * H:3 * H], theta[3 * H]
        z = torch.relu(x[:, None] * W[None, :] + b[None, :])
        r = z @ v + c - y
        return torch.sum(w * r * r)
    return risk


def torch_newton(torch, risk, theta0: np.ndarray, max_iter: int = 50):
    """rf.polish's Newton iteration written with torch.func: lstsq step (rcond 1e-10), halved until |G|
    decreases. Returns (theta, |G|, iterations, converged)."""
    from torch.func import grad, hessian
    g_fn, h_fn = grad(risk), hessian(risk)
    th = torch.tensor(theta0, dtype=torch.float64)
    g = g_fn(th)
    n = float(torch.linalg.norm(g))
    it = 0
    for it in range(max_iter):
        if n <= GTOL:
            break
        Hm = h_fn(th)
        d = -torch.linalg.lstsq(Hm, g[:, None], rcond=1e-10, driver="gelsd").solution[:, 0]
        for j in range(40):
            trial = th + d * 0.5 ** j
            g_t = g_fn(trial)
            n_t = float(torch.linalg.norm(g_t))
            if n_t < n:
                th, g, n = trial, g_t, n_t
                break
        else:
            break
    return th.numpy(), n, it + (n <= GTOL and it == 0), n <= GTOL


def bench_hessian(args, prob, theta, x, w, y, res):
    H, K = prob.widths[1], theta.shape[0]
    k_peer = min(args.peer_networks, K)
    quad, pts = rf.Quadrature(), rf.Points(x[:, None], w)
    # rf cpu on all K networks (one batched call, OpenMP over networks and nodes); the numpy reference
    # and torch one network at a time on the first k_peer networks, their time scaled by K / k_peer
    # (their cost is linear in K: they loop over networks)
    cases = [("rf Quadrature cpu", theta, lambda th: prob.hessian(th, quad, backend="cpu"), args.repeats),
             ("rf Points cpu", theta, lambda th: prob.hessian(th, pts, backend="cpu"), args.repeats),
             ("rf Quadrature numpy", theta[:k_peer], lambda th: prob.hessian(th, quad, backend="numpy"), 1),
             ("rf Points numpy", theta[:k_peer], lambda th: prob.hessian(th, pts, backend="numpy"), 1)]
    out = {}
    for name, th, fn, repeats in cases:
        t, Hs = best_time(lambda: fn(th), repeats)
        out[name] = (t * K / th.shape[0], np.asarray(Hs), th.shape[0])
    ref = out["rf Points cpu"][1][:k_peer]
    t_torch, diff = None, None
    try:
        import torch
        from torch.func import hessian
        torch.set_num_threads(args.threads)
        xt, wt, yt = (torch.tensor(a, dtype=torch.float64) for a in (x, w, y))
        # one network per call: vmap over K would hold K x P x N x H tangents (100 GB at the defaults)
        h1 = hessian(torch_risk(torch, xt, wt, yt, H))
        tt = torch.tensor(theta[:k_peer], dtype=torch.float64)
        h1(tt[0])                                   # warm-up
        t_torch, Ht = best_time(lambda: torch.stack([h1(tt[k]) for k in range(k_peer)]), 1)
        t_torch *= K / k_peer
        diff = float(np.max(np.abs(Ht.numpy() - ref)) / np.max(np.abs(ref)))
    except ImportError:
        print("torch not installed: the torch.func.hessian peer is skipped")
    base = t_torch
    print(f"\n(a) Hessian of [1, {H}, 1], K = {K}, P = {prob.num_params}, sampled risks on N = {x.size} points "
          f"(numpy and torch timed on {k_peer} networks, x {K / k_peer:g})")
    print(f"{'method':<24} {'time':>10} {'networks':>9} {'x torch':>9}")
    for name, (t, _, n) in out.items():
        ratio = f"{base / t:8.1f}x" if base else "-"
        print(f"{name:<24} {fmt_t(t):>10} {n:>9} {ratio:>9}")
        res["hessian"][name] = t
    if t_torch is not None:
        print(f"{'torch.func.hessian':<24} {fmt_t(t_torch):>10} {k_peer:>9} {'1.0x':>9}   (max rel. diff to rf Points "
              f"cpu: {diff:.1e})")
        res["hessian"]["torch.func.hessian"] = t_torch
        res["hessian"]["torch_max_rel_diff"] = diff
    res["hessian"]["timed_networks"] = {name: n for name, (_, _, n) in out.items()} | {"torch.func.hessian": k_peer}
    q = out["rf Quadrature cpu"][1][:k_peer]
    res["hessian"]["quadrature_cpu_vs_numpy_max_rel_diff"] = float(
        np.max(np.abs(q - out["rf Quadrature numpy"][1])) / np.max(np.abs(q)))


def bench_polish(args, H, x, w, y, res):
    prob = problem(H)
    K = args.polish_k if H <= args.torch_polish_max_H else args.polish_k_wide
    quad, pts = rf.Quadrature(), rf.Points(x[:, None], w)
    theta0 = prob.init(K, seed=3)
    # the start: a tight dopri5 flow of the exact risk (C++, not timed; a sampled risk's flow chatters
    # where a kink meets a data point, so the sampled polishes start from the same end points)
    run = rf.gradient_flow(prob, theta0, args.polish_t, method="dopri5", rtol=1e-10, atol=1e-12,
                           estimator=quad, backend="cpu", progress=False)
    start = np.asarray(run.theta)
    g0 = {name: float(np.max(np.linalg.norm(prob.risk_and_grad(start, est)[1], axis=1)))
          for name, est in (("Quadrature", quad), ("Points", pts))}
    entry = res["polish"][f"H={H}"] = {"start_max_grad_norm": g0}
    print(f"\n(b) polish to |G| <= {GTOL:g} from the end of a dopri5 flow of the exact risk (t = "
          f"{args.polish_t:g}; largest |G| there: {g0['Quadrature']:.1e} exact, {g0['Points']:.1e} sampled), "
          f"[1, {H}, 1], K = {K}")
    print(f"{'method':<28} {'time':>10} {'iters':>6} {'conv.':>6} {'max |G|':>9} {'x torch':>9}")
    table = {}
    for name, est, method in (("rf.polish(Quadrature())", quad, "newton"),
                              ("rf.polish(Quadrature(), TR)", quad, "trust-region"),
                              ("rf.polish(Quadrature(), LM)", quad, "levenberg-marquardt"),
                              ("rf.polish(Points)", pts, "newton"),
                              ("rf.polish(Points, TR)", pts, "trust-region"),
                              ("rf.polish(Points, LM)", pts, "levenberg-marquardt")):
        t0 = time.perf_counter()
        pol = rf.polish(prob, start, est, method=method, backend="cpu")
        t = time.perf_counter() - t0
        table[name] = (t, int(pol.iterations.sum()), int(np.sum(pol.status == "converged")), float(pol.grad_norm.max()))
    try:
        import torch
        torch.set_num_threads(args.threads)
        xt, wt, yt = (torch.tensor(a, dtype=torch.float64) for a in (x, w, y))
        risk = torch_risk(torch, xt, wt, yt, H)
        if H <= args.torch_polish_max_H:
            t0 = time.perf_counter()
            outs = [torch_newton(torch, risk, start[k]) for k in range(K)]
            t = time.perf_counter() - t0
            table["torch Newton (Points)"] = (t, int(sum(o[2] for o in outs)), int(sum(o[3] for o in outs)),
                                              float(max(o[1] for o in outs)))
        else:
            # one torch Newton iteration (hessian + lstsq) per network costs seconds here: timed once
            t0 = time.perf_counter()
            torch_newton(torch, risk, start[0], max_iter=1)
            t_it = time.perf_counter() - t0
            entry["torch_seconds_per_newton_iteration"] = t_it
            print(f"(torch Newton not run to the end at H = {H}: one iteration of one network takes "
                  f"{fmt_t(t_it)}; rf.polish(Points)'s iterations would take it "
                  f"{fmt_t(t_it * table['rf.polish(Points)'][1])})")
    except ImportError:
        print("torch not installed: the torch Newton peer is skipped")
    base = table.get("torch Newton (Points)", (None,))[0]
    for name, (t, iters, conv, gmax) in table.items():
        ratio = f"{base / t:8.1f}x" if base else "-"
        print(f"{name:<28} {fmt_t(t):>10} {iters:>6} {conv:>6} {gmax:>9.1e} {ratio:>9}")
        entry[name] = {"seconds": t, "iterations": iters, "converged": conv, "max_grad_norm": gmax}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--K", type=int, default=64)
    ap.add_argument("--peer-networks", type=int, default=8,
                    help="networks timed for numpy and torch (one at a time, ~10 s each for torch), scaled to K")
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--polish-k", type=int, default=8)
    ap.add_argument("--polish-k-wide", type=int, default=4, help="networks polished at H > --torch-polish-max-H")
    ap.add_argument("--polish-H", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--torch-polish-max-H", type=int, default=64,
                    help="widest net for the full torch Newton peer (wider: one iteration timed)")
    ap.add_argument("--polish-t", type=float, default=1e3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch's intra-op threads (reluflow uses OpenMP)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only-polish", action="store_true", help="skip (a), the Hessians (torch takes ~10 min)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.H, args.K, args.points, args.polish_k, args.polish_H, args.repeats = 32, 8, 256, 2, [8, 16], 1
        args.peer_networks, args.torch_polish_max_H = 4, 8
    prob = problem(args.H)
    theta = prob.init(args.K, seed=1)
    x = (np.arange(args.points) + 0.5) / args.points          # midpoint rule on [0, 1]
    w = np.full(args.points, 1.0 / args.points)
    y = prob.target(x[:, None])[:, 0]
    cpu = cpu_name()
    print(f"reluflow from {Path(rf.__file__).parent}")     # a stale installed copy has been timed before
    res = {"cpu": cpu, "machine": platform.machine(), "date": datetime.date.today().isoformat(),
           "reluflow": str(Path(rf.__file__).parent),
           "args": {k: str(v) for k, v in vars(args).items()}, "hessian": {}, "polish": {}}
    if not args.only_polish:
        bench_hessian(args, prob, theta, x, w, y, res)
    for H in args.polish_H:
        bench_polish(args, H, x, w, y, res)
    tag = ("_quick" if args.quick else "") + ("_polish" if args.only_polish else "")
    out = args.out or HERE / "results" / f"landscape_{slug(cpu)}{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"\nwrote {out}")
    return res


if __name__ == "__main__":
    main()
