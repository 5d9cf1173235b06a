"""Argument checks shared by the public functions: each error names the argument and what was expected."""
from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

from ._arrays import is_numpy, namespace_of, to_host, to_native

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """``"float32"``/``"float64"`` (or numpy equivalents) -> numpy dtype; anything else is a TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {dt}")
    return dt


def as_int(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def as_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def as_bool(value: Any, name: str) -> bool:
    """True or False (numpy bools too); anything else is a TypeError naming the argument."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _real_dtype_or_raise(value: Any, name: str) -> None:
    """Refuses what numpy would silently turn into floats: bools, complex numbers, strings, objects
    (ragged lists), so that ``x=["1", "2"]`` or ``A=[1j]`` is an error naming the argument."""
    try:
        probe = value if hasattr(value, "dtype") else np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name}: expected a rectangular array of real numbers, got a ragged "
                         f"{type(value).__name__}") from exc
    kind = np.dtype(probe.dtype).kind
    if kind not in "iuf":
        what = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes",
                "O": "objects (a ragged list?)"}.get(kind, f"dtype {probe.dtype}")
        raise TypeError(f"{name}: expected an array of real numbers, got {what}")


def as_float_array(value: Any, name: str, ndim: int | tuple[int, ...] | None = None,
                   finite: bool = True) -> np.ndarray:
    """A float64 numpy array (copying only when needed); checks dtype (real numbers only), ndim and
    finiteness."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a real number or an array of them, got {value!r}")
    value, origin = to_native(value, name)           # torch / JAX / DLPack arrays: read as numpy
    if origin.library != "numpy":
        value = to_host(value)                         # small host data (points, coefficients)
    _real_dtype_or_raise(value, name)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected an array of real numbers, got {type(value).__name__}") from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise ValueError(f"{name}: expected an array with {' or '.join(map(str, allowed))} "
                             f"dimension(s), got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, found NaN or inf")
    return arr


def as_coefficient_rows(value: Any, name: str, ndim: tuple[int, ...]) -> np.ndarray:
    """Piecewise-polynomial coefficients, one row per piece (local powers, increasing degree), as a
    float64 array. Rows of different lengths — pieces of different degree, a natural ragged list like
    ``[[1.0, 0.5], [0.2, 0.0, 1.0]]`` — are padded with zeros to the highest degree."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(r, (list, tuple, np.ndarray)) for r in value):
        rows = [as_float_array(r, f"{name}[{i}]", ndim=(1, 2)) for i, r in enumerate(value)]
        if len({r.shape for r in rows}) > 1:
            tails = {r.shape[1:] for r in rows}
            if len(tails) > 1:
                raise ValueError(f"{name}: rows of different degree must have the same number of "
                                 f"outputs, got row shapes {[r.shape for r in rows]}")
            padded = np.zeros((len(rows), max(r.shape[0] for r in rows)) + tails.pop())
            for i, r in enumerate(rows):
                padded[i, :r.shape[0]] = r
            value = padded
    return as_float_array(value, name, ndim=ndim)


def strictly_increasing(arr: np.ndarray, name: str) -> None:
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{name}: expected a 1-D array of at least 2 values, got shape {arr.shape}")
    if not np.all(np.diff(arr) > 0):
        raise ValueError(f"{name}: expected strictly increasing values, got {arr.tolist()}")


def array_namespace(arr: Any):
    """The reference backend's ``xp`` for ``arr``: numpy for numpy arrays, CuPy's namespace for CuPy
    arrays, ``arr.__array_namespace__()`` for other array-API arrays (``_arrays.namespace_of``)."""
    return namespace_of(arr)


def dtype_name(dtype: Any) -> str:
    """"float32" or "float64" of a numpy, CuPy or other array-API float dtype (others: their str)."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


def as_theta(theta: Any, num_params: int, name: str = "theta"):
    """A ``(K, P)`` float32/float64 array (numpy, CuPy or any other array-API namespace, kept there),
    finite, with P = ``num_params``. Arrays of torch, JAX and other DLPack producers are read as numpy
    (or CuPy) without a copy where possible."""
    theta, _ = to_native(theta, name)
    xp = array_namespace(theta)
    if not hasattr(theta, "shape") or not hasattr(theta, "dtype"):
        try:
            theta = np.asarray(theta)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name}: expected a (K, P) array with P = {num_params}, got a ragged "
                             f"{type(theta).__name__}") from exc
        xp = np
    if dtype_name(theta.dtype) not in ("float32", "float64"):
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {theta.dtype}")
    if theta.ndim != 2:
        hint = "; use theta[None, :] for a single network" if theta.ndim == 1 else ""
        raise ValueError(f"{name}: expected a (K, P) array with P = {num_params}, got shape "
                         f"{tuple(theta.shape)}{hint}")
    if theta.shape[1] != num_params:
        raise ValueError(f"{name}: expected P = {num_params} parameters per network (shape (K, "
                         f"{num_params})), got shape {tuple(theta.shape)}")
    if theta.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one network (K >= 1), got shape {tuple(theta.shape)}")
    if not bool(xp.all(xp.isfinite(theta))):
        raise ValueError(f"{name}: expected finite parameters, found NaN or inf")
    if not is_numpy(xp):
        return theta
    canonical = np.dtype(theta.dtype.name)
    if theta.dtype is not canonical:
        # an equal but distinct dtype object (zarr, some DLPack producers): the extension dispatches on
        # numpy's builtin dtype objects, so view the same memory with them
        theta = theta.view(canonical)
    return theta


def as_points(x: Any, dim: int, name: str = "x") -> np.ndarray:
    """An ``(N, d)`` float64 array of finite input points (a 1-D array is read as N points when d = 1)."""
    arr = as_float_array(x, name, ndim=(1, 2))
    if arr.ndim == 1:
        if dim != 1:
            raise ValueError(f"{name}: expected an (N, {dim}) array, got shape {arr.shape}")
        arr = arr[:, None]
    if arr.shape[1] != dim:
        raise ValueError(f"{name}: expected an (N, {dim}) array (input dimension {dim}), got shape {arr.shape}")
    return arr
