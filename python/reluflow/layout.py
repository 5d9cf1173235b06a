"""The flat parameter layout (SPEC §1): for k = 1..L, ``W_k`` (l_k x l_{k-1}, row-major) then ``b_k``."""
from __future__ import annotations

from numbers import Integral
from typing import Sequence


class Layout:
    """Offsets of the weights and biases of each layer in the flat parameter vector.

    Attributes
    ----------
    widths : tuple (l_0, ..., l_L).
    w_offsets, b_offsets : offsets of W_k and b_k, k = 1..L (lists of length L).
    num_params : P.
    """

    def __init__(self, widths: Sequence[int], name: str = "widths"):
        try:
            widths = list(widths)
        except TypeError as exc:
            raise TypeError(f"{name}: expected a sequence of layer widths like [1, 64, 1], got {widths!r}") from exc
        if len(widths) < 2:
            raise ValueError(f"{name}: expected at least two widths [d, ..., out], got {widths}")
        for w in widths:
            if isinstance(w, bool) or not isinstance(w, Integral):
                raise TypeError(f"{name}: expected integer widths, got {widths}")
            if w < 1:
                raise ValueError(f"{name}: expected every width >= 1, got {widths}")
        if len(widths) - 1 > 16:
            raise ValueError(f"{name}: at most 16 layers are supported, got {len(widths) - 1}")
        self.widths = tuple(int(w) for w in widths)
        self.w_offsets, self.b_offsets = [], []
        off = 0
        for k in range(1, len(self.widths)):
            self.w_offsets.append(off)
            off += self.widths[k] * self.widths[k - 1]
            self.b_offsets.append(off)
            off += self.widths[k]
        self.num_params = off

    @property
    def num_layers(self) -> int:
        """L: the number of affine maps (hidden layers + 1)."""
        return len(self.widths) - 1

    def unpack(self, theta):
        """``[(W_1, b_1), ..., (W_L, b_L)]`` of a (K, P) array: W_k (K, l_k, l_{k-1}), b_k (K, l_k). Views
        for numpy and CuPy arrays (written through in place by some callers); for other array-API
        arrays the standard's ``reshape`` (read them only: the standard leaves views unspecified)."""
        K = theta.shape[0]
        out = []
        for k in range(self.num_layers):
            lo, li = self.widths[k + 1], self.widths[k]
            wo, bo = self.w_offsets[k], self.b_offsets[k]
            W = theta[:, wo:wo + lo * li]
            W = W.reshape(K, lo, li) if hasattr(W, "reshape") else W.__array_namespace__().reshape(W, (K, lo, li))
            out.append((W, theta[:, bo:bo + lo]))
        return out

    def pack(self, params, xp):
        """The inverse of :meth:`unpack`: ``[(W_1 (K, l_1, l_0), b_1 (K, l_1)), ...]`` -> (K, P) in the
        array-API namespace ``xp`` (one ``concat``; no writes through views)."""
        K = params[0][1].shape[0]
        return xp.concat([a for W, b in params for a in (xp.reshape(W, (K, -1)), b)], axis=1)

    def __repr__(self) -> str:
        return f"Layout(widths={list(self.widths)}, num_params={self.num_params})"
