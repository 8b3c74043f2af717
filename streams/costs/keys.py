"""Dense ids of (customer, model, feature) keys, looked up by their 128-bit fingerprint.

The cost kernels index their state by key id. A batch's keys arrive as fingerprints
(:func:`streams.dedup.fingerprints` of the three names, or the wire scanner's identical hash of
their bytes), so a batch is mapped to ids in one numba call, without a Python string, tuple or
dict lookup per event; the names are built only for keys seen for the first time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = -1


@njit(cache=True)
def _slot(slots, fps, hi, lo):
    """The slot holding the fingerprint, or the empty slot where it would go."""
    mask = len(slots) - 1
    h = lo & mask
    while True:
        k = slots[h]
        if k == _EMPTY or (fps[k, 0] == hi and fps[k, 1] == lo):
            return h
        h = (h + 1) & mask


@njit(cache=True)
def _lookup(slots, fps, hi, lo, out):
    for i in range(len(hi)):
        out[i] = slots[_slot(slots, fps, hi[i], lo[i])]


@njit(cache=True)
def _insert(slots, fps, n, hi, lo, out):
    """Give each fingerprint its id, new ones the next ids in order; returns the new count."""
    for i in range(len(hi)):
        h = _slot(slots, fps, hi[i], lo[i])
        if slots[h] == _EMPTY:
            fps[n, 0], fps[n, 1] = hi[i], lo[i]
            slots[h] = n
            n += 1
        out[i] = slots[h]
    return n


class KeyIndex:
    """Fingerprints to dense ids ``0, 1, 2, ...`` in order of first insertion.

    Examples
    --------
    >>> from streams.dedup import fingerprints
    >>> index = KeyIndex()
    >>> hi, lo = fingerprints(["acme", "acme", "zeta"], ["gpt-4o", "o3", "gpt-4o"], ["chat"] * 3)
    >>> index.insert(hi[[0, 2, 0]], lo[[0, 2, 0]]), len(index)
    (array([0, 1, 0]), 2)
    >>> index.lookup(hi, lo)  # -1: not inserted yet
    array([ 0, -1,  1])
    """

    def __init__(self, capacity: int = 1024):
        self._slots = np.full(1 << max(4, (2 * capacity - 1).bit_length()), _EMPTY, np.int64)
        self._fps = np.empty((len(self._slots) // 2, 2), np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def lookup(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Each fingerprint's id, -1 where it was never inserted."""
        out = np.empty(len(hi), np.int64)
        _lookup(self._slots, self._fps, hi, lo, out)
        return out

    def insert(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Each fingerprint's id, inserting the new ones (at most half the table stays filled)."""
        if 2 * (self._n + len(hi)) > len(self._slots):
            self._grow(self._n + len(hi))
        out = np.empty(len(hi), np.int64)
        self._n = _insert(self._slots, self._fps, self._n, hi, lo, out)
        return out

    def _grow(self, needed: int) -> None:
        fps = self._fps[: self._n]
        self.__init__(max(needed, 2 * self._n))
        self._n = _insert(self._slots, self._fps, 0, fps[:, 0].copy(), fps[:, 1].copy(), np.empty(len(fps), np.int64))
