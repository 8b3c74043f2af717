"""Duplicate suppression: a bounded memory of recently seen ``(source, id)`` pairs.

The contract makes ``(source, id)`` unique and lets a producer re-send an event after a retry;
the engine must count it once. Each pair is reduced to a 128-bit MurmurHash3 fingerprint
(stable across processes and restarts, unlike Python's salted ``hash``) and remembered in a numpy
open-addressing table with linear probing, indexed into a ring buffer that holds the
fingerprints and event times in arrival order.

Retention is the smaller of two bounds: an entry is forgotten once it is more than
``horizon_ms`` of event time behind the maximum event time seen, or once ``capacity`` newer
entries have arrived (the ring is full and its oldest entry is evicted first). A re-send that
comes later than either bound is counted again; an event that is itself older than the horizon
is not remembered at all. Memory is 40 to 56 bytes per unit of ``capacity`` (a ring of 24
bytes per entry, a table of 8-byte slots, a power of two at most half full), whatever the traffic.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from numba import njit

_MAGIC = b"DMDD"
_VERSION = 1
_HEADER = struct.Struct("<4sHqqqqq")

# meta slots of the kernel state
HEAD, TAIL, MAX_TIME, LIVE = range(4)
_NO_TIME = -(2**63)
_EMPTY = -1
MAX_TIME_MS = 2**53  # far beyond any RFC 3339 time; keeps time - horizon away from int64 overflow


def fingerprints(*columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """128-bit fingerprints of rows of strings, e.g. ``(source, id)`` pairs, as two int64 arrays ``(hi, lo)``.

    MurmurHash3 x64-128 of the first column's UTF-8 bytes, then of each next column's bytes
    started from the previous 128-bit hash instead of a seed (so ``("a:b", "c")`` and
    ``("a", "b:c")`` differ). It depends only on the bytes: the same in every process, platform
    and restart. Each column is joined and encoded in two C-level calls and hashed in one numba
    call.

    Examples
    --------
    >>> hi, lo = fingerprints(["gateway/eu-1", "gateway/eu-1"], ["req-9f2c", "req-9f2d"])
    >>> hi.dtype, bool(hi[0] != hi[1])
    (dtype('int64'), True)
    >>> same = fingerprints(["gateway/eu-1"], ["req-9f2c"])
    >>> bool(same[0][0] == hi[0] and same[1][0] == lo[0])
    True
    """
    n = len(columns[0])
    if any(len(column) != n for column in columns):
        raise ValueError(f"columns of different lengths: {[len(column) for column in columns]}")
    hi = np.zeros(n, np.uint64)
    lo = np.zeros(n, np.uint64)
    for column in columns:
        data, ends = _utf8_concat(column)
        with np.errstate(over="ignore"):  # wrapping uint64 arithmetic when run without the JIT
            _hash_on(data, ends, hi, lo)
    return hi.view(np.int64), lo.view(np.int64)


def _utf8_concat(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All strings' UTF-8 bytes back to back, and where each one ends."""
    text = "".join(strings)
    data = text.encode("utf-8", "surrogatepass")
    if len(data) == len(text):  # pure ASCII: byte lengths are the character lengths
        lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    else:
        lengths = np.fromiter((len(s.encode("utf-8", "surrogatepass")) for s in strings), np.int64, len(strings))
    return np.frombuffer(data, np.uint8), np.cumsum(lengths)


class DedupMemory:
    """Remembers fingerprints for ``horizon_ms`` of event time, at most ``capacity`` of them.

    Parameters
    ----------
    capacity
        Most fingerprints remembered at once; when full, the oldest arrival is forgotten first.
    horizon_ms
        Event-time span remembered behind the maximum event time seen.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> ids = [f"req-{n}" for n in rng.integers(0, 4, 6)]
    >>> ids
    ['req-2', 'req-3', 'req-0', 'req-3', 'req-1', 'req-2']
    >>> memory = DedupMemory(capacity=1_000, horizon_ms=3_600_000)
    >>> hi, lo = fingerprints(["gw"] * 6, ids)
    >>> memory.first_seen(hi, lo, np.full(6, 1_700_000_000_000))
    array([ True,  True,  True, False,  True, False])
    >>> restored = DedupMemory.from_bytes(memory.to_bytes())
    >>> restored.first_seen(hi[:1], lo[:1], [1_700_000_000_001]), len(restored)
    (array([False]), 4)
    """

    def __init__(self, capacity: int, horizon_ms: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0 <= horizon_ms <= MAX_TIME_MS:
            raise ValueError(f"horizon_ms must be in [0, 2**53], got {horizon_ms}")
        self.capacity = int(capacity)
        self.horizon_ms = int(horizon_ms)
        table_size = 1 << (2 * self.capacity - 1).bit_length()
        self._slots = np.full(table_size, _EMPTY, np.int64)
        self._ring = np.zeros((self.capacity, 3), np.int64)  # columns: hi, lo, event time
        self._meta = np.array([0, 0, _NO_TIME, 0], np.int64)

    def first_seen(self, fp_hi, fp_lo, time_ms) -> np.ndarray:
        """For each event, in order: True if its fingerprint is not remembered (count it).

        Every event is remembered as it is checked, so a duplicate later in the same batch is
        caught too. One numba call for the whole batch.
        """
        hi = np.ascontiguousarray(fp_hi, np.int64)
        lo = np.ascontiguousarray(fp_lo, np.int64)
        times = np.ascontiguousarray(time_ms, np.int64)
        if not hi.shape == lo.shape == times.shape or hi.ndim != 1:
            raise ValueError(f"expected 1-D arrays of one length, got {hi.shape}, {lo.shape}, {times.shape}")
        if len(times) and (times.min() < 0 or times.max() > MAX_TIME_MS):
            raise ValueError("time_ms must be in [0, 2**53]")
        out = np.empty(len(hi), np.bool_)
        _first_seen(self._slots, self._ring, self._meta, self.horizon_ms, hi, lo, times, out)
        return out

    def __len__(self) -> int:
        """Fingerprints currently remembered."""
        return int(self._meta[LIVE])

    @property
    def max_time_ms(self) -> int | None:
        """Maximum event time seen, None before the first event."""
        value = int(self._meta[MAX_TIME])
        return None if value == _NO_TIME else value

    def to_bytes(self) -> bytes:
        """The ring's entries in arrival order (24 bytes each); the table is rebuilt on restore."""
        head, tail = int(self._meta[HEAD]), int(self._meta[TAIL])
        order = np.arange(head, tail) % self.capacity
        header = _HEADER.pack(_MAGIC, _VERSION, self.capacity, self.horizon_ms, head, tail, int(self._meta[MAX_TIME]))
        return header + self._ring[order].astype("<i8").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> DedupMemory:
        """Restore a memory whose future ``first_seen`` answers equal the original's."""
        magic, version, capacity, horizon_ms, head, tail, max_time = _HEADER.unpack_from(blob, 0)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError("not a driftmeter dedup checkpoint")
        memory = cls(capacity, horizon_ms)
        entries = np.frombuffer(blob, "<i8", 3 * (tail - head), _HEADER.size).reshape(tail - head, 3)
        memory._ring[np.arange(head, tail) % capacity] = entries
        memory._meta[:] = (head, tail, max_time, 0)
        _rebuild(memory._slots, memory._ring, memory._meta)
        return memory

    def __repr__(self) -> str:
        return f"DedupMemory(capacity={self.capacity}, horizon_ms={self.horizon_ms}, remembered={len(self)})"


@njit(cache=True)
def _find(slots, ring, hi, lo):
    """(slot, found): the slot holding the fingerprint, or the empty slot where it would go."""
    mask = len(slots) - 1
    capacity = ring.shape[0]
    h = lo & mask
    while slots[h] != _EMPTY:
        entry = slots[h] % capacity
        if ring[entry, 0] == hi and ring[entry, 1] == lo:
            return h, True
        h = (h + 1) & mask
    return h, False


@njit(cache=True)
def _delete(slots, ring, h):
    """Empty slot ``h`` by shifting later entries of its probe run back (no tombstones)."""
    mask = len(slots) - 1
    capacity = ring.shape[0]
    j = h
    while True:
        j = (j + 1) & mask
        if slots[j] == _EMPTY:
            break
        home = ring[slots[j] % capacity, 1] & mask
        # The entry at j may move to h only if h lies cyclically between its home and j.
        if (j > h and (home <= h or home > j)) or (j < h and home <= h and home > j):
            slots[h] = slots[j]
            h = j
    slots[h] = _EMPTY


@njit(cache=True)
def _pop_head(slots, ring, meta):
    """Forget the oldest ring entry; its table slot goes too unless a newer entry took it over."""
    seq = meta[HEAD]
    entry = seq % ring.shape[0]
    h, found = _find(slots, ring, ring[entry, 0], ring[entry, 1])
    if found and slots[h] == seq:
        _delete(slots, ring, h)
        meta[LIVE] -= 1
    meta[HEAD] = seq + 1


@njit(cache=True)
def _first_seen(slots, ring, meta, horizon, fp_hi, fp_lo, time_ms, out):
    capacity = ring.shape[0]
    for i in range(len(fp_hi)):
        t = time_ms[i]
        if t > meta[MAX_TIME]:
            meta[MAX_TIME] = t
        cutoff = meta[MAX_TIME] - horizon
        while meta[HEAD] < meta[TAIL] and ring[meta[HEAD] % capacity, 2] < cutoff:
            _pop_head(slots, ring, meta)
        if t < cutoff:
            out[i] = True  # older than the horizon: counted, and not worth remembering
            continue
        h, found = _find(slots, ring, fp_hi[i], fp_lo[i])
        if found and ring[slots[h] % capacity, 2] >= cutoff:
            out[i] = False
            continue
        out[i] = True
        if meta[TAIL] - meta[HEAD] == capacity:
            _pop_head(slots, ring, meta)
            h, found = _find(slots, ring, fp_hi[i], fp_lo[i])
        seq = meta[TAIL]
        entry = seq % capacity
        ring[entry, 0] = fp_hi[i]
        ring[entry, 1] = fp_lo[i]
        ring[entry, 2] = t
        if not found:
            meta[LIVE] += 1
        # An expired entry found above is taken over: its old ring entry is now stale.
        slots[h] = seq
        meta[TAIL] = seq + 1


@njit(cache=True)
def _rebuild(slots, ring, meta):
    """Index ring entries ``HEAD..TAIL`` in order; a later entry of a fingerprint takes its slot."""
    for seq in range(meta[HEAD], meta[TAIL]):
        entry = seq % ring.shape[0]
        h, found = _find(slots, ring, ring[entry, 0], ring[entry, 1])
        if not found:
            meta[LIVE] += 1
        slots[h] = seq


_C1 = np.uint64(0x87C37B91114253D5)
_C2 = np.uint64(0x4CF5AD432745937F)
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_ADD1 = np.uint64(0x52DCE729)
_ADD2 = np.uint64(0x38495AB5)
_U = np.arange(65, dtype=np.uint64)  # uint64 constants: numba turns uint64-int64 mixes into floats


@njit(cache=True)
def _rotl(x, r):
    return (x << _U[r]) | (x >> _U[64 - r])


@njit(cache=True)
def _fmix(k):
    k ^= k >> _U[33]
    k *= _FMIX1
    k ^= k >> _U[33]
    k *= _FMIX2
    k ^= k >> _U[33]
    return k


@njit(cache=True)
def _block(data, p, n):
    """Up to 8 bytes from ``data[p]``, little-endian."""
    k = _U[0]
    for j in range(n):
        k |= np.uint64(data[p + j]) << _U[8 * j]
    return k


@njit(cache=True)
def _murmur3_128(data, start, stop, h1, h2):
    """MurmurHash3_x64_128 of ``data[start:stop]`` from the state ``(h1, h2)`` (seed, seed)."""
    length = stop - start
    p = start
    for _ in range(length // 16):
        k1 = _block(data, p, 8) * _C1
        h1 ^= _rotl(k1, 31) * _C2
        h1 = (_rotl(h1, 27) + h2) * _U[5] + _ADD1
        k2 = _block(data, p + 8, 8) * _C2
        h2 ^= _rotl(k2, 33) * _C1
        h2 = (_rotl(h2, 31) + h1) * _U[5] + _ADD2
        p += 16
    tail = stop - p
    if tail > 8:
        h2 ^= _rotl(_block(data, p + 8, tail - 8) * _C2, 33) * _C1
    if tail > 0:
        h1 ^= _rotl(_block(data, p, min(tail, 8)) * _C1, 31) * _C2
    h1 ^= np.uint64(length)
    h2 ^= np.uint64(length)
    h1 += h2
    h2 += h1
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 += h2
    h2 += h1
    return h1, h2


@njit(cache=True)
def _hash_on(data, ends, hi, lo):
    """Hash string ``i`` (``data`` up to ``ends[i]``) on from the state ``(hi[i], lo[i])``, in place."""
    for i in range(len(ends)):
        hi[i], lo[i] = _murmur3_128(data, ends[i - 1] if i else 0, ends[i], hi[i], lo[i])
