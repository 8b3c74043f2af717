"""Acceptance of the cost engine on the real broker: exact rollups, late corrections, budgets, spikes, kill -9."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from streams.producer import EventProducer
from tests.harness import WorkerRig
from tests.test_drift_pipeline import simulate

pytestmark = pytest.mark.kafka

FIELDS = ("requests", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
          "reasoning_output_tokens")
WINDOWS = ("1m", "1h", "1d")


def past_day(days: int = 2) -> str:
    """Midnight UTC some days ago: every window of traffic from then on is closed by now."""
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollups(rig: WorkerRig) -> dict[str, dict]:
    """Upsert by key, as the contract says a consumer should."""
    latest = {}
    for record in rig.read("cost_rollups"):
        latest[record.key.decode()] = json.loads(record.value)["data"]
    return latest


def totals(records: dict[str, dict], window: str) -> dict[str, dict]:
    """Per customer: every counter and the Decimal cost, summed over one window size (late included)."""
    out: dict[str, dict] = defaultdict(lambda: dict.fromkeys(FIELDS, 0) | {"cost_usd": Decimal(0)})
    for data in records.values():
        if data["window"] != window:
            continue
        t = out[data["customer"]]
        for f in FIELDS:
            t[f] += data[f]
        t["cost_usd"] += Decimal(data["cost_usd"])
    return dict(out)


def expected(truth: dict) -> dict[str, dict]:
    return {c: {**u, "cost_usd": Decimal(truth["cost_usd"][c])} for c, u in truth["usage"].items()}


def wait_rollups_complete(rig: WorkerRig, truth: dict, timeout: float = 240) -> dict[str, dict]:
    want = expected(truth)

    def complete():
        records = rollups(rig)
        return records if all(totals(records, w) == want for w in WINDOWS) else None

    try:
        return rig.wait_for(complete, timeout=timeout, interval=2, what="rollups equal to the truth")
    except TimeoutError:
        records = rollups(rig)
        for w in WINDOWS:
            got = totals(records, w)
            diff = {c: (got.get(c), want[c]) for c in set(got) | set(want) if got.get(c) != want.get(c)}
            print(w, len(diff), list(diff.items())[:3])
        raise


def test_rollups_are_exact_for_every_window_size(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique, sections={"costs": {"idle_flush_seconds": 2.0}})
    rig.start()
    try:
        truth = simulate(rig, "--count", "100000", "--seed", "31", "--usage-share", "1", "--customers", "500",
                         "--start", past_day(), "--event-rate", "5", "--scenario", "duplicates:rate=0.01")
        assert truth["duplicates"] > 500
        records = wait_rollups_complete(rig, truth)
        assert all(d["final"] for d in records.values())
        hours = {d["window_start"] for d in records.values() if d["window"] == "1h"}
        assert len(hours) >= 5, "the traffic spans several hours of event time"
        assert rig.metric("driftmeter_events_total", outcome="duplicate") == truth["duplicates"]
    finally:
        rig.stop_all()


def test_late_events_become_corrections_and_sums_stay_exact(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique, sections={"costs": {"idle_flush_seconds": 1.0}})
    rig.start()
    try:
        start = past_day(3)
        truth = simulate(rig, "--count", "5000", "--seed", "32", "--usage-share", "1", "--customers", "20",
                         "--start", start, "--event-rate", "2")
        wait_rollups_complete(rig, truth)
        # Every window of that traffic is final now; send more usage into the same past windows.
        late = simulate(rig, "--count", "1000", "--seed", "33", "--usage-share", "1", "--customers", "20",
                        "--start", start, "--event-rate", "2", "--source", "late")
        both = {"usage": defaultdict(lambda: dict.fromkeys(FIELDS, 0)), "cost_usd": defaultdict(Decimal)}
        for t in (truth, late):
            for c, u in t["usage"].items():
                for f in FIELDS:
                    both["usage"][c][f] += u[f]
                both["cost_usd"][c] += Decimal(t["cost_usd"][c])
        combined = {"usage": dict(both["usage"]), "cost_usd": {c: str(v) for c, v in both["cost_usd"].items()}}
        records = wait_rollups_complete(rig, combined)
        late_records = [d for d in records.values() if d["late"]]
        assert late_records and all(k.count("|late|") == 1 for k, d in records.items() if d["late"])
        assert rig.metric("driftmeter_usage_late_events_total") == late["topics"]["usage"]["distinct"]
    finally:
        rig.stop_all()


def test_budget_crossings_alert_once_and_status_says_hard(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique,
                    sections={"budgets.acme": {"period": "month", "limit_usd": "1", "soft_ratio": 0.8},
                              "costs": {"status_interval_seconds": 2.0}})
    rig.start()
    try:
        with EventProducer(bootstrap_servers=kafka_bootstrap, source="gw/test",
                           topics={"usage": rig.topics["usage"]}) as events:
            for cost in ("0.5", "0.35", "0.1", "0.2", "0.3"):  # 0.85 crosses soft, 1.15 hard
                events.usage(customer="acme", model="gpt-4o-mini", input_tokens=10, output_tokens=1,
                             cost_usd=Decimal(cost))
                events.flush()
                time.sleep(0.3)
        rig.wait_for(lambda: rig.metric("driftmeter_events_total", outcome="processed") >= 5, what="5 usage events")
        alerts = [json.loads(r.value)["data"] for r in rig.read_at_least("alerts", 2)]
        kinds = Counter(a["kind"] for a in alerts if a["customer"] == "acme")
        assert kinds == {"budget_soft": 1, "budget_hard": 1}, alerts

        def status():  # sent at once on a crossing, then every few seconds while spend moves
            latest = {r.key.decode(): json.loads(r.value) for r in rig.read("customer_status")}
            return latest.get("acme") if Decimal(latest.get("acme", {}).get("spend_usd", "0")) == Decimal("1.45") else None

        acme = rig.wait_for(status, timeout=30, what="the status with the whole spend")
        assert acme["state"] == "hard" and acme["period"] == dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")
        assert Decimal(acme["limit_usd"]) == 1
        rig.wait_for(lambda: rig.metric("driftmeter_budget_used_ratio", customer="acme") == pytest.approx(1.45),
                     timeout=30, what="the budget ratio metric")
    finally:
        rig.stop_all()


def test_cost_spike_names_that_customer_only(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique)
    rig.start()
    try:
        truth = simulate(rig, "--count", "100000", "--seed", "34", "--usage-share", "1", "--customers", "1000",
                         "--start", past_day(), "--event-rate", "25",
                         "--scenario", "cost_spike:customer=cust-0007,at=0.8,factor=10")
        rig.wait_for(lambda: rig.metric("driftmeter_events_total") >= truth["messages"], timeout=240,
                     what="all usage counted")
        spikes = [json.loads(r.value)["data"] for r in rig.read_at_least("alerts", 1)]
        spikes = [a for a in spikes if a["kind"] == "cost_spike" and a["status"] == "firing"]
        assert [a["customer"] for a in spikes] == ["cust-0007"], spikes
        assert spikes[0]["model"] and spikes[0]["feature"]
    finally:
        rig.stop_all()


def test_kill_9_twice_keeps_sums_exact_and_budget_alerts_single(kafka_bootstrap, tmp_path, unique):
    rig = WorkerRig(kafka_bootstrap, tmp_path, unique,
                    sections={"costs": {"idle_flush_seconds": 2.0},
                              "budgets.\"*\"": {"period": "day", "limit_usd": "2", "soft_ratio": 0.5}})
    worker = rig.start()
    rng = random.Random(35)
    try:
        sim, truth_path = simulate(rig, "--count", "100000", "--seed", "35", "--usage-share", "1",
                                   "--customers", "300", "--start", past_day(), "--event-rate", "5", "--rate", "8000",
                                   "--scenario", "duplicates:rate=0.01", background=True)
        for _ in range(2):
            time.sleep(rng.uniform(1.0, 5.0))
            rig.stop(worker, kill=True)
            worker = rig.start()
        assert sim.wait(timeout=300) == 0
        truth = json.loads(truth_path.read_text())
        wait_rollups_complete(rig, truth)
        alerts = [json.loads(r.value) for r in rig.read("alerts")]
        budget = [a for a in alerts if a["data"]["kind"].startswith("budget_")]
        assert budget, "the small daily budget is crossed"
        # A redelivered alert is the same CloudEvent (source, id); no dedup_key may fire twice.
        ids = defaultdict(set)
        for a in budget:
            ids[a["data"]["dedup_key"]].add(a["id"])
        assert all(len(v) == 1 for v in ids.values()), {k: v for k, v in ids.items() if len(v) > 1}
    finally:
        rig.stop_all()
