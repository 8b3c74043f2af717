"""The worker's configuration: one TOML file, every key optional with a documented default.

Each section is a frozen, keyword-only struct; unknown keys and wrong types are rejected when
the file is loaded, with a message naming the key, so a bad config stops the worker at start
and never later. ``docs/config.md`` documents every key.
"""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Literal

import msgspec


class ConfigError(ValueError):
    """A configuration problem, with the file and the key it concerns."""


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class KafkaConfig(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "driftmeter"
    # Security settings pass through to the Kafka clients (kafka-python / aiokafka names).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def client_options(self, library: Literal["aiokafka", "kafka-python"] = "aiokafka") -> dict:
        """Connection and security options for a client of ``library``."""
        options = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if "SSL" in self.security_protocol:
            if library == "kafka-python":
                options.update(ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
            else:
                from aiokafka.helpers import create_ssl_context

                options["ssl_context"] = create_ssl_context(
                    cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile)
        return options


class TopicsConfig(_Section):
    predictions: str = "predictions"
    labels: str = "labels"
    usage: str = "usage"
    alerts: str = "alerts"
    cost_rollups: str = "cost_rollups"
    dead_letter: str = "dead_letter"
    customer_status: str = "customer_status"
    # Compacted topic holding the worker's state checkpoints (with the input offsets they cover).
    checkpoints: str = "driftmeter_checkpoints"
    # Partitions for topics the worker creates when they are missing.
    partitions: int = 4


class WorkerConfig(_Section):
    group_id: str = "driftmeter"
    # Static group membership: a restarted worker with the same id takes its partitions back at
    # once instead of after the session timeout. Give each worker of the group its own.
    instance_id: str | None = None
    batch_max_records: int = 5000
    batch_timeout_ms: int = 100
    checkpoint_interval_seconds: float = 5.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(_Section):
    host: str = "0.0.0.0"
    port: int = 9464
    # Customer labels are capped to the top-N spenders; the rest are summed under "__other__".
    top_customers: int = 50


class CostsConfig(_Section):
    prices: str = "prices.toml"
    grace_seconds: float = 60.0
    idle_flush_seconds: float = 10.0
    # (source, id) pairs remembered per partition for duplicate detection.
    dedup_capacity: int = 1_000_000
    # How long a customer's spend rate must be known before cost_spike can fire.
    spike_warmup_minutes: int = 30
    # A customer's status goes out at once when its state or period changes, else at most this
    # often while its spend moves (gateways enforce the state; the spend is for information).
    status_interval_seconds: float = 30.0


class BudgetConfig(_Section):
    period: Literal["day", "month"] = "month"
    limit_usd: str = "1000"
    soft_ratio: float = 0.8


class ModelOverrides(_Section):
    """Per-model settings under ``[drift.models.<model>]``; unset keys use ``[drift]``."""

    ignore_features: list[str] = []
    numeric: list[str] = []
    categorical: list[str] = []
    window_size: int | None = None
    latency_slo_ms: float | None = None
    accuracy_floor: float | None = None
    accuracy_drop: float | None = None
    null_ratio_max: float | None = None


class DriftConfig(_Section):
    # Reference per (model, model_version): the first `reference_size` events, or a file.
    reference_size: int = 5000
    reference_path: str | None = None
    # Windowed two-sample tests against the reference (Evidently's default test per column);
    # an alert needs this many consecutive drifting windows (one window's test is noisy).
    window_size: int = 1000
    confirm_windows: int = 2
    # Streaming detector on every numeric feature and numeric prediction.
    detector: Literal["adwin", "page_hinkley", "kswin", "none"] = "adwin"
    # Labels join their prediction by id within this time; at most this many predictions kept.
    label_ttl_seconds: float = 86_400.0
    label_capacity: int = 1_000_000
    accuracy_window: int = 1000
    accuracy_floor: float | None = None
    accuracy_drop: float = 0.10
    latency_slo_ms: float | None = None
    latency_window_seconds: float = 300.0
    # Data quality: alert when a window's rate exceeds these.
    null_ratio_max: float = 0.10
    type_mismatch_max: float = 0.01
    out_of_range_max: float = 0.05
    range_tolerance: float = 0.10
    unseen_category_max: float = 0.05
    stall_seconds: float = 300.0
    models: dict[str, ModelOverrides] = {}


class AlertsConfig(_Section):
    # A firing alert resolves once its condition has been clear this long.
    resolve_after_seconds: float = 600.0
    # A resolved dedup_key may not fire again before this.
    cooldown_seconds: float = 300.0


class Config(_Section):
    kafka: KafkaConfig = KafkaConfig()
    topics: TopicsConfig = TopicsConfig()
    worker: WorkerConfig = WorkerConfig()
    metrics: MetricsConfig = MetricsConfig()
    costs: CostsConfig = CostsConfig()
    drift: DriftConfig = DriftConfig()
    alerts: AlertsConfig = AlertsConfig()
    budgets: dict[str, BudgetConfig] = msgspec.field(default_factory=lambda: {"*": BudgetConfig()})
    # Where relative paths (prices, reference_path) are resolved; set by `load_config`.
    base_dir: str = "."

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else Path(self.base_dir) / p


def _check(cfg: Config, source: str) -> None:
    """Semantic checks msgspec's types cannot express."""

    def fail(key: str, why: str) -> None:
        raise ConfigError(f"{source}: {key}: {why}")

    positive = {
        "topics.partitions": cfg.topics.partitions,
        "worker.batch_max_records": cfg.worker.batch_max_records,
        "worker.batch_timeout_ms": cfg.worker.batch_timeout_ms,
        "worker.checkpoint_interval_seconds": cfg.worker.checkpoint_interval_seconds,
        "metrics.top_customers": cfg.metrics.top_customers,
        "costs.idle_flush_seconds": cfg.costs.idle_flush_seconds,
        "costs.status_interval_seconds": cfg.costs.status_interval_seconds,
        "costs.dedup_capacity": cfg.costs.dedup_capacity,
        "drift.reference_size": cfg.drift.reference_size,
        "drift.window_size": cfg.drift.window_size,
        "drift.confirm_windows": cfg.drift.confirm_windows,
        "drift.label_ttl_seconds": cfg.drift.label_ttl_seconds,
        "drift.label_capacity": cfg.drift.label_capacity,
        "drift.accuracy_window": cfg.drift.accuracy_window,
        "drift.latency_window_seconds": cfg.drift.latency_window_seconds,
        "drift.stall_seconds": cfg.drift.stall_seconds,
    }
    for key, value in positive.items():
        if value <= 0:
            fail(key, f"must be > 0, got {value!r}")
    if not 0 < cfg.metrics.port < 65536:
        fail("metrics.port", f"must be a TCP port, got {cfg.metrics.port!r}")
    if cfg.costs.grace_seconds < 0:
        fail("costs.grace_seconds", f"must be >= 0, got {cfg.costs.grace_seconds!r}")
    for name, budget in cfg.budgets.items():
        try:
            limit = decimal.Decimal(budget.limit_usd)
        except decimal.InvalidOperation:
            fail(f"budgets.{name}.limit_usd", f"expected a decimal string, got {budget.limit_usd!r}")
        if not limit.is_finite() or limit <= 0:
            fail(f"budgets.{name}.limit_usd", f"must be a positive decimal, got {budget.limit_usd!r}")
        if not 0 < budget.soft_ratio <= 1:
            fail(f"budgets.{name}.soft_ratio", f"must be in (0, 1], got {budget.soft_ratio!r}")
    for name, overrides in cfg.drift.models.items():
        if overrides.window_size is not None and overrides.window_size <= 0:
            fail(f"drift.models.{name}.window_size", f"must be > 0, got {overrides.window_size!r}")
        both = set(overrides.numeric) & set(overrides.categorical)
        if both:
            fail(f"drift.models.{name}", f"features {sorted(both)} are both numeric and categorical")
    prices = cfg.path(cfg.costs.prices)
    if not prices.is_file():
        fail("costs.prices", f"price file {str(prices)!r} is not readable")
    from streams.costs.prices import PriceCatalog, PriceError

    try:
        PriceCatalog.load(prices)
    except (PriceError, OSError, UnicodeDecodeError) as exc:
        fail("costs.prices", str(exc))
    if cfg.drift.reference_path is not None and not cfg.path(cfg.drift.reference_path).is_file():
        fail("drift.reference_path", f"reference file {cfg.drift.reference_path!r} is not readable")


def _decode(raw: bytes | str, source: str, base_dir: str) -> Config:
    try:
        tree = msgspec.toml.decode(raw)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    # Tables of named entries are decoded one by one so an error names the entry (msgspec says `[...]`).
    budgets = tree.pop("budgets", None)
    drift = tree.get("drift")
    models = drift.pop("models", None) if isinstance(drift, dict) else None
    try:
        cfg = msgspec.convert({**tree, "base_dir": base_dir}, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_key_of(exc, '')}") from None
    if budgets is not None:
        cfg = msgspec.structs.replace(cfg, budgets=_named(budgets, BudgetConfig, "budgets", source))
    if models is not None:
        drift_cfg = msgspec.structs.replace(cfg.drift, models=_named(models, ModelOverrides, "drift.models", source))
        cfg = msgspec.structs.replace(cfg, drift=drift_cfg)
    return cfg


def _named(tables, struct: type, key: str, source: str) -> dict:
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: {key}: expected a table of named entries")
    parsed = {}
    for name, table in tables.items():
        try:
            parsed[name] = msgspec.convert(table, struct)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: {_key_of(exc, f'{key}.{name}')}") from None
    return parsed


def _key_of(exc: msgspec.ValidationError, prefix: str) -> str:
    """Turn msgspec's "Expected `int`, got `str` - at `$.metrics.port`" into "metrics.port: expected int, got str"."""
    text = str(exc)
    what, _, where = text.partition(" - at `$")
    path = where.rstrip("`").lstrip(".")
    if what.startswith("Object contains unknown field "):
        field = what.removeprefix("Object contains unknown field ").strip("`")
        key = ".".join(p for p in (prefix, path, field) if p)
        return f"{key}: unknown key"
    key = ".".join(p for p in (prefix, path) if p) or "(top level)"
    return f"{key}: {what[:1].lower()}{what[1:].replace('`', '')}"


def load_config(path: str | Path | None = None) -> Config:
    """Load and check a config file; ``None`` gives the defaults (relative paths from the cwd)."""
    if path is None:
        cfg = Config(base_dir=str(Path.cwd()))
        _check(cfg, "default config")
        return cfg
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    cfg = _decode(raw, str(path), str(path.resolve().parent))
    _check(cfg, str(path))
    return cfg


def parse_config(text: str, base_dir: str | Path = ".") -> Config:
    """Load a config from TOML text (tests, embedded defaults)."""
    cfg = _decode(text, "config", str(Path(base_dir).resolve()))
    _check(cfg, "config")
    return cfg
