"""The shape every streaming detector shares: parameters and state as float64 arrays.

A detector module defines two private numba kernels over a state row and a parameter vector:

- ``_update(state, params, x) -> bool``: one value; slot ``DRIFT`` and ``WARNING`` of ``state``
  hold the flags of the last update (so a bank can expose them for every stream at once);
- ``_bank_update_many(states, params, stream_ids, values) -> int64[:]``: the positions in
  ``values`` where drift was signalled, ``states[stream_ids[i]]`` updated with ``values[i]``.

A ``_bank_update_many`` takes the detector's ``_update`` by name rather than as an argument
because numba cannot cache a kernel that takes a jitted function as a parameter.

The public class (``StreamDetector`` subclass) holds the river-named parameters and builds
``_params`` and the initial state row; :class:`detectors.bank.DetectorBank` stacks rows.
"""

from __future__ import annotations

import math
import struct

import numpy as np

DRIFT = 0
WARNING = 1

_MAGIC = b"DMDT"
_VERSION = 1


def check_finite(values: np.ndarray) -> None:
    """Reject NaN and infinities: a detector must never silently absorb them."""
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"non-finite value {values[bad]!r} at position {bad}; detectors accept finite numbers only")


def as_values(values) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {arr.shape}")
    check_finite(arr)
    return arr


class StreamDetector:
    """Base of the single-stream detectors: ``update``, ``update_many``, flags, checkpoints.

    Subclasses set ``_update`` and ``_kernel`` (the module's private kernels, as staticmethods)
    and, in ``__init__``, ``self._params`` (float64 vector) and ``self._state`` (float64 row).
    """

    _update = None
    _kernel = None
    # True when ``_kernel`` rejects an id outside its state matrix's rows before any update
    # (``detectors._runs.update_in_runs`` does, in the pass that finds the batch's runs); a bank
    # checks the ids itself otherwise.
    _kernel_checks_ids = False

    _params: np.ndarray
    _state: np.ndarray

    def update(self, x: float) -> bool:
        """Feed one value; True when drift is signalled at this value."""
        x = float(x)
        if not math.isfinite(x):
            raise ValueError(f"non-finite value {x!r}; detectors accept finite numbers only")
        return bool(type(self)._update(self._state, self._params, x))

    def update_many(self, values) -> np.ndarray:
        """Feed an array in one numba call; returns the int64 indices where drift was signalled."""
        arr = as_values(values)
        rows = self._state[np.newaxis, :]
        return type(self)._kernel(rows, self._params, np.zeros(len(arr), np.int64), arr)

    @property
    def drift_detected(self) -> bool:
        return bool(self._state[DRIFT])

    def _warning(self) -> bool:
        return bool(self._state[WARNING])

    def to_bytes(self) -> bytes:
        """Parameters and state; ``from_bytes`` restores a detector with identical future output."""
        return pack_arrays(type(self).__name__, self._params, self._state)

    @classmethod
    def from_bytes(cls, blob: bytes):
        params, states = unpack_arrays(cls.__name__, blob)
        obj = cls.__new__(cls)
        obj._restore(params, states[0].copy())
        return obj

    def _restore(self, params: np.ndarray, state: np.ndarray) -> None:
        """Set the public attributes back from ``params``; subclasses override to do so."""
        self._params = params
        self._state = state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._public_params().items())})"

    def _public_params(self) -> dict:
        return {}


def pack_arrays(name: str, params: np.ndarray, state: np.ndarray) -> bytes:
    tag = name.encode()
    header = struct.pack("<4sHH", _MAGIC, _VERSION, len(tag)) + tag
    shape = struct.pack("<qqq", params.size, state.shape[0] if state.ndim == 2 else 1, state.shape[-1])
    return header + shape + params.astype("<f8").tobytes() + state.astype("<f8").tobytes()


def unpack_arrays(name: str, blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``pack_arrays``; the state always comes back 2-D (rows, row length)."""
    magic, version, tag_len = struct.unpack_from("<4sHH", blob, 0)
    if magic != _MAGIC or version != _VERSION:
        raise ValueError("not a driftmeter detector checkpoint")
    pos = 8
    tag = blob[pos : pos + tag_len].decode()
    if tag != name:
        raise ValueError(f"checkpoint is of {tag}, not {name}")
    pos += tag_len
    n_params, n_rows, row_len = struct.unpack_from("<qqq", blob, pos)
    pos += 24
    params = np.frombuffer(blob, "<f8", n_params, pos).astype(np.float64)
    pos += 8 * n_params
    state = np.frombuffer(blob, "<f8", n_rows * row_len, pos).astype(np.float64).reshape(n_rows, row_len)
    return params, state
