#!/usr/bin/env python3
"""Risk and generalized gradient on one GPU: reluflow's CUDA dense kernel against its peers.

Every peer gets the same device arrays (explicit nodes x (N, d), weights w, targets y, and theta
(K, P)) and computes risk (K,) and gradient (K, P). Peers, each only if importable and a device is
there:
  reluflow-cuda   reluflow._cuda.risk_and_grad (cuda/src/risk_grad.cu: fused, deterministic)
  reluflow-sweep  reluflow._cuda.point_sweep (cuda/src/sweep_points.cu: O(N + H), float64), 1-D cases only;
                  its GFLOP/s column counts the dense flops it replaces
  torch-eager     PyTorch eager on CUDA, hand-written backward (bmm), chunked over nodes
  torch-compile   torch.compile of the same chunk function, float32, only the cases in
                  --compile-cases (compilation takes tens of seconds per shape)
  jax-jit         jax.jit(value_and_grad) with lax.scan over the same chunks
The peers process the nodes in chunks of at most --chunk-elems activations (K * chunk * max width),
the last chunk padded with zero weights, so that their memory stays bounded (N x H of case S is
6.5e10 values).

Cases: S = the dense shallow kernel at scale ([1, 65536, 1], N = 10^6, K = 1), E = bench_quadrature.py's
case E ([1, 65536, 1], N = 262144, K = 1: the point sweep against every dense evaluation) and
bench_risk_grad.py's A-D with 16 times the nodes. Timing: one warm-up call (compilation), then the median of --repeats
calls, each synchronized on the device (host clock around a synchronize: every peer queues its
work asynchronously). The error column is |grad - grad_ref| / |grad_ref| against reluflow-cuda in
float64. A --budget in seconds keeps the whole run inside the device window: peers not reached in
time are reported as skipped. Without a GPU it prints why and writes that into the JSON.

Usage: python benchmarks/bench_gpu_risk_grad.py [--cases S,E,A,B,C,D] [--dtypes float32,float64]
       [--repeats 5] [--budget 90] [--compile-cases S,A] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_t  # noqa: E402
from _gpu import start_bench  # noqa: E402
from bench_risk_grad import flops, problem_arrays  # noqa: E402  (the one FLOP convention and problem)

CASES = {
    "S": dict(widths=[1, 65536, 1], N=1_000_000, K=1),
    # bench_quadrature.py's case E (fixed weighted points): the point sweep against every dense evaluation
    "E": dict(widths=[1, 65536, 1], N=262144, K=1),
    "A": dict(widths=[1, 1024, 1], N=16384 * 16, K=1),
    "B": dict(widths=[1, 4096, 1], N=65536 * 16, K=1),
    "C": dict(widths=[1, 256, 1], N=4096 * 16, K=256),
    "D": dict(widths=[8, 1024, 1], N=16384 * 16, K=16),
}


def make_problem(case, seed=0):
    c = CASES[case]
    widths = c["widths"]
    lay, theta, x, w, y = problem_arrays(widths, c["N"], c["K"], seed)
    theta[:, lay.num_params - widths[1] - 1:] /= np.sqrt(widths[1])   # output layer ~ 1/sqrt(H)
    return lay, theta, x, w, y


# ---- peers: each make_* returns a function of no argument that returns (risk, grad) on the device --

def _own_runner(cp, lay, K, call):
    """run() -> (risk, grad): call(risk=, grad=, stream=) into outputs made once, on the current stream."""
    risk, grad = cp.empty(K), cp.empty((K, lay.num_params))
    stream = cp.cuda.get_current_stream().ptr

    def run():
        call(risk=risk, grad=grad, stream=stream)
        return risk, grad

    return run


def make_reluflow(cp, lay, theta, x, w, y, chunk_elems):
    from reluflow import _cuda

    theta, x, w, y = (cp.asarray(a) for a in (theta, x, w, y))
    return _own_runner(cp, lay, theta.shape[0],
                       lambda **o: _cuda.risk_and_grad(list(lay.widths), theta, x, w, y, **o))


def make_reluflow_sweep(cp, lay, theta, x, w, y, chunk_elems):
    """The point sweep on the device (shallow 1-D nets, float64): O(N + H) per network."""
    from reluflow import _cuda

    theta, w, y = (cp.asarray(a, dtype=cp.float64) for a in (theta, w, y))
    x = cp.asarray(x, dtype=cp.float64).reshape(-1)
    return _own_runner(cp, lay, theta.shape[0],
                       lambda **o: _cuda.point_sweep(list(lay.widths), theta, x, w, y, **o))


def _chunk(lay, K, N, chunk_elems):
    return max(1, min(N, chunk_elems // (K * max(lay.widths[1:]))))


def _padded(xp, x, w, y, step):
    N = x.shape[0]
    pad = (-N) % step
    if pad:
        x = xp.concatenate([x, 0 * x[:1].repeat(pad, 0) if xp is np else x.new_zeros((pad, x.shape[1]))])
        w = xp.concatenate([w, 0 * w[:1].repeat(pad, 0) if xp is np else w.new_zeros(pad)])
        y = xp.concatenate([y, 0 * y[:1].repeat(pad, 0) if xp is np else y.new_zeros((pad, y.shape[1]))])
    return x, w, y


def _torch_chunk(torch, Ws, bs, x, w, y):
    """risk (K,), [gW], [gb] of one chunk: forward with bmm, hand-written backward, relu'(0) = 0."""
    K = Ws[0].shape[0]
    a = x.unsqueeze(0).expand(K, -1, -1)
    acts, zs = [a], []
    L = len(Ws)
    for k in range(L):
        z = torch.baddbmm(bs[k].unsqueeze(1), a, Ws[k].transpose(1, 2))
        zs.append(z)
        if k < L - 1:
            a = torch.relu(z)
            acts.append(a)
    r = zs[-1] - y.unsqueeze(0)
    wr = w.view(1, -1, 1) * r
    risk = (wr * r).sum(dim=(1, 2))
    delta = 2.0 * wr
    gWs, gbs = [None] * L, [None] * L
    for k in range(L - 1, -1, -1):
        gWs[k] = torch.bmm(delta.transpose(1, 2), acts[k])
        gbs[k] = delta.sum(dim=1)
        if k > 0:
            delta = torch.bmm(delta, Ws[k]) * (zs[k - 1] > 0)
    return risk, gWs, gbs


def _torch_setup(torch, lay, theta, x, w, y, dtype, chunk_elems, device="cuda"):
    dev = torch.device(device)
    th = torch.as_tensor(theta, dtype=dtype, device=dev)
    params = lay.unpack(th)   # the (W, b) views of the flat vector (SPEC §1)
    Ws = [W.contiguous() for W, _ in params]
    bs = [b.contiguous() for _, b in params]
    step = _chunk(lay, theta.shape[0], x.shape[0], chunk_elems)
    X, Wt, Y = (torch.as_tensor(a, dtype=dtype, device=dev) for a in (x, w, y))
    X, Wt, Y = _padded(torch, X, Wt, Y, step)
    return Ws, bs, X, Wt, Y, step


def _torch_runner(torch, lay, fn, Ws, bs, X, Wt, Y, step):
    def run():
        risk = torch.zeros(Ws[0].shape[0], dtype=torch.float64, device=X.device)
        gW = [torch.zeros_like(W) for W in Ws]
        gb = [torch.zeros_like(b) for b in bs]
        for s in range(0, X.shape[0], step):
            r, dW, db = fn(Ws, bs, X[s:s + step], Wt[s:s + step], Y[s:s + step])
            risk += r
            for k in range(len(Ws)):
                gW[k] += dW[k]
                gb[k] += db[k]
        flat = [t for k in range(len(Ws)) for t in (gW[k].flatten(1), gb[k])]
        return risk, torch.cat(flat, dim=1)

    return run


def make_torch_eager(torch, dtype):
    def make(cp, lay, theta, x, w, y, chunk_elems):
        Ws, bs, X, Wt, Y, step = _torch_setup(torch, lay, theta, x, w, y, dtype, chunk_elems)
        return _torch_runner(torch, lay, lambda *a: _torch_chunk(torch, *a), Ws, bs, X, Wt, Y, step)

    return make


def make_torch_compile(torch, dtype):
    def make(cp, lay, theta, x, w, y, chunk_elems):
        Ws, bs, X, Wt, Y, step = _torch_setup(torch, lay, theta, x, w, y, dtype, chunk_elems)
        compiled = torch.compile(lambda Ws_, bs_, x_, w_, y_: _torch_chunk(torch, Ws_, bs_, x_, w_, y_),
                                 dynamic=False)
        return _torch_runner(torch, lay, compiled, Ws, bs, X, Wt, Y, step)

    return make


def make_jax(jax, jnp, dtype):
    def make(cp, lay, theta, x, w, y, chunk_elems):
        K = theta.shape[0]
        step = _chunk(lay, K, x.shape[0], chunk_elems)
        X, Wt, Y = _padded(np, x, w, y, step)
        n = X.shape[0] // step
        Xc = jnp.asarray(X.reshape(n, step, -1), dtype=dtype)
        Wc = jnp.asarray(Wt.reshape(n, step), dtype=dtype)
        Yc = jnp.asarray(Y.reshape(n, step, -1), dtype=dtype)
        th = jnp.asarray(theta, dtype=dtype)

        def risk_of(t, xc, wc, yc):
            params = lay.unpack(t)
            a = jnp.broadcast_to(xc, (K,) + xc.shape)
            for k, (W, b) in enumerate(params):
                z = jnp.einsum("knl,kml->knm", a, W) + b[:, None, :]
                a = jax.nn.relu(z) if k < lay.num_layers - 1 else z
            r = a - yc[None]
            return jnp.sum(wc[None, :, None] * r * r, axis=(1, 2))

        vg = jax.vmap(jax.value_and_grad(lambda t, xc, wc, yc: risk_of(t[None], xc, wc, yc)[0]),
                      in_axes=(0, None, None, None))

        @jax.jit
        def total(t):
            def body(carry, c):
                r, g = vg(t, *c)
                return (carry[0] + r, carry[1] + g), None

            (r, g), _ = jax.lax.scan(body, (jnp.zeros(K, dtype), jnp.zeros_like(t)), (Xc, Wc, Yc))
            return r, g

        return lambda: total(th)

    return make


# ---- timing -----------------------------------------------------------------------------------------

def to_numpy(a):
    if hasattr(a, "get"):
        return a.get()
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def time_peer(run, sync, repeats):
    t0 = time.perf_counter()
    res = run()
    sync(res)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = run()
        sync(r)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first, res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="S,E,A,B,C,D")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=90.0, help="seconds for the whole run")
    ap.add_argument("--compile-cases", default="A", help="cases that also run torch.compile")
    ap.add_argument("--chunk-elems", type=int, default=1 << 24)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    # JAX would take 75% of the GPU's memory at its first use, starving CuPy and PyTorch
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    start = time.perf_counter()
    result, write, cp = start_bench("gpu_risk_grad", args.out)
    if cp is None:
        return 0
    print(f"device: {result['device']}")

    peers = []   # (name, dtype, make, sync)
    cp_sync = lambda res: cp.cuda.get_current_stream().synchronize()  # noqa: E731
    try:
        import torch

        if torch.cuda.is_available():  # PyTorch's CUDA tensors on the same device
            t_sync = lambda res: torch.cuda.synchronize()  # noqa: E731
            for dt in ("float32", "float64"):
                peers.append(("torch-eager", dt, make_torch_eager(torch, getattr(torch, dt)), t_sync))
                if dt == "float32":   # compilation is the cost: one dtype
                    peers.append(("torch-compile", dt, make_torch_compile(torch, getattr(torch, dt)), t_sync))
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        if any(d.platform == "gpu" for d in jax.devices()):
            jax.config.update("jax_enable_x64", True)
            j_sync = lambda res: jax.block_until_ready(res)  # noqa: E731
            for dt in ("float32", "float64"):
                peers.append(("jax-jit", dt, make_jax(jax, jnp, getattr(jnp, dt)), j_sync))
    except Exception as exc:  # not installed, or no GPU plugin: no JAX peer
        print(f"no JAX peer: {type(exc).__name__}: {exc}")

    dtypes = args.dtypes.split(",")
    compile_cases = set(args.compile_cases.split(",")) if args.compile_cases else set()
    # jobs: every case with reluflow (float64 first: the reference of the error column) and the eager
    # and jit peers; torch.compile last, on what is left of the budget (its compilation is the cost)
    cases = args.cases.split(",")
    own = [("reluflow-cuda", d, make_reluflow, cp_sync) for d in ("float64", "float32") if d in dtypes or d == "float64"]
    sweep = ("reluflow-sweep", "float64", make_reluflow_sweep, cp_sync)   # shallow 1-D cases only
    jobs = [(case, p) for case in cases for p in own + [sweep] * (CASES[case]["widths"][0] == 1) +
            [p for p in peers if p[1] in dtypes and p[0] != "torch-compile"]]
    jobs += [(case, p) for case in cases if case in compile_cases for p in peers
             if p[1] in dtypes and p[0] == "torch-compile"]
    refs, problems = {}, {}
    for case, (name, dt, make, sync) in jobs:
        c = CASES[case]
        row = {"case": case, "widths": c["widths"], "N": c["N"], "K": c["K"], "peer": name, "dtype": dt}
        if time.perf_counter() - start > args.budget:
            row["skipped"] = "budget"
            result["rows"].append(row)
            continue
        if case not in problems:
            problems[case] = make_problem(case)
        lay, theta, x, w, y = problems[case]
        try:
            run = make(cp, lay, theta.astype(dt), x, w, y, args.chunk_elems)
            t, first, res = time_peer(run, sync, args.repeats)
            risk, grad = (to_numpy(a) for a in res)
            if name == "reluflow-cuda" and dt == "float64":
                refs[case] = grad
            ref = refs.get(case)
            err = float(np.linalg.norm(grad - ref) / np.linalg.norm(ref)) if ref is not None else None
            row.update(time_s=t, first_s=first, gflops=flops(c["widths"], c["N"], c["K"]) / t / 1e9, rel_err=err)
        except Exception as exc:  # a peer that fails is reported, not fatal
            row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        result["rows"].append(row)
        write()

    print(f"\n{'case':4} {'peer':14} {'dtype':8} {'time':>10} {'first':>10} {'GFLOP/s':>9} {'rel err':>9}")
    for r in result["rows"]:
        if "time_s" in r:
            err = "-" if r["rel_err"] is None else f"{r['rel_err']:.1e}"
            print(f"{r['case']:4} {r['peer']:14} {r['dtype']:8} {fmt_t(r['time_s']):>10} {fmt_t(r['first_s']):>10} "
                  f"{r['gflops']:9.0f} {err:>9}")
        else:
            print(f"{r['case']:4} {r['peer']:14} {r['dtype']:8} {r.get('skipped') or r.get('error')}")
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
