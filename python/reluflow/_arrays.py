"""Arrays from any library (SPEC §7): numpy, CuPy, PyTorch, JAX, and anything with ``__dlpack__``,
``__cuda_array_interface__`` or ``__array__``.

The backends take numpy arrays (host) or CuPy arrays (device), and the reference backend any other
array-API array too (array-api-strict, ...), computing in that array's own namespace.
:func:`to_native` gives one without a copy where the library allows it (DLPack), and
:func:`from_native` turns a result back into the caller's library: numpy in, numpy out; CuPy in, CuPy
out; torch in, torch out (same device); JAX in, JAX out; another array-API namespace in, the same out.
:func:`namespace_of`, :func:`to_host` and :func:`from_host` are the reference code's three
non-standard steps: which ``xp``, an array to host numpy (where host code needs it), and host numpy
nodes into ``xp`` on theta's device.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Origin", "to_native", "from_native", "library_of", "namespace_of", "to_host", "from_host",
           "is_foreign", "is_numpy", "NUMPY_XP"]

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


# libraries whose arrays are converted to numpy (host) or CuPy (device) for the backends: JAX arrays are
# immutable, torch tensors are not array-API arrays; both are read through DLPack
_CONVERTED = ("torch", "jax")


def is_foreign(a: Any) -> bool:
    """Whether ``a`` is an array-API array of a namespace other than numpy, CuPy, torch and JAX (e.g.
    array-api-strict): the reference backend computes in its namespace, and results come back in it."""
    return (hasattr(a, "__array_namespace__") and not isinstance(a, np.ndarray)
            and library_of(a) not in ("numpy", "cupy") + _CONVERTED)


class _NumpyBefore21:
    """numpy < 2.1 as an array-API ``xp``: numpy plus the three standard functions the reference calls
    that it lacks (``astype``, ``concat``, ``matrix_transpose``), spelled as numpy 2.1 computes them."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def astype(x, dtype, /, *, copy=True):
        return x.astype(dtype, copy=copy)

    @staticmethod
    def concat(arrays, /, *, axis=0):
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def matrix_transpose(x, /):
        return np.swapaxes(x, -1, -2)


#: the reference's ``xp`` for numpy arrays: numpy itself from 2.1 on
NUMPY_XP = np if all(hasattr(np, f) for f in ("astype", "concat", "matrix_transpose")) else _NumpyBefore21()


def is_numpy(xp) -> bool:
    """Whether the namespace ``xp`` is numpy's (host memory, numpy arrays)."""
    return xp is np or isinstance(xp, _NumpyBefore21)


def namespace_of(a: Any):
    """The array-API namespace ``xp`` of the reference backend for ``a``: numpy for numpy arrays (and
    anything that is not an array), CuPy's (``array_api_compat.cupy`` where that is installed, else
    ``cupy`` itself, whose main namespace follows the standard from CuPy 14) for CuPy arrays, else
    ``a.__array_namespace__()``."""
    lib = library_of(a)
    if lib == "cupy":
        try:
            return importlib.import_module("array_api_compat.cupy")
        except ImportError:
            return importlib.import_module("cupy")
    if is_foreign(a):
        return a.__array_namespace__()
    return NUMPY_XP


def to_host(a: Any) -> np.ndarray:
    """``a`` as a numpy array in host memory: numpy arrays unchanged, CuPy arrays by ``.get()`` (a
    device-to-host copy), other arrays by DLPack (``np.from_dlpack``), else ``np.asarray``. For the
    host-side work of the reference: sampling, the 1-D kink partition, the integrators' bookkeeping."""
    if isinstance(a, np.ndarray):
        return a
    if library_of(a) == "cupy":
        return a.get()
    if hasattr(a, "__dlpack__"):
        try:
            return np.from_dlpack(a)
        except (TypeError, BufferError, RuntimeError, ValueError):
            pass
    return np.asarray(a)


def from_host(xp, a: np.ndarray, like: Any, dtype=None):
    """The host numpy array ``a`` in namespace ``xp`` on the device of ``like`` (an ``xp`` array), once:
    numpy gets ``a`` itself (no copy); on CuPy this is a host-to-device copy onto the current device
    (``cupy.asarray`` takes no ``device=`` before CuPy 14); other namespaces get ``device=like.device``."""
    if is_numpy(xp):
        return np.asarray(a, dtype=dtype)
    if library_of(like) == "cupy":
        return xp.asarray(a, dtype=dtype)
    return xp.asarray(a, dtype=dtype, device=like.device)


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
    with ``a`` where its library allows (DLPack), and where it came from; an array of another
    array-API namespace (:func:`is_foreign`) is returned as it is. Anything else (lists,
    scalars) is returned unchanged with the numpy origin, for the usual checks."""
    lib = library_of(a)
    if isinstance(a, np.ndarray) or lib == "numpy" or not (hasattr(a, "__dlpack__") or hasattr(a, "__array__")
                                                            or hasattr(a, "__cuda_array_interface__")):
        return a, NUMPY
    if lib == "cupy":
        return a, Origin("cupy", True)
    if is_foreign(a):
        return a, Origin(lib, False)   # the reference computes in its namespace (array-api-strict, ...)
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
    """``result`` (numpy or CuPy, or already in a foreign array-API namespace) in the library of
    ``origin``; None stays None."""
    if result is None or origin.library in ("numpy", "cupy"):
        return result
    if origin.library == "torch":
        torch = importlib.import_module("torch")
        return torch.from_dlpack(result) if origin.device else torch.from_numpy(np.ascontiguousarray(result))
    if origin.library == "jax":
        return importlib.import_module("jax.numpy").asarray(result)
    return result  # a foreign array-API namespace (computed there), or numpy for other DLPack producers
