"""Prometheus metrics of the worker: families, registry and per-batch updates.

All families live in one :class:`Metrics` object over its own ``CollectorRegistry`` (a fresh one
per test). The hot path never does a label lookup per event: callers aggregate a batch first and
update each labelled child once, and children are cached after their first use. Label values are
bounded: models, versions and features come from the traffic but are few; customers are capped to
the top-N spenders plus ``__other__`` (:class:`TopCustomers`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# A ``*_created`` sample per counter and histogram child doubles the page on the classic text
# format; nothing reads them (Prometheus takes resets from the counters themselves).
disable_created_metrics()

OTHER = "__other__"
# The classic text format every Prometheus version scrapes (without charset: aiohttp adds it).
CONTENT_TYPE = "text/plain; version=0.0.4"


class _Children:
    """A labelled family with its children cached by label tuple."""

    def __init__(self, family):
        self.family = family
        self._cache: dict[tuple, object] = {}

    def __call__(self, *labels):
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self.family.labels(*labels)
        return child

    def remove(self, *labels) -> None:
        if self._cache.pop(labels, None) is not None:
            self.family.remove(*labels)

    def remove_where(self, position: int, values: set) -> None:
        """Remove every child whose label at ``position`` is one of ``values``."""
        for labels in [labels for labels in self._cache if labels[position] in values]:
            self.remove(*labels)


class TopCustomers:
    """Which customers get a label value of their own: the top-N spenders, the rest ``__other__``.

    Spend is summed where it is known, by each cost unit over its own customers (numpy, by
    customer id); a unit offers its own top-N with their cumulative spend every
    ``rerank_seconds`` (and at every batch while fewer than N customers are labelled). The global
    top-N is among the offers. A promoted customer keeps its label until there are more than
    ``2 * n`` labelled customers; then the smallest spenders are demoted, and their series are
    removed (:meth:`Metrics.offer_top_customers`), so at most ``2 * n`` customers plus
    ``__other__`` ever have series at once, however many customers come and go. Promotion and
    demotion only route *future* spend, so every series stays monotonic while it exists:
    ``__other__`` holds what was spent outside a label, and a demoted customer's series ends
    (Prometheus marks it stale; ``rate`` and ``increase`` over the families stay right).
    ``generation`` changes whenever the labelled set does, so units recompute their per-customer
    label masks only then.

    Examples
    --------
    >>> top = TopCustomers(1)
    >>> top.offer("cost/0", ["a"], [5])
    set()
    >>> top.offer("cost/1", ["c"], [9])  # c is the top spender now; a keeps its label (2 <= 2n)
    set()
    >>> sorted(top.labelled), top.label("b")
    (['a', 'c'], '__other__')
    >>> sorted(top.offer("cost/2", ["d"], [20]))  # 3 > 2n: the top one stays, the others are demoted
    ['a', 'c']
    """

    def __init__(self, n: int, rerank_seconds: float = 30.0):
        self.n = n
        self.rerank_seconds = rerank_seconds
        self.labelled: set[str] = set()
        self.generation = 0
        self._offers: dict[str, dict[str, int]] = {}  # unit -> its top spenders

    def offer(self, unit: str, customers: list[str], spend: list[int]) -> set[str]:
        """A unit's top spenders and their cumulative spend; re-ranks the labels and returns the
        customers demoted."""
        self._offers[unit] = dict(zip(customers, spend))
        known: dict[str, int] = {}
        for offered in self._offers.values():
            known.update(offered)
        ranked = sorted(known, key=known.__getitem__, reverse=True)
        labelled = self.labelled | set(ranked[: self.n])
        if len(labelled) > 2 * self.n:
            labelled = set(sorted(labelled, key=lambda c: known.get(c, 0), reverse=True)[: self.n])
        demoted = self.labelled - labelled
        if labelled != self.labelled:
            self.labelled = labelled
            self.generation += 1
        return demoted

    def wants_offers(self) -> bool:
        """Fewer than N labelled: every batch's offer counts, not only the periodic ones."""
        return len(self.labelled) < self.n

    def label(self, customer: str) -> str:
        return customer if customer in self.labelled else OTHER


class Metrics:
    """Every metric family the worker exposes on ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None, top_customers: int = 50):
        self.registry = registry or CollectorRegistry()
        self.top_customers = TopCustomers(top_customers)
        r = self.registry
        self.events = _Children(Counter(
            "driftmeter_events", "Input records by topic and outcome (processed, invalid, duplicate).",
            ["topic", "outcome"], registry=r))
        self.event_lag = _Children(Gauge(
            "driftmeter_event_lag_seconds", "Wall-clock time minus the newest Kafka record timestamp (produce time) of the last batch.",
            ["topic"], registry=r))
        self.consumer_lag = _Children(Gauge(
            "driftmeter_consumer_lag_records", "Records behind the end of each input topic (summed over owned partitions).",
            ["topic"], registry=r))
        self.batch_seconds = Histogram(
            "driftmeter_batch_duration_seconds", "Time to apply one fetched micro-batch.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r)
        self.batch_records = Histogram(
            "driftmeter_batch_records", "Records per fetched micro-batch.",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000), registry=r)
        self.checkpoint_seconds = Histogram(
            "driftmeter_checkpoint_duration_seconds", "Time to write the state checkpoints of all owned units.",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.checkpoint_bytes = Counter(
            "driftmeter_checkpoint_bytes", "State bytes written to the checkpoint topic.", registry=r)
        self.owned_units = Gauge(
            "driftmeter_owned_units", "State units (input partitions) owned by this worker.", registry=r)
        self.alerts = _Children(Counter(
            "driftmeter_alerts", "Alerts emitted, by kind and severity (firing only).", ["kind", "severity"], registry=r))
        # Drift, quality, accuracy and latency (per model version).
        self.drift_statistic = _Children(Gauge(
            "driftmeter_drift_statistic", "Last two-sample statistic of a feature's window against its reference.",
            ["model", "model_version", "feature", "test"], registry=r))
        self.drift_detected = _Children(Counter(
            "driftmeter_drift_detected", "Drift signals by detector.",
            ["model", "model_version", "feature", "detector"], registry=r))
        self.feature_null_ratio = _Children(Gauge(
            "driftmeter_feature_null_ratio", "Share of null values in the last window of a feature.",
            ["model", "model_version", "feature"], registry=r))
        self.prediction_latency = _Children(Gauge(
            "driftmeter_prediction_latency_seconds", "Prediction latency quantiles over the sliding window.",
            ["model", "model_version", "quantile"], registry=r))
        self.prediction_errors = _Children(Gauge(
            "driftmeter_prediction_error_ratio", "Share of predictions with status error over the sliding window.",
            ["model", "model_version"], registry=r))
        self.accuracy = _Children(Gauge(
            "driftmeter_accuracy_ratio", "Rolling accuracy (class labels) of a model version.",
            ["model", "model_version"], registry=r))
        self.mae = _Children(Gauge(
            "driftmeter_mean_absolute_error", "Rolling mean absolute error (numeric labels) of a model version.",
            ["model", "model_version"], registry=r))
        self.labels_joined = _Children(Counter(
            "driftmeter_labels_joined", "Labels joined to their prediction, by model.", ["model"], registry=r))
        # Cost engine (customer label capped by TopCustomers).
        self.cost_usd = _Children(Counter(
            "driftmeter_cost_usd", "Spend in USD by customer (top-N plus __other__), model and feature.",
            ["customer", "model", "feature"], registry=r))
        self.tokens = _Children(Counter(
            "driftmeter_tokens", "Tokens by customer (top-N plus __other__), model and type.",
            ["customer", "model", "type"], registry=r))
        self.budget_used = _Children(Gauge(
            "driftmeter_budget_used_ratio", "Spend over limit in the current period, customers with their own budget.",
            ["customer"], registry=r))
        self.usage_late = Counter(
            "driftmeter_usage_late_events", "Usage events that arrived after their window was final.", registry=r)
        self.rollups = _Children(Counter(
            "driftmeter_rollups", "Rollup records emitted by window size and lateness.", ["window", "late"], registry=r))

    def offer_top_customers(self, unit: str, customers: list[str], spend: list[int]) -> None:
        """:meth:`TopCustomers.offer`, then the demoted customers' series are removed."""
        demoted = self.top_customers.offer(unit, customers, spend)
        if demoted:
            self.cost_usd.remove_where(0, demoted)
            self.tokens.remove_where(0, demoted)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE
