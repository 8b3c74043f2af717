"""Every detector's bank, whichever way a batch arrives, equals lone detectors run one by one.

A bank kernel feeds a batch (``detectors._runs``) run by run when the batch's own runs are long
(one stream, or a batch grouped by stream as the worker builds it), else value by value in arrival
order. Either way each stream must see exactly its values in order: same detections, same final
state, bit for bit, as a lone detector fed value by value.
"""

from __future__ import annotations

import numpy as np
import pytest

from detectors import (
    DDM,
    EDDM,
    HDDM_A,
    HDDM_W,
    KSWIN,
    DDMBank,
    EDDMBank,
    HDDM_ABank,
    HDDM_WBank,
    KSWINBank,
    PageHinkley,
    PageHinkleyBank,
)
from detectors._runs import _by_stream, _checked_runs

# Parameters that fire often, so that detections (and the reset on the next value) happen
# inside runs, at their ends, and across batch boundaries.
BANKS = [
    (DDMBank, {"warm_start": 5, "warning_threshold": 1.0, "drift_threshold": 1.5}),
    (EDDMBank, {"warm_start": 5}),
    (HDDM_ABank, {"drift_confidence": 0.02, "warning_confidence": 0.05, "two_sided_test": True}),
    (HDDM_WBank, {"drift_confidence": 0.02, "warning_confidence": 0.05, "lambda_val": 0.1, "two_sided_test": True}),
    (PageHinkleyBank, {"min_instances": 5, "delta": 0.1, "threshold": 8.0, "alpha": 1.0}),
    (KSWINBank, {"alpha": 0.05, "window_size": 40, "stat_size": 10, "seed": 3}),
]
LAYOUTS = ["one stream", "grouped by stream", "interleaved", "blocks"]


def stream_values(binary: bool, n: int, rng) -> np.ndarray:
    """Regimes of random lengths: error rates 0.1 / 0.6, or means 0 / 2."""
    levels = np.repeat(rng.integers(0, 2, n // 50 + 1), 50)[:n]
    if binary:
        return (rng.random(n) < np.where(levels == 1, 0.6, 0.1)).astype(np.float64)
    return rng.normal(2.0 * levels, 1.0)


def batch_ids(layout: str, lengths: list[int], rng) -> np.ndarray:
    """The order in which the streams' values arrive (stream s contributes lengths[s] values)."""
    owners = np.repeat(np.arange(len(lengths)), lengths)
    if layout == "one stream":
        return owners
    if layout == "grouped by stream":
        order = rng.permutation(len(lengths))
        return np.concatenate([np.full(lengths[s], s) for s in order])
    if layout == "interleaved":
        return rng.permutation(owners)
    # runs of 1 to 60 values of one stream, streams taking turns at random
    pending = [list(np.full(length, s)) for s, length in enumerate(lengths)]
    ids = []
    while any(pending):
        s = rng.choice([k for k, p in enumerate(pending) if p])
        take = int(rng.integers(1, 61))
        ids += pending[s][:take]
        pending[s] = pending[s][take:]
    return np.array(ids, np.int64)


def lone_run(detector, values) -> list[int]:
    """The reference: a lone detector fed value by value."""
    return [i for i, x in enumerate(values) if detector.update(x)]


def check_bank(bank_cls, params, layout: str, seed: int, n_streams: int, per_stream: int) -> int:
    rng = np.random.default_rng(seed)
    binary = bank_cls not in (PageHinkleyBank, KSWINBank)
    lengths = [per_stream] if layout == "one stream" else [int(k) for k in rng.integers(1, 2 * per_stream, n_streams)]
    ids = batch_ids(layout, lengths, rng)
    per_stream_values = [stream_values(binary, length, rng) for length in lengths]
    values = np.empty(len(ids))
    for s, stream in enumerate(per_stream_values):
        values[ids == s] = stream

    expected, lone = [], []
    for s, stream in enumerate(per_stream_values):
        detector = bank_cls.detector(**params)
        expected += np.flatnonzero(ids == s)[lone_run(detector, stream)].tolist()
        lone.append(detector)

    bank = bank_cls(len(lengths), **params)
    cuts = np.sort(np.concatenate([[0, len(ids), len(ids)], rng.integers(0, len(ids), 4)]))
    found_ids, found = [], []
    for start, end in zip(cuts[:-1], cuts[1:]):  # batches cut anywhere, an empty one included
        hit_ids, hit = bank.update_many(ids[start:end], values[start:end])
        found_ids += hit_ids.tolist()
        found += (hit + start).tolist()
    assert found == sorted(expected)
    assert found_ids == ids[found].tolist()
    for s, detector in enumerate(lone):
        assert np.array_equal(bank.states[s], detector._state), f"stream {s}"
    return len(found)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bank_cls, params", BANKS, ids=[b.__name__ for b, _ in BANKS])
def test_bank_equals_lone_detectors(bank_cls, params, layout):
    detections = sum(check_bank(bank_cls, params, layout, seed, n_streams=6, per_stream=400) for seed in (1, 2))
    assert detections >= 4  # the comparison covered detections and the resets after them


@pytest.mark.nojit
@pytest.mark.parametrize("bank_cls, params", BANKS, ids=[b.__name__ for b, _ in BANKS])
def test_bank_equals_lone_detectors_small(bank_cls, params):
    for layout in ("interleaved", "grouped by stream"):
        check_bank(bank_cls, params, layout, seed=3, n_streams=3, per_stream=120)


@pytest.mark.nojit
@pytest.mark.parametrize("bad", [-1, 3, -(2**62), 2**62])
def test_stream_ids_out_of_range_are_rejected_before_any_update(bad):
    bank = PageHinkleyBank(3)
    before = bank.states.copy()
    with pytest.raises(ValueError, match="out of range"):
        bank.update_many([0, 1, bad, 2], [0.5, 0.5, 0.5, 0.5])
    assert np.array_equal(bank.states, before)


def own_runs(stream_ids: np.ndarray) -> list[tuple[int, list[int]]]:
    """The batch's runs of equal consecutive ids, in order."""
    starts = np.flatnonzero(np.r_[True, stream_ids[1:] != stream_ids[:-1]][: len(stream_ids)]).tolist()
    return [(int(stream_ids[a]), list(range(a, b))) for a, b in zip(starts, starts[1:] + [len(stream_ids)])]


@pytest.mark.nojit
@pytest.mark.parametrize("layout", LAYOUTS + ["empty"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_checked_runs_are_the_batch_runs_when_they_are_long(layout, seed):
    rng = np.random.default_rng(seed)
    if layout == "empty":
        ids = np.empty(0, np.int64)
    else:
        ids = batch_ids(layout, [int(k) for k in rng.integers(1, 80, 5)], rng)
    streams, bounds, in_range = _checked_runs(ids, 5)
    assert in_range

    expected = own_runs(ids)
    mean_run = len(ids) / max(len(expected), 1)
    if len(bounds):  # fed run by run
        runs = [(s, list(range(bounds[k], bounds[k + 1]))) for k, s in enumerate(streams.tolist())]
        assert runs == expected and (mean_run >= 16 or len(expected) <= 1)
        assert bounds[0] == 0 and bounds[-1] == len(ids)
    else:  # fed value by value
        assert mean_run < 16 and len(streams) == 0


@pytest.mark.nojit
@pytest.mark.parametrize("layout", LAYOUTS + ["empty"])
def test_by_stream_regroups_each_stream_in_arrival_order(layout):
    rng = np.random.default_rng(5)
    ids = np.empty(0, np.int64) if layout == "empty" else batch_ids(layout, [int(k) for k in rng.integers(1, 80, 5)], rng)
    values = rng.normal(size=len(ids))
    streams, bounds, run_values, positions = _by_stream(ids, values, 5)

    runs = [(s, positions[bounds[k] : bounds[k + 1]].tolist()) for k, s in enumerate(streams.tolist())]
    assert runs == [(int(s), np.flatnonzero(ids == s).tolist()) for s in np.unique(ids)]
    assert run_values.tolist() == values[positions].tolist()
    assert bounds[0] == 0 and bounds[-1] == len(ids)
