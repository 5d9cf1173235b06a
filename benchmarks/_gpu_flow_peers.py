"""The peers of bench_gpu_flow.py: SGD of [1, H, 1] on sin(3x) as a skilled PyTorch / JAX user writes it,
the whole loop on one device ("cuda" on the GPU machine, "cpu" for the smoke test here).

Experiment (bench_flow.py's): K networks at once, ``n`` fresh U[0, 1] samples per step shared by the K
networks, per-network empirical risk mean_j (N_k(x_j) - sin(3 x_j))^2, plain SGD
``theta_{n+1} = theta_n - lr_n grad`` with ``lr_n = lr0 (n + 1)^-0.1`` of the GLOBAL step index n.

Every ``make_*`` returns a Peer:
  prepare(steps) -> seconds spent compiling for a run of ``steps`` steps (0.0 when nothing compiles);
  run(steps, start, want_theta=False) -> (theta (k, P) float64 numpy or None, loss (K,) numpy): from theta0
      (every run starts there), steps start .. start + steps - 1, blocking until the device is done;
      ``want_theta``: True for all K networks, an int k for the first k only (a small copy to the host);
      ``loss`` is each network's empirical risk at the last step's samples (before its update);
  samples: where the samples come from (a sentence for the JSON).
Networks are independent, so ``chunk_elems`` (torch peers) splits the K networks into groups of at most
that many (network, sample, neuron) triples: the same numbers, bounded memory (the large-width case).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

# one step formula for the CPU benchmark and this one (bench_flow.py imports reluflow: the benchmarks' env)
from bench_flow import LR_POW, jax_step_fn, join_theta, split_theta, torch_hand_step  # noqa: F401


def lr_of(lr0: float, n: int) -> float:
    """The step size of global step n: lr0 (n + 1)^-0.1."""
    return lr0 * (n + 1) ** LR_POW


def first_rows(want_theta) -> slice:
    """The networks a run copies to the host: all for True, the first k for an int k."""
    return slice(None) if want_theta is True else slice(0, int(want_theta))


@dataclass
class Peer:
    prepare: Callable[[int], float]
    run: Callable[..., tuple]
    samples: str
    info: dict


# ---- PyTorch --------------------------------------------------------------------------------------

def torch_autograd_step(torch, W, b, v, c, x, lr):
    """The same step by autograd (an independent check of torch_hand_step and of the JAX step)."""
    params = [t.detach().clone().requires_grad_(True) for t in (W, b, v, c)]
    W_, b_, v_, c_ = params
    z = x[None, :, None] * W_[:, None, :] + b_[:, None, :]
    out = (torch.relu(z) * v_[:, None, :]).sum(-1) + c_[:, None]
    loss = ((out - torch.sin(3 * x)) ** 2).mean(dim=1)
    grads = torch.autograd.grad(loss.sum(), params)
    return tuple(p.detach() - lr * g for p, g in zip(params, grads)) + (loss.detach(),)


def _chunks(K: int, n: int, H: int, chunk_elems: int | None):
    """Slices of the K networks with at most chunk_elems (network, sample, neuron) triples each."""
    if chunk_elems is None:
        return [slice(0, K)]
    per = max(1, chunk_elems // (n * H))
    return [slice(a, min(K, a + per)) for a in range(0, K, per)]


def _torch_common(torch, theta0, H, dtype, device, n):
    dev = torch.device(device)
    tdt = getattr(torch, dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    src = torch.as_tensor(np.ascontiguousarray(theta0), device=dev) if isinstance(theta0, np.ndarray) else theta0

    def fresh():
        """The four parameter tensors of theta0 (contiguous copies on the device, dtype of the run)."""
        return [t.to(device=dev, dtype=tdt).contiguous().clone() for t in split_theta(src, H)]

    return dev, tdt, sync, fresh


def _torch_loop(torch, dev, tdt, sync, fresh, step, seed, n, lr0, chunks, lr_tensor=None, mark=None):
    """run(steps, start, want_theta) of a torch peer; ``step`` is eager or compiled; the samples are
    torch.rand(n) of a generator seeded with ``seed`` at every run (on the device, outside any graph)."""

    def run(steps, start, want_theta=False):
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        state = fresh()
        K = state[0].shape[0]
        loss = torch.empty(K, dtype=tdt, device=dev) if len(chunks) > 1 else None
        with torch.no_grad():
            for i in range(steps):
                x = torch.rand(n, device=dev, dtype=tdt, generator=gen)
                lr = lr_of(lr0, start + i)
                if lr_tensor is not None:   # a 0-d device tensor: the compiled step does not recompile
                    lr_tensor.fill_(lr)
                    lr = lr_tensor
                if len(chunks) == 1:
                    if mark is not None:
                        mark()
                    *state, loss = step(*state, x, lr)
                else:   # networks are independent: each group's new parameters overwrite its slice
                    for sl in chunks:
                        if mark is not None:
                            mark()
                        out = step(*(t[sl] for t in state), x, lr)
                        for t, o in zip(state, out[:4]):
                            t[sl].copy_(o)
                        loss[sl].copy_(out[4])
        sync()
        rows = first_rows(want_theta)
        theta = join_theta(*(t[rows].double().cpu().numpy() for t in state)) if want_theta else None
        return theta, loss.double().cpu().numpy()

    return run


def make_torch_eager(torch, theta0, H, dtype, seed, device, n, lr0, chunk_elems=None) -> Peer:
    """PyTorch eager, the hand-written step (torch_hand_step)."""
    dev, tdt, sync, fresh = _torch_common(torch, theta0, H, dtype, device, n)
    chunks = _chunks(theta0.shape[0], n, H, chunk_elems)
    run = _torch_loop(torch, dev, tdt, sync, fresh, lambda *a: torch_hand_step(torch, *a), seed, n, lr0, chunks)
    return Peer(lambda steps: 0.0, run, f"torch.rand({n}) on {device} each step (eager)",
                {"chunks": len(chunks), "step": lambda *a: torch_hand_step(torch, *a)})


def make_torch_compile(torch, theta0, H, dtype, seed, device, n, lr0, mode, chunk_elems=None) -> Peer:
    """torch.compile (dynamic=False) of torch_hand_step on the flat theta (K, 3H + 1) -> (theta', loss):
    mode "reduce-overhead" = inductor + CUDA graphs (on cuda; elsewhere inductor skips the graphs),
    "default" = inductor alone. lr is a 0-d device tensor filled each step, so one compile serves every
    step; the samples are drawn by torch.rand on the device OUTSIDE the compiled graph (copied into the
    graph's static input at each replay). With "reduce-overhead": cudagraph_mark_step_begin() before
    every call, and the new theta is cloned outside the graph before it is fed back: a CUDA-graph output
    is overwritten by the next replay, and feeding it back as an input raises in PyTorch <= 2.12
    (pytorch#152887); one copy of theta per step, a single flat tensor so that it is one launch."""
    dev, tdt, sync, fresh = _torch_common(torch, theta0, H, dtype, device, n)
    K = theta0.shape[0]
    chunks = _chunks(K, n, H, chunk_elems)

    def flat_step(theta, x, lr):
        W, b, v, c = theta[:, :H], theta[:, H:2 * H], theta[:, 2 * H:3 * H], theta[:, 3 * H]
        W, b, v, c, loss = torch_hand_step(torch, W, b, v, c, x, lr)
        return torch.cat([W, b, v, c[:, None]], dim=1), loss

    step = torch.compile(flat_step, mode=mode, dynamic=False)
    lr_t = torch.zeros((), dtype=tdt, device=dev)
    graphs = mode == "reduce-overhead"
    mark = torch.compiler.cudagraph_mark_step_begin if graphs else (lambda: None)

    def run(steps, start, want_theta=False):
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        theta = torch.cat([t if t.ndim == 2 else t[:, None] for t in fresh()], dim=1)
        loss = torch.empty(K, dtype=tdt, device=dev) if len(chunks) > 1 else None
        with torch.no_grad():
            for i in range(steps):
                x = torch.rand(n, device=dev, dtype=tdt, generator=gen)
                lr_t.fill_(lr_of(lr0, start + i))
                if len(chunks) == 1:
                    mark()
                    new, loss = step(theta, x, lr_t)
                    theta = new.clone() if graphs else new
                else:   # networks are independent: each group's new parameters overwrite its slice
                    for sl in chunks:
                        mark()
                        new, part = step(theta[sl], x, lr_t)
                        theta[sl].copy_(new)
                        loss[sl].copy_(part)
            out = loss.double().cpu().numpy()   # read before any other replay
        sync()
        theta_h = theta[first_rows(want_theta)].double().cpu().numpy() if want_theta else None
        return theta_h, out

    def step4(W, b, v, c, x, lr):
        """The compiled step with torch_hand_step's signature (for the one-step check)."""
        mark()
        new, loss = step(torch.cat([W, b, v, c[:, None]], dim=1), x, lr)
        new, loss = new.clone(), loss.clone()
        return new[:, :H], new[:, H:2 * H], new[:, 2 * H:3 * H], new[:, 3 * H], loss

    done = {"compiled": False}

    def prepare(steps):
        """Compiles (and, with CUDA graphs, warms up and records) by 3 steps; the time of those."""
        if done["compiled"]:
            return 0.0
        t = time.perf_counter()
        run(3, 0)
        done["compiled"] = True
        return time.perf_counter() - t

    def check(steps=8):
        """The compiled loop against the eager one on the same samples and steps (after prepare):
        max |theta_compiled - theta_eager| / max |theta_eager|."""
        eager = _torch_loop(torch, dev, tdt, sync, fresh, lambda *a: torch_hand_step(torch, *a), seed, n, lr0,
                            chunks)
        a, _ = run(steps, 0, want_theta=True)
        b, _ = eager(steps, 0, want_theta=True)
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    info = {"mode": mode, "cuda_graphs": graphs and dev.type == "cuda", "chunks": len(chunks), "check": check,
            "step": step4}
    return Peer(prepare, run, f"torch.rand({n}) on {device} each step, outside the compiled graph", info)


# ---- JAX --------------------------------------------------------------------------------------------

def make_jax_scan(jax, theta0, H, dtype, seed, device, n, lr0) -> Peer:
    """The whole loop as one jax.lax.scan over the steps, jit-compiled ahead of time for each run length
    (prepare: lower + compile, timed apart); the samples of step m are
    jax.random.uniform(fold_in(PRNGKey(seed), m)), m the global step index, drawn inside the scan;
    float64 needs jax_enable_x64 (set by the caller before any JAX array exists)."""
    jnp = jax.numpy
    dev = jax.devices(device)[0]
    jdt = jnp.dtype(dtype)
    if jdt == jnp.float64 and not jax.config.jax_enable_x64:
        raise RuntimeError("float64 JAX needs jax_enable_x64 (set before any JAX computation)")
    key0 = jax.random.PRNGKey(seed)
    step = jax_step_fn(jax, jnp)

    def body(params, m):
        x = jax.random.uniform(jax.random.fold_in(key0, m), (n,), dtype=jdt)
        lr = lr0 * (m.astype(jdt) + 1) ** LR_POW
        return step(params, x, lr)

    params0 = tuple(jax.device_put(np.ascontiguousarray(a, dtype=np.dtype(dtype)), dev)
                    for a in split_theta(np.asarray(theta0), H))
    compiled = {}

    def prepare(steps):
        if steps in compiled:
            return 0.0

        def loop(params, m0):
            params, losses = jax.lax.scan(body, params, m0 + jnp.arange(steps, dtype=jnp.int32))
            return params, losses[-1]

        t = time.perf_counter()
        compiled[steps] = jax.jit(loop).lower(params0, jax.device_put(np.int32(0), dev)).compile()
        return time.perf_counter() - t

    def run(steps, start, want_theta=False):
        prepare(steps)
        params, loss = compiled[steps](params0, jax.device_put(np.int32(start), dev))
        jax.block_until_ready((params, loss))
        rows = first_rows(want_theta)
        theta = join_theta(*(np.asarray(p[rows], dtype=np.float64) for p in params)) if want_theta else None
        return theta, np.asarray(loss, dtype=np.float64)

    return Peer(prepare, run, f"jax.random.uniform(fold_in(key, step), ({n},)) on {device}, inside the scan",
                {"step": step, "device": dev})


# ---- the one-step check ------------------------------------------------------------------------------

def step_error(new, ref) -> float:
    """max |new - ref| / max |ref| over the four parameter groups and the loss (numpy arrays)."""
    num = max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
              for a, b in zip(new, ref))
    den = max(float(np.max(np.abs(np.asarray(b, dtype=np.float64)))) for b in ref)
    return num / den if den > 0 else num


def median_ratio_ok(a: float, b: float, tol: float) -> bool:
    """|a / b - 1| <= tol for finite positive medians (statistical agreement of two peers)."""
    return bool(math.isfinite(a) and math.isfinite(b) and b > 0 and abs(a / b - 1.0) <= tol)
