"""DDM, the Drift Detection Method, on a stream of 0/1 errors: river's ``drift.binary.DDM``.

DDM watches the running error rate ``p`` and its binomial standard deviation
``s = sqrt(p (1 - p) / n)``, remembers ``p_min`` and ``s_min`` where ``p + s`` was smallest, and
signals a warning when ``p + s > p_min + warning_threshold * s_min`` and drift when
``p + s > p_min + drift_threshold * s_min``. Like river, it starts afresh on the update after a
drift. The statistics never forget, so the delay grows with the number of values seen since the
last reset.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from detectors import _pairs as pairs
from detectors._base import DRIFT, WARNING, StreamDetector, as_values
from detectors._runs import update_in_runs
from detectors.bank import DetectorBank

# Parameter vector.
_WARM_START, _WARNING_THRESHOLD, _DRIFT_THRESHOLD = 0, 1, 2
# State row after the two flags: river's ``stats.Mean`` of the errors (count, mean) and the
# point where p + s was smallest.
_N, _P, _P_MIN, _S_MIN, _PS_MIN = 2, 3, 4, 5, 6
_STATE_SIZE = 7


# The parameter vector as locals, read once per batch: the kernels' stores into the state matrix
# could alias it, so read inside a loop it would be reloaded at every value.
@njit(cache=True, inline="always")
def _parameters(params):
    return params[_WARM_START], params[_WARNING_THRESHOLD], params[_DRIFT_THRESHOLD]


# A stream's state is carried as a tuple of locals (the row's layout) through river's step:
# a bank feeds each stream its run of values with the tuple in registers, and writes it back
# once. No division here can be by zero, so numpy's error model (no checks) changes nothing but
# speed.
@njit(cache=True, inline="always", error_model="numpy")
def _step(row, parameters, x):
    """One value: the state after river's ``DDM.update(x)``."""
    drifted, _, n, p, p_min, s_min, ps_min = row
    warm_start, warning_threshold, drift_threshold = parameters
    if drifted != 0.0:
        # river resets on the update after a detection.
        n, p, p_min, s_min, ps_min = 0.0, 0.0, 0.0, 0.0, np.inf
    warning = 0.0
    drift = 0.0
    # river's stats.Mean.update, operation for operation, so decisions agree bit for bit.
    n += 1.0
    p += (1.0 / n) * (x - p)
    s = math.sqrt(p * (1.0 - p) / n)
    if n > warm_start:
        ps = p + s
        if ps <= ps_min:
            p_min, s_min, ps_min = p, s, ps
        if ps > p_min + drift_threshold * s_min:
            drift = 1.0
        elif ps > p_min + warning_threshold * s_min:
            warning = 1.0
    return drift, warning, n, p, p_min, s_min, ps_min


@njit(cache=True, inline="always", error_model="numpy")
def _step_pair(states, a, b, parameters, x):
    """``_step`` for streams ``a`` and ``b`` at once (``_pairable``): their rows updated but for
    the DRIFT slot (``x`` is the pair of their values); returns the drift mask."""
    # _step's operations in _step's order, lane by lane; its branches become masks
    warm_start, warning_threshold, drift_threshold = parameters
    one = pairs.splat(1.0)
    n = pairs.add(pairs.gather(states, a, b, _N), one)
    p = pairs.gather(states, a, b, _P)
    p = pairs.add(p, pairs.mul(pairs.div(one, n), pairs.sub(x, p)))
    s = pairs.sqrt(pairs.div(pairs.mul(p, pairs.sub(one, p)), n))
    ps = pairs.add(p, s)
    tested = pairs.greater(n, pairs.splat(warm_start))
    ps_min = pairs.gather(states, a, b, _PS_MIN)
    lowest = pairs.both(tested, pairs.less_equal(ps, ps_min))
    p_min, s_min = pairs.gather(states, a, b, _P_MIN), pairs.gather(states, a, b, _S_MIN)
    if pairs.any_lane(lowest):
        # a new lowest p + s (a few values in a hundred once past the warm start)
        p_min, s_min = pairs.where(lowest, p, p_min), pairs.where(lowest, s, s_min)
        for column, pair in ((_P_MIN, p_min), (_S_MIN, s_min), (_PS_MIN, pairs.where(lowest, ps, ps_min))):
            pairs.scatter(states, a, b, column, pair)
    drift = pairs.both(tested, pairs.greater(ps, pairs.add(p_min, pairs.mul(pairs.splat(drift_threshold), s_min))))
    warning = pairs.both(tested, pairs.greater(ps, pairs.add(p_min, pairs.mul(pairs.splat(warning_threshold), s_min))))
    pairs.scatter(states, a, b, WARNING, pairs.where(pairs.but_not(warning, drift), one, pairs.splat(0.0)))
    pairs.scatter(states, a, b, _N, n)
    pairs.scatter(states, a, b, _P, p)
    return drift


@njit(cache=True, inline="always")
def _load(states, s):
    return states[s, DRIFT], states[s, WARNING], states[s, _N], states[s, _P], states[s, _P_MIN], states[s, _S_MIN], states[s, _PS_MIN]


@njit(cache=True, inline="always")
def _store(states, s, row):
    states[s, DRIFT], states[s, WARNING], states[s, _N], states[s, _P], states[s, _P_MIN], states[s, _S_MIN], states[s, _PS_MIN] = row


@njit(cache=True, inline="always")
def _pairable(states, a, b):
    """Can ``_step_pair`` take streams ``a`` and ``b``: two streams, neither with a detection pending."""
    return a != b and states[a, DRIFT] + states[b, DRIFT] == 0.0


@njit(cache=True, inline="always", error_model="numpy")
def _feed_one(states, parameters, s, x):
    """Feed ``x`` to ``states[s]``; True when drift is signalled."""
    row = _step(_load(states, s), parameters, x)
    _store(states, s, row)
    return row[DRIFT] != 0.0


@njit(cache=True, error_model="numpy")
def _update(state, params, x):
    return _feed_one(state.reshape((1, state.size)), _parameters(params), 0, x)


@njit(cache=True, error_model="numpy")
def _feed_runs(states, params, streams, bounds, values):
    """Feed run ``k``, ``values[bounds[k]:bounds[k + 1]]``, to ``states[streams[k]]`` with the
    stream's row in locals; returns the indices in ``values`` where drift was signalled."""
    parameters = _parameters(params)
    found = np.empty(len(values), np.int64)
    n_found = 0
    for k in range(len(streams)):
        s = streams[k]
        row = _load(states, s)
        for j in range(bounds[k], bounds[k + 1]):
            row = _step(row, parameters, values[j])
            if row[DRIFT] != 0.0:
                found[n_found] = j
                n_found += 1
        _store(states, s, row)
    return found[:n_found]


@njit(cache=True, error_model="numpy")
def _feed_each(states, params, stream_ids, values):
    """Feed ``values[i]`` to ``states[stream_ids[i]]``, in order, two values at a time where
    ``_step_pair`` can take them; returns the indices in ``values`` where drift was signalled."""
    parameters = _parameters(params)
    ids = stream_ids.view(np.uint64)  # unsigned: no wraparound of negative indices to compute
    found = np.empty(len(values), np.int64)
    n_found = 0
    for k in range(len(values) // 2):
        i = 2 * k
        a, b = ids[i], ids[i + 1]
        if _pairable(states, a, b):
            drift = _step_pair(states, a, b, parameters, (values[i], values[i + 1]))
            if pairs.any_lane(drift):
                for j, s, drifted in ((i, a, drift[0]), (i + 1, b, drift[1])):
                    if drifted:
                        states[s, DRIFT] = 1.0
                        found[n_found] = j
                        n_found += 1
        else:
            for j in range(i, i + 2):
                if _feed_one(states, parameters, ids[j], values[j]):
                    found[n_found] = j
                    n_found += 1
    last = len(values) - 1
    if last % 2 == 0 and _feed_one(states, parameters, ids[last], values[last]):
        found[n_found] = last
        n_found += 1
    return found[:n_found]


def _bank_update_many(states, params, stream_ids, values):
    return update_in_runs(_feed_runs, _feed_each, states, params, stream_ids, values)


def _as_error_values(values) -> np.ndarray:
    """Finite values in [0, 1]: outside it river's DDM can take the square root of a negative."""
    arr = as_values(values)
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        bad = int(np.flatnonzero((arr < 0.0) | (arr > 1.0))[0])
        raise ValueError(f"DDM takes errors in [0, 1] (1 = error), got {arr[bad]!r} at position {bad}")
    return arr


class DDM(StreamDetector):
    """Drift Detection Method (Gama et al., 2004) with river 0.26.1's exact decisions.

    Feed 1 for an error (a wrong prediction) and 0 for a correct one. Values strictly between 0
    and 1 are averaged as river does; values outside [0, 1] raise ``ValueError`` (river's DDM
    would take the square root of a negative variance on them).

    Parameters
    ----------
    warm_start
        Values to see after a reset before a warning or drift can be signalled.
    warning_threshold
        Standard deviations above the best ``p_min + s_min`` that signal a warning.
    drift_threshold
        Standard deviations above the best ``p_min + s_min`` that signal drift.

    Examples
    --------
    A model's error rate goes from 10% to 20% at value 20,000:

    >>> import numpy as np
    >>> from detectors.ddm import DDM
    >>> rng = np.random.default_rng(7)
    >>> errors = np.concatenate([rng.random(20_000) < 0.1, rng.random(20_000) < 0.2]).astype(float)
    >>> DDM().update_many(errors)
    array([26293, 26440, 26517])
    >>> DDM.calibrated().update_many(errors)
    array([20927])

    River's defaults detect late and then again and again: every reset starts from a short
    window whose own fluctuations exceed three standard deviations.
    """

    _update = staticmethod(_update)
    _kernel = staticmethod(_bank_update_many)
    _kernel_checks_ids = True

    def __init__(self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0):
        if isinstance(warm_start, bool) or int(warm_start) != warm_start or warm_start < 0:
            raise ValueError(f"warm_start must be an integer >= 0, got {warm_start!r}")
        if not (math.isfinite(warning_threshold) and warning_threshold > 0):
            raise ValueError(f"warning_threshold must be a finite number > 0, got {warning_threshold!r}")
        if not (math.isfinite(drift_threshold) and drift_threshold >= warning_threshold):
            raise ValueError(
                f"drift_threshold must be finite and >= warning_threshold ({warning_threshold!r}), "
                f"got {drift_threshold!r}"
            )
        state = np.zeros(_STATE_SIZE, np.float64)
        state[_PS_MIN] = np.inf
        self._restore(np.array([warm_start, warning_threshold, drift_threshold], np.float64), state)

    @classmethod
    def calibrated(cls, **overrides) -> "DDM":
        """DDM with driftmeter's production defaults: river's thresholds, ``warm_start=10_000``.

        The long warm start keeps ``p_min`` and ``s_min`` from being taken on a short, lucky
        prefix (with river's 30, one such prefix can make DDM deaf or trigger-happy for good).
        Measured on 100 seeded streams of 1M 0/1 errors at rate 0.1: 0.12 false alarms per 1M
        values (river's defaults: 0.96, up to 7 on one stream). On a 0.1 -> 0.2 change at value
        500,000: median delay 5,834 values, 90th percentile 17,929 (river's defaults: 32,180 and
        211,141, and 8 changes in 100 never detected; river's ADWIN: 287 and 517). DDM never
        forgets, so its delay grows with the values seen since its last reset, and after a reset
        it is blind for ``warm_start`` values.
        """
        production = dict(warm_start=10_000, warning_threshold=2.0, drift_threshold=3.0)
        return cls(**{**production, **overrides})

    def update(self, x: float) -> bool:
        x = float(x)
        if math.isfinite(x) and not 0.0 <= x <= 1.0:  # non-finite values get the base class's error
            raise ValueError(f"DDM takes errors in [0, 1] (1 = error), got {x!r}")
        return super().update(x)

    def update_many(self, values) -> np.ndarray:
        return super().update_many(_as_error_values(values))

    @property
    def warning_detected(self) -> bool:
        """Was a warning signalled at the last update (never together with drift, as in river)."""
        return self._warning()

    def _restore(self, params: np.ndarray, state: np.ndarray) -> None:
        self.warm_start = int(params[_WARM_START])
        self.warning_threshold = float(params[_WARNING_THRESHOLD])
        self.drift_threshold = float(params[_DRIFT_THRESHOLD])
        self._params = params
        self._state = state

    def _public_params(self) -> dict:
        return {
            "warm_start": self.warm_start,
            "warning_threshold": self.warning_threshold,
            "drift_threshold": self.drift_threshold,
        }


class DDMBank(DetectorBank):
    """Many independent DDM streams updated in one numba call (values in [0, 1], as :class:`DDM`)."""

    detector = DDM

    def update_many(self, stream_ids, values) -> tuple[np.ndarray, np.ndarray]:
        return super().update_many(stream_ids, _as_error_values(values))
