#!/usr/bin/env python3
"""Risk and generalized gradient on the CPU: reluflow's fused kernel against its peers, side by side.

Every peer gets the same explicit nodes (rf.Points-style: x, weights w, targets y) and the same
theta (K, P), and computes risk (K,) and gradient (K, P). Peers, each only if importable:
  reluflow         reluflow.backends.cpu (C++/OpenMP/SIMD, fused, deterministic)
  numpy-ref        reluflow.backends.reference (numpy, computes in float64)
  torch-autograd   PyTorch eager, autograd through bmm/relu (chunked over nodes)
  torch-manual     PyTorch eager, hand-written backward (chunked)
  torch-compile    torch.compile of the hand-written backward (chunked, padded to one chunk shape)
  torch-compile-mmfree   d = 1 only: torch.compile of a matmul-free formulation (products and sums
                   over the neuron axis only, which Inductor fuses into one loop nest)
  jax-jit          jax.jit(value_and_grad) with lax.scan over chunks
The peers process nodes in chunks of at most --peer-chunk-elems activations (K * chunk * width, default
2^20: their arrays stay in cache, which is 2-4x faster for torch and jax than 2^23), as the numpy
reference does (its own chunk: 2^21), so that their memory stays bounded.

Timing: one warm-up call (and compilation), then the median of --repeats (>= 5) calls. GFLOP/s by
convention: K N H (4d + 9) for shallow nets [d, H, 1]; K N sum_k 6 l_k l_{k-1} for deep nets.
Memory: peak RSS increase of one reluflow call, measured in a subprocess (VmHWM after resetting it
through /proc/self/clear_refs; the C++ allocations are invisible to tracemalloc).

Usage: python benchmarks/bench_risk_grad.py [--quick] [--cases A,B] [--dtypes float32,float64]
       [--peer-time 60] [--threads N] [--merge] [--out FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np

CASES = {
    "A": dict(widths=[1, 1024, 1], N=16384, K=1),
    "B": dict(widths=[1, 4096, 1], N=65536, K=1),
    "C": dict(widths=[1, 256, 1], N=4096, K=256),
    "D": dict(widths=[8, 1024, 1], N=16384, K=16),
    "F": dict(widths=[4, 256, 256, 256, 1], N=16384, K=8),
}


def flops(widths, N, K):
    if len(widths) == 3 and widths[2] == 1:
        return K * N * widths[1] * (4 * widths[0] + 9)
    return K * N * sum(6 * widths[k] * widths[k - 1] for k in range(1, len(widths)))


def problem_arrays(widths, N, K, seed=0):
    """(layout, theta (K, P) float64 standard normal, nodes x (N, d) U[0, 1], weights w (N,) = 1/N,
    targets y (N, out) = sin(2 pi sum x) in every output): the explicit problem of the risk benchmarks
    (also bench_gpu_risk_grad.py's)."""
    from reluflow.layout import Layout

    lay = Layout(widths)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(N, widths[0]))
    w = np.full(N, 1.0 / N)
    y = np.sin(2 * np.pi * x.sum(axis=1, keepdims=True)) * np.ones((1, widths[-1]))
    theta = rng.standard_normal((K, lay.num_params))
    return lay, theta, x, w, y


def make_problem(case, dtype, seed=0):
    c = CASES[case]
    lay, theta, x, w, y = problem_arrays(c["widths"], c["N"], c["K"], seed)
    return lay, theta.astype(dtype), x, w, y


# ---- time limits ----------------------------------------------------------------------------------
class PeerTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds):
    def handler(signum, frame):
        raise PeerTimeout(f"exceeded the {seconds:.0f} s limit")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- peers: each make_*(lay, theta, x, w, y, chunk_elems) returns a callable -> (risk, grad) ----------
def make_reluflow(lay, theta, x, w, y, chunk_elems):
    from reluflow.backends import cpu

    return lambda: cpu.risk_and_grad(lay, theta, x, w, y, True)


def make_numpy_ref(lay, theta, x, w, y, chunk_elems):
    from reluflow.backends import reference

    return lambda: reference.risk_and_grad(lay, theta, x, w, y, True)


def _chunk(lay, K, N, chunk_elems):
    return max(1, min(N, chunk_elems // (K * max(lay.widths))))


def _torch_setup(lay, theta, x, w, y):
    import torch

    dt = torch.float32 if theta.dtype == np.float32 else torch.float64
    T = torch.from_numpy(np.ascontiguousarray(theta))
    X = torch.from_numpy(x).to(dt)
    Wt = torch.from_numpy(w).to(dt)
    Y = torch.from_numpy(y).to(dt)
    return torch, dt, T, X, Wt, Y


def _torch_manual_chunk(params, x, w, y):
    """Forward + hand-written backward of one chunk: returns risk (K,) and [(gW, gb)]."""
    import torch

    L = len(params)
    zs = []
    a = x
    for k, (W, b) in enumerate(params):
        z = torch.matmul(a, W.transpose(1, 2)) + b[:, None, :]
        zs.append(z)
        a = torch.relu(z) if k < L - 1 else z
    r = zs[-1] - y[None]
    wr = w[None, :, None] * r
    risk = (wr * r).sum(dim=(1, 2))
    delta = 2.0 * wr
    grads = [None] * L
    for k in range(L - 1, -1, -1):
        a_prev = x if k == 0 else torch.relu(zs[k - 1])
        grads[k] = (torch.matmul(delta.transpose(1, 2), a_prev), delta.sum(dim=1))
        if k > 0:
            delta = torch.matmul(delta, params[k][0]) * (zs[k - 1] > 0)
    return risk, grads


def _flat_grad(torch, lay, grads, K, dt):
    return torch.cat([t.reshape(K, -1) for gW, gb in grads for t in (gW, gb)], dim=1)


def make_torch_autograd(lay, theta, x, w, y, chunk_elems):
    torch, dt, T, X, Wt, Y = _torch_setup(lay, theta, x, w, y)
    K, N = T.shape[0], X.shape[0]
    step = _chunk(lay, K, N, chunk_elems)
    Tp = T.clone().requires_grad_(True)
    L = lay.num_layers

    def run():
        Tp.grad = None
        params = lay.unpack(Tp)
        risk = torch.zeros(K, dtype=dt)
        for s in range(0, N, step):
            a = X[s:s + step]
            for k, (W, b) in enumerate(params):
                z = torch.baddbmm(b[:, None, :], a.expand(K, -1, -1) if k == 0 else a, W.transpose(1, 2))
                a = torch.relu(z) if k < L - 1 else z
            r = a - Y[s:s + step][None]
            rk = (Wt[s:s + step][None, :, None] * r * r).sum(dim=(1, 2))
            rk.sum().backward()
            risk += rk.detach()
        return risk, Tp.grad

    return run


def make_torch_manual(lay, theta, x, w, y, chunk_elems):
    torch, dt, T, X, Wt, Y = _torch_setup(lay, theta, x, w, y)
    K, N = T.shape[0], X.shape[0]
    step = _chunk(lay, K, N, chunk_elems)
    params = lay.unpack(T)

    def run():
        with torch.no_grad():
            risk = torch.zeros(K, dtype=dt)
            acc = None
            for s in range(0, N, step):
                r, g = _torch_manual_chunk(params, X[s:s + step], Wt[s:s + step], Y[s:s + step])
                risk += r
                acc = g if acc is None else [(a0 + g0, a1 + g1) for (a0, a1), (g0, g1) in zip(acc, g)]
            return risk, _flat_grad(torch, lay, acc, K, dt)

    return run


def _padded(torch, X, Wt, Y, step):
    N = X.shape[0]
    n = (N + step - 1) // step * step
    if n == N:
        return X, Wt, Y
    pad = n - N
    return (torch.cat([X, X.new_zeros(pad, X.shape[1])]), torch.cat([Wt, Wt.new_zeros(pad)]),
            torch.cat([Y, Y.new_zeros(pad, Y.shape[1])]))


def _manual_chunk_flat(x, w, y, *flat):
    """The hand-written chunk on flat parameters (W_1, b_1, ..., W_L, b_L): shapes are symbolic, so one
    compilation per depth and dtype serves every case."""
    risk, grads = _torch_manual_chunk(list(zip(flat[0::2], flat[1::2])), x, w, y)
    return (risk,) + tuple(t for g in grads for t in g)


_COMPILED = {}


def _compiled(key, fn):
    import torch

    # one code object serves every case and dtype: allow more than the default 8 recompilations, or
    # Dynamo silently falls back to eager for the later cases
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(256, getattr(torch._dynamo.config, name)))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, dynamic=True)
    return _COMPILED[key]


def make_torch_compile(lay, theta, x, w, y, chunk_elems):
    torch, dt, T, X, Wt, Y = _torch_setup(lay, theta, x, w, y)
    K, N = T.shape[0], X.shape[0]
    step = _chunk(lay, K, N, chunk_elems)
    X, Wt, Y = _padded(torch, X, Wt, Y, step)  # zero-weight padding: one chunk shape, no recompiles
    L = lay.num_layers
    flat = [t.contiguous() for Wb in lay.unpack(T) for t in Wb]
    f = _compiled(("manual", L), _manual_chunk_flat)

    def run():
        with torch.no_grad():
            risk = torch.zeros(K, dtype=dt)
            acc = [torch.zeros_like(t) for t in flat]
            for s in range(0, X.shape[0], step):
                r, *g = f(X[s:s + step], Wt[s:s + step], Y[s:s + step], *flat)
                risk += r
                for a, gi in zip(acc, g):
                    a += gi
            return risk, torch.cat([a.reshape(K, -1) for a in acc], dim=1)

    return run


def make_torch_compile_mmfree(lay, theta, x, w, y, chunk_elems):
    if not (lay.num_layers == 2 and lay.widths[0] == 1 and lay.widths[2] == 1):
        return None
    torch, dt, T, X, Wt, Y = _torch_setup(lay, theta, x, w, y)
    K, N = T.shape[0], X.shape[0]
    H = lay.widths[1]
    step = _chunk(lay, K, N, chunk_elems)
    X, Wt, Y = _padded(torch, X, Wt, Y, step)
    W1, b1, V, c = T[:, :H], T[:, H:2 * H], T[:, 2 * H:3 * H], T[:, 3 * H:3 * H + 1]

    def chunk_fn(W1, b1, V, c, x, w, y):
        z = x[None, :, :] * W1[:, None, :] + b1[:, None, :]      # (K, n, H): neuron axis last
        m = z > 0
        a = torch.where(m, z, 0.0)
        out = (a * V[:, None, :]).sum(-1) + c                    # (K, n)
        r = out - y[None, :, 0]
        g = 2.0 * w[None, :] * r
        risk = (g * r).sum(-1) * 0.5
        gm = torch.where(m, g[..., None], 0.0)
        s = (gm * x[None, :, :]).sum(1)                          # (K, H)
        t = gm.sum(1)
        u = (g[..., None] * a).sum(1)
        return risk, torch.cat([V * s, V * t, u, g.sum(-1, keepdim=True)], dim=1)

    f = _compiled(("mmfree",), chunk_fn)

    def run():
        with torch.no_grad():
            risk = torch.zeros(K, dtype=dt)
            grad = torch.zeros_like(T)
            for s in range(0, X.shape[0], step):
                r, g = f(W1, b1, V, c, X[s:s + step], Wt[s:s + step], Y[s:s + step])
                risk += r
                grad += g
            return risk, grad

    return run


def make_jax(lay, theta, x, w, y, chunk_elems):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    K, N = theta.shape[0], x.shape[0]
    step = _chunk(lay, K, N, chunk_elems)
    nch = (N + step - 1) // step
    pad = nch * step - N
    dt = jnp.float32 if theta.dtype == np.float32 else jnp.float64
    Xc = jnp.asarray(np.concatenate([x, np.zeros((pad, x.shape[1]))]), dtype=dt).reshape(nch, step, -1)
    Wc = jnp.asarray(np.concatenate([w, np.zeros(pad)]), dtype=dt).reshape(nch, step)
    Yc = jnp.asarray(np.concatenate([y, np.zeros((pad, y.shape[1]))]), dtype=dt).reshape(nch, step, -1)
    T = jnp.asarray(theta)
    L = lay.num_layers
    widths, wo, bo = lay.widths, lay.w_offsets, lay.b_offsets

    def risk_chunk(T, xc, wc, yc):
        a = xc
        for k in range(L):
            W = T[:, wo[k]:wo[k] + widths[k + 1] * widths[k]].reshape(K, widths[k + 1], widths[k])
            b = T[:, bo[k]:bo[k] + widths[k + 1]]
            z = (jnp.einsum("nd,khd->knh", a, W) if k == 0 else jnp.einsum("knd,khd->knh", a, W)) + b[:, None, :]
            a = jax.nn.relu(z) if k < L - 1 else z
        r = a - yc[None]
        rk = jnp.sum(wc[None, :, None] * r * r, axis=(1, 2))
        return rk.sum(), rk

    vg = jax.value_and_grad(risk_chunk, has_aux=True)

    @jax.jit
    def full(T, Xc, Wc, Yc):
        def body(carry, c):
            (_, rk), g = vg(T, *c)
            return (carry[0] + rk, carry[1] + g), None

        (risk, grad), _ = jax.lax.scan(body, (jnp.zeros(K, dt), jnp.zeros_like(T)), (Xc, Wc, Yc))
        return risk, grad

    def run():
        r, g = full(T, Xc, Wc, Yc)
        g.block_until_ready()
        return r, g

    return run


PEERS = [
    ("reluflow", make_reluflow, None),
    ("numpy-ref", make_numpy_ref, None),
    ("torch-autograd", make_torch_autograd, "torch"),
    ("torch-manual", make_torch_manual, "torch"),
    ("torch-compile", make_torch_compile, "torch"),
    ("torch-compile-mmfree", make_torch_compile_mmfree, "torch"),
    ("jax-jit", make_jax, "jax"),
]
COMPILE_PEERS = ("torch-compile", "torch-compile-mmfree", "jax-jit")


def importable(mod):
    if mod is None:
        return True, ""
    try:
        __import__(mod)
        return True, ""
    except Exception as exc:  # noqa: BLE001
        return False, f"{mod} not importable: {exc.__class__.__name__}"


def to_numpy(a):
    if hasattr(a, "detach"):
        a = a.detach()
    return np.asarray(a, dtype=np.float64)


def time_peer(make, args, repeats, limit):
    """(median seconds, runs, result, note) under a wall-clock limit for setup + warm-up + runs."""
    t_start = time.perf_counter()
    with time_limit(limit):
        fn = make(*args)
        if fn is None:
            return None, 0, None, "not applicable", None
        t0 = time.perf_counter()
        res = fn()                      # warm-up (and compilation)
        t_warm = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            if times and time.perf_counter() - t_start + np.median(times) > limit:
                break
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    note = f"warm-up {t_warm:.1f} s" if t_warm > 5 * np.median(times) + 1.0 else ""
    if len(times) < repeats:
        note = (note + "; " if note else "") + f"only {len(times)} runs within the limit"
    return float(np.median(times)), len(times), res, note, float(np.min(times))


def rel_err(res, ref):
    r, g = to_numpy(res[0]), to_numpy(res[1])
    r0, g0 = to_numpy(ref[0]), to_numpy(ref[1])
    return max(float(np.max(np.abs(r - r0) / np.maximum(np.abs(r0), 1e-300))),
               float(np.linalg.norm(g - g0) / max(np.linalg.norm(g0), 1e-300)))


# ---- machine -------------------------------------------------------------------------------------
def gemm_rate(dtype, n=2048, reps=5):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = a.T.copy()
    a @ b
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / np.median(ts) / 1e9


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown-cpu"


_MEM_SCRIPT = r"""
import gc, json, sys
import numpy as np
sys.path.insert(0, {bench_dir!r})
import bench_risk_grad as B
from reluflow.backends import cpu

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0

out = {{}}
for case, dt in [({case!r}, {dt!r})]:
    lay, theta, x, w, y = B.make_problem(case, np.dtype(dt))
    cpu.risk_and_grad(lay, theta[:1], x[:8], w[:8], y[:8])   # load the extension, start the threads
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                                       # reset VmHWM to the current RSS
    except OSError:
        out[case + "/" + dt] = None
        continue
    base = status("VmRSS")
    res = cpu.risk_and_grad(lay, theta, x, w, y, True)
    peak = status("VmHWM")
    out[case + "/" + dt] = dict(peak_delta_bytes=peak - base, output_bytes=res[0].nbytes + res[1].nbytes)
    del res
print(json.dumps(out))
"""


def measure_memory(items):
    """Peak RSS increase of one reluflow call, each (case, dtype) in a fresh process (freed pages of an
    earlier call would otherwise hide the allocations)."""
    out = {}
    for case, dt in items:
        script = _MEM_SCRIPT.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), case=case, dt=dt)
        try:
            res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
            out.update(json.loads(res.stdout.strip().splitlines()[-1]))
        except Exception as exc:  # noqa: BLE001
            print(f"(memory measurement of {case}/{dt} failed: {exc})")
    return out


# ---- main ----------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--quick", action="store_true", help="3 runs, 15 s per peer, no compiled peers")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per peer (default 5; quick 3)")
    ap.add_argument("--peer-time", type=float, default=None, help="seconds per peer and case (default 60)")
    ap.add_argument("--peer-chunk-elems", type=int, default=1 << 20,
                    help="activations per chunk of the peers (K * chunk * max width); 2^20 keeps them in L2")
    ap.add_argument("--peers", default=None, help="comma-separated subset of peers")
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/risk_grad_<cpu>.json)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every peer (OpenMP, BLAS, torch, XLA); default: the libraries' defaults. "
                         "With a busy neighbour on a small machine, --threads 1 still compares like with like")
    ap.add_argument("--merge", action="store_true",
                    help="keep the entries of --out for the cases/dtypes not run now (re-measure a subset)")
    args = ap.parse_args(argv)
    t_total = time.perf_counter()
    if args.threads is not None and os.environ.get("_RF_BENCH_THREADS") != str(args.threads):
        # thread counts are read when the libraries load: set them and start again
        n = str(args.threads)
        env = dict(os.environ, _RF_BENCH_THREADS=n, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n,
                   MKL_NUM_THREADS=n,
                   XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                              f" intra_op_parallelism_threads={n}").strip())
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + (argv or sys.argv[1:]), env)
    if args.threads is not None:
        try:
            import torch

            torch.set_num_threads(args.threads)
            torch.set_num_interop_threads(args.threads)
        except Exception:  # noqa: BLE001
            pass

    import reluflow
    from reluflow import _core

    cases = [c.strip().upper() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            ap.error(f"--cases: unknown case {c!r}; expected some of {','.join(CASES)}")
    dtypes = [np.dtype(d.strip()) for d in args.dtypes.split(",")]
    repeats = args.repeats or (3 if args.quick else 5)
    limit = args.peer_time or (15.0 if args.quick else 60.0)
    wanted = set(args.peers.split(",")) if args.peers else None

    machine = dict(cpu=cpu_name(), cores=os.cpu_count(), host=socket.gethostname(), simd_path=_core.simd_path(),
                   # which build runs (portable dispatching or -march=native): the two are compared side by side
                   native_build=getattr(_core, "native_build", None),
                   threads_requested=args.threads,
                   omp_threads=_core.max_threads(), numpy=np.__version__,
                   sgemm_gflops=gemm_rate(np.float32), dgemm_gflops=gemm_rate(np.float64))
    for mod in ("torch", "jax"):
        try:
            machine[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            machine[mod] = None
    build = {True: "-march=native", False: "portable"}.get(machine["native_build"], "?")
    print(f"reluflow {getattr(reluflow, '__version__', '?')}: _core.simd_path() = {machine['simd_path']} "
          f"({build} build; RELUFLOW_SIMD forces a path), "
          f"{machine['omp_threads']} OpenMP threads; CPU {machine['cpu']} ({machine['cores']} cores)")
    print(f"numpy {np.__version__} matmul 2048^2: sgemm {machine['sgemm_gflops']:.1f} GFLOP/s, "
          f"dgemm {machine['dgemm_gflops']:.1f} GFLOP/s; torch {machine['torch']}, jax {machine['jax']}")
    if machine["torch"]:
        import torch

        machine["torch_threads"] = torch.get_num_threads()

    results = []
    print(f"\n{'case':4} {'dtype':7} {'peer':22} {'median ms':>10} {'min ms':>9} {'GFLOP/s':>9} {'runs':>4} "
          f"{'err':>8}  note")
    for case in cases:
        for dt in dtypes:
            lay, theta, x, w, y = make_problem(case, dt)
            fl = flops(CASES[case]["widths"], CASES[case]["N"], CASES[case]["K"])
            entry = dict(case=case, dtype=dt.name, **CASES[case], gflop=fl / 1e9, peers={},
                         measured=time.strftime("%Y-%m-%d %H:%M:%S"),
                         load_avg_before=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
            ref_res = None
            for name, make, mod in PEERS:
                if wanted and name not in wanted and name != "reluflow":
                    continue
                ok, why = importable(mod)
                if not ok:
                    entry["peers"][name] = dict(skipped=why)
                    continue
                if args.quick and name in COMPILE_PEERS:
                    entry["peers"][name] = dict(skipped="--quick: compiled peers skipped")
                    continue
                try:
                    med, runs, res, note, tmin = time_peer(make, (lay, theta, x, w, y, args.peer_chunk_elems),
                                                     repeats, limit)
                except PeerTimeout as exc:
                    entry["peers"][name] = dict(skipped=f"timed out: {exc} (setup/compile/warm-up)")
                    print(f"{case:4} {dt.name:7} {name:22} {'-':>10} {'-':>9} {'-':>9} {'-':>4} {'-':>8}  skipped: {exc}")
                    continue
                except Exception as exc:  # noqa: BLE001 - a failing peer is reported, not fatal
                    msg = f"failed: {exc.__class__.__name__}: {str(exc)[:200]}"
                    entry["peers"][name] = dict(skipped=msg)
                    print(f"{case:4} {dt.name:7} {name:22} {'-':>10} {'-':>9} {'-':>9} {'-':>4} {'-':>8}  {msg}")
                    continue
                if med is None:
                    continue
                if name == "reluflow":
                    ref_res = res
                err = rel_err(res, ref_res) if ref_res is not None else float("nan")
                entry["peers"][name] = dict(median_s=med, min_s=tmin, runs=runs, gflops=fl / med / 1e9,
                                            rel_err_vs_reluflow=err, note=note)
                print(f"{case:4} {dt.name:7} {name:22} {med * 1e3:10.2f} {tmin * 1e3:9.2f} {fl / med / 1e9:9.1f} "
                      f"{runs:4d} {err:8.1e}  {note}", flush=True)
            timed = {k: v for k, v in entry["peers"].items() if "median_s" in v}
            others = {k: v for k, v in timed.items() if k != "reluflow"}
            if "reluflow" in timed and others:
                best = min(others, key=lambda k: others[k]["median_s"])
                entry["best_peer"] = best
                entry["ratio_to_best_peer"] = others[best]["median_s"] / timed["reluflow"]["median_s"]
            results.append(entry)

    mem = measure_memory([(r["case"], r["dtype"]) for r in results])
    print(f"\n{'case':4} {'dtype':7} {'reluflow ms':>11} {'GFLOP/s':>8} {'best peer':>22} {'peer ms':>9} "
          f"{'ratio':>6} {'RSS+ MiB':>9} {'out MiB':>8}")
    for r in results:
        rf_ = r["peers"].get("reluflow", {})
        m = mem.get(f"{r['case']}/{r['dtype']}")
        r["memory"] = m
        best = r.get("best_peer")
        bp = r["peers"][best]["median_s"] * 1e3 if best else float("nan")
        print(f"{r['case']:4} {r['dtype']:7} {rf_.get('median_s', float('nan')) * 1e3:11.2f} "
              f"{rf_.get('gflops', float('nan')):8.1f} {best or '-':>22} {bp:9.2f} "
              f"{r.get('ratio_to_best_peer', float('nan')):6.1f} "
              f"{(m['peak_delta_bytes'] / 2**20) if m else float('nan'):9.1f} "
              f"{(m['output_bytes'] / 2**20) if m else float('nan'):8.2f}")
    print("ratio = best peer's median time / reluflow's; err = max relative difference (risk, gradient norm) "
          "to reluflow;\nRSS+ = peak RSS increase during one reluflow call (VmHWM, includes the outputs 'out')")
    print(f"total time {time.perf_counter() - t_total:.0f} s")

    out = args.out
    if out is None:
        tag = re.sub(r"[^A-Za-z0-9]+", "-", f"{machine['cpu']}-{machine['cores']}cpu").strip("-").lower()
        if args.threads is not None:
            tag += f"-{args.threads}thread"
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"risk_grad_{tag}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if args.merge and os.path.exists(out):
        with open(out) as f:
            old = json.load(f).get("results", [])
        done = {(r["case"], r["dtype"]) for r in results}
        results = [r for r in old if (r["case"], r["dtype"]) not in done] + results
        results.sort(key=lambda r: (list(CASES).index(r["case"]) if r["case"] in CASES else 99, r["dtype"]))
    with open(out, "w") as f:
        json.dump(dict(machine=machine, repeats=repeats, peer_time_s=limit, results=results,
                       convention="shallow: K N H (4d+9); deep: K N sum 6 l_k l_(k-1)"), f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
