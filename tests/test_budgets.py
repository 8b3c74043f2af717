"""BudgetBook against a naive reference (dicts, datetime calendars, Decimal thresholds)."""

from __future__ import annotations

import decimal
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from streams.costs.budgets import DAY_MS, BudgetBook, BudgetPolicy, _period_bounds, parse_budgets

USD = 10**12
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NOV_30_NOON = 1_796_040_000_000  # 2026-11-30T12:00:00Z

POLICIES = {
    "*": {"period": "day", "limit_usd": "5", "soft_ratio": 0.8},
    "acme": {"period": "month", "limit_usd": "20", "soft_ratio": 0.5},
    "beta": {"period": "day", "limit_usd": "3.000000000001", "soft_ratio": 1.0},
    "gamma": {"period": "month", "limit_usd": "7", "soft_ratio": 0.3},
}
CUSTOMERS = ["acme", "beta", "gamma", "delta", "epsilon", "zeta"]


def ms(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


def reference_period(policy: dict, t: int) -> tuple[str, int]:
    """Label and end (ms) of the calendar period holding t, by datetime arithmetic."""
    day = (EPOCH + timedelta(milliseconds=t)).date()
    if policy["period"] == "day":
        end = day + timedelta(days=1)
        label = day.isoformat()
    else:
        end = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
        label = f"{day.year:04d}-{day.month:02d}"
    return label, ms(datetime(end.year, end.month, end.day, tzinfo=timezone.utc))


class ReferenceBook:
    """Every event in a Python loop; thresholds as Decimal; state never dropped."""

    def __init__(self, policies: dict, retention_ms: int):
        self.policies, self.retention_ms = policies, retention_ms
        self.clock, self.spend, self.crossed, self.expired = None, {}, {}, 0

    def policy(self, name):
        return self.policies.get(name, self.policies.get("*"))

    def thresholds(self, policy):
        limit = decimal.Decimal(policy["limit_usd"]) * USD
        return limit * decimal.Decimal(repr(policy["soft_ratio"])), limit

    def add(self, names, times, costs, models):
        out = []
        for name, t, cost, model in zip(names, times, costs, models):
            self.clock = t if self.clock is None else max(self.clock, t)
            policy = self.policy(name)
            if policy is None:
                continue
            label, end = reference_period(policy, t)
            if end + self.retention_ms <= self.clock:
                self.expired += 1
                continue
            key = (name, label)
            self.spend[key] = self.spend.get(key, 0) + cost
            soft, limit = self.thresholds(policy)
            for kind, threshold in (("budget_soft", soft), ("budget_hard", limit)):
                if kind not in self.crossed.setdefault(key, set()) and self.spend[key] >= threshold:
                    self.crossed[key].add(kind)
                    out.append((kind, name, label, self.spend[key], t, model))
        return out

    def status(self, name):
        policy = self.policy(name)
        label, _ = reference_period(policy, self.clock)
        crossed = self.crossed.get((name, label), set())
        state = "hard" if "budget_hard" in crossed else "soft" if crossed else "ok"
        return label, self.spend.get((name, label), 0), state


def random_events(rng, n, spread_ms=2 * DAY_MS, very_late=0.02):
    """Times drifting forward across a month end, jittered back, a few far behind."""
    times = NOV_30_NOON + np.sort(rng.integers(0, spread_ms, n)) - rng.integers(0, 3_600_000, n)
    late = rng.random(n) < very_late
    times[late] -= rng.integers(DAY_MS, 3 * DAY_MS, late.sum())
    names = [CUSTOMERS[k] for k in rng.integers(0, len(CUSTOMERS), n)]
    costs = rng.integers(0, USD // 2, n) * rng.integers(1, 3, n)
    models = [f"m{k}" for k in rng.integers(0, 4, n)]
    return names, times, costs, models


def run_batches(book, names, times, costs, models, cuts):
    out, start = [], 0
    for stop in list(cuts) + [len(names)]:
        for s in book.add_batch(book.intern(names[start:stop]), times[start:stop], costs[start:stop],
                                models=models[start:stop]):
            out.append((s.kind, s.customer, s.period, s.spend_pico, s.event_time_ms, s.model, s.index + start))
        start = stop
    return out


def as_reference(signals):
    return [s[:6] for s in signals]


@pytest.mark.nojit
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_under_random_batch_cuts(seed):
    rng = np.random.default_rng(seed)
    retention = int(rng.choice([0, DAY_MS // 2, DAY_MS, 2 * DAY_MS]))
    names, times, costs, models = random_events(rng, 3000)
    ref = ReferenceBook(POLICIES, retention)
    expected = ref.add(names, times.tolist(), costs.tolist(), models)
    assert any(s[0] == "budget_hard" for s in expected) and any(s[0] == "budget_soft" for s in expected)
    for cut_seed in range(3):
        cuts = np.sort(np.random.default_rng(cut_seed).choice(len(names), size=cut_seed * 20, replace=False))
        book = BudgetBook(POLICIES, retention_ms=retention)
        got = run_batches(book, names, times, costs, models, cuts)
        assert as_reference(got) == expected
        assert all(models[s[6]] == s[5] and times[s[6]] == s[4] for s in got)
        assert book.expired_events == ref.expired
        for name in CUSTOMERS:
            label, spend, state = ref.status(name)
            assert book.status(name) == {"customer": name, "period": label, "spend_usd": format_usd(spend),
                                         "limit_usd": format_usd(int(decimal.Decimal(POLICIES.get(name, POLICIES["*"])["limit_usd"]) * USD)),
                                         "state": state}


def format_usd(pico: int) -> str:
    return f"{decimal.Decimal(pico) / USD:.12f}"


def test_snapshot_restore_continues_identically():
    rng = np.random.default_rng(11)
    names, times, costs, models = random_events(rng, 4000)
    whole = BudgetBook(POLICIES)
    expected = run_batches(whole, names, times, costs, models, [1000, 2500])
    first = BudgetBook(POLICIES)
    got = run_batches(first, names[:2000], times[:2000], costs[:2000], models[:2000], [1000])
    first.changed_since_last_call()
    restored = BudgetBook.from_bytes(first.to_bytes())
    assert restored.to_bytes() == first.to_bytes()
    rest = run_batches(restored, names[2000:], times[2000:], costs[2000:], models[2000:], [500])
    got += [s[:6] + (s[6] + 2000,) for s in rest]
    assert got == expected
    assert [restored.status(n) for n in CUSTOMERS] == [whole.status(n) for n in CUSTOMERS]


def test_a_crossing_never_repeats_after_restart():
    book = BudgetBook({"*": {"period": "month", "limit_usd": "1", "soft_ratio": 0.5}})
    t = ms(datetime(2026, 11, 22, tzinfo=timezone.utc))
    first = book.add_batch(book.intern(["acme"]), [t], [USD])
    assert [s.kind for s in first] == ["budget_soft", "budget_hard"]
    restored = BudgetBook.from_bytes(book.to_bytes())
    assert restored.add_batch(restored.intern(["acme", "acme"]), [t + 1, t + 2], [USD, 5]) == []
    december = restored.add_batch(restored.intern(["acme"]), [ms(datetime(2026, 12, 1, tzinfo=timezone.utc))], [USD // 2])
    assert [(s.kind, s.period, s.dedup_key) for s in december] == [("budget_soft", "2026-12", "budget_soft|acme|2026-12")]


def test_one_batch_crossing_both_thresholds_signals_both_at_the_crossing_events():
    book = BudgetBook({"acme": {"period": "day", "limit_usd": "10", "soft_ratio": 0.8}})
    t = ms(datetime(2026, 11, 22, 3, tzinfo=timezone.utc))
    signals = book.add_batch(book.intern(["acme"] * 4), [t, t + 5, t + 1, t + 9], [7 * USD, USD, USD, 2 * USD],
                             models=["a", "b", "c", "d"], features=["f1", "f2", "f3", "f4"])
    assert [(s.kind, s.severity, s.index, s.event_time_ms, s.spend_usd, s.model, s.feature) for s in signals] == [
        ("budget_soft", "warning", 1, t + 5, "8.000000000000", "b", "f2"),
        ("budget_hard", "critical", 3, t + 9, "11.000000000000", "d", "f4"),
    ]
    assert (signals[0].threshold_usd, signals[1].threshold_usd, signals[1].limit_usd) == (
        "8.000000000000", "10.000000000000", "10.000000000000")
    assert signals[0].period == "2026-11-22"


def test_soft_threshold_is_exact_decimal_of_the_ratio():
    assert BudgetPolicy(period="day", limit_usd="1", soft_ratio=0.1).soft_pico == 10**11
    assert decimal.Decimal(0.1) * 10**12 > 10**11  # the binary float would round up one picodollar
    # 3 pico * 0.5 = 1.5 pico: spend must reach 2 pico, the smallest whole amount >= 1.5.
    policy = BudgetPolicy(period="day", limit_usd="0.000000000003", soft_ratio=0.5)
    assert (policy.limit_pico, policy.soft_pico) == (3, 2)
    book = BudgetBook({"acme": policy})
    ids = book.intern(["acme"] * 3)
    assert [s.spend_pico for s in book.add_batch(ids, [0, 1, 2], [1, 1, 1])] == [2, 3]
    # 19 digits times 17 digits: more than a default Decimal context's 28 digits of precision.
    policy = BudgetPolicy(period="day", limit_usd="9223372.036854775807", soft_ratio=0.12345678901234568)
    assert policy.soft_pico == -(-9223372036854775807 * 12345678901234568 // 10**17)


@pytest.mark.parametrize(("table", "message"), [
    ({"period": "week", "limit_usd": "5"}, r'budgets\.acme\.period: expected "day" or "month"'),
    ({"limit_usd": "5"}, r"budgets\.acme\.period: missing"),
    ({"period": "day"}, r"budgets\.acme\.limit_usd: missing"),
    ({"period": "day", "limit_usd": 5.5}, r"budgets\.acme\.limit_usd: expected a decimal string"),
    ({"period": "day", "limit_usd": "five"}, r"budgets\.acme\.limit_usd: not a decimal number: 'five'"),
    ({"period": "day", "limit_usd": "-1"}, r"budgets\.acme\.limit_usd: must be a positive amount"),
    ({"period": "day", "limit_usd": "0"}, r"budgets\.acme\.limit_usd: must be a positive amount"),
    ({"period": "day", "limit_usd": "NaN"}, r"budgets\.acme\.limit_usd: not a decimal number"),
    ({"period": "day", "limit_usd": "1.0000000000001"}, r"budgets\.acme\.limit_usd: .* not a whole number at 12 decimal places"),
    ({"period": "day", "limit_usd": "10000000"}, r"budgets\.acme\.limit_usd: .* does not fit an int64"),
    ({"period": "day", "limit_usd": "5", "soft_ratio": 0}, r"budgets\.acme\.soft_ratio: expected a number in \(0, 1\]"),
    ({"period": "day", "limit_usd": "5", "soft_ratio": 1.5}, r"budgets\.acme\.soft_ratio"),
    ({"period": "day", "limit_usd": "5", "soft_ratio": True}, r"budgets\.acme\.soft_ratio"),
    ({"period": "day", "limit_usd": "5", "limit": "6"}, r"budgets\.acme\.limit: unknown key"),
])
def test_policy_errors_name_the_key(table, message):
    with pytest.raises(ValueError, match=message):
        parse_budgets({"acme": table})


def test_policy_accepts_integer_limits_and_config_objects():
    class Section:  # any object with the three attributes, e.g. a config struct
        period, limit_usd, soft_ratio = "day", "2.5", 1

    policies = parse_budgets({"a": {"period": "month", "limit_usd": 500}, "b": Section()})
    assert policies["a"] == BudgetPolicy(period="month", limit_usd="500", soft_ratio=0.8)
    assert (policies["b"].limit_pico, policies["b"].soft_pico) == (2_500_000_000_000, 2_500_000_000_000)


def test_period_bounds_match_the_calendar():
    rng = np.random.default_rng(3)
    times = np.concatenate([rng.integers(-DAY_MS * 365 * 10, DAY_MS * 365 * 130, 2000),
                            [ms(datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=timezone.utc)),
                             ms(datetime(2100, 2, 28, tzinfo=timezone.utc)), ms(datetime(2000, 12, 31, tzinfo=timezone.utc)), -1, 0]])
    for t in times.tolist():
        dt = EPOCH + timedelta(milliseconds=t)
        day = datetime(dt.year, dt.month, dt.day, tzinfo=timezone.utc)
        month = datetime(dt.year, dt.month, 1, tzinfo=timezone.utc)
        next_month = datetime(dt.year + (dt.month == 12), dt.month % 12 + 1, 1, tzinfo=timezone.utc)
        assert _period_bounds(1, t) == (ms(day), ms(day) + DAY_MS)
        assert _period_bounds(2, t) == (ms(month), ms(next_month))


def test_late_events_count_within_retention_and_expire_after():
    book = BudgetBook({"*": {"period": "day", "limit_usd": "1", "soft_ratio": 1.0}}, retention_ms=DAY_MS)
    ids = book.intern(["acme"] * 4)
    nov_22, nov_23 = ms(datetime(2026, 11, 22, tzinfo=timezone.utc)), ms(datetime(2026, 11, 23, tzinfo=timezone.utc))
    signals = book.add_batch(ids, [nov_22 + 5, nov_23 + DAY_MS - 1, nov_22 + 6, nov_22 + 7],
                             [USD // 2, 3, USD // 2, USD])
    # The 2026-11-22 period still takes events until 2026-11-24T00:00 of event time.
    assert [(s.kind, s.period, s.index) for s in signals] == [("budget_soft", "2026-11-22", 2),
                                                               ("budget_hard", "2026-11-22", 2)]
    assert book.expired_events == 0
    assert book.add_batch(book.intern(["acme", "acme"]), [nov_23 + DAY_MS, nov_22 + 8], [1, USD]) == []
    assert book.expired_events == 1
    assert book._slot_start.shape[1] == 2  # memory: two periods per customer for a one-day retention


def test_status_rolls_over_with_the_clock_and_changes_are_listed_once():
    book = BudgetBook({"*": {"period": "day", "limit_usd": "1", "soft_ratio": 0.5},
                       "acme": {"period": "month", "limit_usd": "10", "soft_ratio": 0.5}})
    nov_22 = ms(datetime(2026, 11, 22, 23, tzinfo=timezone.utc))
    book.add_batch(book.intern(["acme", "beta"]), [nov_22, nov_22], [6 * USD, USD // 2])
    assert book.customer_names(book.changed_since_last_call()) == ["acme", "beta"]
    assert book.customer_names(book.changed_since_last_call()) == []
    assert book.status("beta") == {"customer": "beta", "period": "2026-11-22", "spend_usd": "0.500000000000",
                                   "limit_usd": "1.000000000000", "state": "soft"}
    book.add_batch(book.intern(["acme"]), [nov_22 + 3_600_000], [1])  # the clock passes midnight
    assert book.customer_names(book.changed_since_last_call()) == ["acme", "beta"]
    assert book.status("beta")["period"] == "2026-11-23" and book.status("beta")["state"] == "ok"
    assert book.status("acme")["state"] == "soft" and book.status("acme")["spend_usd"] == "6.000000000001"
    assert book.status("never-seen")["spend_usd"] == "0.000000000000"
    assert book.used_ratio() == {"acme": pytest.approx(0.6000000000001)}


def test_customers_without_a_budget_are_ignored_but_advance_the_clock():
    book = BudgetBook({"acme": {"period": "day", "limit_usd": "1"}})
    assert book.add_batch(book.intern(["nobody", "nobody"]), [10, 20], [5 * USD, 5 * USD]) == []
    assert book.clock_ms == 20
    with pytest.raises(KeyError, match="nobody"):
        book.status("nobody")
    assert book.customer_names(book.changed_since_last_call()) == []


def test_interning_is_stable_and_dense():
    book = BudgetBook({"*": {"period": "day", "limit_usd": "1"}})
    assert book.intern(["b", "a", "b", "c", "a"]).tolist() == [0, 1, 0, 2, 1]
    assert book.intern(iter(["c", "d"])).tolist() == [2, 3]
    assert book.customers == ["b", "a", "c", "d"]
    assert BudgetBook.from_bytes(book.to_bytes()).intern(["d", "e"]).tolist() == [3, 4]


def test_bad_batches_are_rejected():
    book = BudgetBook({"*": {"period": "day", "limit_usd": "1"}})
    ids = book.intern(["a"])
    with pytest.raises(ValueError, match="negative cost"):
        book.add_batch(ids, [0], [-1])
    with pytest.raises(ValueError, match="out of range"):
        book.add_batch([1], [0], [1])
    with pytest.raises(ValueError, match="models has 2 elements"):
        book.add_batch(ids, [0], [1], models=["x", "y"])
    with pytest.raises(ValueError, match="one length"):
        book.add_batch(ids, [0, 1], [1])


def test_spend_overflow_raises():
    book = BudgetBook({"*": {"period": "day", "limit_usd": "9000000"}})
    big = np.iinfo(np.int64).max // 2 + 1
    with pytest.raises(OverflowError, match="'a'.*position 1"):
        book.add_batch(book.intern(["a", "a"]), [0, 1], [big, big])
