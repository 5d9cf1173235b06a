"""Shared by the GPU benchmarks (bench_gpu_*.py): open the device, or say why there is none."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def open_gpu(result: dict, write: Callable[[], None]) -> Any | None:
    """CuPy, once the CUDA extension loads and a device answers; else None.

    On success ``result["device"]`` is device 0's name (the caller prints it). Without a GPU, CuPy or
    the CUDA extension, ``result["skipped"]`` says why (printed), ``write()`` records it, and None
    tells the caller that there is nothing to time here.
    """
    try:
        import cupy as cp
        from reluflow.registry import cuda_extension

        ext, why = cuda_extension()
        if ext is None:
            raise RuntimeError(why)
        if cp.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as exc:  # no GPU, no CuPy or no CUDA extension: nothing to time here
        result["skipped"] = f"no GPU run: {exc}"
        print(result["skipped"])
        write()
        return None
    props = cp.cuda.runtime.getDeviceProperties(0)
    result["device"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return cp


def start_bench(name: str, out: str | None) -> tuple[dict, Callable[[], None], Any | None]:
    """A GPU benchmark's result dict ({"bench": name, "rows": [], "skipped": None}), its writer (the JSON
    to ``out``, None: nowhere; call it after every row) and CuPy from :func:`open_gpu` (None: no GPU
    here, the reason already written)."""
    result = {"bench": name, "rows": [], "skipped": None}

    def write():
        if out:
            Path(out).write_text(json.dumps(result, indent=1))

    return result, write, open_gpu(result, write)
