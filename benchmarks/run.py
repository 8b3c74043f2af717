"""End-to-end benchmarks (``make bench``): raw ceiling, naive pipeline and driftmeter, same run.

``python -m benchmarks.run`` (short, under ~10 minutes on 2 cores) or ``BENCH=full python -m
benchmarks.run`` starts its own Apache Kafka broker on a free port (``tools/kafka/kafka.sh``,
wiped at the end), fills the topics once and measures, on the same topics and in the same run:

1. the raw ceiling (:mod:`benchmarks.raw`): fetch and decode every record, nothing else;
2. the naive pipeline (:mod:`benchmarks.naive`): faust agent per event, river ADWIN per numeric
   feature, ``Decimal`` per-customer totals;
3. driftmeter (:mod:`benchmarks.pipeline`): 1 and 2 real worker processes in fresh groups,
   sustained events/s from ``/metrics`` until the topics are drained, start-up excluded, and the
   worker's RSS at five event counts (the target compares 10% and 100% of the traffic);
4. event-to-alert latency (:mod:`benchmarks.latency`) at half the 1-worker rate, drifts injected;
5. the cost path: usage of 100,000 customers, events/s, and the final rollups (upserted by key)
   compared exactly with the totals of the produced events.

Where a speed target is missed, a worker is run again under pyinstrument on the same topics and
its top functions go into the results. Everything is written to the ``end-to-end`` section of
``benchmarks/RESULTS.md`` (``end-to-end-full`` for ``BENCH=full``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from kafka.admin import KafkaAdminClient, NewTopic

from benchmarks import latency
from benchmarks.fill import PredictionTraffic, UsageTraffic, fill, partition_of, timed_chunks
from benchmarks.pipeline import (
    Deployment,
    WorkerProcess,
    collect_rollups,
    compare_rollups,
    drain,
    metric_sum,
    stop_all,
    wait_ready,
    worker_stats,
)
from benchmarks.results import write_section

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "tools" / "kafka" / "kafka.sh"
PARTITIONS = 4
# Event time advances this fast in the throughput traffic (per topic), as if recorded live.
RECORDED_RATE = 20_000
# The cost path's traffic is recorded at the target rate.
COST_RECORDED_RATE = 100_000


@dataclass(frozen=True)
class Sizes:
    predictions: int  # throughput traffic, per topic
    usage: int
    naive_seconds: float
    latency_rounds: int
    cost_events: int
    profile_seconds: float  # a profiled worker runs this long at most
    drain_timeout: float  # a stage fails when its topics are not drained by then
    cost_customers: int = 100_000

    @property
    def total(self) -> int:
        return self.predictions + self.usage

    @property
    def rss_marks(self) -> tuple[int, ...]:
        """Event counts at which the worker's RSS is read: the target compares the first and the last."""
        return self.total // 10, self.total // 4, self.total // 2, self.total * 3 // 4, self.total


SIZES = {
    "short": Sizes(predictions=500_000, usage=500_000, naive_seconds=15, latency_rounds=2, cost_events=500_000,
                   profile_seconds=40, drain_timeout=900),
    "full": Sizes(predictions=5_000_000, usage=5_000_000, naive_seconds=60, latency_rounds=6, cost_events=5_000_000,
                  profile_seconds=120, drain_timeout=3600),
}
TARGETS = {"raw_share": 0.5, "naive_ratio": 10.0, "p99_seconds": 1.0, "rss_growth": 0.10, "cost_rate": 100_000}
# Latency traffic: per round, this many features drift one after the other, this far apart.
LATENCY_ONSETS = 30
LATENCY_SPACING = 1.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Broker


def _free_port_pair() -> int:
    """A port p with p and p + 10000 (the broker's controller) both free."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for the benchmark broker")


def kafka(command: str, port: int) -> None:
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_PARTITIONS": str(PARTITIONS)}
    subprocess.run([str(KAFKA_SH), command], check=True, env=env)


def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
        admin.wait_for_topics(names, timeout_ms=30_000)
    finally:
        admin.close()


def fill_topic(bootstrap: str, topic: str, traffic, n: int, start_ms: int, per_second: float) -> dict:
    started = time.perf_counter()
    count = asyncio.run(fill(bootstrap, topic, timed_chunks(traffic, n, start_ms, per_second), PARTITIONS))
    seconds = time.perf_counter() - started
    log(f"filled {topic}: {count:,} events in {seconds:.1f} s (generation included)")
    return {"events": count, "seconds": seconds}


# ---------------------------------------------------------------------------------------------
# Stages


def run_json(command: list[str], timeout: float) -> dict:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def raw_stage(bootstrap: str, topics: dict[str, str], expect: int) -> dict:
    args = [f"--topic={kind}={name}" for kind, name in topics.items()]
    return run_json([sys.executable, "-m", "benchmarks.raw", "--bootstrap", bootstrap, *args,
                     "--partitions", str(PARTITIONS), "--expect", str(expect)], timeout=600)


def naive_stage(bootstrap: str, topics: dict[str, str], expect: int, seconds: float, scratch: Path) -> dict:
    out = scratch / "naive.json"
    args = [f"--topic={kind}={name}" for kind, name in topics.items()]
    # faust writes its app data directory into the cwd.
    directory = scratch / "naive"
    directory.mkdir()
    log_path = directory / "naive.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.naive", "--bootstrap", bootstrap, *args, "--app-id",
             f"bench-naive-{uuid.uuid4().hex[:8]}", "--out", str(out), "--duration", str(seconds), "--warmup", "3",
             "--expect", str(expect)],
            cwd=directory, stdout=log_file, stderr=subprocess.STDOUT, timeout=seconds + 240,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    if not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"naive pipeline exited with {proc.returncode} without a result:\n{tail}")
    return json.loads(out.read_text())


def driftmeter_stage(deployment: Deployment, workers: int, expect: int, limit: float,
                     profile_to: Path | None = None) -> dict:
    """Drain the deployment's inputs with ``workers`` fresh worker processes (the first profiled
    when ``profile_to`` is given); the run stops after ``limit`` seconds, an error unless profiled."""
    procs = [WorkerProcess(deployment, profile_to if i == 0 else None) for i in range(workers)]
    try:
        seen = drain(procs, expect, timeout=limit)
    finally:
        codes = stop_all(procs)
    if seen.start is None or (not seen.complete and profile_to is None):
        counted = seen.samples[-1].total if seen.samples else 0
        raise RuntimeError(f"{workers} worker(s) counted {counted:,.0f} of {expect:,} records in {limit:.0f} s")
    return {
        "workers": workers, "events": seen.events, "seconds": seen.seconds, "events_per_s": seen.events_per_s,
        "cpu_us_per_event": seen.cpu_us_per_event, "share_per_worker": seen.share_per_worker,
        "startup_seconds": seen.start.t - min(p.launched for p in procs), "rss_start": seen.samples[0].rss[0],
        "longest_stall": seen.longest_stall, **worker_stats(seen.last_metrics), "exit_codes": codes, "drain": seen,
    }


def latency_stage(bootstrap: str, scratch: Path, rate: float, sizes: Sizes, run: str) -> dict:
    """A fresh worker on topics of its own; the producer at ``rate``; alerts timed as they arrive."""
    deployment = Deployment(bootstrap, {}, f"{run}-lat", scratch / "latency")
    worker = WorkerProcess(deployment)
    lag: list[float] = []
    counted = [0.0]
    watching = threading.Event()

    def watch_lag() -> None:
        while not watching.is_set():
            try:
                text = worker.scrape()
                lag.append(metric_sum(text, "driftmeter_consumer_lag_records"))
                counted[0] = metric_sum(text, "driftmeter_events_total")
            except OSError:
                pass
            watching.wait(0.5)

    def caught_up() -> bool:
        # The producer has exited: its stats say how many events it sent.
        return stats_path.exists() and counted[0] >= json.loads(stats_path.read_text())["events"]

    stats_path = scratch / "latency-producer.json"
    try:
        wait_ready([worker])
        topics = deployment.topics
        watcher = threading.Thread(target=watch_lag, daemon=True)
        watcher.start()

        async def measure():
            producer = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.latency", "produce", "--bootstrap", bootstrap,
                "--predictions", topics["predictions"], "--usage", topics["usage"], "--partitions", str(PARTITIONS),
                "--rate", str(rate), "--rounds", str(sizes.latency_rounds), "--onsets", str(LATENCY_ONSETS),
                "--spacing", str(LATENCY_SPACING), "--run", run, "--out", str(stats_path), cwd=ROOT)
            found = await latency.collect_alerts(bootstrap, topics["alerts"], PARTITIONS, producer, topics["predictions"],
                                                 caught_up)
            await producer.wait()
            return found, producer.returncode

        (alerts, transport), code = asyncio.run(measure())
        watching.set()
        watcher.join()
        if code != 0:
            raise RuntimeError(f"latency producer exited with {code}")
        seconds, kinds = latency.latencies(alerts)
        text = worker.scrape()
    finally:
        watching.set()
        worker.stop()
    producer = json.loads(stats_path.read_text())
    quantiles = {f"p{q}": float(np.percentile(seconds, q)) for q in (50, 90, 99)} if len(seconds) else {}
    return {"rate": rate, "producer": producer, "alerts": len(seconds), "kinds": kinds,
            "max": float(seconds.max()) if len(seconds) else None, **quantiles,
            "transport_p50": float(np.percentile(transport, 50)) if len(transport) else None,
            "transport_p99": float(np.percentile(transport, 99)) if len(transport) else None,
            "lag_max": max(lag, default=0.0), "lag_mean": float(np.mean(lag)) if lag else 0.0,
            "worker_events": metric_sum(text, "driftmeter_events_total"), **worker_stats([text])}


def cost_stage(bootstrap: str, scratch: Path, sizes: Sizes, run: str, traffic: tuple | None = None,
               profile_to: Path | None = None) -> dict:
    """Fill usage of ``sizes.cost_customers`` customers (unless ``traffic`` = (topic, truth, fill
    stats) of an earlier call is given), drain it with 1 worker, and check the rollups.

    The traffic is dated yesterday, so after the drain the idle flush closes every window; the
    rollups are read as a consumer upserting by key until every event is in every window size.
    A profiled run (``profile_to``) stops after ``sizes.profile_seconds``.
    """
    if traffic is None:
        topic = f"bench-cost-usage-{run}"
        create_topics(bootstrap, [topic])
        usage = UsageTraffic(customers=sizes.cost_customers, seed=7, id_prefix=f"cost-{run}")
        day = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
        filled = fill_topic(bootstrap, topic, usage, sizes.cost_events, int(day.timestamp() * 1000),
                            COST_RECORDED_RATE)
        traffic = (topic, usage.truth(), filled)
    topic, truth, filled = traffic
    name = "cost-profile" if profile_to else "cost"
    deployment = Deployment(bootstrap, {"usage": topic}, f"{run}-{name}", scratch / name)
    worker = WorkerProcess(deployment, profile_to)
    try:
        seen = drain([worker], sizes.cost_events, timeout=sizes.profile_seconds if profile_to else sizes.drain_timeout)
        if profile_to is not None:
            return {"events_per_s": seen.events_per_s}
        if not seen.complete:
            raise RuntimeError(f"the cost worker did not drain {sizes.cost_events:,} events:\n{worker.log_tail()}")
        book, complete_at = asyncio.run(collect_rollups(bootstrap, deployment.topics["cost_rollups"], PARTITIONS,
                                                        sizes.cost_events))
        text = worker.scrape()
    finally:
        worker.stop()
    comparison = compare_rollups(book.totals(), truth)
    log(f"checked {book.records:,} rollup records ({len(book.latest):,} keys): "
        f"{'exact' if comparison['exact'] else 'NOT exact'}")
    return {
        "fill": filled, "events": seen.events, "seconds": seen.seconds, "events_per_s": seen.events_per_s,
        "cpu_us_per_event": seen.cpu_us_per_event, "customers": len({key[0] for key in truth}), "keys": len(truth),
        "rollups_metric": metric_sum(text, "driftmeter_rollups_total"), "rollup_records": book.records,
        "rollup_keys": len(book.latest), "late_events": metric_sum(text, "driftmeter_usage_late_events_total"),
        "complete_after_drain": complete_at - seen.end.t if complete_at else None,
        "longest_stall": seen.longest_stall, **worker_stats([text]), "comparison": comparison, "traffic": traffic,
    }


# ---------------------------------------------------------------------------------------------
# Report


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f} MiB"


def _loop(run: dict) -> str:
    return (f"{run['checkpoints']} checkpoints (mean {run['checkpoints_mean_s'] * 1000:,.0f} ms), batches mean "
            f"{run['batches_mean_s'] * 1000:,.0f} ms, longest /metrics stall {run['longest_stall']:.1f} s")


def code_version() -> str:
    """The commit measured, and whether the engine had uncommitted changes when the run started."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "streams", "detectors")
    return f"commit {commit}" + (" with uncommitted changes in streams/ or detectors/" if dirty else "")


def report(mode: str, sizes: Sizes, r: dict, errors: dict[str, str]) -> str:
    raw, naive, one, two = r.get("raw"), r.get("naive"), r.get("w1"), r.get("w2")
    lat, cost, rss = r.get("latency"), r.get("cost"), r.get("rss")
    lines = [f"## End to end (`make bench`, {mode} mode)", ""]
    lines += [
        f"Engine: {r['code']} at the start of the run. "
        f"Single-node Apache Kafka 4.x broker started by the run (`tools/kafka/kafka.sh`, port {r['port']}), "
        f"{PARTITIONS} partitions per topic, on the same machine as every process below. Throughput traffic, "
        f"filled once and read by every contender: {sizes.predictions:,} predictions (10 models keyed by name, "
        f"8 numeric + 4 categorical features, ~{r['pred_bytes']:.0f} bytes) and {sizes.usage:,} usage events "
        f"(10,000 customers, ~{r['usage_bytes']:.0f} bytes); model partitions {r['model_partitions']}. "
        "Rates are wall-clock over the measured window; CPU µs/event is the consumer's own CPU time per event "
        "(the figure the machine's load moves least).",
        "",
        "### Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    if one and raw:
        share = one["events_per_s"] / raw["events_per_s"]
        lines.append(f"| >= 50% of the raw ceiling | 1 worker {_rate(one['events_per_s'])}/s = {share:.0%} of "
                     f"{_rate(raw['events_per_s'])}/s | {_met(share >= TARGETS['raw_share'])} |")
    if one and naive:
        ratio = one["events_per_s"] / naive["events_per_s"]
        lines.append(f"| >= 10x the naive pipeline | 1 worker {ratio:.1f}x ({_rate(one['events_per_s'])}/s vs "
                     f"{_rate(naive['events_per_s'])}/s) | {_met(ratio >= TARGETS['naive_ratio'])} |")
    if lat and lat.get("p99") is not None:
        lines.append(f"| p99 event-to-alert <= 1 s | p50 {lat['p50'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms "
                     f"({lat['alerts']} alerts) | {_met(lat['p99'] <= TARGETS['p99_seconds'])} |")
    if rss:
        lines.append(f"| RSS growth <= 10% from {rss['marks'][0]:,} to {rss['marks'][-1]:,} events | "
                     f"{_mib(rss['at'][0])} -> {_mib(rss['at'][-1])} ({rss['growth']:+.0%}) | "
                     f"{_met(rss['growth'] <= TARGETS['rss_growth'])} |")
    if cost:
        exact = cost["comparison"]["exact"]
        lines.append(f"| cost path >= 100k usage events/s, 100k customers, exact totals | "
                     f"{_rate(cost['events_per_s'])}/s, {cost['customers']:,} customers, "
                     f"{'exact' if exact else 'NOT exact'} | "
                     f"{_met(cost['events_per_s'] >= TARGETS['cost_rate'] and exact)} |")
    for stage, error in errors.items():
        lines.append(f"| {stage} | failed: `{error.splitlines()[-1][:150]}` | **missed** |")
    lines += ["", "### Throughput (same topics, same run)", "",
              "| consumer | events measured | seconds | events/s | CPU µs/event | notes |", "|---|---|---|---|---|---|"]
    if raw:
        lines.append(f"| raw ceiling: aiokafka `getmany(5000)` + `decode_batch` | {raw['records']:,} | "
                     f"{raw['seconds']:.1f} | {_rate(raw['events_per_s'])} | {raw['cpu_seconds'] / raw['records'] * 1e6:.1f} "
                     f"| {raw['invalid']} invalid |")
    if naive:
        lines.append(f"| naive: faust agent per event + river ADWIN + Decimal dict | {naive['records']:,} | "
                     f"{naive['seconds']:.1f} | {_rate(naive['events_per_s'])} | "
                     f"{naive['cpu_seconds'] / max(naive['records'], 1) * 1e6:.1f} | {naive['detectors']} ADWINs, "
                     f"{naive['customers']:,} customers after {naive['events_seen']:,} events |")
    for run in (one, two):
        if run:
            shares = ", ".join(f"{s:.0%}" for s in run["share_per_worker"])
            lines.append(f"| driftmeter, {run['workers']} worker{'s' if run['workers'] > 1 else ''} | {run['events']:,.0f} | "
                         f"{run['seconds']:.1f} | {_rate(run['events_per_s'])} | {run['cpu_us_per_event']:.1f} | "
                         f"{run['startup_seconds']:.1f} s from launch to the window (excluded); events per worker {shares}; "
                         f"{_loop(run)} |")
    if one and raw:
        raw_cpu = raw["cpu_seconds"] / raw["records"] * 1e6
        lines += ["", f"The worker spends {one['cpu_us_per_event']:.1f} CPU µs per event, "
                      f"{one['cpu_us_per_event'] / raw_cpu:.1f}x the raw ceiling's {raw_cpu:.1f} (fetch and decode)."]
    if one and two:
        lines += ["", f"2 workers / 1 worker: {two['events_per_s'] / one['events_per_s']:.2f}x (both workers, the broker "
                      f"and this script share {os.cpu_count()} cores)."]
    if lat:
        p = lat["producer"]
        lines += ["", "### Event-to-alert latency", "",
                  f"1 worker; {sizes.latency_rounds} round(s) of a new version of every model: the 5,000-event "
                  f"references, then {LATENCY_ONSETS} numeric features (model and feature at random) shifted by 1.5 sd "
                  f"one after the other, {LATENCY_SPACING:g} s apart; half predictions, half usage. Asked rate "
                  f"{_rate(lat['rate'])}/s (half the 1-worker rate), achieved {_rate(p['achieved_rate'])}/s over "
                  f"{p['seconds']:.0f} s (producer at most {p['max_events_behind']:,} events behind). Each event is "
                  "stamped with the wall clock when it is handed to the producer; latency = alert arrival on the "
                  f"alerts topic - its `event_time`. The worker wrote {lat['checkpoints']} checkpoints (mean "
                  f"{lat['checkpoints_mean_s'] * 1000:.0f} ms, together "
                  f"{lat['checkpoints'] * lat['checkpoints_mean_s'] / p['seconds']:.0%} of the sending time; one "
                  "follows every batch that fired an alert) and "
                  f"applied {lat['batches']:,} batches (mean {lat['batches_mean_s'] * 1000:.0f} ms); its consumer "
                  f"lag (every 0.5 s) was {lat['lag_mean']:,.0f} records on average, {lat['lag_max']:,.0f} at most. "
                  "Transport floor (input record batched by the producer to its arrival at a plain consumer): "
                  + (f"p50 {lat['transport_p50'] * 1000:.0f} ms, p99 {lat['transport_p99'] * 1000:.0f} ms."
                     if lat["transport_p50"] is not None else "not measured."), ""]
        if lat["alerts"]:
            lines.append(f"{lat['alerts']} alerts: p50 {lat['p50'] * 1000:.0f} ms, p90 {lat['p90'] * 1000:.0f} ms, "
                         f"p99 {lat['p99'] * 1000:.0f} ms, max {lat['max'] * 1000:.0f} ms. By kind/detector: "
                         + ", ".join(f"{k} {v}" for k, v in lat["kinds"].items()) + ".")
        else:
            lines.append("No event-triggered alert arrived.")
    if rss:
        lines += ["", "### Memory (1 worker)", "",
                  f"RSS at the first sample (kernels warm, no event yet): {_mib(rss['start'])}; then "
                  + ", ".join(f"{_mib(at)} after {mark:,}" for mark, at in zip(rss["marks"], rss["at"]))
                  + " events."]
    if cost:
        c = cost["comparison"]
        lines += ["", "### Cost path", "",
                  f"{cost['events']:,.0f} usage events measured ({sizes.cost_events:,} filled) of {cost['customers']:,} "
                  f"customers ({cost['keys']:,} customer/model/feature keys), recorded at {COST_RECORDED_RATE:,}/s on "
                  f"yesterday's date, 1 worker: {_rate(cost['events_per_s'])} events/s, "
                  f"{cost['cpu_us_per_event']:.1f} CPU µs/event. After the drain the idle flush (default 10 s) "
                  f"closes every window; a consumer upserting by key had every event in every window size "
                  + (f"{cost['complete_after_drain']:.1f} s after the drain" if cost["complete_after_drain"] is not None
                     else "NEVER (timeout)")
                  + f" ({cost['rollup_records']:,} records, {cost['rollup_keys']:,} keys; the worker counted "
                  f"{cost['rollups_metric']:,.0f}; {cost['late_events']:,.0f} events, "
                  f"{cost['late_events'] / sizes.cost_events:.0%}, were late, each a correction record per window "
                  f"size). Worker: {_loop(cost)}.",
                  "", "| window | keys | mismatched keys | requests | cost_usd | non-final records |",
                  "|---|---|---|---|---|---|"]
        for window in ("1m", "1h", "1d"):
            w = c[window]
            lines.append(f"| {window} | {w['keys']:,} | {w['mismatched_keys']} | {w['requests']:,} | {w['cost_usd']} | "
                         f"{w['non_final_records']} |")
        lines.append(f"| truth (produced events) | {cost['keys']:,} | | {c['truth_requests']:,} | {c['truth_cost_usd']} | |")
    for title, profile in r.get("profiles", {}).items():
        lines += ["", f"### Profile: {title}", "",
                  f"pyinstrument, 1 ms samples of the worker's main thread from the end of its kernel warm-up to its "
                  f"exit ({profile['seconds']:.1f} s, {_rate(profile['events_per_s'])} events/s under the profiler, "
                  f"{profile['idle']:.0%} of it waiting in the event loop's selector). Self time by file (built-ins "
                  "counted in their caller's file, libraries by package), then by function; inclusive time of "
                  "driftmeter's own functions:", "", "| file | self share |", "|---|---|"]
        lines += [f"| `{file}` | {share:.1%} |" for file, share in profile["files"]]
        lines += ["", "| function (self) | share | driftmeter function (inclusive) | share |", "|---|---|---|---|"]
        for (a, sa), (b, sb) in zip(profile["self"], profile["inclusive"]):
            lines.append(f"| `{a}` | {sa:.1%} | `{b}` | {sb:.1%} |")
    if errors:
        lines += ["", "### Failures", ""]
        for stage, error in errors.items():
            lines += [f"{stage}:", "", "```", error.strip()[-2000:], "```", ""]
    lines += ["", f"Fill: {r['fill_rate']:,.0f} events/s (generation included). Whole run: {r['elapsed']:.0f} s."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    # No options (the mode comes from BENCH); --help says so instead of starting a 10-minute run.
    argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    mode = os.environ.get("BENCH", "short")
    if mode not in SIZES:
        raise SystemExit(f"BENCH must be one of {', '.join(SIZES)}, got {mode!r}")
    sizes = SIZES[mode]
    began = time.perf_counter()
    run = uuid.uuid4().hex[:8]
    port = _free_port_pair()
    bootstrap = f"127.0.0.1:{port}"
    scratch = Path(tempfile.mkdtemp(prefix="driftmeter-bench-"))
    results: dict = {"port": port, "code": code_version()}
    errors: dict[str, str] = {}

    def stage(name: str, fn, *args, **kwargs):
        log(f"{name} ...")
        try:
            value = fn(*args, **kwargs)
        except Exception:
            errors[name] = traceback.format_exc()
            log(f"{name} failed:\n{errors[name]}")
            return None
        return value

    kafka("wipe", port)
    kafka("up", port)
    try:
        inputs = {"predictions": f"bench-predictions-{run}", "usage": f"bench-usage-{run}"}
        create_topics(bootstrap, list(inputs.values()))
        predictions = PredictionTraffic(models=10, seed=1, id_prefix=f"tp-{run}")
        usage = UsageTraffic(customers=10_000, seed=2, id_prefix=f"tu-{run}")
        results["model_partitions"] = {name: partition_of(key, PARTITIONS) for name, key in zip(predictions.names, predictions.keys)}
        results["pred_bytes"] = np.mean([len(v) for v in predictions.batch(0, 1000, ["2026-11-22T03:00:00.000Z"] * 1000)[1]])
        results["usage_bytes"] = np.mean([len(v) for v in UsageTraffic(10_000, id_prefix="size").batch(
            0, 1000, ["2026-11-22T03:00:00.000Z"] * 1000)[1]])
        now_ms = int(time.time() * 1000)
        span_ms = sizes.predictions * 1000 // RECORDED_RATE
        filled = [fill_topic(bootstrap, inputs["predictions"], predictions, sizes.predictions, now_ms - span_ms, RECORDED_RATE),
                  fill_topic(bootstrap, inputs["usage"], usage, sizes.usage, now_ms - span_ms, RECORDED_RATE)]
        results["fill_rate"] = sum(f["events"] for f in filled) / sum(f["seconds"] for f in filled)
        kinds = {"prediction": inputs["predictions"], "usage": inputs["usage"]}

        results["raw"] = stage("raw ceiling", raw_stage, bootstrap, kinds, sizes.total)
        results["naive"] = stage("naive pipeline", naive_stage, bootstrap, kinds, sizes.total, sizes.naive_seconds, scratch)
        one = stage("driftmeter, 1 worker", driftmeter_stage, Deployment(bootstrap, inputs, f"{run}-w1", scratch / "w1"),
                    1, sizes.total, sizes.drain_timeout)
        results["w1"] = one
        if one:
            seen = one["drain"]
            marks = sizes.rss_marks
            at = [seen.rss_at(m) for m in marks]
            if None not in at:
                results["rss"] = {"marks": marks, "at": at, "start": one["rss_start"], "growth": at[-1] / at[0] - 1}
        results["w2"] = stage("driftmeter, 2 workers", driftmeter_stage,
                              Deployment(bootstrap, inputs, f"{run}-w2", scratch / "w2"), 2, sizes.total,
                              sizes.drain_timeout)
        if one:
            results["latency"] = stage("event-to-alert latency", latency_stage, bootstrap, scratch,
                                       one["events_per_s"] / 2, sizes, run)
        results["cost"] = stage("cost path", cost_stage, bootstrap, scratch, sizes, run)

        profiles = {}
        raw, naive, cost = results["raw"], results["naive"], results["cost"]
        slow = one and ((raw and one["events_per_s"] < TARGETS["raw_share"] * raw["events_per_s"])
                        or (naive and one["events_per_s"] < TARGETS["naive_ratio"] * naive["events_per_s"]))
        if slow:
            path = scratch / "profile-mixed.json"
            profiled = stage("profile, predictions + usage", driftmeter_stage,
                             Deployment(bootstrap, inputs, f"{run}-prof", scratch / "prof"), 1, sizes.total,
                             sizes.profile_seconds, path)
            if profiled and path.exists():
                profiles["predictions + usage, 1 worker"] = {**json.loads(path.read_text()),
                                                              "events_per_s": profiled["events_per_s"]}
        if cost and cost["events_per_s"] < TARGETS["cost_rate"]:
            path = scratch / "profile-cost.json"
            profiled = stage("profile, cost path", cost_stage, bootstrap, scratch, sizes, run, cost["traffic"], path)
            if profiled and path.exists():
                profiles["cost path (usage, 100k customers), 1 worker"] = {**json.loads(path.read_text()),
                                                                           "events_per_s": profiled["events_per_s"]}
        results["profiles"] = profiles
    finally:
        kafka("wipe", port)
    results["elapsed"] = time.perf_counter() - began
    # One section per mode, so the short and the full figures stand side by side.
    write_section("end-to-end" if mode == "short" else f"end-to-end-{mode}", report(mode, sizes, results, errors))
    log(f"done in {results['elapsed']:.0f} s; results in benchmarks/RESULTS.md (scratch files in {scratch})")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
