"""HDDM_W, drift detection from McDiarmid's bounds on EWMAs: river's ``drift.binary.HDDMW``.

HDDM_W keeps an exponentially weighted moving average (EWMA) of the stream together with its
"independent bound condition" (the sum of the squared weights). A cut point is moved to wherever
the EWMA plus its McDiarmid bound was lowest; after it, a second EWMA restarts, and drift
(warning) is signalled when that EWMA exceeds the cut point's by more than the bound at
``drift_confidence`` (``warning_confidence``); with ``two_sided_test`` a decrease signals too.
Like river, it starts afresh on the update after a drift.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from detectors import _pairs as pairs
from detectors._base import DRIFT, WARNING, StreamDetector
from detectors._runs import update_in_runs
from detectors.bank import DetectorBank

# Parameter vector: the river parameters, then constants river derives from them (computed
# here with Python's float arithmetic, so they are river's to the bit).
_DRIFT_CONFIDENCE, _WARNING_CONFIDENCE, _LAMBDA, _TWO_SIDED = 0, 1, 2, 3
_ONE_MINUS_LAMBDA, _LAMBDA_SQ, _ONE_MINUS_LAMBDA_SQ, _LOG_INV_DRIFT, _LOG_INV_WARNING = 4, 5, 6, 7, 8

# A river ``SampleInfo`` is a tuple (EWMA, 1.0 once it has seen a value, bound condition).
_FRESH_SAMPLE = (0.0, 0.0, 1.0)
# State row after the two flags: five samples, then the two cut points.
_SAMPLES = _TOTAL, _S1_INCR, _S2_INCR, _S1_DECR, _S2_DECR = 2, 5, 8, 11, 14
_INCR_CUTPOINT, _DECR_CUTPOINT = 17, 18
_STATE_SIZE = 19


@njit(cache=True, inline="always")
def _sample_update(sample, weights, x):
    """river's SampleInfo.update over its Rust EWMean, whose first value is taken as is."""
    ewma, is_init, ibc = sample
    lam, one_minus_lam, lam_sq, one_minus_lam_sq = weights
    if is_init == 0.0:
        ewma = x
    else:
        ewma = lam * x + one_minus_lam * ewma
    return ewma, 1.0, lam_sq + one_minus_lam_sq * ibc


@njit(cache=True, inline="always")
def _mcdiarmid_bound(ibc, log_inv_confidence):
    return math.sqrt(ibc * log_inv_confidence / 2.0)


@njit(cache=True, inline="always")
def _mean_changed(first, second, log_inv_confidence):
    """Is the EWMA of sample ``second`` above that of ``first`` by more than their bound."""
    if first[1] == 0.0 or second[1] == 0.0:
        return False
    return second[0] - first[0] > _mcdiarmid_bound(first[2] + second[2], log_inv_confidence)


@njit(cache=True, inline="always")
def _sample_at(states, s, at):
    return states[s, at], states[s, at + 1], states[s, at + 2]


@njit(cache=True, inline="always")
def _store_sample(states, s, at, sample):
    states[s, at], states[s, at + 1], states[s, at + 2] = sample


# The parameter vector as locals, read once per batch: the kernels' stores into the state matrix
# could alias it, so read inside a loop it would be reloaded at every value.
@njit(cache=True, inline="always")
def _parameters(params):
    weights = (params[_LAMBDA], params[_ONE_MINUS_LAMBDA], params[_LAMBDA_SQ], params[_ONE_MINUS_LAMBDA_SQ])
    return weights, params[_LOG_INV_DRIFT], params[_LOG_INV_WARNING], params[_TWO_SIDED] != 0.0


# A stream's state is carried as a tuple of locals (the row's layout, samples as tuples) through
# river's step: a bank feeds each stream its run of values with the tuple in registers, and
# writes it back once. No division here can be by zero, so numpy's error model (no checks)
# changes nothing but speed.
@njit(cache=True, inline="always", error_model="numpy")
def _step(row, parameters, x):
    """One value: the state after river's ``HDDMW.update(x)``."""
    drifted, _, total, s1_incr, s2_incr, s1_decr, s2_decr, incr_cutpoint, decr_cutpoint = row
    weights, log_inv_drift, log_inv_warning, two_sided = parameters
    fresh = _FRESH_SAMPLE
    if drifted != 0.0:
        # river resets on the update after a detection.
        total, s1_incr, s2_incr, s1_decr, s2_decr = fresh, fresh, fresh, fresh, fresh
        incr_cutpoint, decr_cutpoint = np.inf, -np.inf

    total = _sample_update(total, weights, x)
    eps = _mcdiarmid_bound(total[2], log_inv_drift)
    if total[0] + eps < incr_cutpoint:
        incr_cutpoint = total[0] + eps
        s1_incr, s2_incr = total, fresh
    else:
        s2_incr = _sample_update(s2_incr, weights, x)
    drift = 0.0
    warning = 0.0
    if _mean_changed(s1_incr, s2_incr, log_inv_drift):
        drift = 1.0
    elif _mean_changed(s1_incr, s2_incr, log_inv_warning):
        warning = 1.0

    # The decrease samples only matter to the two-sided test.
    if two_sided:
        if total[0] - eps > decr_cutpoint:
            decr_cutpoint = total[0] - eps
            s1_decr, s2_decr = total, fresh
        else:
            s2_decr = _sample_update(s2_decr, weights, x)
        # As in river, a decrease raises flags without lowering the increase test's.
        if _mean_changed(s2_decr, s1_decr, log_inv_drift):
            drift = 1.0
        elif _mean_changed(s2_decr, s1_decr, log_inv_warning):
            warning = 1.0
    return drift, warning, total, s1_incr, s2_incr, s1_decr, s2_decr, incr_cutpoint, decr_cutpoint


# Two streams at once (``_pairs``), on the common path: no detection pending and a value seen
# since the reset, which leaves the total sample and the samples before the cut points seen (the
# first value moves both cut points off their infinities), so their "seen" slots stay 1.
@njit(cache=True, inline="always")
def _moved_pair(ewma, ibc, weights, x):
    """``_sample_update`` of two streams' seen samples: their EWMA and bound condition."""
    lam, one_minus_lam, lam_sq, one_minus_lam_sq = weights
    return pairs.add(pairs.mul(lam, x), pairs.mul(one_minus_lam, ewma)), pairs.add(lam_sq, pairs.mul(one_minus_lam_sq, ibc))


@njit(cache=True, inline="always")
def _bound_pair(ibc, log_inv_confidence):
    return pairs.sqrt(pairs.div(pairs.mul(ibc, pairs.splat(log_inv_confidence)), pairs.splat(2.0)))


@njit(cache=True, inline="always")
def _samples_pair(states, a, b, at, weights, x):
    """The samples before and after a cut point (at ``at`` and ``at + 3``) after a value that
    leaves the cut point where it is, as (EWMA, bound condition) pairs; stores the one after."""
    before = pairs.gather(states, a, b, at), pairs.gather(states, a, b, at + 2)
    ewma, ibc = _moved_pair(pairs.gather(states, a, b, at + 3), pairs.gather(states, a, b, at + 5), weights, x)
    after = pairs.where(pairs.not_equal(pairs.gather(states, a, b, at + 4), pairs.splat(0.0)), ewma, x), ibc
    pairs.scatter(states, a, b, at + 3, after[0])
    pairs.scatter(states, a, b, at + 4, pairs.splat(1.0))
    pairs.scatter(states, a, b, at + 5, after[1])
    return before, after


@njit(cache=True, inline="always")
def _cut_pair(states, a, b, at, cutpoint_at, cut, level, total, samples):
    """Where a cut point moves (``cut``, rare), store it (``level``), the total sample as the one
    before it and a fresh sample after it; elsewhere store what ``_samples_pair`` found again."""
    (before_ewma, before_ibc), (after_ewma, after_ibc) = samples
    fresh_ewma, fresh_seen, fresh_ibc = _FRESH_SAMPLE
    pairs.scatter(states, a, b, cutpoint_at, pairs.where(cut, level, pairs.gather(states, a, b, cutpoint_at)))
    pairs.scatter(states, a, b, at, pairs.where(cut, total[0], before_ewma))
    pairs.scatter(states, a, b, at + 2, pairs.where(cut, total[1], before_ibc))
    pairs.scatter(states, a, b, at + 3, pairs.where(cut, pairs.splat(fresh_ewma), after_ewma))
    pairs.scatter(states, a, b, at + 4, pairs.where(cut, pairs.splat(fresh_seen), pairs.splat(1.0)))
    pairs.scatter(states, a, b, at + 5, pairs.where(cut, pairs.splat(fresh_ibc), after_ibc))


@njit(cache=True, inline="always")
def _mean_changed_pair(first, second, cut, log_inv_confidence):
    """``_mean_changed`` of two streams' (EWMA, bound condition) samples around a cut point, as
    they are where it stays: where it moved (``cut``) the sample after it restarted unseen, and no
    mean changed. The test does not wait for the cut point's, whose square root it would follow."""
    bound = _bound_pair(pairs.add(first[1], second[1]), log_inv_confidence)
    return pairs.but_not(pairs.greater(pairs.sub(second[0], first[0]), bound), cut)


@njit(cache=True, inline="always", error_model="numpy")
def _step_pair(states, a, b, parameters, x):
    """``_step`` for streams ``a`` and ``b`` at once (``_pairable``): their rows updated but for
    the DRIFT slot (``x`` is the pair of their values); returns the drift mask."""
    # _step's operations in _step's order, lane by lane; its branches become masks
    weights, log_inv_drift, log_inv_warning, two_sided = parameters
    weights = (pairs.splat(weights[0]), pairs.splat(weights[1]), pairs.splat(weights[2]), pairs.splat(weights[3]))
    total = _moved_pair(pairs.gather(states, a, b, _TOTAL), pairs.gather(states, a, b, _TOTAL + 2), weights, x)
    pairs.scatter(states, a, b, _TOTAL, total[0])
    pairs.scatter(states, a, b, _TOTAL + 2, total[1])
    eps = _bound_pair(total[1], log_inv_drift)
    level = pairs.add(total[0], eps)
    cut = pairs.less(level, pairs.gather(states, a, b, _INCR_CUTPOINT))
    first, second = samples = _samples_pair(states, a, b, _S1_INCR, weights, x)
    if pairs.any_lane(cut):
        _cut_pair(states, a, b, _S1_INCR, _INCR_CUTPOINT, cut, level, total, samples)
    drift = _mean_changed_pair(first, second, cut, log_inv_drift)
    warning = pairs.but_not(_mean_changed_pair(first, second, cut, log_inv_warning), drift)
    if two_sided:
        level = pairs.sub(total[0], eps)
        cut = pairs.greater(level, pairs.gather(states, a, b, _DECR_CUTPOINT))
        first, second = samples = _samples_pair(states, a, b, _S1_DECR, weights, x)
        if pairs.any_lane(cut):
            _cut_pair(states, a, b, _S1_DECR, _DECR_CUTPOINT, cut, level, total, samples)
        # as in _step: a decrease raises flags without lowering the increase test's
        decrease = _mean_changed_pair(second, first, cut, log_inv_drift)
        warning = pairs.either(warning, pairs.but_not(_mean_changed_pair(second, first, cut, log_inv_warning), decrease))
        drift = pairs.either(drift, decrease)
    pairs.scatter(states, a, b, WARNING, pairs.where(warning, pairs.splat(1.0), pairs.splat(0.0)))
    return drift


@njit(cache=True, inline="always")
def _load(states, s):
    total, incr = _sample_at(states, s, _TOTAL), (_sample_at(states, s, _S1_INCR), _sample_at(states, s, _S2_INCR))
    decr = _sample_at(states, s, _S1_DECR), _sample_at(states, s, _S2_DECR)
    cutpoints = states[s, _INCR_CUTPOINT], states[s, _DECR_CUTPOINT]
    return (states[s, DRIFT], states[s, WARNING], total) + incr + decr + cutpoints


@njit(cache=True, inline="always")
def _store(states, s, row):
    drift, warning, total, s1_incr, s2_incr, s1_decr, s2_decr, incr_cutpoint, decr_cutpoint = row
    states[s, DRIFT], states[s, WARNING] = drift, warning
    _store_sample(states, s, _TOTAL, total)
    _store_sample(states, s, _S1_INCR, s1_incr)
    _store_sample(states, s, _S2_INCR, s2_incr)
    _store_sample(states, s, _S1_DECR, s1_decr)
    _store_sample(states, s, _S2_DECR, s2_decr)
    states[s, _INCR_CUTPOINT], states[s, _DECR_CUTPOINT] = incr_cutpoint, decr_cutpoint


@njit(cache=True, inline="always")
def _pairable(states, a, b):
    """Can ``_step_pair`` take streams ``a`` and ``b``: two streams on the common path."""
    return a != b and states[a, DRIFT] + states[b, DRIFT] == 0.0 and states[a, _TOTAL + 1] + states[b, _TOTAL + 1] == 2.0


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


def _check_confidence(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


class HDDM_W(StreamDetector):
    """HDDM with the W-test (Frías-Blanco et al., 2014) with river 0.26.1's exact decisions.

    Feed 1 for an error and 0 for a correct prediction. As in river, any finite value enters the
    EWMAs as it is; values outside [0, 1] are accepted but void the McDiarmid bounds the
    thresholds rest on.

    Parameters
    ----------
    drift_confidence
        Confidence level (a probability in (0, 1); smaller is stricter) of the drift test.
    warning_confidence
        Confidence level of the warning test.
    lambda_val
        Weight of the newest value in the EWMAs, in (0, 1]; smaller forgets more slowly.
    two_sided_test
        Also signal a significant decrease of the error rate.

    Examples
    --------
    A model's error rate goes from 10% to 20% at value 20,000:

    >>> import numpy as np
    >>> from detectors.hddm_w import HDDM_W
    >>> rng = np.random.default_rng(7)
    >>> errors = np.concatenate([rng.random(20_000) < 0.1, rng.random(20_000) < 0.2]).astype(float)
    >>> HDDM_W().update_many(errors)
    array([21253, 24964, 32083])
    >>> HDDM_W.calibrated().update_many(errors)
    array([20839])
    """

    _update = staticmethod(_update)
    _kernel = staticmethod(_bank_update_many)
    _kernel_checks_ids = True

    def __init__(
        self,
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        lambda_val: float = 0.05,
        two_sided_test: bool = False,
    ):
        _check_confidence("drift_confidence", drift_confidence)
        _check_confidence("warning_confidence", warning_confidence)
        if not 0 < lambda_val <= 1:
            raise ValueError(f"lambda_val must be in (0, 1], got {lambda_val!r}")
        if not isinstance(two_sided_test, (bool, np.bool_)):
            raise ValueError(f"two_sided_test must be a bool, got {two_sided_test!r}")
        params = np.array(
            [
                drift_confidence,
                warning_confidence,
                lambda_val,
                float(two_sided_test),
                1.0 - lambda_val,
                lambda_val * lambda_val,
                (1 - lambda_val) ** 2,
                math.log(1 / drift_confidence),
                math.log(1 / warning_confidence),
            ],
            np.float64,
        )
        state = np.zeros(_STATE_SIZE, np.float64)
        for at in _SAMPLES:
            state[at : at + 3] = _FRESH_SAMPLE
        state[_INCR_CUTPOINT], state[_DECR_CUTPOINT] = np.inf, -np.inf
        self._restore(params, state)

    @classmethod
    def calibrated(cls, **overrides) -> "HDDM_W":
        """HDDM_W with driftmeter's production defaults: ``lambda_val=0.005``, ``drift_confidence=3e-4``.

        Measured on 100 seeded streams of 1M 0/1 errors at rate 0.1: 0.03 false alarms per 1M
        values (river's defaults: 0.11). On a 0.1 -> 0.2 change at value 500,000: median delay
        316 values, 90th percentile 534 (river's defaults: 2,866 and 7,091; river's ADWIN: 287
        and 517). The best of the four binary detectors for production error rates.
        """
        production = dict(drift_confidence=3e-4, warning_confidence=0.005, lambda_val=0.005, two_sided_test=False)
        return cls(**{**production, **overrides})

    @property
    def warning_detected(self) -> bool:
        """Was a warning signalled at the last update."""
        return self._warning()

    def _restore(self, params: np.ndarray, state: np.ndarray) -> None:
        self.drift_confidence = float(params[_DRIFT_CONFIDENCE])
        self.warning_confidence = float(params[_WARNING_CONFIDENCE])
        self.lambda_val = float(params[_LAMBDA])
        self.two_sided_test = bool(params[_TWO_SIDED])
        self._params = params
        self._state = state

    def _public_params(self) -> dict:
        return {
            "drift_confidence": self.drift_confidence,
            "warning_confidence": self.warning_confidence,
            "lambda_val": self.lambda_val,
            "two_sided_test": self.two_sided_test,
        }


class HDDM_WBank(DetectorBank):
    """Many independent HDDM_W streams updated in one numba call."""

    detector = HDDM_W
