"""Arrays from any library (SPEC §7): numpy, CuPy, PyTorch, JAX, and anything with ``__dlpack__``,
``__cuda_array_interface__`` or ``__array__``.

The backends take numpy arrays (host) or CuPy arrays (device). :func:`to_native` gives one without a
copy where the library allows it (DLPack), and :func:`from_native` turns a result back into the
caller's library: numpy in, numpy out; CuPy in, CuPy out; torch in, torch out (same device); JAX in,
JAX out.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Origin", "to_native", "from_native", "library_of"]

_DLPACK_CPU = 1  # kDLCPU in DLPack's device types


def library_of(a: Any) -> str:
    """The top-level package that made ``a``: "numpy", "cupy", "torch", "jax", or another name."""
    mod = type(a).__module__.split(".")[0]
    return "jax" if mod in ("jax", "jaxlib") else mod


@dataclass(frozen=True)
class Origin:
    """Where an input array came from: its library and whether it lived on a GPU."""

    library: str
    device: bool = False


NUMPY = Origin("numpy")


def _on_device(a: Any) -> bool:
    if hasattr(a, "__cuda_array_interface__"):
        return True
    dev = getattr(a, "__dlpack_device__", None)
    if dev is not None:
        try:
            return int(dev()[0]) != _DLPACK_CPU
        except Exception:  # noqa: BLE001 - a producer whose device query fails is read as host memory
            return False
    return False


def to_native(a: Any, name: str) -> tuple[Any, Origin]:
    """``(array, origin)``: ``a`` as a numpy array (host memory) or a CuPy array (GPU memory), shared
    with ``a`` where its library allows (DLPack), and where it came from. Anything else (lists,
    scalars) is returned unchanged with the numpy origin, for the usual checks."""
    lib = library_of(a)
    if isinstance(a, np.ndarray) or lib == "numpy" or not (hasattr(a, "__dlpack__") or hasattr(a, "__array__")
                                                            or hasattr(a, "__cuda_array_interface__")):
        return a, NUMPY
    if lib == "cupy":
        return a, Origin("cupy", True)
    if lib == "torch" and getattr(a, "requires_grad", False):
        raise TypeError(f"{name}: a torch tensor that requires grad; pass {name}.detach() (reluflow computes "
                        f"its own gradients)")
    if _on_device(a):
        try:
            cupy = importlib.import_module("cupy")
        except ImportError as exc:
            raise ValueError(f"{name}: a {lib} array in GPU memory, but CuPy is not installed here to take it "
                             f"without a copy; move it to the host first (e.g. .cpu())") from exc
        return cupy.from_dlpack(a), Origin(lib, True)
    try:
        arr = np.from_dlpack(a) if hasattr(a, "__dlpack__") else np.asarray(a)
    except (TypeError, BufferError, RuntimeError):
        arr = np.asarray(a)
    return arr, Origin(lib, False)


def from_native(result: Any, origin: Origin) -> Any:
    """``result`` (numpy or CuPy) in the library of ``origin``; None stays None."""
    if result is None or origin.library in ("numpy", "cupy"):
        return result
    if origin.library == "torch":
        torch = importlib.import_module("torch")
        return torch.from_dlpack(result) if origin.device else torch.from_numpy(np.ascontiguousarray(result))
    if origin.library == "jax":
        return importlib.import_module("jax.numpy").asarray(result)
    return result  # another DLPack producer: numpy is its common currency
