"""Run real worker processes against the test broker, and read what they wrote.

Each :class:`WorkerRig` has its own topics, consumer group and metrics port, so tests never see
each other's data; workers are real ``driftmeter worker`` processes that a test can stop cleanly
(SIGTERM) or kill (SIGKILL) and restart.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec

from streams.demo import read_topic

ROOT = Path(__file__).resolve().parents[1]
TOPIC_KEYS = ("predictions", "labels", "usage", "alerts", "cost_rollups", "dead_letter", "customer_status", "checkpoints")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return msgspec.json.encode(str(value)).decode()


class WorkerRig:
    """A config with unique names, and the worker processes running it."""

    def __init__(self, bootstrap: str, tmp_path: Path, suffix: str, sections: dict | None = None,
                 prices: Path | None = None):
        self.bootstrap = bootstrap
        self.dir = tmp_path
        self.topics = {key: f"{key}-{suffix}" for key in TOPIC_KEYS}
        self.group = f"driftmeter-{suffix}"
        self.port = free_port()
        body = {
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {**self.topics, "partitions": 4},
            "worker": {"group_id": self.group, "checkpoint_interval_seconds": 1.0, "instance_id": "worker-0"},
            "metrics": {"host": "127.0.0.1", "port": self.port},
            "costs": {"prices": str(prices or ROOT / "prices.toml"), "dedup_capacity": 200_000},
        }
        for section, values in (sections or {}).items():
            body.setdefault(section, {}).update(values)
        lines = []
        for section, values in body.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        self.config = tmp_path / "driftmeter.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.procs: list[subprocess.Popen] = []

    # -- processes ---------------------------------------------------------------------------
    def start(self, wait: bool = True, port: int | None = None) -> subprocess.Popen:
        config = self.config
        if port is not None:  # a second worker needs its own metrics port and group instance
            config = self.dir / f"driftmeter-{port}.toml"
            text = re.sub(r"port = \d+", f"port = {port}", self.config.read_text(), count=1)
            config.write_text(text.replace('instance_id = "worker-0"', f'instance_id = "worker-{port}"'))
        log = open(self.dir / f"worker-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--config", str(config)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        proc.metrics_port = port or self.port
        self.procs.append(proc)
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen, timeout: float = 90) -> None:
        """Until the worker serves /metrics and owns units (its group join is done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{self.log_tail()}")
            try:
                if self.metric("driftmeter_owned_units", port=proc.metrics_port) > 0:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, proc: subprocess.Popen, kill: bool = False, timeout: float = 60) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def stop_all(self) -> None:
        """Teardown: SIGTERM, then SIGKILL for a worker that does not stop in time (never masks a failure)."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    self.stop(proc, timeout=45)
                except subprocess.TimeoutExpired:
                    self.stop(proc, kill=True)

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for path in sorted(self.dir.glob("worker-*.log")):
            out.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    # -- observations ------------------------------------------------------------------------
    def scrape(self, port: int | None = None) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port or self.port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def metric(self, name: str, port: int | None = None, **labels) -> float:
        """Sum of a metric's samples whose labels include ``labels``."""
        total = 0.0
        for line in self.scrape(port).splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric_name, _, label_text = head.partition("{")
            if metric_name != name:
                continue
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(value)
        return total

    def wait_for(self, predicate, timeout: float = 60, interval: float = 0.25, what: str = "condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
                if last:
                    return last
            except OSError:
                pass
            time.sleep(interval)
        raise TimeoutError(f"{what} not met after {timeout}s (last: {last!r})\n{self.log_tail()}")

    def read(self, key: str, timeout_ms: int = 3000) -> list:
        """Every record of one of this rig's topics, from the beginning."""
        return read_topic(self.bootstrap, self.topics[key], timeout_ms)

    def read_at_least(self, key: str, count: int, timeout: float = 60) -> list:
        """Every record of one of this rig's topics once it holds ``count`` or more.

        The worker counts an input in its metrics before the broker has acknowledged the outputs
        the input made, so a test that waited for a count must then wait for those outputs.
        """
        def enough():
            records = self.read(key)
            return records if len(records) >= count else None

        return self.wait_for(enough, timeout=timeout, what=f"{count} records in {key}")

