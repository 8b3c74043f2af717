"""Units: the state of one input partition number for one pipeline, checkpointed as a whole.

``drift/<p>`` owns partition ``p`` of ``predictions`` and ``labels`` (both keyed by model, so a
label lands on its prediction's partition number); ``cost/<p>`` owns partition ``p`` of ``usage``
(keyed by customer). Every unit runs the same intake on each fetched batch of one partition:

    decode + validate (invalid -> dead_letter with the reason) -> contract key check
    -> dedup by (source, id) -> ``apply`` (the pipeline's kernels)

and counts every record as processed, invalid or duplicate: nothing read is silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from streams.config import Config
from streams.dedup import MAX_TIME_MS, DedupMemory, fingerprints
from streams.events import decode_batch
from streams.fetch import Records, as_records
from streams.metrics import Metrics
from streams.sink import Sink


@dataclass
class Decoded:
    """The valid, correctly keyed events of one partition batch, in offset order, before
    screening and dedup."""

    positions: np.ndarray  # index of each event's record in the batch
    time_ms: np.ndarray
    fingerprints: tuple[np.ndarray, np.ndarray]  # of (source, id), for dedup
    events: list | None = None  # decoded events; None where the pipeline reads columns
    columns: dict = field(default_factory=dict)  # per-event arrays the pipeline computed

    def __len__(self) -> int:
        return len(self.positions)

    def take(self, keep: np.ndarray) -> "Decoded":
        """The events where the boolean ``keep`` is set."""
        events = None if self.events is None else [e for e, k in zip(self.events, keep.tolist()) if k]
        return Decoded(self.positions[keep], self.time_ms[keep], (self.fingerprints[0][keep], self.fingerprints[1][keep]),
                       events, {name: column[keep] for name, column in self.columns.items()})


class Picked(Sequence):
    """``records[positions[i]]`` as item ``i``, without building the list."""

    def __init__(self, records: list, positions: np.ndarray):
        self.records, self.positions = records, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        return self.records[int(self.positions[i])]


@dataclass
class Admitted:
    """The valid, first-seen events of one partition batch, in offset order."""

    records: Sequence
    offsets: np.ndarray
    time_ms: np.ndarray
    events: list | None = None  # decoded events; None where the pipeline reads columns
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets)


def _contract_key(kind: str, event) -> str:
    """The Kafka key the contract prescribes for an event."""
    return event.subject if kind == "usage" else event.data.model


class Unit:
    """Base of the drift and cost units.

    Subclasses set ``prefix`` and ``kinds`` (config topic attribute -> contract kind) and override
    ``apply`` (the pipeline), ``tick`` (timers), and ``_state`` / ``_restore_state``.
    """

    prefix = ""
    kinds: dict[str, str] = {}

    def __init__(self, partition: int, cfg: Config, metrics: Metrics):
        self.partition = partition
        self.cfg = cfg
        self.metrics = metrics
        self.name = self.unit_name(partition)
        self.kind_of = {getattr(cfg.topics, attr): kind for attr, kind in self.kinds.items()}
        self.offsets: dict[tuple[str, int], int] = {}
        self.dedup = DedupMemory(cfg.costs.dedup_capacity, self.dedup_horizon_ms(cfg))
        # Set by the unit when the outputs of a batch should be checkpointed at once.
        self.urgent = False
        # Changed since its last checkpoint (unchanged units are not written again).
        self.dirty = False

    @classmethod
    def unit_name(cls, partition: int) -> str:
        return f"{cls.prefix}/{partition}"

    @classmethod
    def input_topics(cls, cfg: Config) -> list[str]:
        return [getattr(cfg.topics, attr) for attr in cls.kinds]

    @staticmethod
    def dedup_horizon_ms(cfg: Config) -> int:
        """Event time over which duplicates are remembered: the grace plus the largest window."""
        return int((cfg.costs.grace_seconds + 86_400) * 1000)

    def process(self, topic: str, records: Sequence, sink: Sink) -> None:
        """Take one fetched batch of one partition of ``topic`` (:class:`~streams.fetch.Records`,
        or any sequence of records with ``key``, ``value`` and ``offset``)."""
        records = as_records(records)
        kind = self.kind_of[topic]
        self.dirty = True
        admitted, invalid, duplicate = self._intake(topic, kind, records, sink)
        processed = len(admitted)
        if processed:
            for i, reason in self.apply(kind, admitted, sink):
                processed -= 1
                if reason is None:  # deferred: the unit counts it when it settles
                    continue
                record = admitted.records[i]
                sink.dead_letter(topic, self.partition, record.offset, record.key, reason, record.value)
                invalid += 1
        self.offsets[(topic, self.partition)] = records[-1].offset + 1
        count = self.metrics.events
        if processed:
            count(topic, "processed").inc(processed)
        if invalid:
            count(topic, "invalid").inc(invalid)
        if duplicate:
            count(topic, "duplicate").inc(duplicate)

    def _intake(self, topic: str, kind: str, records: Records, sink: Sink) -> tuple[Admitted, int, int]:
        def refuse(position: int, reason: str) -> None:
            record = records[position]
            sink.dead_letter(topic, self.partition, record.offset, record.key, reason, record.value)

        decoded = self.decode(kind, records, refuse)
        invalid = len(records) - len(decoded)
        if len(decoded):
            # Refused before dedup remembers their (source, id): a bad copy must not shadow a good event.
            refused = self.screen(kind, decoded)
            if refused:
                keep = np.ones(len(decoded), np.bool_)
                for i, reason in refused:
                    refuse(int(decoded.positions[i]), reason)
                    keep[i] = False
                decoded = decoded.take(keep)
                invalid += len(refused)
        if not len(decoded):
            return Admitted([], np.empty(0, np.int64), np.empty(0, np.int64)), invalid, 0
        first = self.dedup.first_seen(*decoded.fingerprints, decoded.time_ms)
        duplicate = len(decoded) - int(first.sum())
        if duplicate:
            decoded = decoded.take(first)
        offsets = records.offsets[decoded.positions]
        admitted = Admitted(Picked(records, decoded.positions), offsets, decoded.time_ms, decoded.events, decoded.columns)
        return admitted, invalid, duplicate

    def decode(self, kind: str, records: Records, refuse) -> Decoded:
        """Decode and validate ``records`` (msgspec), check their Kafka keys and event times.

        Every record that is not kept is passed to ``refuse(position, reason)``.
        """
        events, bad = decode_batch(kind, [b"" if v is None else v for v in records.values])
        reasons = dict(bad)
        keep_events, positions = [], []
        it = iter(events)
        for i, key in enumerate(records.keys):
            reason = reasons.get(i)
            if reason is None:
                event = next(it)
                expected = _contract_key(kind, event)
                if key is None or key != expected.encode():
                    got = "no key" if key is None else repr(key.decode("utf-8", "replace"))
                    reason = f"key: expected {'the customer id' if kind == 'usage' else 'the model name'} {expected!r}, got {got}"
                else:
                    keep_events.append(event)
                    positions.append(i)
                    continue
            refuse(i, reason)
        time_ms = np.fromiter((e.time_ms for e in keep_events), np.int64, len(keep_events))
        # Windows, dedup horizons and budgets count milliseconds from 1970 in int64.
        out_of_range = (time_ms < 0) | (time_ms > MAX_TIME_MS)
        if out_of_range.any():
            for i in np.flatnonzero(out_of_range).tolist():
                refuse(positions[i], f"time: {keep_events[i].time.isoformat()} is before 1970 or beyond year 285,000")
            keep_events = [e for e, bad in zip(keep_events, out_of_range.tolist()) if not bad]
            positions = [p for p, bad in zip(positions, out_of_range.tolist()) if not bad]
            time_ms = time_ms[~out_of_range]
        hi, lo = fingerprints([e.source for e in keep_events], [e.id for e in keep_events])
        return Decoded(np.array(positions, np.int64), time_ms, (hi, lo), keep_events)

    def screen(self, kind: str, decoded: Decoded) -> list[tuple[int, str]]:
        """Checks that need the pipeline's knowledge (e.g. prices), run before dedup.

        Returns refusals as (index into ``decoded``, reason); per-event arrays the pipeline
        computes on the way go into ``decoded.columns`` and reach ``apply`` as ``Admitted.extras``.
        """
        return []

    def apply(self, kind: str, admitted: Admitted, sink: Sink) -> list[tuple[int, str]]:
        """The pipeline's per-batch work on admitted events.

        Returns the events it rejects, as (index into ``admitted``, reason): they are
        dead-lettered and counted as invalid, and must have had no effect on the state. A reason
        of ``None`` means the unit keeps the event for later and counts it itself when it settles.
        """
        return []

    def tick(self, now_ms: int, sink: Sink, caught_up: bool = False) -> None:
        """Timers, called after every fetch (idle flushes, stalls, alert resolution).

        ``caught_up``: every partition of the unit has been applied to its end.
        """

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode({
            "offsets": {f"{t}:{p}": o for (t, p), o in self.offsets.items()},
            "dedup": self.dedup.to_bytes(),
            "state": self._state(),
        })

    def restore(self, blob: bytes) -> None:
        saved = msgspec.msgpack.decode(blob)
        self.offsets = {(name.rpartition(":")[0], int(name.rpartition(":")[2])): o for name, o in saved["offsets"].items()}
        self.dedup = DedupMemory.from_bytes(saved["dedup"])
        self._restore_state(saved["state"])

    def _state(self) -> dict:
        return {}

    def _restore_state(self, state: dict) -> None:
        pass


def unit_types_for(cfg: Config) -> list[type[Unit]]:
    from streams.costs.unit import CostUnit
    from streams.drift.unit import DriftUnit

    return [DriftUnit, CostUnit]
