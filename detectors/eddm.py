"""EDDM, the Early Drift Detection Method, on a stream of 0/1 errors: river's ``drift.binary.EDDM``.

EDDM watches the distance (in values) between consecutive errors: its running mean ``p'`` and
standard deviation ``s'``. It remembers the largest ``p' + 2 s'`` seen and, once enough errors
have been seen, signals a warning when the current ``p' + 2 s'`` falls below ``alpha`` times that
maximum and drift below ``beta`` times it (errors coming closer together). Like river, it starts
afresh on the update after a drift.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from detectors._base import DRIFT, WARNING, StreamDetector
from detectors._runs import update_in_runs
from detectors.bank import DetectorBank

# Parameter vector. ``_HALF`` holds 0.5 at run time: river takes the standard deviation as
# ``var ** 0.5``, which libm's pow rounds differently from sqrt for ~0.1% of inputs, and LLVM
# folds a constant ``** 0.5`` into sqrt.
_WARM_START, _ALPHA, _BETA, _HALF = 0, 1, 2, 3
# State row after the two flags: values seen, index of the last error, river's ``stats.Var``
# of the distances between errors (count = errors seen, mean, sum of squares), max of p' + 2 s'.
_N, _LAST_ERROR, _N_ERRORS, _MEAN, _SQUARES, _P2S_MAX = 2, 3, 4, 5, 6, 7
_STATE_SIZE = 8
# Bit patterns, as int64, of a value 1.0 (its only one) and of a flag 0.0 (a -0.0 would only
# take the full step, which handles it)
_ONE_BITS, _ZERO_BITS = int(np.float64(1.0).view(np.int64)), 0


# The parameter vector as locals, read once per batch: the kernels' stores into the state matrix
# could alias it, so read inside a loop it would be reloaded at every error.
@njit(cache=True, inline="always")
def _parameters(params):
    return params[_WARM_START], params[_ALPHA], params[_BETA], params[_HALF]


# A stream's state is carried as a tuple of locals (the row's layout) through river's step:
# a bank feeds each stream its run of values with the tuple in registers, and writes it back
# once. No division here can be by zero, so numpy's error model (no checks) changes nothing but
# speed.
@njit(cache=True, inline="always", error_model="numpy")
def _step(row, parameters, x):
    """One value: the state after river's ``EDDM.update(x)``."""
    drifted, warning, n, last_error, n_errors, mean, squares, p2s_max = row
    if x != 1.0 and drifted == 0.0:
        # The common case, a correct prediction: only the count of values moves.
        return drifted, warning, n + 1.0, last_error, n_errors, mean, squares, p2s_max
    warm_start, alpha, beta, half = parameters
    if drifted != 0.0:
        # river resets on the update after a detection.
        n, last_error, n_errors, mean, squares, p2s_max, warning = 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0
    drift = 0.0
    n += 1.0
    # river compares ``x == 1``: any other value counts as a correct prediction.
    if x == 1.0:
        n_errors += 1.0
        distance = n - last_error
        # river's stats.Var.update (Welford, weight 1), operation for operation.
        mean_old = mean
        mean += (1.0 / n_errors) * (distance - mean_old)
        squares += (distance - mean_old) * (distance - mean)
        if n > warm_start:
            var = squares / (n_errors - 1.0) if n_errors > 1.0 else 0.0
            p2s = mean + 2.0 * var**half
            if p2s > p2s_max:
                p2s_max = p2s
            elif n_errors > warm_start:
                level = p2s / p2s_max
                # As in river, drift leaves the warning flag as it was.
                if level < beta:
                    drift = 1.0
                elif level < alpha:
                    warning = 1.0
                else:
                    warning = 0.0
        last_error = n
    return drift, warning, n, last_error, n_errors, mean, squares, p2s_max


@njit(cache=True, inline="always")
def _load(states, s):
    flags, errors = (states[s, DRIFT], states[s, WARNING]), (states[s, _N], states[s, _LAST_ERROR], states[s, _N_ERRORS])
    return flags + errors + (states[s, _MEAN], states[s, _SQUARES], states[s, _P2S_MAX])


@njit(cache=True, inline="always")
def _store(states, s, row):
    states[s, DRIFT], states[s, WARNING], states[s, _N], states[s, _LAST_ERROR], states[s, _N_ERRORS] = row[:5]
    states[s, _MEAN], states[s, _SQUARES], states[s, _P2S_MAX] = row[5:]


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


# Rows a batch sets aside at most (_feed_each): beyond, the rest of the batch checks each value.
_ASIDE = 64


@njit(cache=True, error_model="numpy")
def _feed_each(states, params, stream_ids, values):
    """Feed ``values[i]`` to ``states[stream_ids[i]]``, in order; returns the indices in ``values``
    where drift was signalled."""
    n = len(values)
    if len(states) > n:
        return _feed_each_checked(states, params, stream_ids, values)
    # A stream with a detection pending restarts at its next value, whatever it is. Rather than
    # test every value for it, such a stream starts the batch afresh, its row set aside; one that
    # then sees no value (none counted) gets its row back at the end. A detection within the batch
    # does the same, so that no value needs to look at the flags: the common one only counts.
    aside = np.empty((_ASIDE, _STATE_SIZE), np.float64)
    aside_ids = np.empty(_ASIDE, np.int64)
    n_aside = 0
    for s in range(len(states)):
        if states[s, DRIFT] != 0.0:
            if n_aside == _ASIDE:
                _give_back(states, aside, aside_ids, n_aside)
                return _feed_each_checked(states, params, stream_ids, values)
            _set_aside(states, s, aside, aside_ids, n_aside)
            n_aside += 1
    parameters = _parameters(params)
    ids = stream_ids.view(np.uint64)  # unsigned: no wraparound of negative indices to compute
    # the common case, a value other than 1, is told by comparing bits: one integer compare
    # each, where a float compare also branches on NaN
    value_bits = values.view(np.int64)
    found = np.empty(n, np.int64)
    n_found = 0
    rest = n
    for i in range(n):
        s = ids[i]
        if value_bits[i] != _ONE_BITS:
            states[s, _N] += 1.0
        elif _feed_one(states, parameters, s, 1.0):
            found[n_found] = i
            n_found += 1
            if n_aside == _ASIDE:
                rest = i + 1
                break
            _set_aside(states, s, aside, aside_ids, n_aside)
            n_aside += 1
    _give_back(states, aside, aside_ids, n_aside)
    if rest < n:
        later = _feed_each_checked(states, params, stream_ids[rest:], values[rest:])
        found[n_found : n_found + len(later)] = later + rest
        n_found += len(later)
    return found[:n_found]


@njit(cache=True, inline="always")
def _set_aside(states, s, aside, aside_ids, k):
    """Keep ``states[s]`` as the ``k``-th row set aside and restart the stream as river's reset does."""
    for j in range(_STATE_SIZE):
        aside[k, j] = states[s, j]
    aside_ids[k] = s
    states[s, DRIFT], states[s, WARNING], states[s, _N], states[s, _LAST_ERROR] = 0.0, 0.0, 0.0, 0.0
    states[s, _N_ERRORS], states[s, _MEAN], states[s, _SQUARES], states[s, _P2S_MAX] = 0.0, 0.0, 0.0, -1.0


@njit(cache=True)
def _give_back(states, aside, aside_ids, n_aside):
    """Restore the rows set aside whose streams have seen no value since: latest first, so that a
    stream given its row back (a count of at least 1) keeps it."""
    for k in range(n_aside - 1, -1, -1):
        s = aside_ids[k]
        if states[s, _N] == 0.0:
            for j in range(_STATE_SIZE):
                states[s, j] = aside[k, j]


@njit(cache=True, error_model="numpy")
def _feed_each_checked(states, params, stream_ids, values):
    """``_feed_each`` of a batch shorter than the bank: each value checks its stream's flag."""
    parameters = _parameters(params)
    ids = stream_ids.view(np.uint64)
    value_bits, state_bits = values.view(np.int64), states.view(np.int64)
    found = np.empty(len(values), np.int64)
    n_found = 0
    for i in range(len(values)):
        s = ids[i]
        if value_bits[i] != _ONE_BITS and state_bits[s, DRIFT] == _ZERO_BITS:
            # only the count moves: no need to load and store the row
            states[s, _N] += 1.0
        elif _feed_one(states, parameters, s, values[i]):
            found[n_found] = i
            n_found += 1
    return found[:n_found]


def _bank_update_many(states, params, stream_ids, values):
    return update_in_runs(_feed_runs, _feed_each, states, params, stream_ids, values)


class EDDM(StreamDetector):
    """Early Drift Detection Method (Baena-Garcia et al., 2006) with river 0.26.1's exact decisions.

    Feed 1 for an error and 0 for a correct prediction. As in river, only a value equal to 1
    (or ``True``) counts as an error; every other finite value counts as a correct prediction.
    The warning flag changes only at an error, as in river.

    Parameters
    ----------
    warm_start
        Values, and then errors, to see after a reset before a warning or drift can be signalled.
    alpha
        Warning when ``p' + 2 s'`` falls below ``alpha`` times its maximum; in (0, 1].
    beta
        Drift when ``p' + 2 s'`` falls below ``beta`` times its maximum; in (0, ``alpha``].

    Examples
    --------
    A model's error rate goes from 10% to 20% at value 20,000:

    >>> import numpy as np
    >>> from detectors.eddm import EDDM
    >>> rng = np.random.default_rng(7)
    >>> errors = np.concatenate([rng.random(20_000) < 0.1, rng.random(20_000) < 0.2]).astype(float)
    >>> EDDM().update_many(errors)
    array([22467, 22581, 22755, 22925, 23066, 23240, 23420, 23554, 23713, 23853, 24082, 24292,
           24556])
    >>> EDDM.calibrated().update_many(errors)
    array([25200])

    River's defaults fire again and again after the change (and ~46 times per million values
    without one); the calibrated detector fires once, at its first chance: the 3,001st error.
    """

    _update = staticmethod(_update)
    _kernel = staticmethod(_bank_update_many)
    _kernel_checks_ids = True

    def __init__(self, warm_start: int = 30, alpha: float = 0.95, beta: float = 0.9):
        if isinstance(warm_start, bool) or int(warm_start) != warm_start or warm_start < 0:
            raise ValueError(f"warm_start must be an integer >= 0, got {warm_start!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if not 0 < beta <= alpha:
            raise ValueError(f"beta must be in (0, alpha={alpha!r}], got {beta!r}")
        state = np.zeros(_STATE_SIZE, np.float64)
        state[_P2S_MAX] = -1.0
        self._restore(np.array([warm_start, alpha, beta, 0.5], np.float64), state)

    @classmethod
    def calibrated(cls, **overrides) -> "EDDM":
        """EDDM with driftmeter's production defaults: ``warm_start=3000``, ``beta=0.88``.

        Measured on 100 seeded streams of 1M 0/1 errors at rate 0.1: 0.05 false alarms per 1M
        values (river's defaults: 46, up to 260 on one stream). On a 0.1 -> 0.2 change at value
        500,000: median delay 78,261 values, 90th percentile 109,062 (river's defaults: 56,825
        and 83,517, amid their false alarms; river's ADWIN: 287 and 517). EDDM's statistics never
        forget, so a late change takes long to move them: prefer :class:`~detectors.hddm_w.HDDM_W`
        for error rates.
        """
        production = dict(warm_start=3000, alpha=0.95, beta=0.88)
        return cls(**{**production, **overrides})

    @property
    def warning_detected(self) -> bool:
        """Is the detector in its warning zone (updated at each error, as in river)."""
        return self._warning()

    def _restore(self, params: np.ndarray, state: np.ndarray) -> None:
        self.warm_start = int(params[_WARM_START])
        self.alpha = float(params[_ALPHA])
        self.beta = float(params[_BETA])
        self._params = params
        self._state = state

    def _public_params(self) -> dict:
        return {"warm_start": self.warm_start, "alpha": self.alpha, "beta": self.beta}


class EDDMBank(DetectorBank):
    """Many independent EDDM streams updated in one numba call."""

    detector = EDDM
