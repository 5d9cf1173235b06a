"""Which backends exist here and why not the others (SPEC §5, §7): ``rf.backends()`` and the
resolution of ``backend="auto"`` from the array type. Below the planner and the backends in the
layers: it only imports the extensions to see whether they load."""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

import numpy as np

from ._arrays import is_foreign, library_of

__all__ = ["BackendInfo", "backends", "resolve", "core", "cuda_extension", "cupy_module", "BACKEND_NAMES"]

BACKEND_NAMES = ("numpy", "cupy", "cpu", "cuda")


@dataclass(frozen=True)
class BackendInfo:
    """One backend: ``available`` here or not, and ``detail`` (what it runs on, or why not)."""

    name: str
    available: bool
    detail: str

    def __repr__(self) -> str:
        return f"{self.name}: {'available' if self.available else 'not available'} ({self.detail})"


# The compiled extensions are leaves (they import no Python module of the package); importlib keeps
# the layer checker, which sees only .py files, from reading them as imports of the package itself.
try:
    _CORE = importlib.import_module("reluflow._core")
    _CORE_ERROR = None
except ImportError as _exc:  # pragma: no cover - the extension is always built by pip install
    if "RELUFLOW_SIMD" in str(_exc):  # RELUFLOW_SIMD= or RELUFLOW_SIMD_DISABLE=
        raise  # a bad override is the user's error: never a silent fall-back to the numpy backend
    _CORE, _CORE_ERROR = None, f"C++ extension not importable: {_exc}"


def core():
    """``(reluflow._core, None)``, or ``(None, why not)`` when the C++ extension does not import."""
    return _CORE, _CORE_ERROR


@functools.lru_cache(maxsize=None)
def _cuda():
    try:  # loaded on demand (it initializes the CUDA driver), once
        _cuda = importlib.import_module("reluflow._cuda")
    except ImportError as exc:
        return None, f"the CUDA extension was not built (no nvcc at install time): {exc}"
    try:
        n = _cuda.device_count()
    except Exception as exc:  # pragma: no cover - depends on the driver
        return None, f"CUDA extension built, but the driver failed: {exc}"
    if n == 0:
        return None, "CUDA extension built, but no CUDA device is visible"
    return _cuda, None


def cuda_extension():
    """``(reluflow._cuda, None)`` when the CUDA extension is built and a device is visible, else
    ``(None, why not)``. Loaded on first use (it initializes the CUDA driver)."""
    return _cuda()


def cupy_module():
    """``(cupy, None)`` when CuPy imports and sees a device, else ``(None, why not)``."""
    return _cupy()


@functools.lru_cache(maxsize=None)
def _cupy():
    # cached: every plan asks (backends() from resolve()), and a failed import costs ~0.2 ms each time
    try:
        import cupy  # noqa: PLC0415
    except ImportError:
        return None, "cupy is not installed"
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover
        return None, f"cupy is installed but no device is usable: {exc}"
    return cupy, None


def backends() -> dict[str, BackendInfo]:
    """What is available here and why not the others: ``{name: BackendInfo}``."""
    info = {"numpy": BackendInfo("numpy", True, f"reference implementation, numpy {np.__version__}")}
    cp, why = _cupy()
    info["cupy"] = BackendInfo("cupy", cp is not None, "reference implementation on cupy" if cp else why)
    core_, why = core()
    if core_ is not None:
        detail = (f"C++ kernels, SIMD {core_.simd_path()} (compiled: {', '.join(core_.simd_paths_compiled())}; "
                  f"this CPU runs: {', '.join(core_.simd_paths_supported())}; RELUFLOW_SIMD overrides), "
                  f"{'-march=native' if getattr(core_, 'native_build', False) else 'portable'} build, "
                  f"{core_.max_threads()} OpenMP thread(s)")
        info["cpu"] = BackendInfo("cpu", True, detail)
    else:
        info["cpu"] = BackendInfo("cpu", False, why)
    cu, why = _cuda()
    info["cuda"] = BackendInfo("cuda", cu is not None, "CUDA kernels" if cu else why)
    return info


def resolve(name, theta) -> str:
    """The backend that will run: ``name`` checked against what is available; "auto" by array type.

    An array of another array-API namespace (array-api-strict, ...) runs the reference ("numpy", the
    code written against the standard, SPEC §7) in its own namespace: "auto" and "numpy" take it, the
    native backends refuse it (their kernels read numpy or CuPy memory)."""
    if not isinstance(name, str):
        raise TypeError(f"backend: expected one of {('auto',) + BACKEND_NAMES}, got {name!r}")
    is_cupy = type(theta).__module__.split(".")[0] == "cupy"
    foreign = library_of(theta) if is_foreign(theta) else None
    if name == "auto":
        if is_cupy:
            # the CUDA kernels where the extension is built and sees a device (they evaluate every plan:
            # the dense kernel, the partition path through it, the sweeps on the cpu); else the reference
            return "cuda" if _cuda()[0] is not None else "cupy"
        if foreign:
            return "numpy"  # the reference, in the array's own namespace
        return "cpu" if _CORE is not None else "numpy"
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend: expected one of {('auto',) + BACKEND_NAMES}, got {name!r}")
    info = backends()[name]
    if not info.available:
        raise ValueError(f"backend: {name!r} is not available here: {info.detail}")
    if foreign and name != "numpy":
        raise ValueError(f"backend: {name!r} runs on numpy or cupy arrays, not on an {foreign} array; use 'numpy' "
                         f"or 'auto' (the reference backend, computing in the array's own namespace)")
    if name in ("numpy", "cpu") and is_cupy:
        raise ValueError(f"backend: {name!r} takes numpy arrays, got a cupy array; use 'cupy' or 'auto'")
    if name in ("cupy", "cuda") and not is_cupy:
        raise ValueError(f"backend: {name!r} takes cupy arrays; move theta with cupy.asarray or use 'auto'")
    return name
