"""DDM against river 0.26.1's drift.binary.DDM: identical drift indices and warnings on every path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.drift import binary

from detectors.ddm import _N, _P, _P_MIN, _PS_MIN, _S_MIN, DDM, DDMBank
from tests import binary_parity as parity

PARAMS = [
    {},
    {"warm_start": 0, "warning_threshold": 1.0, "drift_threshold": 1.5},
    {"warm_start": 100, "warning_threshold": 2.5, "drift_threshold": 4.0},
    DDM.calibrated()._public_params(),
]


def river_run(params: dict, values) -> tuple[list[int], list[bool]]:
    return parity.river_run(binary.DDM, params, values)


def streams(seed: int, long: bool = True):
    return parity.error_streams(seed, long, ("fractional", [0.0, 0.25, 0.5, 1.0]), long_n=50_000, long_rate=0.13)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_update_many_and_update_match_river(params, seed):
    parity.check_update_many_and_update(DDM, binary.DDM, params, streams(seed, long=seed == 0))


@pytest.mark.parametrize("params", PARAMS[:2])
def test_statistics_match_river_bit_for_bit(params):
    """Same operations in the same order: the running statistics are equal, not merely close."""
    for name, values in streams(4, long=False):
        ours, theirs = DDM(**params), binary.DDM(**params)
        for x in values:
            ours.update(x)
            theirs.update(x)
            state = ours._state
            assert (state[_N], state[_P]) == (theirs._p.n, theirs._p.get()), name
            if theirs._p_min is not None:
                minimum = (theirs._p_min, theirs._s_min, theirs._ps_min)
                assert (state[_P_MIN], state[_S_MIN], state[_PS_MIN]) == minimum, name


def test_river_parity_fires_on_real_changes():
    """Guard against a vacuous parity test: the streams above do make river detect and warn."""
    total_drifts = total_warnings = 0
    for _, values in streams(0, long=False):
        drifts, warnings = river_run({}, values)
        total_drifts += len(drifts)
        total_warnings += sum(warnings)
    assert total_drifts >= 5 and total_warnings >= 5


@pytest.mark.nojit
@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0, 1]), max_size=300), st.integers(0, 40), st.sampled_from([1.0, 2.0, 3.0]))
def test_random_bit_lists_match_river(bits, warm_start, drift_threshold):
    params = {"warm_start": warm_start, "warning_threshold": 1.0, "drift_threshold": drift_threshold}
    drifts, warnings = river_run(params, bits)
    det = DDM(**params)
    assert [i for i, x in enumerate(bits) if det.update(x)] == drifts
    assert det.warning_detected == (warnings[-1] if warnings else False)
    assert DDM(**params).update_many(np.array(bits, np.float64)).tolist() == drifts


@pytest.mark.parametrize("params", PARAMS[:3])
def test_bank_matches_single_detectors_on_interleaved_streams(params):
    per_stream = [values for _, values in streams(3, long=False)]
    parity.check_bank_on_interleaved_streams(DDM, DDMBank, binary.DDM, params, per_stream)


@pytest.mark.nojit
def test_checkpoint_mid_stream_gives_identical_future():
    values = np.concatenate([np.zeros(100), np.ones(60), np.zeros(100), np.ones(40)])
    parity.check_checkpoint_mid_stream(DDM, {"warm_start": 5}, values, 200)


def test_bank_checkpoint_round_trip():
    parity.check_bank_checkpoint_round_trip(DDMBank, {"warm_start": 20})


@pytest.mark.nojit
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -0.5, 1.5])
def test_rejects_non_finite_and_out_of_range_values(bad):
    parity.check_rejects_non_finite(DDM, DDMBank, bad)


def test_rejected_batch_leaves_state_untouched():
    det = DDM()
    det.update_many(np.zeros(50))
    before = det._state.copy()
    with pytest.raises(ValueError):
        det.update_many([1.0, 1.0, 2.0])
    assert np.array_equal(det._state, before)


@pytest.mark.parametrize(
    "params",
    [
        {"warm_start": -1},
        {"warm_start": 2.5},
        {"warning_threshold": 0.0},
        {"warning_threshold": float("nan")},
        {"warning_threshold": 2.0, "drift_threshold": 1.0},
        {"drift_threshold": float("inf")},
    ],
)
def test_invalid_parameters_raise(params):
    with pytest.raises(ValueError):
        DDM(**params)


def test_calibrated_overrides_and_repr():
    det = DDM.calibrated(drift_threshold=4.0)
    assert det.drift_threshold == 4.0 and det.warm_start == DDM.calibrated().warm_start
    assert repr(DDM()) == "DDM(warm_start=30, warning_threshold=2.0, drift_threshold=3.0)"
