"""Fault tests on the real broker: kill -9, broker restart, a worker lost from a pair, hostile input.

Short by default (part of ``make test``); ``DRIFTMETER_FAULTS=full`` (``make bench-faults``) runs the
sizes of the proof issue: a 1M-usage-event run with 5 kills, 10,000 hostile records among 100,000.
After every fault the final rollups of every window size must equal, exactly (Decimal), the totals of
the distinct valid events, and no alert may fire twice for its dedup_key.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter, defaultdict

import pytest
from kafka import KafkaProducer

from streams.simulate import Simulation
from tests.harness import WorkerRig, free_port
from tests.hostile import mutate
from tests.test_cost_engine import past_day, wait_rollups_complete
from tests.test_drift_pipeline import simulate

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

FULL = os.environ.get("DRIFTMETER_FAULTS") == "full"
KILL_RUN = 1_000_000 if FULL else 60_000
KILLS = 5 if FULL else 3
HOSTILE, VALID = (10_000, 100_000) if FULL else (10_000, 20_000)


def usage_run(rig: WorkerRig, count: int, seed: int, rate: int, **kw):
    return simulate(rig, "--count", str(count), "--seed", str(seed), "--usage-share", "1", "--customers", "2000",
                    "--start", past_day(), "--event-rate", "20", "--rate", str(rate),
                    "--scenario", "duplicates:rate=0.01", **kw)


def no_alert_fires_twice(rig: WorkerRig) -> None:
    ids = defaultdict(set)
    for record in rig.read("alerts"):
        alert = json.loads(record.value)
        if alert["data"]["status"] == "firing":
            ids[alert["data"]["dedup_key"]].add(alert["id"])
    assert all(len(v) == 1 for v in ids.values()), {k: v for k, v in ids.items() if len(v) > 1}


def test_kill_9_at_random_instants(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique, sections={
        "costs": {"idle_flush_seconds": 2.0}, "budgets.\"*\"": {"period": "day", "limit_usd": "5", "soft_ratio": 0.5}})
    worker = rig.start()
    rng = random.Random(41)
    try:
        sim, truth_path = usage_run(rig, KILL_RUN, 41, 20_000 if FULL else 6_000, background=True)
        for _ in range(KILLS):
            time.sleep(rng.uniform(2.0, 8.0 if FULL else 4.0))
            rig.stop(worker, kill=True)
            worker = rig.start()
        assert sim.wait(timeout=3600) == 0
        wait_rollups_complete(rig, json.loads(truth_path.read_text()), timeout=1800 if FULL else 300)
        no_alert_fires_twice(rig)
    finally:
        rig.stop_all()


def test_broker_restart_mid_run(kafka_broker, tmp_path, unique):
    rig = WorkerRig(kafka_broker.bootstrap, tmp_path, unique, sections={"costs": {"idle_flush_seconds": 2.0}})
    worker = rig.start()
    try:
        sim, truth_path = usage_run(rig, 200_000 if FULL else 40_000, 42, 5_000, background=True)
        time.sleep(4)
        kafka_broker.restart(down_seconds=3)
        assert sim.wait(timeout=1800) == 0
        wait_rollups_complete(rig, json.loads(truth_path.read_text()), timeout=600)
        assert worker.poll() is None, "the worker rides out a broker restart"
        no_alert_fires_twice(rig)
    finally:
        rig.stop_all()


def test_two_workers_one_killed(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique, sections={"costs": {"idle_flush_seconds": 2.0}})
    rig.start()
    second = rig.start(port=free_port())
    try:
        rig.wait_for(lambda: rig.metric("driftmeter_owned_units", port=second.metrics_port) > 0,
                     what="the second worker owns units")
        sim, truth_path = usage_run(rig, 300_000 if FULL else 40_000, 43, 5_000, background=True)
        time.sleep(4)
        rig.stop(second, kill=True)
        assert sim.wait(timeout=1800) == 0
        wait_rollups_complete(rig, json.loads(truth_path.read_text()), timeout=600)
        assert rig.metric("driftmeter_owned_units") == 8, "the survivor took every unit"
        no_alert_fires_twice(rig)
    finally:
        rig.stop_all()


def test_hostile_input_is_dead_lettered_and_totals_stay_exact(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique, sections={"costs": {"idle_flush_seconds": 2.0}})
    worker = rig.start()
    try:
        sim = Simulation(models=3, customers=500, count=VALID, seed=44, start=past_day(), event_rate=20,
                         usage_share=1.0)
        valid = [m for m in sim.events() if m.topic == "usage"]
        rng = random.Random(44)
        hostile = []
        for _ in range(HOSTILE):
            message = rng.choice(valid)
            hostile.append(mutate(rng, json.loads(message.value), message.key))
        # Valid events keep their relative order; hostile ones land at random places among them.
        slots = sorted(rng.randrange(len(valid) + 1) for _ in hostile)
        stream, h = [], 0
        for i in range(len(valid) + 1):
            while h < len(hostile) and slots[h] == i:
                stream.append(hostile[h][:2])
                h += 1
            if i < len(valid):
                stream.append((valid[i].value, valid[i].key))
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2 * 1024 * 1024,
                                 linger_ms=5, batch_size=256 * 1024)
        for value, key in stream:
            producer.send(rig.topics["usage"], key=key, value=value)
        producer.flush()
        producer.close()
        total = len(stream)
        rig.wait_for(lambda: rig.metric("driftmeter_events_total") >= total, timeout=600, what="all records counted")
        assert worker.poll() is None, "no crash"
        counted = {o: rig.metric("driftmeter_events_total", outcome=o) for o in ("processed", "invalid", "duplicate")}
        kinds = Counter(kind for _, _, kind in hostile)
        assert counted["processed"] == len(valid)
        assert counted["invalid"] + counted["duplicate"] == HOSTILE, (counted, kinds)
        assert counted["duplicate"] == kinds["duplicate"]
        letters = rig.read_at_least("dead_letter", counted["invalid"])
        assert len(letters) == counted["invalid"] and all(json.loads(r.value)["error"] for r in letters)
        wait_rollups_complete(rig, sim.truth, timeout=600)
        rss_kib = int(next(line.split()[1] for line in open(f"/proc/{worker.pid}/status") if line.startswith("VmRSS")))
        assert rss_kib < 2 * 1024**2, f"worker RSS {rss_kib / 1024:.0f} MiB"
    finally:
        rig.stop_all()
