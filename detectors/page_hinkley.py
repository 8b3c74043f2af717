"""Page-Hinkley test for changes in the mean, with river 0.26.1's exact decisions.

River's ``PageHinkley`` keeps a running mean of everything seen since the last reset and two
faded cumulative sums of deviations from it; drift is signalled when either sum moves more than
``threshold`` away from its extreme. Here that update is one numba kernel over a float64 row,
replaying river's floating-point operations in river's order, so detection indices are identical.

``calibrated()`` adds what a production default needs: values are standardized with a reference
``mean`` and ``std`` before the test, so ``threshold`` and ``delta`` are in units of sigma.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from detectors import _pairs as pairs
from detectors._base import DRIFT, WARNING, StreamDetector
from detectors._runs import update_in_runs
from detectors.bank import DetectorBank

# State row.
_N = 2
_MEAN = 3
_SUM_INCREASE = 4
_SUM_DECREASE = 5
_MIN_INCREASE = 6
_MAX_DECREASE = 7
_STATE_SIZE = 8

# Parameter vector.
_MIN_INSTANCES = 0
_DELTA = 1
_THRESHOLD = 2
_ALPHA = 3
_MODE = 4
_LOC = 5
_SCALE = 6

_MODES = ("up", "down", "both")
_UP, _DOWN, _BOTH = 0.0, 1.0, 2.0


def _initial_state() -> np.ndarray:
    state = np.zeros(_STATE_SIZE, np.float64)
    state[_MIN_INCREASE] = np.inf
    state[_MAX_DECREASE] = -1.0  # river starts ``_max_decrease`` at -1, not -inf
    return state


# The parameter vector as locals, read once per batch: the kernels' stores into the state matrix
# could alias it, so read inside a loop it would be reloaded at every value. The mode becomes the
# thresholds of the two tests: a test the mode leaves out gets an infinite one.
@njit(cache=True, inline="always")
def _parameters(params):
    mode, threshold = params[_MODE], params[_THRESHOLD]
    increase_threshold = threshold if mode != _DOWN else np.inf
    decrease_threshold = threshold if mode != _UP else np.inf
    return params[_MIN_INSTANCES], params[_DELTA], increase_threshold, decrease_threshold, params[_ALPHA], params[_LOC], params[_SCALE]


# A stream's state is carried as a tuple of locals (the row's layout) through river's step:
# a bank feeds each stream its run of values with the tuple in registers, and writes it back
# once. No division can be by zero (n >= 1, std > 0), so numpy's error model only drops the
# checks.
@njit(cache=True, inline="always", error_model="numpy")
def _step(row, parameters, x):
    """One value: the state after river's ``PageHinkley.update(x)``."""
    # river's PageHinkley has no warning zone: the WARNING slot stays 0.
    drifted, no_warning, n, mean, sum_increase, sum_decrease, min_increase, max_decrease = row
    min_instances, delta, increase_threshold, decrease_threshold, alpha, loc, scale = parameters
    if drifted != 0.0:
        # river resets on the update after a detection; it starts _max_decrease at -1, not -inf
        n, mean, sum_increase, sum_decrease, min_increase, max_decrease = 0.0, 0.0, 0.0, 0.0, np.inf, -1.0
    # Identity for river's parameters (loc 0, scale 1): (x - 0.0) / 1.0 == x for every finite x.
    z = (x - loc) / scale
    # river.stats.Mean.update with w = 1.0, then PageHinkley.update, operation for operation
    n += 1.0
    mean += (1.0 / n) * (z - mean)
    dev = z - mean
    sum_increase = alpha * sum_increase + dev - delta
    sum_decrease = alpha * sum_decrease + dev + delta
    if sum_increase < min_increase:
        min_increase = sum_increase
    if sum_decrease > max_decrease:
        max_decrease = sum_decrease
    drift = 0.0
    if n >= min_instances and (sum_increase - min_increase > increase_threshold or max_decrease - sum_decrease > decrease_threshold):
        drift = 1.0
    return drift, no_warning, n, mean, sum_increase, sum_decrease, min_increase, max_decrease


@njit(cache=True, inline="always", error_model="numpy")
def _step_pair(states, a, b, parameters, x):
    """``_step`` for streams ``a`` and ``b`` at once (``_pairable``): their rows updated but for
    the DRIFT slot (``x`` is the pair of their values); returns the drift mask."""
    # _step's operations in _step's order, lane by lane; its branches become masks
    min_instances, delta, increase_threshold, decrease_threshold, alpha, loc, scale = parameters
    z = pairs.div(pairs.sub(x, pairs.splat(loc)), pairs.splat(scale))
    n = pairs.add(pairs.gather(states, a, b, _N), pairs.splat(1.0))
    mean = pairs.gather(states, a, b, _MEAN)
    mean = pairs.add(mean, pairs.mul(pairs.div(pairs.splat(1.0), n), pairs.sub(z, mean)))
    dev = pairs.sub(z, mean)
    alpha = pairs.splat(alpha)
    sum_increase = pairs.sub(pairs.add(pairs.mul(alpha, pairs.gather(states, a, b, _SUM_INCREASE)), dev), pairs.splat(delta))
    sum_decrease = pairs.add(pairs.add(pairs.mul(alpha, pairs.gather(states, a, b, _SUM_DECREASE)), dev), pairs.splat(delta))
    min_increase = pairs.gather(states, a, b, _MIN_INCREASE)
    min_increase = pairs.where(pairs.less(sum_increase, min_increase), sum_increase, min_increase)
    max_decrease = pairs.gather(states, a, b, _MAX_DECREASE)
    max_decrease = pairs.where(pairs.greater(sum_decrease, max_decrease), sum_decrease, max_decrease)
    increase = pairs.greater(pairs.sub(sum_increase, min_increase), pairs.splat(increase_threshold))
    decrease = pairs.greater(pairs.sub(max_decrease, sum_decrease), pairs.splat(decrease_threshold))
    sums, extremes = ((_SUM_INCREASE, sum_increase), (_SUM_DECREASE, sum_decrease)), ((_MIN_INCREASE, min_increase), (_MAX_DECREASE, max_decrease))
    for column, pair in ((_N, n), (_MEAN, mean)) + sums + extremes:
        pairs.scatter(states, a, b, column, pair)
    return pairs.both(pairs.greater_equal(n, pairs.splat(min_instances)), pairs.either(increase, decrease))


@njit(cache=True, inline="always")
def _load(states, s):
    flags, mean = (states[s, DRIFT], states[s, WARNING]), (states[s, _N], states[s, _MEAN])
    sums, extremes = (states[s, _SUM_INCREASE], states[s, _SUM_DECREASE]), (states[s, _MIN_INCREASE], states[s, _MAX_DECREASE])
    return flags + mean + sums + extremes


@njit(cache=True, inline="always")
def _store(states, s, row):
    states[s, DRIFT], states[s, WARNING], states[s, _N], states[s, _MEAN] = row[:4]
    states[s, _SUM_INCREASE], states[s, _SUM_DECREASE], states[s, _MIN_INCREASE], states[s, _MAX_DECREASE] = row[4:]


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


class PageHinkley(StreamDetector):
    """Page-Hinkley change detector, identical in decisions to ``river.drift.PageHinkley``.

    Parameters
    ----------
    min_instances
        Values to see (since the last reset) before a change can be signalled.
    delta
        Tolerated deviation per value: the drift of the cumulative sums away from a change.
    threshold
        Detection threshold (lambda) on the cumulative sums.
    alpha
        Forgetting factor of the cumulative sums (1.0: no forgetting).
    mode
        ``"up"``, ``"down"`` or ``"both"``: which direction of change in the mean to signal.
    mean, std
        Not in river: each value ``x`` is tested as ``(x - mean) / std``, so ``delta`` and
        ``threshold`` can be given in units of a reference standard deviation. The defaults
        (0, 1) leave values unchanged and give river's exact behaviour.

    Notes
    -----
    Like river, the running mean and both sums restart at the update after a detection.
    River's defaults (``threshold=50`` in raw units, ``alpha=0.9999``) fire about 600 times per
    million N(0, 1) values: with fading, the sums settle around ``-delta / (1 - alpha)`` and their
    random walk around that level eventually spans any threshold. Use :meth:`calibrated`.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.page_hinkley import PageHinkley
    >>> rng = np.random.default_rng(7)
    >>> values = np.concatenate([rng.normal(0, 1, 3000), rng.normal(0.5, 1, 1000)])
    >>> PageHinkley().update_many(values)  # river's defaults: a false alarm at 924
    array([ 924, 3084, 3545])
    >>> ph = PageHinkley.calibrated(mean=0.0, std=1.0)
    >>> ph.update_many(values)
    array([3073])
    >>> ph.n  # values seen since the reset that followed the detection
    926
    """

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
        *,
        mean: float = 0.0,
        std: float = 1.0,
    ):
        if mode not in _MODES:
            raise ValueError(f"Invalid 'mode'. Valid values are: {list(_MODES)}")
        if not (isinstance(min_instances, (int, np.integer)) and min_instances >= 0):
            raise ValueError(f"min_instances must be a non-negative integer, got {min_instances!r}")
        for name, value in (("delta", delta), ("threshold", threshold), ("mean", mean)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if not (math.isfinite(std) and std > 0.0):
            raise ValueError(f"std must be finite and positive, got {std!r}")
        self.min_instances = int(min_instances)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.alpha = float(alpha)
        self.mode = mode
        self.mean = float(mean)
        self.std = float(std)
        self._params = np.array(
            [self.min_instances, self.delta, self.threshold, self.alpha, _MODES.index(mode), self.mean, self.std],
            np.float64,
        )
        self._state = _initial_state()

    _update = staticmethod(_update)
    _kernel = staticmethod(_bank_update_many)
    _kernel_checks_ids = True

    @classmethod
    def calibrated(cls, mean: float = 0.0, std: float = 1.0, **overrides) -> "PageHinkley":
        """driftmeter's production default: a two-sided CUSUM in units of the reference sigma.

        ``mean`` and ``std`` describe the reference (no-drift) distribution of the stream.
        The test is tuned for a shift of the mean by 0.5 sigma (``delta`` = half the shift) with
        no forgetting (``alpha=1``, river's fading makes false alarms certain on long streams).
        Measured by ``python -m benchmarks.calibration`` (20 seeded N(0, 1) streams, 10M values):
        0.3 false alarms per 1M values (river's defaults: ~630). Delay on a +0.5 sigma shift:
        median 98 values (90th percentile 156; ADWIN on the same streams: 127); on sigma 1 -> 2:
        278; on a ramp to +0.5 sigma over 10,000 values: ~4,800 (the sums only grow once the
        shift exceeds ``delta``, and ADWIN takes ~2,600).
        See ``benchmarks/RESULTS.md``.

        >>> PageHinkley.calibrated(mean=10.0, std=2.0)
        PageHinkley(min_instances=30, delta=0.25, threshold=26.0, alpha=1.0, mode='both', mean=10.0, std=2.0)
        """
        params = dict(min_instances=30, delta=0.25, threshold=26.0, alpha=1.0, mode="both", mean=mean, std=std)
        params.update(overrides)
        return cls(**params)

    def _restore(self, params: np.ndarray, state: np.ndarray) -> None:
        self.min_instances = int(params[_MIN_INSTANCES])
        self.delta = float(params[_DELTA])
        self.threshold = float(params[_THRESHOLD])
        self.alpha = float(params[_ALPHA])
        self.mode = _MODES[int(params[_MODE])]
        self.mean = float(params[_LOC])
        self.std = float(params[_SCALE])
        self._params = params
        self._state = state

    def _public_params(self) -> dict:
        return dict(
            min_instances=self.min_instances,
            delta=self.delta,
            threshold=self.threshold,
            alpha=self.alpha,
            mode=self.mode,
            mean=self.mean,
            std=self.std,
        )

    @property
    def n(self) -> int:
        """Values seen since the last reset (river's ``_x_mean.n``; like river, a detection's reset
        happens at the next update)."""
        return int(self._state[_N])

    @property
    def estimation(self) -> float:
        """Running mean of the (standardized) values since the last reset."""
        return float(self._state[_MEAN])


class PageHinkleyBank(DetectorBank):
    """Many independent :class:`PageHinkley` streams updated in one numba call.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.page_hinkley import PageHinkleyBank
    >>> rng = np.random.default_rng(7)
    >>> bank = PageHinkleyBank(n_streams=2, delta=0.25, threshold=26.0, alpha=1.0)
    >>> ids = np.tile([0, 1], 3000)
    >>> values = rng.normal(0, 1, 6000) + np.where((ids == 1) & (np.arange(6000) >= 4000), 1.0, 0.0)
    >>> bank.update_many(ids, values)  # (stream ids, positions in values)
    (array([1]), array([4057]))
    """

    detector = PageHinkley
