"""EDDM against river 0.26.1's drift.binary.EDDM: identical drift indices and warnings on every path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.drift import binary

from detectors.eddm import _LAST_ERROR, _MEAN, _N, _N_ERRORS, _P2S_MAX, _SQUARES, EDDM, EDDMBank
from tests import binary_parity as parity

PARAMS = [
    {},
    {"warm_start": 5, "alpha": 0.9, "beta": 0.8},
    {"warm_start": 0, "alpha": 0.99, "beta": 0.97},
    EDDM.calibrated()._public_params(),
]


def river_run(params: dict, values) -> tuple[list[int], list[bool]]:
    return parity.river_run(binary.EDDM, params, values)


def streams(seed: int, long: bool = True):
    # river counts only values equal to 1 as errors: every other finite value is a success.
    odd = ("non-binary", [0.0, 1.0, 1.0, 0.5, 2.0, -3.0])
    return parity.error_streams(seed, long, odd, long_n=50_000, long_rate=0.13)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_update_many_and_update_match_river(params, seed):
    parity.check_update_many_and_update(EDDM, binary.EDDM, params, streams(seed, long=seed == 0))


@pytest.mark.parametrize("params", PARAMS[:3])
def test_statistics_match_river_bit_for_bit(params):
    """Same operations in the same order: the running statistics are equal, not merely close."""
    for name, values in streams(4, long=False):
        ours, theirs = EDDM(**params), binary.EDDM(**params)
        for x in values:
            ours.update(x)
            theirs.update(x)
            state = ours._state
            distances = theirs._error_distances
            assert (state[_N], state[_LAST_ERROR]) == (theirs._n, theirs._last_error), name
            assert (state[_N_ERRORS], state[_MEAN], state[_SQUARES]) == (
                theirs._n_errors,
                distances.mean.get(),
                distances._S,
            ), name
            assert distances.n == theirs._n_errors
            assert state[_P2S_MAX] == theirs._p2s_prime_max, name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_standard_deviation_rounds_like_river(seed):
    """river takes ``var ** 0.5`` (libm pow), which rounds unlike sqrt for ~0.1% of variances.

    On a slowly improving model nearly every error sets a new maximum of p' + 2 s', so a single
    misrounded standard deviation shows in the stored maximum.
    """
    rng = np.random.default_rng(seed)
    values = (rng.random(30_000) < np.geomspace(0.5, 0.02, 30_000)).astype(np.float64)
    ours, theirs = EDDM(warm_start=0), binary.EDDM(warm_start=0)
    for x in values:
        ours.update(x)
        theirs.update(x)
        assert ours._state[_P2S_MAX] == theirs._p2s_prime_max


def test_river_parity_fires_on_real_changes():
    """Guard against a vacuous parity test: the streams above do make river detect and warn."""
    total_drifts = total_warnings = 0
    for _, values in streams(0, long=False):
        drifts, warnings = river_run(PARAMS[1], values)
        total_drifts += len(drifts)
        total_warnings += sum(warnings)
    assert total_drifts >= 5 and total_warnings >= 5


@pytest.mark.nojit
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0, 1]), max_size=300),
    st.integers(0, 10),
    st.sampled_from([(0.95, 0.9), (0.99, 0.98), (0.9, 0.7)]),
)
def test_random_bit_lists_match_river(bits, warm_start, thresholds):
    params = {"warm_start": warm_start, "alpha": thresholds[0], "beta": thresholds[1]}
    drifts, warnings = river_run(params, bits)
    det = EDDM(**params)
    assert [i for i, x in enumerate(bits) if det.update(x)] == drifts
    assert det.warning_detected == (warnings[-1] if warnings else False)
    assert EDDM(**params).update_many(np.array(bits, np.float64)).tolist() == drifts


@pytest.mark.parametrize("params", PARAMS[:3])
def test_bank_matches_single_detectors_on_interleaved_streams(params):
    per_stream = [values for _, values in streams(3, long=False)]
    parity.check_bank_on_interleaved_streams(EDDM, EDDMBank, binary.EDDM, params, per_stream)


@pytest.mark.nojit
def test_checkpoint_mid_stream_gives_identical_future():
    sparse = np.zeros(200)
    sparse[::20] = 1.0
    dense = np.zeros(100)
    dense[::2] = 1.0
    values = np.concatenate([sparse, dense, sparse, dense])
    parity.check_checkpoint_mid_stream(EDDM, {"warm_start": 3}, values, 450)


def test_bank_checkpoint_round_trip():
    parity.check_bank_checkpoint_round_trip(EDDMBank, {"warm_start": 10})


@pytest.mark.nojit
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_values(bad):
    parity.check_rejects_non_finite(EDDM, EDDMBank, bad)


def test_booleans_are_errors_and_successes():
    values = np.random.default_rng(9).random(2000) < 0.3
    det = EDDM(warm_start=5)
    ours = [i for i, x in enumerate(values.tolist()) if det.update(x)]
    assert ours == river_run({"warm_start": 5}, values.tolist())[0]


@pytest.mark.parametrize(
    "params",
    [
        {"warm_start": -1},
        {"warm_start": 1.5},
        {"alpha": 1.5},
        {"alpha": 0.0, "beta": 0.0},
        {"alpha": 0.8, "beta": 0.9},
        {"beta": 0.0},
    ],
)
def test_invalid_parameters_raise(params):
    with pytest.raises(ValueError):
        EDDM(**params)


def test_calibrated_overrides_and_repr():
    det = EDDM.calibrated(beta=0.8)
    assert det.beta == 0.8 and det.warm_start == EDDM.calibrated().warm_start
    assert repr(EDDM()) == "EDDM(warm_start=30, alpha=0.95, beta=0.9)"
