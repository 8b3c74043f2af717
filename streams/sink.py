"""Where a micro-batch's outputs go: alerts, rollups, customer status and dead letters.

Processing is synchronous and writes into the sink; the worker loop then hands everything to one
idempotent aiokafka producer and, before a checkpoint, waits until the broker has acknowledged
all of it. Output keys and ids are deterministic, so a replay after a crash re-sends identical
records that consumers upsert (rollups, status) or deduplicate by CloudEvents id (alerts).
"""

from __future__ import annotations

import asyncio
import zlib

from aiokafka import AIOKafkaProducer

from streams.config import TopicsConfig
from streams.events import encode_dead_letter


class Sink:
    """Outputs of micro-batches; ``partitions`` (topic -> count) routes keyed records ourselves.

    aiokafka's default partitioner hashes every key with murmur2 in pure Python, a visible share of
    the worker's time; crc32 (C) is as stable: one key always lands on one partition, which is all
    the upserting consumers of these topics rely on (only driftmeter writes them). Knowing each
    record's partition, the sink hands the producer whole record batches, one per partition and
    micro-batch, instead of one ``send`` (a future and a metadata wait) per record: when windows
    close, a micro-batch has about as many rollups out as usage events in.
    """

    def __init__(self, topics: TopicsConfig, partitions: dict[str, int] | None = None):
        self.topics = topics
        self.partitions = partitions or {}
        self.pending: list[tuple[str, bytes | None, bytes]] = []
        self._in_flight: list[asyncio.Future] = []

    def dead_letter(self, topic: str, partition: int, offset: int, key: bytes | None, error: str, value: bytes | None) -> None:
        self.pending.append((self.topics.dead_letter, key, encode_dead_letter(topic, partition, offset, error, value)))

    def alert(self, key: str, value: bytes) -> None:
        self.pending.append((self.topics.alerts, key.encode(), value))

    def rollup(self, key: str, value: bytes) -> None:
        self.pending.append((self.topics.cost_rollups, key.encode(), value))

    def customer_statuses(self, customers: list[str], values: list[bytes]) -> None:
        topic = self.topics.customer_status
        self.pending.extend([(topic, customer.encode(), value) for customer, value in zip(customers, values)])

    async def send(self, producer: AIOKafkaProducer) -> None:
        """Hand the pending records to the producer, in order per partition; does not wait for acks."""
        pending, self.pending = self.pending, []
        by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
        for topic, key, value in pending:
            n = self.partitions.get(topic)
            if not n:  # partition count unknown: the producer's partitioner places it
                self._in_flight.append(await producer.send(topic, value, key=key))
                continue
            # a record without key (a dead letter of a keyless input) goes by its bytes
            partition = zlib.crc32(value if key is None else key) % n
            by_partition.setdefault((topic, partition), []).append((key, value))
        for (topic, partition), records in by_partition.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    batch.close()
                    self._in_flight.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            batch.close()
            self._in_flight.append(await producer.send_batch(batch, topic, partition=partition))

    async def confirm(self, producer: AIOKafkaProducer) -> None:
        """Wait until every record sent so far is acknowledged; raise if any failed."""
        await producer.flush()
        in_flight, self._in_flight = self._in_flight, []
        for future in in_flight:
            future.result()
