"""The cost unit: partition ``p`` of ``usage``, exact to the picodollar.

Per micro-batch of usage events (admitted: valid, keyed by their customer, first seen):

1. price every event in one numba call (:func:`streams.costs.prices.cost_many`); an event of a
   model without a price and without a provider ``cost_usd`` is rejected (dead-lettered), never
   priced at zero;
2. add the batch to the tumbling windows ``1m``/``1h``/``1d`` per (customer, model, feature)
   (:class:`streams.costs.windows.WindowStore`) and emit every window the watermark closed, once,
   and the late corrections, to ``cost_rollups``;
3. add the spend to the customers' budgets (``budget_soft`` / ``budget_hard`` once per crossing
   and period, ``customer_status`` on every status change) and to the spike detector
   (``cost_spike``);
4. update the cost and token counters once per batch, customers capped to the top-N.

Everything the outputs depend on is in the checkpoint, and late events are identified by their
input offset, so a replay from a checkpoint re-emits identical records under identical keys.
"""

from __future__ import annotations

import time
from functools import lru_cache
from operator import attrgetter
from pathlib import Path

import msgspec
import numpy as np

from streams.alerts import AlertBook, Signal, utc_ms
from streams.config import Config
from streams.costs.budgets import BudgetBook, parse_budgets
from streams.costs.money import format_usd, from_pico, to_pico
from streams.costs.prices import COST_ERRORS, PriceCatalog, cost_many
from streams.costs.spikes import SpikeDetector
from streams.costs.windows import WindowStore
from streams.costs.keys import KeyIndex
from streams.costs.wire import COST_PICO, EVENT_HI, EVENT_LO, KEY_HI, KEY_LO, NO_COST, TIME_MS, TOKENS, scan_usage
from streams.dedup import fingerprints
from streams.events import MAX_EVENT_BYTES, RollupWriter
from streams.fetch import Records
from streams.metrics import OTHER
from streams.units import Admitted, Decoded, Unit

WINDOWS = (("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000))
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                "reasoning_output_tokens")
TOKEN_TYPES = ("input", "output", "cache_read", "cache_creation", "reasoning")
REQUESTS, COST = 0, 6
# Columns of CostUnit.key_columns: per (customer, model, feature) key, the ids the kernels use.
CUSTOMER, MODEL, FEATURE, PRICE_ROW = range(4)
_tokens_of = attrgetter(*TOKEN_FIELDS)
# One call costing more than this is refused: window totals (int64 picodollars) then cannot
# overflow before a key has spent over 900 such calls in one window.
MAX_EVENT_PICO = 10_000 * 10**12


def _merge(a: Decoded, b: Decoded) -> Decoded:
    """Two column-wise batches of one partition batch as one, in record order."""
    positions = np.concatenate([a.positions, b.positions])
    order = np.argsort(positions, kind="stable")
    return Decoded(positions[order], np.concatenate([a.time_ms, b.time_ms])[order],
                   tuple(np.concatenate([a.fingerprints[j], b.fingerprints[j]])[order] for j in (0, 1)),
                   columns={name: np.concatenate([a.columns[name], b.columns[name]])[order] for name in a.columns})


@lru_cache(maxsize=4)
def _catalog(path: str) -> PriceCatalog:
    return PriceCatalog.load(Path(path))


class CostUnit(Unit):
    prefix = "cost"
    kinds = {"usage": "usage"}

    def __init__(self, partition: int, cfg: Config, metrics):
        super().__init__(partition, cfg, metrics)
        c = cfg.costs
        self.catalog = _catalog(str(cfg.path(c.prices)))
        self.grace_ms = int(c.grace_seconds * 1000)
        self.idle_ms = int(c.idle_flush_seconds * 1000)
        self.status_interval_ms = int(c.status_interval_seconds * 1000)
        self.windows = WindowStore(sizes_ms=tuple(ms for _, ms in WINDOWS), grace_ms=self.grace_ms)
        self.keys: list[tuple[str, str, str]] = []  # (customer, model, feature) by key id
        self.key_index = KeyIndex()
        self.key_columns = np.zeros((0, 4), np.int64)
        self.key_customers: set[str] = set()
        self.names: dict[str, list[str]] = {"model": [], "feature": []}
        self.name_id: dict[str, dict[str, int]] = {"model": {}, "feature": {}}
        budgets = {name: msgspec.structs.asdict(b) for name, b in cfg.budgets.items()}
        self.budgets = BudgetBook(parse_budgets(budgets))
        self.spikes = SpikeDetector(warmup_minutes=c.spike_warmup_minutes)
        self.alerts = AlertBook(cfg.alerts, metrics)
        self.last_input_ms = int(time.time() * 1000)
        self.idle_flushed = False
        self.last_status_ms = 0
        self.writer = RollupWriter()
        # Metrics: cumulative spend by customer id, and which customers have a label of their own.
        self.customer_spend = np.zeros(0, np.int64)
        self._labelled = np.zeros(0, np.bool_)
        self._labels_generation = -1
        self._last_offer = float("-inf")

    def _id(self, kind: str, name: str) -> int:
        ids = self.name_id[kind]
        i = ids.get(name)
        if i is None:
            i = ids[name] = len(self.names[kind])
            self.names[kind].append(name)
        return i

    def decode(self, kind: str, records: Records, refuse) -> Decoded:
        """Usage records straight to columns (:mod:`streams.costs.wire`); the records the scan
        leaves, valid or not, go through msgspec like any other unit's, and join the columns."""
        scan = scan_usage(records.values, records.keys, MAX_EVENT_BYTES)
        fast = np.flatnonzero(scan.ok)
        fps = scan.fingerprints[fast]
        ints = scan.ints[fast]
        decoded = Decoded(fast, ints[:, TIME_MS], (fps[:, EVENT_HI], fps[:, EVENT_LO]), columns={
            "key_fp": np.ascontiguousarray(fps[:, KEY_HI:]), "tokens": np.ascontiguousarray(ints[:, TOKENS:TOKENS + 5]),
            "provider": ints[:, COST_PICO].copy()})
        slow_keys: dict[int, tuple[str, str, str]] = {}  # position -> key, of the records msgspec read
        if len(fast) < len(records):
            slow = np.flatnonzero(~scan.ok)
            read = super().decode(kind, Records([records[i] for i in slow.tolist()]), lambda i, why: refuse(int(slow[i]), why))
            if len(read):
                data = [e.data for e in read.events]
                keys = [(e.subject, d.model, d.feature) for e, d in zip(read.events, data)]
                positions = slow[read.positions]
                slow_keys = dict(zip(positions.tolist(), keys))
                provider = [NO_COST if d.cost_usd is None else to_pico(d.cost_usd) for d in data]
                decoded = _merge(decoded, Decoded(positions, read.time_ms, read.fingerprints, columns={
                    "key_fp": np.stack(fingerprints(*zip(*keys)), axis=1),
                    "tokens": np.array([_tokens_of(d) for d in data], np.int64).reshape(-1, 5),
                    "provider": np.array(provider, np.int64)}))

        def keys_of(rows: np.ndarray) -> list[tuple[str, str, str]]:
            positions = decoded.positions[rows]
            scanned = scan.ok[positions]
            named = iter(scan.keys(positions[scanned]))
            return [next(named) if read else slow_keys[int(p)] for p, read in zip(positions.tolist(), scanned.tolist())]

        key_fp = decoded.columns.pop("key_fp")
        decoded.columns["keys"] = self._key_ids(key_fp[:, 0].copy(), key_fp[:, 1].copy(), keys_of)
        return decoded

    def _key_ids(self, hi: np.ndarray, lo: np.ndarray, keys_of) -> np.ndarray:
        """The key id of every event from its key fingerprint; ``keys_of(rows)`` names the keys of
        events ``rows`` (asked only for keys never seen before)."""
        ids = self.key_index.lookup(hi, lo)
        missing = np.flatnonzero(ids < 0)
        if len(missing):
            ids[missing] = self.key_index.insert(hi[missing], lo[missing])
            # new ids follow the order of first appearance, so the first appearances name them in order
            _, first = np.unique(ids[missing], return_index=True)
            self._add_keys(keys_of(missing[first]))
        return ids

    def _add_keys(self, keys: list[tuple[str, str, str]]) -> None:
        """Append new keys (already in the index, in id order) and their kernel columns, interning
        their names in bulk."""
        start, end = len(self.keys), len(self.keys) + len(keys)
        self.keys.extend(keys)
        customers, models, features = zip(*keys)
        self.key_customers.update(customers)
        if end > len(self.key_columns):
            grown = np.zeros((max(16, 2 * end), 4), np.int64)
            grown[:start] = self.key_columns[:start]
            self.key_columns = grown
        columns = self.key_columns[start:end]
        columns[:, CUSTOMER] = self.budgets.intern(list(customers))
        for kind, column, names in (("model", MODEL, models), ("feature", FEATURE, features)):
            ids = {name: self._id(kind, name) for name in dict.fromkeys(names)}  # first seen, first id
            columns[:, column] = [ids[name] for name in names]
        columns[:, PRICE_ROW] = self.catalog.index(list(models))

    def screen(self, kind: str, decoded: Decoded) -> list[tuple[int, str]]:
        """Price every event; an unpriced model without cost_usd, or a cost beyond MAX_EVENT_PICO, is refused
        (before dedup, so a bad copy cannot shadow the good event), never priced at zero."""
        keys, tokens = decoded.columns["keys"], decoded.columns["tokens"]
        cost = cost_many(self.catalog.table, self.key_columns[keys, PRICE_ROW], tokens[:, 0], tokens[:, 1],
                         tokens[:, 2], tokens[:, 3], tokens[:, 4], decoded.columns["provider"])
        decoded.columns["cost"] = cost
        refused = []
        for i in np.flatnonzero((cost < 0) | (cost > MAX_EVENT_PICO)).tolist():
            why = COST_ERRORS.get(int(cost[i])) or f"cost {format_usd(int(cost[i]))} USD exceeds the " \
                                                      f"{format_usd(MAX_EVENT_PICO)} USD limit per event"
            refused.append((i, f"data.model {self.keys[int(keys[i])][1]!r}: {why}"))
        return refused

    def apply(self, kind: str, admitted: Admitted, sink) -> list[tuple[int, str]]:
        now_ms = int(time.time() * 1000)
        self.last_input_ms = now_ms
        self.idle_flushed = False
        keys, tokens, cost = admitted.extras["keys"], admitted.extras["tokens"], admitted.extras["cost"]
        offsets, time_ms = admitted.offsets, admitted.time_ms
        rejected = []
        values = np.empty((len(keys), 7), np.int64)
        values[:, REQUESTS] = 1
        values[:, 1:6] = tokens
        values[:, COST] = cost
        overflow = self.windows.add_batch(keys, time_ms, offsets, values)
        if len(overflow):
            # A window total would exceed int64 picodollars: those events changed nothing.
            rejected += [(j, "data: adding this cost would overflow a window total "
                             "(9,223,372 USD per customer, model, feature and window)")
                         for j in overflow.tolist()]
            fine = np.ones(len(keys), np.bool_)
            fine[overflow] = False
            keys, tokens, cost, time_ms = keys[fine], tokens[fine], cost[fine], time_ms[fine]
        if not len(keys):
            return rejected
        customer_ids, model_ids, feature_ids = (self.key_columns[keys, c] for c in (CUSTOMER, MODEL, FEATURE))
        models, features = self.names["model"], self.names["feature"]
        crossed = set()
        for s in self.budgets.add_batch(customer_ids, time_ms, cost, models=model_ids, features=feature_ids):
            crossed.add(s.customer)
            self._signal(Signal(
                kind=s.kind, severity=s.severity, dedup_key=s.dedup_key, subject=s.customer, customer=s.customer,
                model=models[s.model], feature=features[s.feature], detector="budget",
                value=float(from_pico(s.spend_pico)), threshold=float(from_pico(s.threshold_pico)),
                event_time_ms=s.event_time_ms,
                summary=f"{s.customer} spent {s.spend_usd} USD in {s.period}: {s.kind.removeprefix('budget_')} "
                        f"threshold {s.threshold_usd} of the {s.limit_usd} USD budget"), now_ms, sink)
        for s in self.spikes.add_batch(customer_ids, time_ms, cost, model_ids, feature_ids):
            customer = self.budgets.customer_names(np.array([s.customer]))[0]
            model, feature = models[s.model], features[s.feature]
            self._signal(Signal(
                kind="cost_spike", dedup_key=f"cost_spike|{customer}", subject=customer, customer=customer,
                model=model, feature=feature, detector="spend_rate", value=float(from_pico(s.spend_pico)),
                threshold=float(from_pico(s.bound_pico)), event_time_ms=s.event_time_ms,
                summary=f"{customer} spent {s.spend_usd} USD in the minute from {utc_ms(s.minute_start_ms):%H:%M}, "
                        f"{s.ratio:.1f}x its baseline of {s.baseline_usd} USD; driven by {model} / {feature}"),
                now_ms, sink)
        self._emit(sink, now_ms, crossed)
        self._count(customer_ids, model_ids, feature_ids, tokens, cost)
        return rejected

    def _signal(self, signal: Signal, now_ms: int, sink) -> None:
        if self.alerts.signal(signal, now_ms, sink):
            self.urgent = True

    def _emit(self, sink, now_ms: int, crossed: set[str] = frozenset()) -> None:
        """Rollups of the windows closed so far, late corrections, and customer statuses.

        A customer's status is sent at once when it crosses a threshold, otherwise at most every
        ``costs.status_interval_seconds`` while its spend moves: gateways need the state, not every cent.
        """
        final = self.windows.pop_final()
        late_events = 0
        counted = {}
        for i in range(len(final.key_id)):
            customer, model, feature = self.keys[int(final.key_id[i])]
            size = int(final.size_index[i])
            window, size_ms = WINDOWS[size]
            start = int(final.window_start_ms[i])
            late = bool(final.late[i])
            key = f"{customer}|{model}|{feature}|{window}|{self.writer._time(start)}"
            if late:
                key += f"|late|{int(final.late_offset[i])}"
                if size == 0:  # late for any window means late for its minute
                    late_events += int(final.values[i, REQUESTS])
            sums = final.values[i].tolist()
            sink.rollup(key, self.writer.encode(key, customer, model, feature, window, start, start + size_ms,
                                                sums[:COST], sums[COST], late))
            counted[(window, late)] = counted.get((window, late), 0) + 1
        for (window, late), n in counted.items():
            self.metrics.rollups(window, "true" if late else "false").inc(n)
        if late_events:
            self.metrics.usage_late.inc(late_events)
        self._statuses(sink, now_ms, crossed)

    def _statuses(self, sink, now_ms: int, crossed: set[str] = frozenset()) -> None:
        due = now_ms - self.last_status_ms >= self.status_interval_ms
        if self.budgets.clock_ms is None or not (crossed or due):
            return
        ids = self.budgets.intern(sorted(crossed))
        if due:
            ids = np.union1d(ids, self.budgets.changed_since_last_call())
        sink.customer_statuses(self.budgets.customer_names(ids), self.budgets.encoded_statuses(ids))
        if due:
            self.last_status_ms = now_ms
            # Gauges for customers with a budget of their own, set only by the unit that carries them.
            own = [c for c in self.cfg.budgets if c != "*" and c in self.key_customers]
            if own:
                ratios = self.budgets.used_ratio()
                for customer in own:
                    self.metrics.budget_used(customer).set(ratios[customer])

    def _count(self, customer_ids, model_ids, feature_ids, tokens, cost) -> None:
        """Cost and token counters, aggregated per batch with numpy: one child update per group.

        The customer label is the customer's own name for the top-N spenders, ``__other__`` for
        the rest; spend per customer is summed here by customer id and this unit's top spenders
        are offered to :class:`~streams.metrics.TopCustomers`, which picks the labelled ones."""
        top = self.metrics.top_customers
        n_customers = len(self.budgets)
        if len(self.customer_spend) < n_customers:
            self.customer_spend = np.concatenate(
                [self.customer_spend, np.zeros(max(n_customers, 2 * len(self.customer_spend)), np.int64)])
        np.add.at(self.customer_spend, customer_ids, cost)
        now = time.monotonic()
        if top.wants_offers() or now - self._last_offer >= top.rerank_seconds:
            self._last_offer = now
            spend = self.customer_spend[:n_customers]
            best = np.argsort(-spend, kind="stable")[: top.n]
            self.metrics.offer_top_customers(self.name, self.budgets.customer_names(best), spend[best].tolist())
        if self._labels_generation != top.generation or len(self._labelled) < n_customers:
            self._labels_generation = top.generation
            self._labelled = np.zeros(n_customers, np.bool_)
            self._labelled[self.budgets.ids_of(top.labelled)] = True
        # label -1 is __other__, else the customer's own id
        labels = np.where(self._labelled[customer_ids], customer_ids, -1)
        models, features = self.names["model"], self.names["feature"]
        n_models, n_features = len(models), len(features)
        groups, g = np.unique(((labels + 1) * n_models + model_ids) * n_features + feature_ids, return_inverse=True)
        cost_usd = np.bincount(g, weights=cost.astype(np.float64)) / 1e12
        for group, usd in zip(groups.tolist(), cost_usd.tolist()):
            label, rest = divmod(group, n_models * n_features)
            model, feature = divmod(rest, n_features)
            self.metrics.cost_usd(self._label_name(label - 1), models[model], features[feature]).inc(usd)
        groups, g = np.unique((labels + 1) * n_models + model_ids, return_inverse=True)
        sums = [np.bincount(g, weights=tokens[:, j].astype(np.float64)) for j in range(5)]
        for k, group in enumerate(groups.tolist()):
            label, model = divmod(group, n_models)
            for token_type, column in zip(TOKEN_TYPES, sums):
                if column[k]:
                    self.metrics.tokens(self._label_name(label - 1), models[model], token_type).inc(column[k])

    def _label_name(self, label: int) -> str:
        return OTHER if label < 0 else self.budgets.customer_names(np.array([label]))[0]

    def tick(self, now_ms: int, sink, caught_up: bool = False) -> None:
        # Idle advance only for a partition that saw usage (it has no window otherwise) and has
        # nothing left to read: after a restart a partition is silent while its backlog is still
        # to come, and advancing then would turn replayed events late (counted twice).
        if (not self.idle_flushed and caught_up and self.windows.watermark_ms is not None
                and now_ms - self.last_input_ms >= self.idle_ms):
            # Idle partition: its watermark follows the wall clock, so past windows close.
            self.windows.advance_idle(now_ms)
            self.idle_flushed = True
            self._emit(sink, now_ms)
            self.urgent = True  # the idle advance must be in the checkpoint before anything else
        self._statuses(sink, now_ms)
        if self.alerts.sweep(now_ms, sink):
            self.urgent = True

    def _state(self) -> dict:
        return {
            "windows": self.windows.to_bytes(),
            "keys": self.keys,  # (customer, model, feature) tuples, encoded as arrays
            "key_columns": self.key_columns[: len(self.keys)].tobytes(),
            "names": self.names,
            "budgets": self.budgets.to_bytes(),
            "spikes": self.spikes.to_bytes(),
            "alerts": self.alerts.state(),
        }

    def _restore_state(self, state: dict) -> None:
        self.windows = WindowStore.from_bytes(state["windows"])
        self.keys = [tuple(k) for k in state["keys"]]
        self.key_index = KeyIndex(len(self.keys))
        if self.keys:
            self.key_index.insert(*fingerprints(*zip(*self.keys)))
        self.key_customers = {k[0] for k in self.keys}
        self.key_columns = np.frombuffer(state["key_columns"], np.int64).reshape(-1, 4).copy()
        self.names = state["names"]
        self.name_id = {kind: {n: i for i, n in enumerate(names)} for kind, names in self.names.items()}
        self.budgets = BudgetBook.from_bytes(state["budgets"])
        self.spikes = SpikeDetector.from_bytes(state["spikes"])
        self.alerts.restore(state["alerts"])
