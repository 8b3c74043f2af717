"""EDDM against river 0.26.1's drift.binary.EDDM: identical drift indices and warnings on every path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.drift import binary

from detectors.eddm import _ASIDE, _LAST_ERROR, _MEAN, _N, _N_ERRORS, _P2S_MAX, _SQUARES, EDDM, EDDMBank
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
def test_bank_restarts_streams_after_detections_whatever_the_batches():
    """An interleaved bank sets aside the rows of streams with a detection pending (detected in an
    earlier batch or in this one) and gives back those of streams a batch leaves out: more such
    streams than it sets aside at once, some left out of a batch, a batch shorter than the bank."""
    params = {"warm_start": 0, "alpha": 0.99, "beta": 0.97}
    pattern = np.array(([0.0] * 20 + [1.0]) * 3 + [1.0, 1.0, 1.0])  # drift at its 65th value
    assert EDDM(**params).update_many(pattern).tolist() == [64]
    rng = np.random.default_rng(5)
    n_streams = 150
    per_stream = np.tile(pattern, (n_streams, 8))
    per_stream[:, 200:] = np.abs(per_stream[:, 200:] - (rng.random((n_streams, per_stream.shape[1] - 200)) < 0.05))
    everyone, first, rest = np.arange(n_streams), np.arange(40), np.arange(20, n_streams)
    # (streams, the end of each one's values in this batch), in order
    batches = [(everyone, 65), (everyone, 130), (first, 174), (rest, 250), (everyone, 520), (everyone, 528)]
    bank = EDDMBank(n_streams, **params)
    fed = np.zeros(n_streams, np.int64)
    found, pending, detections = [], [], []
    for streams, stop in batches:
        owner = rng.permutation(np.repeat(streams, stop - fed[streams]))
        if stop == 528:
            owner = owner[: n_streams // 2]  # shorter than the bank
        values, where = np.empty(len(owner)), []
        for s in streams:
            at = np.flatnonzero(owner == s)
            values[at] = per_stream[s, fed[s] : fed[s] + len(at)]
            where.append((s, at, fed[s]))
            fed[s] += len(at)
        pending.append(set(np.flatnonzero(bank.drift_detected).tolist()))
        _, indices = bank.update_many(owner, values)
        detections.append(len(indices))
        at_in_stream = {int(i): (int(s), int(start + np.searchsorted(at, i))) for s, at, start in where for i in at}
        found += [at_in_stream[int(i)] for i in indices]
    assert detections[0] > _ASIDE and len(pending[1]) > _ASIDE  # more than it sets aside at once
    assert 0 < len(pending[3]) <= _ASIDE and pending[3] - set(rest.tolist())  # some left out of batch 4
    expected = []
    for s in range(n_streams):
        single = EDDM(**params)
        expected += [(s, int(i)) for i in single.update_many(per_stream[s, : fed[s]])]
        assert np.array_equal(bank.stream(s)._state, single._state), s
    assert sorted(found) == sorted(expected)


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
