"""The sink on the real broker: record batches per partition, every record once, in order per key."""

from __future__ import annotations

import asyncio
import json
import zlib

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.config import TopicsConfig
from streams.demo import read_topic
from streams.sink import Sink

pytestmark = pytest.mark.kafka

PARTITIONS = 2


async def _send_all(bootstrap: str, sink: Sink, rounds: int) -> None:
    # The worker's producer settings: batches of at most 1 MiB.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=1024 * 1024, max_request_size=1024 * 1024 + 4096)
    await producer.start()
    try:
        for r in range(rounds):
            for i in range(3000):
                key = f"cust-{i % 40}|model|feature|1m|{r}"
                sink.rollup(key, json.dumps({"round": r, "i": i, "pad": "x" * 1000}).encode())
            sink.dead_letter("usage", 0, r, None, "invalid JSON", b"\xff not json")
            await sink.send(producer)
        await sink.confirm(producer)
    finally:
        await producer.stop()


def test_records_arrive_once_on_their_key_partition_in_order(kafka_bootstrap, unique):
    topics = TopicsConfig(cost_rollups=f"rollups-{unique}", dead_letter=f"dead-{unique}")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (topics.cost_rollups, topics.dead_letter)])
    admin.close()
    sink = Sink(topics, {topics.cost_rollups: PARTITIONS, topics.dead_letter: PARTITIONS})

    # 3,000 records of ~1 KB per micro-batch: each partition's share overflows one 1 MiB batch.
    asyncio.run(_send_all(kafka_bootstrap, sink, rounds=3))

    rollups = read_topic(kafka_bootstrap, topics.cost_rollups)
    sent = [(r, i) for r in range(3) for i in range(3000)]
    got = [(json.loads(rec.value)["round"], json.loads(rec.value)["i"]) for rec in rollups]
    assert sorted(got) == sent  # every record once
    for rec in rollups:
        assert rec.partition == zlib.crc32(rec.key) % PARTITIONS
    for p in range(PARTITIONS):  # in the order they were handed to the sink, per partition
        mine = [(json.loads(rec.value)["round"], json.loads(rec.value)["i"]) for rec in rollups if rec.partition == p]
        assert mine == sorted(mine)
    letters = read_topic(kafka_bootstrap, topics.dead_letter)
    assert len(letters) == 3 and all(rec.key is None for rec in letters)
