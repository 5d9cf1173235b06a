"""rosenbrock (RODAS3, reluflow.stiff) against dopri5 on a long seed-style flow to t = 10^6.

Problem: ``[1, H, 1]`` ReLU nets, the hat target (height ``--height``) on Uniform(0, 1), the exact 1-D
quadrature, standard-normal starts scaled by ``--scale``; the output bias frozen at 0 with
``--freeze-bias`` (a free one adds the Hessian eigenvalue ~2 of d^2L/dc^2: dopri5 then needs about
``t_end * 2 / 3.3`` steps). Both methods at the same rtol (atol = rtol / 100); a dopri5 run at rtol 1e-10
is the reference for the accuracy columns. Prints a table per network: steps, rejections, Hessians
(rosenbrock), gradient calls, wall time, final risk and its difference to the reference, and the
largest |theta - reference|. Writes JSON to ``benchmarks/results/`` only with ``--out``.

``--quick``: t_end = 10^4 and one network (a smoke run). Step counts are deterministic; wall times
depend on the machine and its load: do not quote them from a shared machine.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import cpu_name, fmt_t, slug  # noqa: E402

import reluflow as rf  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--height", type=float, default=0.01)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--networks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--t-end", type=float, default=1e6)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--no-freeze-bias", dest="freeze_bias", action="store_false")
    ap.add_argument("--quick", action="store_true", help="t_end = 1e4, one network")
    ap.add_argument("--out", action="store_true", help="write JSON to benchmarks/results/")
    args = ap.parse_args(argv)
    if args.quick:
        args.t_end, args.networks = 1e4, 1

    prob = rf.Problem([1, args.width, 1], rf.targets.PiecewiseLinear([0, .5, 1], [0, args.height, 0]),
                      rf.dists.Uniform(0.0, 1.0))
    frozen = prob.mask(layers=[2], weights=False) if args.freeze_bias else None
    theta = args.scale * prob.init(args.networks, seed=args.seed)
    if frozen is not None:
        theta[:, frozen] = 0.0
    kw = dict(estimator=rf.Quadrature(), frozen=frozen, max_steps=10**7)
    runs = {}
    for name, method, rtol in (("reference", "dopri5", 1e-10), ("dopri5", "dopri5", args.rtol),
                               ("rosenbrock", "rosenbrock", args.rtol)):
        t0 = time.perf_counter()
        runs[name] = rf.gradient_flow(prob, theta, args.t_end, method=method, rtol=rtol, atol=rtol / 100, **kw)
        runs[name].info["bench_wall"] = time.perf_counter() - t0
    ref = runs["reference"]

    rows = []
    print(f"[1, {args.width}, 1], hat height {args.height}, t_end = {args.t_end:g}, rtol = {args.rtol:g}, "
          f"output bias {'frozen' if frozen is not None else 'free'}; reference: dopri5 rtol 1e-10")
    head = f"{'net':>3} {'method':>10} {'status':>9} {'steps':>9} {'rejected':>8} {'hessians':>8} " \
           f"{'grad calls':>10} {'wall':>9} {'final risk':>11} {'|dL| to ref':>11} {'|dθ| to ref':>11}"
    print(head)
    for k in range(args.networks):
        for name in ("dopri5", "rosenbrock"):
            run = runs[name]
            hess = int(run.info["hessians"][k]) if "hessians" in run.info else 0
            row = dict(network=k, method=name, status=str(run.status[k]), steps=int(run.accepted[k]),
                       rejected=int(run.rejected[k]), hessians=hess, gradient_calls=int(run.info["evaluations"]),
                       wall_s=run.info["bench_wall"], final_risk=float(run.risk[-1, k]),
                       risk_diff=float(abs(run.risk[-1, k] - ref.risk[-1, k])),
                       theta_diff=float(np.max(np.abs(run.theta[k] - ref.theta[k]))))
            rows.append(row)
            print(f"{k:>3} {name:>10} {row['status']:>9} {row['steps']:>9} {row['rejected']:>8} {hess:>8} "
                  f"{row['gradient_calls']:>10} {fmt_t(row['wall_s']):>9} {row['final_risk']:>11.3e} "
                  f"{row['risk_diff']:>11.2e} {row['theta_diff']:>11.2e}")
    print("(gradient calls and wall time are per run, all networks together)")
    if args.out:
        out = pathlib.Path(__file__).resolve().parent / "results"
        out.mkdir(exist_ok=True)
        path = out / f"bench_stiff_{slug(cpu_name())}.json"
        path.write_text(json.dumps({"cpu": cpu_name(), "args": vars(args), "rows": rows}, indent=1))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
