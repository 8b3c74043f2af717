"""The batch fetch path on the real broker gives exactly what aiokafka's own path gives."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.fetch import BatchConsumer, Records

pytestmark = pytest.mark.kafka

PARTITIONS = 2


async def _fill(bootstrap: str, topic: str) -> None:
    """Plain, keyless, null-valued and gzip-compressed batches, committed and aborted transactions."""
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    packed = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, compression_type="gzip")
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"txn-{topic}")
    for producer in (plain, packed, txn):
        await producer.start()
    try:
        for round_ in range(3):
            sends = []
            for i in range(300):
                key = None if i % 50 == 0 else f"k{i % 7}".encode()
                value = None if i % 97 == 1 else f"plain {round_} {i}".encode()
                sends.append(await plain.send(topic, value, key=key, partition=i % PARTITIONS))
                sends.append(await packed.send(topic, f"gzip {round_} {i}".encode(), key=b"z", partition=i % PARTITIONS))
            await asyncio.gather(*sends)
            for commit in (True, False, True):
                await txn.begin_transaction()
                for i in range(40):
                    await txn.send(topic, f"txn {round_} {commit} {i}".encode(), key=b"t", partition=i % PARTITIONS)
                await (txn.commit_transaction() if commit else txn.abort_transaction())
    finally:
        for producer in (plain, packed, txn):
            await producer.stop()


async def _read(consumer_type, bootstrap: str, topic: str, starts: dict[int, int], max_records: int, fetch_bytes: int):
    consumer = consumer_type(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False,
                             max_partition_fetch_bytes=fetch_bytes)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, starts[tp.partition])
    ends = await consumer.end_offsets(tps)
    got: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    kinds = set()
    try:
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
            assert sum(len(records) for records in batch.values()) <= max_records
            for tp, records in batch.items():
                kinds.add(type(records))
                got[tp.partition] += [(r.offset, r.key, r.value, r.timestamp) for r in records]
            await asyncio.sleep(0.005)  # time for other partitions' fetches to land between reads
        positions = {tp.partition: await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()
    return got, positions, kinds


# Small fetches split batches across fetches; large ones leave a partition's batch half read
# while the other partition's next fetch lands.
@pytest.mark.parametrize("max_records, fetch_bytes", [(7, 4096), (7, 1 << 20), (5000, 4096), (5000, 1 << 20)])
def test_batch_fetch_equals_aiokafka(kafka_bootstrap, unique, max_records, fetch_bytes):
    topic = f"fetch-{unique}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()
    asyncio.run(_fill(kafka_bootstrap, topic))
    starts = {0: 0, 1: 123}  # partition 1 starts inside a record batch

    expected, expected_positions, _ = asyncio.run(_read(AIOKafkaConsumer, kafka_bootstrap, topic, starts, max_records, fetch_bytes))
    got, positions, kinds = asyncio.run(_read(BatchConsumer, kafka_bootstrap, topic, starts, max_records, fetch_bytes))

    assert kinds == {Records}  # the hook is in place: no ConsumerRecord lists
    assert got == expected
    assert positions == expected_positions  # past the transaction markers, like aiokafka
    values = [v for p in got.values() for _, _, v, _ in p]
    assert not [v for v in values if v is not None and b"False" in v]  # aborted transactions skipped
    assert sum(1 for v in values if v is not None and v.startswith(b"txn")) == 3 * 2 * 40
    assert got[1][0][0] == 123
    assert sum(map(len, got.values())) == 3 * (600 + 80) - 123
