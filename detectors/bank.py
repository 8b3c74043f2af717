"""Banks: many independent streams of one detector type, updated in one numba call.

The worker keeps one bank per detector type and partition and scores every
(model, version, feature) stream of a micro-batch with a single kernel call; streams are added
as new features appear. A bank's results are identical to running one detector per stream.
"""

from __future__ import annotations

import numpy as np

from detectors._base import DRIFT, WARNING, as_values, pack_arrays, unpack_arrays


class DetectorBank:
    """``n_streams`` independent detectors of one type, stored as rows of one state matrix.

    Subclasses name the single-stream class: ``class ADWINBank(DetectorBank): detector = ADWIN``.

    Parameters
    ----------
    n_streams
        Streams to create now; :meth:`add_streams` adds more later.
    **params
        The detector's parameters, shared by every stream.
    """

    detector: type

    def __init__(self, n_streams: int = 0, **params):
        prototype = self.detector(**params)
        self.params = {k: v for k, v in prototype._public_params().items()}
        self._params = prototype._params
        self._initial = prototype._state.copy()
        self._states = np.empty((max(n_streams, 8), self._initial.size), np.float64)
        self.n_streams = 0
        self.add_streams(n_streams)

    def add_streams(self, count: int = 1) -> np.ndarray:
        """Append ``count`` fresh streams; returns their ids."""
        start = self.n_streams
        needed = start + count
        if needed > len(self._states):
            grown = np.empty((max(needed, 2 * len(self._states)), self._initial.size), np.float64)
            grown[:start] = self._states[:start]
            self._states = grown
        self._states[start:needed] = self._initial
        self.n_streams = needed
        return np.arange(start, needed, dtype=np.int64)

    def update_many(self, stream_ids, values) -> tuple[np.ndarray, np.ndarray]:
        """Feed ``values[i]`` to stream ``stream_ids[i]``, in order, in one numba call.

        Returns ``(stream_ids, indices)`` of the drift signals: ``indices`` are positions in
        ``values``.
        """
        values = as_values(values)
        ids = np.ascontiguousarray(stream_ids, dtype=np.int64)
        if ids.shape != values.shape:
            raise ValueError(f"stream_ids has shape {ids.shape}, values {values.shape}")
        if not self.detector._kernel_checks_ids:
            # one pass: as unsigned, a negative id is out of range too
            if len(ids) and ids.view(np.uint64).max() >= self.n_streams:
                raise ValueError(f"stream id out of range [0, {self.n_streams})")
        # the live rows only: a kernel that checks the ids checks them against these
        indices = self.detector._kernel(self._states[: self.n_streams], self._params, ids, values)
        return ids[indices], indices

    @property
    def states(self) -> np.ndarray:
        """The live state matrix, one row per stream (a view: do not write)."""
        return self._states[: self.n_streams]

    @property
    def drift_detected(self) -> np.ndarray:
        """Per stream: was drift signalled at its last update."""
        return self.states[:, DRIFT] != 0

    @property
    def warning_detected(self) -> np.ndarray:
        """Per stream: was a warning signalled at its last update (always False where river has none)."""
        return self.states[:, WARNING] != 0

    def stream(self, stream_id: int):
        """A standalone detector holding a copy of one stream's state."""
        obj = self.detector.__new__(self.detector)
        obj._restore(self._params.copy(), self.states[stream_id].copy())
        return obj

    def to_bytes(self) -> bytes:
        return pack_arrays(self.detector.__name__, self._params, self.states)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "DetectorBank":
        detector = cls.detector
        params, states = unpack_arrays(detector.__name__, blob)
        bank = cls.__new__(cls)
        prototype = detector.__new__(detector)
        # A bank may have no stream yet: any row of the right length carries the parameters.
        prototype._restore(params, states[0].copy() if len(states) else np.zeros(states.shape[1]))
        bank.params = prototype._public_params()
        bank._params = params
        bank._initial = detector(**bank.params)._state.copy()
        bank._states = np.empty((max(len(states), 8), states.shape[1]), np.float64)
        bank._states[: len(states)] = states
        bank.n_streams = len(states)
        return bank

    def __len__(self) -> int:
        return self.n_streams

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_streams={self.n_streams})"
