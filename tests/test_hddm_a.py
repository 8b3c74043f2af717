"""HDDM_A against river 0.26.1's drift.binary.HDDMA: identical drift indices and warnings on every path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import stats
from river.drift import binary

from detectors.hddm_a import (
    _MAX_MEAN,
    _MAX_N,
    _MIN_MEAN,
    _MIN_N,
    _Z_MEAN,
    _Z_N,
    HDDM_A,
    HDDM_ABank,
    _hoeffding_bound,
    _increase_bound,
)
from tests import binary_parity as parity

PARAMS = [
    {},
    {"drift_confidence": 0.01, "warning_confidence": 0.05, "two_sided_test": True},
    {"drift_confidence": 0.05, "warning_confidence": 0.2, "two_sided_test": False},
    HDDM_A.calibrated()._public_params(),
]


def river_run(params: dict, values) -> tuple[list[int], list[bool]]:
    return parity.river_run(binary.HDDMA, params, values)


def streams(seed: int, long: bool = True):
    # river averages any finite value as it is.
    return parity.error_streams(seed, long, ("non-binary", [0.0, 1.0, 0.5, 2.0, -3.0]), long_n=20_000, long_rate=0.15)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_update_many_and_update_match_river(params, seed):
    parity.check_update_many_and_update(HDDM_A, binary.HDDMA, params, streams(seed, long=seed == 0))


@pytest.mark.parametrize("params", PARAMS[:2])
def test_statistics_match_river_bit_for_bit(params):
    """Same operations in the same order: the running means are equal, not merely close."""
    for name, values in streams(4, long=False):
        ours, theirs = HDDM_A(**params), binary.HDDMA(**params)
        for x in values:
            ours.update(x)
            theirs.update(x)
            state = ours._state
            assert (state[_Z_N], state[_Z_MEAN]) == (theirs._z.n, theirs._z.get()), name
            assert (state[_MIN_N], state[_MIN_MEAN]) == (theirs._x_min.n, theirs._x_min.get()), name
            if ours.two_sided_test:  # the one-sided detector skips the unused decrease cut point
                assert (state[_MAX_N], state[_MAX_MEAN]) == (theirs._x_max.n, theirs._x_max.get()), name


@pytest.mark.parametrize("confidence", [0.001, 0.005, 0.05, 1e-4])
def test_bounds_are_rivers_to_the_bit(confidence):
    """The bounds are never stored, so check them against river's own code directly."""
    river = binary.HDDMA(drift_confidence=confidence)
    log_inv, log_2_inv = math.log(1.0 / confidence), math.log(2.0 / confidence)
    for n in (2.0, 3.0, 7.0, 10.0, 99.0, 1000.0, 12345.0, 1_000_003.0):
        assert _hoeffding_bound(n, log_inv) == river._hoeffding_bound(n)
        for cut_n in (1.0, float(max(1, int(n) // 3)), n - 1.0):
            bound = _increase_bound(n, cut_n, log_2_inv)
            # Put river's means exactly our bound apart: river must find that significant, and
            # one ulp less not, which holds only if its bound is ours to the bit.
            river._x_min = stats.Mean._from_state(cut_n, 0.0)
            river._z = stats.Mean._from_state(n, bound)
            assert river._mean_incr(confidence)
            river._z = stats.Mean._from_state(n, np.nextafter(bound, 0.0))
            assert not river._mean_incr(confidence)


def test_river_parity_fires_on_real_changes():
    """Guard against a vacuous parity test: the streams above do make river detect and warn."""
    for params in PARAMS[:2]:
        total_drifts = total_warnings = 0
        for _, values in streams(0, long=False):
            drifts, warnings = river_run(params, values)
            total_drifts += len(drifts)
            total_warnings += sum(warnings)
        assert total_drifts >= 5 and total_warnings >= 5


@pytest.mark.nojit
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0, 1]), max_size=300),
    st.sampled_from([(0.001, 0.005), (0.05, 0.1), (0.2, 0.4)]),
    st.booleans(),
)
def test_random_bit_lists_match_river(bits, confidences, two_sided):
    params = {"drift_confidence": confidences[0], "warning_confidence": confidences[1], "two_sided_test": two_sided}
    drifts, warnings = river_run(params, bits)
    det = HDDM_A(**params)
    assert [i for i, x in enumerate(bits) if det.update(x)] == drifts
    assert det.warning_detected == (warnings[-1] if warnings else False)
    assert HDDM_A(**params).update_many(np.array(bits, np.float64)).tolist() == drifts


@pytest.mark.parametrize("params", PARAMS[:3])
def test_bank_matches_single_detectors_on_interleaved_streams(params):
    per_stream = [values for _, values in streams(3, long=False)]
    parity.check_bank_on_interleaved_streams(HDDM_A, HDDM_ABank, binary.HDDMA, params, per_stream)


@pytest.mark.nojit
@pytest.mark.parametrize("two_sided", [False, True])
def test_checkpoint_mid_stream_gives_identical_future(two_sided):
    values = np.concatenate([np.zeros(100), np.ones(60), np.zeros(100), np.ones(40)])
    params = {"drift_confidence": 0.01, "two_sided_test": two_sided}
    parity.check_checkpoint_mid_stream(HDDM_A, params, values, 200)


def test_bank_checkpoint_round_trip():
    parity.check_bank_checkpoint_round_trip(HDDM_ABank, {"two_sided_test": True})


@pytest.mark.nojit
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_values(bad):
    parity.check_rejects_non_finite(HDDM_A, HDDM_ABank, bad)


@pytest.mark.parametrize(
    "params",
    [
        {"drift_confidence": 0.0},
        {"drift_confidence": 1.0},
        {"warning_confidence": -0.1},
        {"warning_confidence": float("nan")},
        {"two_sided_test": "yes"},
    ],
)
def test_invalid_parameters_raise(params):
    with pytest.raises(ValueError):
        HDDM_A(**params)


def test_calibrated_overrides_and_repr():
    det = HDDM_A.calibrated(two_sided_test=True)
    assert det.two_sided_test and det.drift_confidence == HDDM_A.calibrated().drift_confidence
    assert repr(HDDM_A()) == "HDDM_A(drift_confidence=0.001, warning_confidence=0.005, two_sided_test=False)"
