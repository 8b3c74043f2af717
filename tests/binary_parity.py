"""Shared checks of the binary (error-stream) detectors against river: DDM, EDDM, HDDM_A, HDDM_W.

Each test module names its detector, its river class and its streams; the checks are the same.
"""

from __future__ import annotations

import numpy as np
import pytest


def river_run(river_cls, params: dict, values) -> tuple[list[int], list[bool]]:
    """river's drift indices and per-value warning flags: the reference."""
    det = river_cls(**params)
    drifts, warnings = [], []
    for i, x in enumerate(values):
        det.update(x)
        warnings.append(det.warning_detected)
        if det.drift_detected:
            drifts.append(i)
    return drifts, warnings


def check_update_many_and_update(ours_cls, river_cls, params: dict, streams) -> None:
    """``update_many`` and value-by-value ``update`` give river's drift indices and warning flags."""
    for name, values in streams:
        drifts, warnings = river_run(river_cls, params, values)
        assert ours_cls(**params).update_many(values).tolist() == drifts, name

        det = ours_cls(**params)
        ours, flags = [], []
        for i, x in enumerate(values):
            if det.update(x):
                ours.append(i)
            flags.append(det.warning_detected)
        assert ours == drifts, name
        assert flags == warnings, name


def check_bank_on_interleaved_streams(ours_cls, bank_cls, river_cls, params: dict, per_stream: list) -> None:
    """A bank fed the streams interleaved, in several batches, detects where river does on each
    stream alone, and ends in each stream's lone state."""
    rng = np.random.default_rng(42)
    owner = rng.permutation(np.repeat(np.arange(len(per_stream)), [len(v) for v in per_stream]))
    positions = [np.flatnonzero(owner == s) for s in range(len(per_stream))]
    values = np.empty(len(owner))
    for s, pos in enumerate(positions):
        values[pos] = per_stream[s]
    expected = sorted(
        int(positions[s][i]) for s in range(len(per_stream)) for i in river_run(river_cls, params, per_stream[s])[0]
    )

    bank = bank_cls(len(per_stream), **params)
    found, start = [], 0
    for stop in (1000, 7000, 15000, len(values)):  # several batches: state carries over
        ids, indices = bank.update_many(owner[start:stop], values[start:stop])
        assert (ids == owner[start:stop][indices]).all()
        found += (indices + start).tolist()
        start = stop
    assert found == expected
    for s in range(len(per_stream)):
        single = ours_cls(**params)
        single.update_many(per_stream[s])
        assert np.array_equal(bank.stream(s)._state, single._state)
        assert bank.drift_detected[s] == single.drift_detected
        assert bank.warning_detected[s] == single.warning_detected


def check_checkpoint_mid_stream(ours_cls, params: dict, values: np.ndarray, last_cut: int) -> None:
    """Cut anywhere, a detection's own value included: ``from_bytes(to_bytes())`` goes on exactly."""
    whole = ours_cls(**params).update_many(values).tolist()
    assert whole, f"the stream must make {ours_cls.__name__} detect, or the test proves nothing"
    for cut in (50, whole[0], whole[0] + 1, last_cut):
        det = ours_cls(**params)
        head = det.update_many(values[:cut]).tolist()
        restored = ours_cls.from_bytes(det.to_bytes())
        assert restored._public_params() == det._public_params()
        tail = (restored.update_many(values[cut:]) + cut).tolist()
        assert head + tail == whole


def check_bank_checkpoint_round_trip(bank_cls, params: dict) -> None:
    """A bank restored mid-stream detects what the uninterrupted bank does."""
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 4, 4000)
    values = (rng.random(4000) < 0.2 + 0.3 * (ids % 2) * (np.arange(4000) > 2000)).astype(np.float64)
    bank = bank_cls(4, **params)
    _, whole = bank_cls(4, **params).update_many(ids, values)
    _, head = bank.update_many(ids[:2500], values[:2500])
    restored = bank_cls.from_bytes(bank.to_bytes())
    assert restored.params == bank.params
    _, tail = restored.update_many(ids[2500:], values[2500:])
    assert len(whole) > 0
    assert head.tolist() + (tail + 2500).tolist() == whole.tolist()


def check_rejects_non_finite(ours_cls, bank_cls, bad: float) -> None:
    """A bad value fails ``update``, ``update_many`` and a bank's ``update_many`` with ValueError."""
    with pytest.raises(ValueError):
        ours_cls().update(bad)
    with pytest.raises(ValueError):
        ours_cls().update_many([0.0, 1.0, bad])
    with pytest.raises(ValueError):
        bank_cls(2).update_many([0, 1, 0], [0.0, 1.0, bad])


def error_streams(seed: int, long: bool, odd: tuple[str, list[float]], long_n: int, long_rate: float):
    """Named 0/1 error streams (abrupt, gradual, noisy, improving, constant, short, long) and ``odd``:
    a stream of the values this detector reads in its own way, as ``(name, values to draw from)``."""
    rng = np.random.default_rng(seed)

    def errors(rate, n):
        return (rng.random(n) < rate).astype(np.float64)

    yield "abrupt", np.concatenate([errors(0.1, 3000), errors(0.4, 3000)])
    yield "gradual", (rng.random(8000) < np.linspace(0.05, 0.5, 8000)).astype(np.float64)
    yield "noisy", np.concatenate([errors(rate, 400) for rate in rng.uniform(0.0, 0.6, 15)])
    yield "improving", np.concatenate([errors(0.5, 2000), errors(0.05, 2000)])
    yield odd[0], rng.choice(odd[1], 3000)
    yield "zeros", np.zeros(300)
    yield "ones", np.ones(300)
    yield "short", errors(0.3, int(rng.integers(1, 40)))
    if long:
        yield "long", np.concatenate([errors(0.1, long_n), errors(long_rate, long_n)])
