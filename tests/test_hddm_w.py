"""HDDM_W against river 0.26.1's drift.binary.HDDMW: identical drift indices and warnings on every path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.drift import binary

from detectors.hddm_w import (
    _DECR_CUTPOINT,
    _INCR_CUTPOINT,
    _S1_DECR,
    _S1_INCR,
    _S2_DECR,
    _S2_INCR,
    _TOTAL,
    HDDM_W,
    HDDM_WBank,
    _mcdiarmid_bound,
)
from tests import binary_parity as parity

PARAMS = [
    {},
    {"drift_confidence": 0.01, "warning_confidence": 0.05, "lambda_val": 0.1, "two_sided_test": True},
    {"drift_confidence": 0.05, "warning_confidence": 0.2, "lambda_val": 0.2, "two_sided_test": False},
    HDDM_W.calibrated()._public_params(),
]


def river_run(params: dict, values) -> tuple[list[int], list[bool]]:
    return parity.river_run(binary.HDDMW, params, values)


def streams(seed: int, long: bool = True):
    # river's EWMAs take any finite value as it is.
    return parity.error_streams(seed, long, ("non-binary", [0.0, 1.0, 0.5, 2.0, -3.0]), long_n=20_000, long_rate=0.15)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_update_many_and_update_match_river(params, seed):
    parity.check_update_many_and_update(HDDM_W, binary.HDDMW, params, streams(seed, long=seed == 0))


def river_sample(sample) -> tuple[float, float, float]:
    return sample.ewma, float(sample.is_init), sample.ibc


def our_sample(state, at) -> tuple[float, float, float]:
    return state[at], state[at + 1], state[at + 2]


@pytest.mark.parametrize("params", PARAMS[:2])
def test_statistics_match_river_bit_for_bit(params):
    """Same operations in the same order: the EWMAs and bounds are equal, not merely close."""
    for name, values in streams(4, long=False):
        ours, theirs = HDDM_W(**params), binary.HDDMW(**params)
        for x in values:
            ours.update(x)
            theirs.update(x)
            state = ours._state
            assert our_sample(state, _TOTAL) == river_sample(theirs._total), name
            assert our_sample(state, _S1_INCR) == river_sample(theirs._s1_incr), name
            assert our_sample(state, _S2_INCR) == river_sample(theirs._s2_incr), name
            assert state[_INCR_CUTPOINT] == theirs._incr_cutpoint, name
            if ours.two_sided_test:  # the one-sided detector skips the unused decrease samples
                assert our_sample(state, _S1_DECR) == river_sample(theirs._s1_decr), name
                assert our_sample(state, _S2_DECR) == river_sample(theirs._s2_decr), name
                assert state[_DECR_CUTPOINT] == theirs._decr_cutpoint, name


@pytest.mark.parametrize("confidence", [0.001, 0.005, 0.05, 3e-4])
def test_bound_is_rivers_to_the_bit(confidence):
    """The bound is never stored, so check it against river's own code directly."""
    river = binary.HDDMW()
    log_inv = math.log(1 / confidence)
    for ibc in np.random.default_rng(1).uniform(1e-4, 2.0, 2000):
        assert _mcdiarmid_bound(ibc, log_inv) == river._mcdiarmid_bound(ibc, confidence)


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
    st.sampled_from([0.05, 0.3, 1.0]),
    st.booleans(),
)
def test_random_bit_lists_match_river(bits, confidences, lambda_val, two_sided):
    params = {
        "drift_confidence": confidences[0],
        "warning_confidence": confidences[1],
        "lambda_val": lambda_val,
        "two_sided_test": two_sided,
    }
    drifts, warnings = river_run(params, bits)
    det = HDDM_W(**params)
    assert [i for i, x in enumerate(bits) if det.update(x)] == drifts
    assert det.warning_detected == (warnings[-1] if warnings else False)
    assert HDDM_W(**params).update_many(np.array(bits, np.float64)).tolist() == drifts


@pytest.mark.parametrize("params", PARAMS[:3])
def test_bank_matches_single_detectors_on_interleaved_streams(params):
    per_stream = [values for _, values in streams(3, long=False)]
    parity.check_bank_on_interleaved_streams(HDDM_W, HDDM_WBank, binary.HDDMW, params, per_stream)


@pytest.mark.nojit
@pytest.mark.parametrize("two_sided", [False, True])
def test_checkpoint_mid_stream_gives_identical_future(two_sided):
    values = np.concatenate([np.zeros(100), np.ones(60), np.zeros(100), np.ones(40)])
    params = {"drift_confidence": 0.01, "lambda_val": 0.1, "two_sided_test": two_sided}
    parity.check_checkpoint_mid_stream(HDDM_W, params, values, 200)


def test_bank_checkpoint_round_trip():
    parity.check_bank_checkpoint_round_trip(HDDM_WBank, {"two_sided_test": True})


@pytest.mark.nojit
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_values(bad):
    parity.check_rejects_non_finite(HDDM_W, HDDM_WBank, bad)


@pytest.mark.parametrize(
    "params",
    [
        {"drift_confidence": 0.0},
        {"drift_confidence": 1.0},
        {"warning_confidence": -0.1},
        {"warning_confidence": float("nan")},
        {"two_sided_test": "yes"},
        {"lambda_val": 0.0},
        {"lambda_val": 1.5},
    ],
)
def test_invalid_parameters_raise(params):
    with pytest.raises(ValueError):
        HDDM_W(**params)


def test_calibrated_overrides_and_repr():
    det = HDDM_W.calibrated(two_sided_test=True)
    assert det.two_sided_test and det.drift_confidence == HDDM_W.calibrated().drift_confidence
    expected = "HDDM_W(drift_confidence=0.001, warning_confidence=0.005, lambda_val=0.05, two_sided_test=False)"
    assert repr(HDDM_W()) == expected
