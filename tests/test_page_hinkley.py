"""PageHinkley: identical detections to river 0.26.1's PageHinkley, for one stream and a bank."""

from __future__ import annotations

import numpy as np
import pytest
from river.drift import PageHinkley as RiverPageHinkley

from detectors.page_hinkley import PageHinkley, PageHinkleyBank

PARAMETER_SETS = [
    {},
    {"min_instances": 10, "delta": 0.01, "threshold": 8.0, "alpha": 0.99, "mode": "up"},
    {"min_instances": 1, "delta": 0.0, "threshold": 5.0, "alpha": 1.0, "mode": "down"},
    {"min_instances": 50, "delta": 0.25, "threshold": 20.0, "alpha": 1.0, "mode": "both"},
    {"min_instances": 0, "delta": 0.1, "threshold": 0.0, "alpha": 0.5, "mode": "both"},
]


def stream(kind: str, seed: int, n: int = 6000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    half = n // 2
    if kind == "abrupt":
        return np.concatenate([rng.normal(0.0, 1.0, half), rng.normal(rng.uniform(-2.0, 2.0), 1.0, n - half)])
    if kind == "gradual":
        mean = np.clip((np.arange(n) - half) / (n / 4), 0.0, 1.0)
        return rng.normal(mean, 1.0)
    if kind == "noisy":  # heavy tails, then a variance change and a small mean change
        return np.concatenate([rng.standard_t(2, half), 3.0 * rng.standard_t(2, n - half) + 0.3])
    if kind == "constant":
        return np.full(n, 0.1)
    if kind == "offset":  # large mean, tiny spread: sums of heavily rounded deviations
        return 1e6 + 1e-3 * np.concatenate([rng.normal(0.0, 1.0, half), rng.normal(0.5, 1.0, n - half)])
    if kind == "integers":
        return np.concatenate([rng.integers(0, 2, half), rng.integers(4, 8, n - half)]).astype(np.float64)
    if kind == "short":
        return rng.normal(0.0, 1.0, 40) + np.r_[np.zeros(20), np.full(20, 5.0)]
    raise ValueError(kind)


KINDS = ["abrupt", "gradual", "noisy", "constant", "offset", "integers", "short"]


def river_run(values: np.ndarray, **params) -> tuple[list[int], RiverPageHinkley]:
    detector = RiverPageHinkley(**params)
    found = []
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found, detector


def param_id(params: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items()) or "defaults"


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=param_id)
@pytest.mark.parametrize("kind", KINDS)
def test_update_many_matches_river(kind, params):
    for seed in range(3):
        values = stream(kind, seed)
        expected, _ = river_run(values, **params)
        assert PageHinkley(**params).update_many(values).tolist() == expected


def test_long_stream_matches_river():
    values = np.random.default_rng(7).normal(0.0, 1.0, 400_000)
    values[200_000:] += 0.5
    expected, river = river_run(values)
    assert len(expected) > 50  # river's defaults fire often: many resets are exercised
    ours = PageHinkley()
    assert ours.update_many(values).tolist() == expected
    assert ours.n == river._x_mean.n and ours.estimation == river._x_mean.get()


@pytest.mark.nojit
@pytest.mark.parametrize("params", PARAMETER_SETS, ids=param_id)
def test_update_and_state_match_river_value_by_value(params):
    values = np.concatenate([stream("abrupt", 11, 300), stream("integers", 12, 100)])
    river = RiverPageHinkley(**params)
    ours = PageHinkley(**params)
    for x in values.tolist():
        river.update(x)
        assert ours.update(x) == river.drift_detected
        assert ours.drift_detected == river.drift_detected
        assert ours.n == river._x_mean.n
        # bit-exact running mean and sums, not just the same decisions
        assert ours.estimation == river._x_mean.get()
        assert ours._state[4] == river._sum_increase and ours._state[5] == river._sum_decrease


@pytest.mark.parametrize("params", PARAMETER_SETS[:3], ids=param_id)
def test_bank_matches_single_detectors(params):
    rng = np.random.default_rng(3)
    streams = [stream(kind, seed) for seed, kind in enumerate(["abrupt", "gradual", "noisy", "integers", "offset"])]
    ids = rng.permutation(np.repeat(np.arange(len(streams)), [len(s) for s in streams]))
    values = np.empty(len(ids))
    for sid, s in enumerate(streams):
        values[ids == sid] = s
    bank = PageHinkleyBank(n_streams=len(streams), **params)
    got_ids, got_pos = bank.update_many(ids, values)
    for sid, s in enumerate(streams):
        single = PageHinkley(**params).update_many(s)
        positions = np.flatnonzero(ids == sid)
        assert positions[single].tolist() == got_pos[got_ids == sid].tolist()
        expected, _ = river_run(s, **params)
        assert single.tolist() == expected


@pytest.mark.nojit
def test_standardizing_bank_matches_single_detectors():
    """Interleaved, a bank steps two streams at once: standardization included."""
    rng = np.random.default_rng(8)
    params = PageHinkley.calibrated(mean=0.3, std=1.7, threshold=6.0)._public_params()
    streams = [0.3 + 1.7 * stream(kind, seed, 1500) for seed, kind in enumerate(["abrupt", "gradual", "noisy", "offset"])]
    ids = rng.permutation(np.repeat(np.arange(len(streams)), [len(s) for s in streams]))
    values = np.empty(len(ids))
    for sid, s in enumerate(streams):
        values[ids == sid] = s
    bank = PageHinkleyBank(n_streams=len(streams), **params)
    got_ids, got_pos = bank.update_many(ids, values)
    assert len(got_pos) > len(streams)  # detections, and resets after them, inside the batch
    for sid, s in enumerate(streams):
        single = PageHinkley(**params)
        assert np.flatnonzero(ids == sid)[single.update_many(s)].tolist() == got_pos[got_ids == sid].tolist()
        assert np.array_equal(single._state, bank.states[sid])


@pytest.mark.nojit
def test_checkpoint_mid_stream_gives_identical_future():
    values = stream("abrupt", 5, 400)
    params = PARAMETER_SETS[1]
    reference = PageHinkley(**params).update_many(values)
    first = PageHinkley(**params)
    head = first.update_many(values[:200])
    restored = PageHinkley.from_bytes(first.to_bytes())
    assert repr(restored) == repr(first)
    tail = restored.update_many(values[200:]) + 200
    assert np.concatenate([head, tail]).tolist() == reference.tolist()


def test_checkpoint_right_after_a_detection_keeps_the_pending_reset():
    values = stream("abrupt", 1)
    detector = PageHinkley(threshold=5.0)
    positions = detector.update_many(values)
    first = int(positions[0])
    detector = PageHinkley(threshold=5.0)
    detector.update_many(values[: first + 1])
    assert detector.drift_detected
    restored = PageHinkley.from_bytes(detector.to_bytes())
    assert (restored.update_many(values[first + 1 :]) + first + 1).tolist() == positions[1:].tolist()


def test_bank_checkpoint_and_added_streams():
    rng = np.random.default_rng(9)
    bank = PageHinkleyBank(n_streams=3, threshold=10.0)
    ids = rng.integers(0, 3, 3000)
    values = rng.normal(0, 1, 3000) + (ids == 2) * (np.arange(3000) > 1500) * 2.0
    bank.update_many(ids[:1000], values[:1000])
    restored = PageHinkleyBank.from_bytes(bank.to_bytes())
    assert restored.params == bank.params
    for b in (bank, restored):
        b.add_streams(1)
    more_ids = np.concatenate([ids[1000:], np.full(500, 3)])
    more_values = np.concatenate([values[1000:], rng.normal(0, 1, 500)])
    a = bank.update_many(more_ids, more_values)
    b = restored.update_many(more_ids, more_values)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert (bank.states == restored.states).all()
    lone = bank.stream(2)
    assert lone.n == int(bank.states[2, 2])


@pytest.mark.nojit
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad):
    detector = PageHinkley()
    with pytest.raises(ValueError):
        detector.update(bad)
    with pytest.raises(ValueError):
        detector.update_many([0.0, 1.0, bad])
    with pytest.raises(ValueError):
        PageHinkleyBank(n_streams=1).update_many([0, 0], [1.0, bad])
    assert detector.n == 0  # nothing was absorbed


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "sideways"},
        {"min_instances": -1},
        {"min_instances": 2.5},
        {"alpha": 1.5},
        {"alpha": -0.1},
        {"delta": float("nan")},
        {"threshold": float("inf")},
        {"std": 0.0},
        {"std": -1.0},
        {"mean": float("nan")},
    ],
)
def test_invalid_parameters_raise(params):
    with pytest.raises(ValueError):
        PageHinkley(**params)


def test_standardization_is_the_same_as_standardized_input_to_river():
    rng = np.random.default_rng(4)
    mean, std = 250.0, 40.0
    raw = np.concatenate([rng.normal(mean, std, 20_000), rng.normal(mean + 0.5 * std, std, 2_000)])
    calibrated = PageHinkley.calibrated(mean=mean, std=std)
    river_params = {k: v for k, v in calibrated._public_params().items() if k not in ("mean", "std")}
    expected, _ = river_run((raw - mean) / std, **river_params)
    found = calibrated.update_many(raw)
    assert found.tolist() == expected
    assert found.tolist() and found[0] >= 20_000  # the shift, and nothing before it


def test_calibrated_is_quiet_without_drift_and_quick_on_a_half_sigma_shift():
    rng = np.random.default_rng(2024)
    assert len(PageHinkley.calibrated().update_many(rng.normal(0.0, 1.0, 1_000_000))) == 0
    delays = []
    for seed in range(20):
        g = np.random.default_rng(seed)
        values = np.concatenate([g.normal(0.0, 1.0, 5_000), g.normal(0.5, 1.0, 2_000)])
        found = PageHinkley.calibrated().update_many(values)
        delays.append(found[found >= 5_000][0] - 5_000)
    assert 50 < np.median(delays) < 160  # river's ADWIN: ~100 on the same shift
    assert len(PageHinkley().update_many(rng.normal(0.0, 1.0, 100_000))) > 10  # river's defaults misfire
