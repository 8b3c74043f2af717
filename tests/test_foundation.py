"""Acceptance of the foundation on the real broker: Kafka itself, simulate -> worker -> dead_letter and /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from streams.events import decode_batch
from streams.producer import EventProducer
from tests.conftest import KAFKA_SH, ROOT, _free_port_pair
from tests.harness import WorkerRig

pytestmark = pytest.mark.kafka


def test_broker_is_apache_kafka_with_groups(kafka_bootstrap, unique):
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    cluster = admin.describe_cluster()
    assert len(cluster["brokers"]) == 1 and cluster["controller_id"] == 1
    topic = f"t-{unique}"
    admin.create_topics([NewTopic(topic, 3, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(30):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=f"g-{unique}",
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    values = sorted(m.value for m in consumer)
    consumer.commit()
    consumer.close()
    assert values == sorted(f"v{i}".encode() for i in range(30))
    # The broker process is the real thing: a kafka.Kafka JVM.
    pids = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True).stdout.split()
    assert pids


def test_two_brokers_side_by_side(kafka_bootstrap):
    port = _free_port_pair()
    env = {**os.environ, "KAFKA_PORT": str(port)}
    subprocess.run([str(KAFKA_SH), "up"], check=True, env=env)
    try:
        status = subprocess.run([str(KAFKA_SH), "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0 and str(port) in status.stdout
        for bootstrap in (kafka_bootstrap, f"127.0.0.1:{port}"):
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            assert admin.describe_cluster()["brokers"][0]["port"] == int(bootstrap.rpartition(":")[2])
            admin.close()
    finally:
        subprocess.run([str(KAFKA_SH), "wipe"], check=True, env=env)


def _simulate(rig: WorkerRig, *args: str) -> dict:
    truth_path = rig.dir / "truth.json"
    topic_args = [a for t in ("predictions", "labels", "usage") for a in (f"--topic-{t}", rig.topics[t])]
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "simulate", "--bootstrap-servers", rig.bootstrap,
         "--truth", str(truth_path), *topic_args, *args],
        cwd=ROOT, check=True, capture_output=True,
    )
    return json.loads(truth_path.read_text())


def _counted(rig: WorkerRig) -> float:
    return rig.metric("driftmeter_events_total")


def test_simulated_traffic_is_valid_per_contract(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique)
    truth = _simulate(rig, "--count", "10000", "--seed", "7")
    assert truth["messages"] == 10_000
    total = 0
    for topic, kind in (("predictions", "prediction"), ("labels", "label"), ("usage", "usage")):
        records = rig.read(topic)
        total += len(records)
        events, rejects = decode_batch(kind, [r.value for r in records])
        assert rejects == []
        for record, event in zip(records, events):
            expected_key = event.subject if kind == "usage" else event.data.model
            assert record.key == expected_key.encode()
    assert total == 10_000


def test_malformed_events_are_dead_lettered_with_reasons(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique)
    truth = _simulate(rig, "--count", "10000", "--seed", "11", "--scenario", "malformed:rate=0.03",
                      "--scenario", "duplicates:rate=0.01")
    try:
        rig.start()
        rig.wait_for(lambda: _counted(rig) >= truth["messages"], timeout=120, what="all messages counted")
        assert _counted(rig) == truth["messages"]
        malformed = truth["malformed"]["total"]
        assert malformed > 0
        assert rig.metric("driftmeter_events_total", outcome="invalid") == malformed
        assert rig.metric("driftmeter_events_total", outcome="duplicate") == truth["duplicates"]
        for topic in ("predictions", "labels", "usage"):
            t = truth["topics"][topic]
            assert rig.metric("driftmeter_events_total", topic=rig.topics[topic], outcome="processed") == t["distinct"]
            assert rig.metric("driftmeter_events_total", topic=rig.topics[topic], outcome="invalid") == t["malformed"]
        letters = rig.read_at_least("dead_letter", malformed)
        assert len(letters) == malformed
        for record in letters:
            letter = json.loads(record.value)
            assert set(letter) == {"topic", "partition", "offset", "error", "value", "value_encoding"}
            assert letter["topic"] in {rig.topics[t] for t in ("predictions", "labels", "usage")}
            assert letter["error"] and letter["value_encoding"] in {"utf-8", "base64"}
        proc = rig.procs[0]
        assert proc.poll() is None, "worker crashed"
    finally:
        rig.stop_all()


def test_sdk_to_worker_to_dead_letter_and_metrics(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique)
    rig.start()
    try:
        topics = {t: rig.topics[t] for t in ("predictions", "labels", "usage")}
        with EventProducer(bootstrap_servers=kafka_bootstrap, source="fleet/test", topics=topics) as events:
            ids = [events.prediction(model="fraud", model_version="3", features={"amount": float(i), "country": "DE"},
                                     prediction=0.5, latency_ms=12.0) for i in range(20)]
            for i in range(10):
                events.usage(customer=f"c{i % 3}", model="gpt-4o-mini", input_tokens=100, output_tokens=20)
        raw = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        bad_usage = {"specversion": "1.0", "type": "driftmeter.usage", "source": "gw", "id": str(uuid.uuid4()),
                     "time": "2026-11-22T03:00:00Z", "subject": "acme",
                     "data": {"model": "gpt-4o-mini", "input_tokens": -5, "output_tokens": 1}}
        raw.send(rig.topics["usage"], key=b"acme", value=json.dumps(bad_usage).encode())
        raw.send(rig.topics["usage"], key=b"acme", value=b"\xff not utf-8")
        raw.flush()
        raw.close()
        rig.wait_for(lambda: _counted(rig) >= 32, what="32 records counted")
        assert rig.metric("driftmeter_events_total", topic=rig.topics["predictions"], outcome="processed") == 20
        assert rig.metric("driftmeter_events_total", topic=rig.topics["usage"], outcome="processed") == 10
        assert rig.metric("driftmeter_events_total", topic=rig.topics["usage"], outcome="invalid") == 2
        letters = sorted((json.loads(r.value) for r in rig.read_at_least("dead_letter", 2)), key=lambda d: d["offset"])
        assert [d["error"] for d in letters] == [
            "data.input_tokens: expected int >= 0, got -5",
            "invalid UTF-8 at byte 0: invalid start byte",
        ]
        assert letters[1]["value_encoding"] == "base64"
        assert len(ids) == len(set(ids)) == 20
    finally:
        rig.stop_all()
    assert rig.procs[0].returncode == 0


@pytest.mark.parametrize("body, message", [
    ("[metrics]\nprot = 1\n", "metrics.prot: unknown key"),
    ("[worker]\nbatch_max_records = \"many\"\n", "worker.batch_max_records: expected int, got str"),
    ("[costs]\nprices = \"missing.toml\"\n", "costs.prices: price file"),
    ("[budgets.acme]\nsoft_ratio = 2.0\n", "budgets.acme.soft_ratio: must be in (0, 1]"),
])
def test_bad_config_stops_the_worker_at_start(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    result = subprocess.run([sys.executable, "-m", "streams.cli", "worker", "--config", str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
