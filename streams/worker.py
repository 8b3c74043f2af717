"""The driftmeter worker: a faust app whose hot path is a batched consumer.

faust runs what it is good at: the worker lifecycle and signals, services, and the web server
that serves ``/metrics``. The input topics are *not* consumed through faust's per-event stream
(about 50 µs per message before user code, ``shared/MEASUREMENTS.md``): :class:`Intake`, a service
started with the app, owns an aiokafka consumer in its own group and, per fetched micro-batch,

1. hands each partition's records to the unit owning that partition (decode, dead-letter,
   dedup, then the numba kernels of the drift or cost pipeline), which writes outputs to a sink;
2. sends the outputs through one idempotent producer;
3. every ``checkpoint_interval_seconds`` (and at once after alerts, idle flushes, rebalances and
   on shutdown): waits for the outputs' acks, saves every unit's state with the offsets it
   covers (:mod:`streams.checkpoint`), then commits those offsets to the group.

After a crash the units restore from their checkpoints and the consumer seeks to the offsets
recorded there, so state and input position always agree.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict

import faust
import mode
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata
from faust.worker import Worker

from streams.checkpoint import CheckpointStore
from streams.config import Config
from streams.fetch import BatchConsumer, as_records
from streams.metrics import Metrics
from streams.sink import Sink
from streams.units import Unit, unit_types_for

log = logging.getLogger("driftmeter.worker")
EXIT_CRASHED = 70  # EX_SOFTWARE


class Engine:
    """The units this worker owns, keyed by name, and which unit owns which input partition."""

    def __init__(self, cfg: Config, metrics: Metrics):
        self.cfg = cfg
        self.metrics = metrics
        self.units: dict[str, Unit] = {}
        self.unit_types = unit_types_for(cfg)

    def unit_name(self, topic: str, partition: int) -> str:
        for unit_type in self.unit_types:
            if topic in unit_type.input_topics(self.cfg):
                return unit_type.unit_name(partition)
        raise KeyError(topic)

    def unit_for(self, topic: str, partition: int) -> Unit:
        return self.units[self.unit_name(topic, partition)]

    def create(self, name: str, state: bytes | None) -> Unit:
        for unit_type in self.unit_types:
            if name.startswith(unit_type.prefix + "/"):
                partition = int(name.rpartition("/")[2])
                unit = unit_type(partition, self.cfg, self.metrics)
                if state is not None:
                    unit.restore(state)
                self.units[name] = unit
                return unit
        raise KeyError(name)

    @property
    def input_topics(self) -> list[str]:
        return [t for unit_type in self.unit_types for t in unit_type.input_topics(self.cfg)]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, intake: "Intake"):
        self.intake = intake

    async def on_partitions_revoked(self, revoked):
        await self.intake.release({self.intake.engine.unit_name(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned):
        await self.intake.acquire(assigned)


class Intake(mode.Service):
    """The batched consumer loop, the output producer and the checkpoints."""

    def __init__(self, cfg: Config, engine: Engine, partitions: dict[str, int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.engine = engine
        self.metrics = engine.metrics
        self.sink = Sink(cfg.topics, partitions)
        self.consumer: BatchConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.checkpoints: CheckpointStore | None = None
        # Processing, checkpoints and rebalance callbacks never interleave.
        self._lock = asyncio.Lock()
        self._last_checkpoint = time.monotonic()
        self._checkpoint_wanted = False
        self._writing: asyncio.Future | None = None  # the checkpoint being written
        self._stopping = False
        self._loop_done = asyncio.Event()
        # Bumped by every assignment: a batch fetched before it predates the seeks to the
        # checkpointed offsets, so it is dropped and fetched again from the right positions.
        self._generation = 0
        self.batches = 0

    async def on_start(self) -> None:
        options = self.cfg.kafka.client_options()
        self.producer = AIOKafkaProducer(
            **options, client_id=f"{self.cfg.kafka.client_id}-out", acks="all", enable_idempotence=True,
            linger_ms=5, max_batch_size=1024 * 1024, max_request_size=1024 * 1024 + 4096,
        )
        await self.producer.start()
        self.checkpoints = CheckpointStore(self.producer, self.cfg.topics.checkpoints, self.cfg.worker.group_id, options)
        self.consumer = BatchConsumer(
            **options, client_id=f"{self.cfg.kafka.client_id}-in", group_id=self.cfg.worker.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
            # Range assignment gives the same partition number of predictions and labels to one worker.
            partition_assignment_strategy=(_range_assignor(),),
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
            # A checkpoint of large state or a rebalance's restore may hold the loop for seconds.
            session_timeout_ms=20_000, heartbeat_interval_ms=3_000, rebalance_timeout_ms=60_000,
            max_poll_interval_ms=300_000, group_instance_id=self.cfg.worker.instance_id,
        )
        self.consumer.subscribe(self.engine.input_topics, listener=_Rebalance(self))
        await self.consumer.start()

    @mode.Service.task
    async def _consume(self) -> None:
        try:
            while not self._stopping:
                generation = self._generation
                batch = await self.consumer.getmany(
                    timeout_ms=self.cfg.worker.batch_timeout_ms, max_records=self.cfg.worker.batch_max_records)
                async with self._lock:
                    if generation != self._generation:
                        continue
                    self._apply(batch)
                    await self.sink.send(self.producer)
                    if time.monotonic() - self._last_checkpoint >= self.cfg.worker.checkpoint_interval_seconds:
                        await self._checkpoint(set(self.engine.units), wait=False)
                    elif self._checkpoint_wanted:
                        # An alert or an idle flush: only the units that made it, at once.
                        await self._checkpoint({n for n, u in self.engine.units.items() if u.urgent}, periodic=False)
                self._update_lag()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Crash-only: the state may be half-applied, so it must never be checkpointed. Exit at
            # once, non-zero; a restart resumes from the last checkpoint and replays exactly.
            log.exception("intake loop failed; exiting without a checkpoint (state resumes from the last one)")
            logging.shutdown()
            os._exit(EXIT_CRASHED)
        finally:
            self._loop_done.set()

    def _apply(self, batch: dict) -> None:
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        n = 0
        newest: dict[str, int] = {}
        # Labels last: a label's prediction may be in the same fetch.
        for tp, records in sorted(batch.items(), key=lambda item: item[0].topic == self.cfg.topics.labels):
            unit = self.engine.units.get(self.engine.unit_name(tp.topic, tp.partition))
            if unit is None:  # revoked between fetch and apply
                continue
            # Never apply an offset twice: an offset reset can redeliver what the state already holds.
            records = as_records(records).since(unit.offsets.get((tp.topic, tp.partition), 0))
            if not records:
                continue
            unit.process(tp.topic, records, self.sink)
            n += len(records)
            newest[tp.topic] = max(newest.get(tp.topic, 0), records[-1].timestamp)
        caught_up = self._caught_up()
        for name, unit in self.engine.units.items():
            unit.tick(now_ms, self.sink, name in caught_up)
            if unit.urgent:
                self._checkpoint_wanted = True
        if n:
            self.batches += 1
            self.metrics.batch_records.observe(n)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        for topic, ts in newest.items():
            self.metrics.event_lag(topic).set(max(0.0, now_ms - ts) / 1000.0)

    async def _checkpoint(self, names: set[str], periodic: bool = True, wait: bool = True) -> None:
        """Outputs acknowledged, then state with offsets of every changed unit, then the group commit.

        The states are taken at once. With ``wait=False`` they are written, and the offsets
        committed, while the next batches are applied: at 100k events/s a worker's state is
        tens of MB, and waiting for the broker to store it stopped intake for a third of the time.
        A checkpoint is complete before the next one starts, so they land in order.
        """
        await self._written()
        started = time.perf_counter()
        await self.sink.confirm(self.producer)
        commit: dict[TopicPartition, OffsetAndMetadata] = {}
        saves = []
        for name in sorted(names):
            unit = self.engine.units.get(name)
            if unit is None or not (unit.dirty or unit.urgent):
                continue
            saves.append((name, dict(unit.offsets), unit.snapshot()))
            unit.urgent = unit.dirty = False
            for (topic, partition), offset in unit.offsets.items():
                commit[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, "")
        if periodic:
            self._last_checkpoint = time.monotonic()
        self._checkpoint_wanted = any(u.urgent for u in self.engine.units.values())
        self._writing = asyncio.ensure_future(self._write(saves, commit, started))
        if wait:
            await self._written()

    async def _write(self, saves: list[tuple[str, dict, bytes]], commit: dict, started: float) -> None:
        # Units' checkpoints are independent: written together, their acks are awaited together.
        await asyncio.gather(*(self.checkpoints.save(name, offsets, state) for name, offsets, state in saves))
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        self.metrics.checkpoint_bytes.inc(sum(len(state) for _, _, state in saves))
        if commit:
            try:
                await self.consumer.commit(commit)
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance is under way; the checkpoint already holds these offsets.
                log.info("group commit skipped: %s", exc)

    async def _written(self) -> None:
        """Wait for the checkpoint being written, if any; a failed write raises here."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def release(self, names: set[str]) -> None:
        async with self._lock:
            await self.sink.send(self.producer)
            await self._checkpoint(names)
            for name in names:
                self.engine.units.pop(name, None)
            self.metrics.owned_units.set(len(self.engine.units))
        log.info("released %s", sorted(names))

    async def acquire(self, assigned) -> None:
        async with self._lock:
            self._generation += 1
            by_unit = defaultdict(list)
            for tp in assigned:
                by_unit[self.engine.unit_name(tp.topic, tp.partition)].append(tp)
            new = {name for name in by_unit if name not in self.engine.units}
            restored = await self.checkpoints.load(new)
            for name in new:
                checkpoint = restored.get(name)
                self.engine.create(name, checkpoint.state if checkpoint else None)
            fresh = [tp for name, tps in by_unit.items() for tp in tps
                     if (tp.topic, tp.partition) not in self.engine.units[name].offsets]
            # No checkpoint: the state starts empty, so its input starts at the beginning.
            beginning = await self.consumer.beginning_offsets(fresh) if fresh else {}
            for name, tps in by_unit.items():
                unit = self.engine.units[name]
                for tp in tps:
                    if tp in beginning:
                        unit.offsets[(tp.topic, tp.partition)] = beginning[tp]
                    self.consumer.seek(tp, unit.offsets[(tp.topic, tp.partition)])
            self.metrics.owned_units.set(len(self.engine.units))
        log.info("acquired %s (restored %s)", sorted(by_unit), sorted(restored))

    def _caught_up(self) -> set[str]:
        """Units that have applied everything their partitions hold (an idle flush needs that:
        right after a restart a partition is silent but has a backlog)."""
        behind = set()
        assigned = self.consumer.assignment()
        for tp in assigned:
            name = self.engine.unit_name(tp.topic, tp.partition)
            unit = self.engine.units.get(name)
            high = self.consumer.highwater(tp)
            if unit is None or high is None or unit.offsets.get((tp.topic, tp.partition), 0) < high:
                behind.add(name)
        return {self.engine.unit_name(tp.topic, tp.partition) for tp in assigned} - behind

    def _update_lag(self) -> None:
        lag: dict[str, int] = defaultdict(int)
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            unit = self.engine.units.get(self.engine.unit_name(tp.topic, tp.partition))
            position = unit.offsets.get((tp.topic, tp.partition), 0) if unit else 0
            lag[tp.topic] += max(0, high - position)
        for topic, value in lag.items():
            self.metrics.consumer_lag(topic).set(value)

    async def on_stop(self) -> None:
        self._stopping = True
        try:
            await asyncio.wait_for(self._loop_done.wait(), timeout=30)
            if self.producer is not None and self.engine.units:
                async with self._lock:
                    await self.sink.send(self.producer)
                    await self._checkpoint(set(self.engine.units))
        finally:
            if self.consumer is not None:
                await self.consumer.stop()
            if self.producer is not None:
                await self.producer.stop()


def _range_assignor():
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor

    return RangePartitionAssignor


def build_app(cfg: Config, metrics: Metrics) -> faust.App:
    """The faust app: lifecycle and the web server with ``/metrics``; no agents on the hot path."""
    app = faust.App(
        f"{cfg.worker.group_id}-app",
        broker=f"kafka://{cfg.kafka.bootstrap_servers}",
        broker_credentials=_faust_credentials(cfg),
        store="memory://",
        web_host=cfg.metrics.host,
        web_port=cfg.metrics.port,
        web_in_thread=False,
        topic_replication_factor=1,
        topic_allow_declare=False,
    )

    @app.page("/metrics")
    async def metrics_page(self, request):
        body, content_type = metrics.exposition()
        return self.bytes(body, content_type=content_type)

    @app.page("/healthz")
    async def health(self, request):
        return self.json({"status": "ok"})

    return app


def _faust_credentials(cfg: Config):
    k = cfg.kafka
    if k.security_protocol == "PLAINTEXT":
        return None
    ssl_context = cfg.kafka.client_options().get("ssl_context")
    if k.sasl_mechanism:
        return faust.SASLCredentials(username=k.sasl_plain_username, password=k.sasl_plain_password,
                                     mechanism=k.sasl_mechanism, ssl_context=ssl_context)
    return faust.SSLCredentials(ssl_context)


def warm_up(cfg: Config) -> None:
    """Run every kernel once on simulated events before joining the group.

    Compiling (or loading from numba's cache) holds the event loop for seconds; done inside the
    first rebalance or batch it would starve the group heartbeats and cost a rebalance.
    """
    from collections import namedtuple

    import msgspec

    from streams.simulate import Simulation

    small = msgspec.structs.replace(cfg, drift=msgspec.structs.replace(
        cfg.drift, reference_size=40, window_size=20, accuracy_window=10, reference_path=None))
    sim = Simulation(models=1, customers=3, count=400, seed=0, start="2026-01-01T00:00:00Z",
                     label_fraction=1.0, label_delay_s=0.5, prices=cfg.path(cfg.costs.prices))
    Record = namedtuple("Record", "key value offset")
    by_topic: dict[str, list] = defaultdict(list)
    for message in sim.events():
        by_topic[message.topic].append(Record(message.key, message.value, len(by_topic[message.topic])))
    sink = Sink(cfg.topics)
    metrics = Metrics()
    for unit_type in unit_types_for(small):
        unit = unit_type(0, small, metrics)
        for attr, kind in unit_type.kinds.items():
            records = by_topic.get(attr)
            if records:
                unit.process(getattr(small.topics, attr), records, sink)
        unit.tick(int(time.time() * 1000), sink, True)
        unit.restore(unit.snapshot())


def run_worker(cfg: Config) -> int:
    """Start the worker and block until it is stopped (SIGTERM / Ctrl-C)."""
    from streams.topics import ensure_topics

    partitions = ensure_topics(cfg)
    warm_up(cfg)
    metrics = Metrics(top_customers=cfg.metrics.top_customers)
    engine = Engine(cfg, metrics)
    app = build_app(cfg, metrics)
    intake = Intake(cfg, engine, partitions)
    worker = Worker(app, intake, loglevel=cfg.worker.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
