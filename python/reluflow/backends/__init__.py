"""Backend registry: which implementations exist here, and dispatch by name (SPEC §5)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BackendInfo", "backends", "resolve", "BACKEND_NAMES"]

BACKEND_NAMES = ("numpy", "cupy", "cpu", "cuda")


@dataclass(frozen=True)
class BackendInfo:
    """One backend: ``available`` here or not, and ``detail`` (what it runs on, or why not)."""

    name: str
    available: bool
    detail: str

    def __repr__(self) -> str:
        return f"{self.name}: {'available' if self.available else 'not available'} ({self.detail})"


def _core():
    try:
        from .. import _core  # noqa: PLC0415

        return _core, None
    except ImportError as exc:  # pragma: no cover - the extension is always built by pip install
        return None, f"C++ extension not importable: {exc}"


def _cuda():
    try:
        from .. import _cuda  # noqa: PLC0415
    except ImportError as exc:
        return None, f"the CUDA extension was not built (no nvcc at install time): {exc}"
    try:
        n = _cuda.device_count()
    except Exception as exc:  # pragma: no cover - depends on the driver
        return None, f"CUDA extension built, but the driver failed: {exc}"
    if n == 0:
        return None, "CUDA extension built, but no CUDA device is visible"
    return _cuda, None


def _cupy():
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
    core, why = _core()
    if core is not None:
        detail = f"C++ kernels, SIMD {core.simd_path()}, {core.max_threads()} OpenMP thread(s)"
        info["cpu"] = BackendInfo("cpu", True, detail)
    else:
        info["cpu"] = BackendInfo("cpu", False, why)
    cu, why = _cuda()
    info["cuda"] = BackendInfo("cuda", cu is not None, "CUDA kernels" if cu else why)
    return info


def resolve(name, theta) -> str:
    """The backend that will run: ``name`` checked against what is available; "auto" by array type."""
    if not isinstance(name, str):
        raise TypeError(f"backend: expected one of {('auto',) + BACKEND_NAMES}, got {name!r}")
    is_cupy = type(theta).__module__.split(".")[0] == "cupy"
    if name == "auto":
        if is_cupy:
            return "cupy"  # the CUDA kernels take over here once they implement risk_and_grad
        core, _ = _core()
        return "cpu" if core is not None and hasattr(core, "risk_and_grad") else "numpy"
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend: expected one of {('auto',) + BACKEND_NAMES}, got {name!r}")
    info = backends()[name]
    if not info.available:
        raise ValueError(f"backend: {name!r} is not available here: {info.detail}")
    if name in ("numpy", "cpu") and is_cupy:
        raise ValueError(f"backend: {name!r} takes numpy arrays, got a cupy array; use 'cupy' or 'auto'")
    if name in ("cupy", "cuda") and not is_cupy:
        raise ValueError(f"backend: {name!r} takes cupy arrays; move theta with cupy.asarray or use 'auto'")
    return name
