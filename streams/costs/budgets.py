"""Customer budgets: exact spend per calendar period and one alert per threshold crossing.

A budget policy (``[budgets.<customer>]`` in the config TOML, ``"*"`` for everyone else) sets a
calendar ``period`` in UTC (``"day"`` or ``"month"``, by event time), a ``limit_usd`` and a
``soft_ratio``. :class:`BudgetBook` adds every usage event's cost (int64 picodollars) to its
customer's period in one numba call per micro-batch and reports each crossing once:
``budget_soft`` when spend reaches ``soft_ratio * limit`` and ``budget_hard`` (critical) when it
reaches the limit, per customer and period, across restarts too (the crossing flags are part of
the snapshot).

Exactness: spend and thresholds are int64 picodollars. The soft threshold is computed from the
*decimal* ``repr`` of the float ratio (``0.8`` means exactly 8/10, not the binary float nearest
to it) and rounded up to a whole picodollar, so "spend >= soft threshold" holds exactly when
spend >= limit * ratio. The largest amount an int64 picodollar holds is about 9.2 million USD;
larger limits are rejected and a period's spend beyond it raises :class:`OverflowError`.

A crossing is reported at the event that crossed it, in the batch's (offset) order, with that
event's time, model and feature; the rule depends on the event order only, never on how the
input was cut into batches, so a replay from a snapshot signals the same crossings.

Status: the book's clock is the largest event time it has seen; a customer's *current* period
is the one holding the clock, so at midnight (or month end) every status moves to the new
period with zero spend. :meth:`BudgetBook.status` is the compacted ``customer_status`` value,
:meth:`BudgetBook.changed_since_last_call` the customers to re-emit.

Late events: a period keeps taking events until the newer period has existed for
``retention_ms`` of event time (its end plus the retention is still ahead of the clock). An
event of an older period is counted in ``expired_events`` and not added: its period's state is
gone, and recreating it could alert twice. Memory is ``ceil(retention / 1 day) + 1`` period
slots per customer, so it is bounded by the number of customers.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import msgspec
import numpy as np
from numba import njit

from streams.costs.money import PICO_PER_USD, format_usd, to_pico

DAY_MS = 86_400_000
_INT64_MAX = np.iinfo(np.int64).max
_EMPTY = np.iinfo(np.int64).min  # an unused period slot; also "no event seen yet" for the clock

_KINDS = {"day": 1, "month": 2}  # 0: the customer has no budget
_SOFT, _HARD = 1, 2  # crossing flag bits, also the signal kind codes
_STATES = ("ok", "soft", "hard")
_POLICY_KEYS = ("period", "limit_usd", "soft_ratio")


class BudgetPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """One budget: ``limit_usd`` per calendar ``period`` (UTC), soft alert at ``soft_ratio``.

    Parameters
    ----------
    period
        ``"day"`` or ``"month"``: calendar periods in UTC, by event time.
    limit_usd
        The limit as a decimal string (``"500"``, ``"12.5"``), exact to the picodollar.
    soft_ratio
        ``budget_soft`` fires when spend reaches ``soft_ratio * limit``; in (0, 1].

    Examples
    --------
    >>> p = BudgetPolicy.from_table("acme", {"period": "month", "limit_usd": "500", "soft_ratio": 0.8})
    >>> p.limit_pico, p.soft_pico
    (500000000000000, 400000000000000)
    >>> BudgetPolicy.from_table("acme", {"period": "week", "limit_usd": "500"})
    Traceback (most recent call last):
    ...
    ValueError: budgets.acme.period: expected "day" or "month", got 'week'
    """

    period: Literal["day", "month"]
    limit_usd: str
    soft_ratio: float = 0.8

    @classmethod
    def from_table(cls, name: str, table: Any) -> "BudgetPolicy":
        """Validate one ``[budgets.<name>]`` table (a mapping, or an object with the three
        attributes, such as a config section); errors name the offending key."""
        if isinstance(table, BudgetPolicy):
            return table
        if isinstance(table, Mapping):
            unknown = sorted(set(table) - set(_POLICY_KEYS))
            if unknown:
                raise ValueError(f"budgets.{name}.{unknown[0]}: unknown key (expected {', '.join(_POLICY_KEYS)})")
            values = dict(table)
        else:
            values = {key: getattr(table, key) for key in _POLICY_KEYS if hasattr(table, key)}
        for key in ("period", "limit_usd"):
            if key not in values:
                raise ValueError(f"budgets.{name}.{key}: missing")
        period, limit, ratio = values["period"], values["limit_usd"], values.get("soft_ratio", 0.8)
        if period not in _KINDS:
            raise ValueError(f'budgets.{name}.period: expected "day" or "month", got {period!r}')
        if isinstance(limit, bool) or not isinstance(limit, (str, int)):
            raise ValueError(f"budgets.{name}.limit_usd: expected a decimal string such as \"500\", got {limit!r}")
        try:
            pico = to_pico(str(limit))
        except ValueError as err:
            raise ValueError(f"budgets.{name}.limit_usd: {err}") from None
        if pico <= 0:
            raise ValueError(f"budgets.{name}.limit_usd: must be a positive amount, got {limit!r}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"budgets.{name}.soft_ratio: expected a number in (0, 1], got {ratio!r}")
        return cls(period=period, limit_usd=str(limit), soft_ratio=float(ratio))

    @property
    def limit_pico(self) -> int:
        return to_pico(self.limit_usd)

    @property
    def soft_pico(self) -> int:
        """``ceil(limit * soft_ratio)`` in picodollars, the ratio read from its decimal repr."""
        numerator, denominator = decimal.Decimal(repr(self.soft_ratio)).as_integer_ratio()
        return -(-self.limit_pico * numerator // denominator)  # integer ceiling, no Decimal context rounding


def parse_budgets(table: Mapping[str, Any]) -> dict[str, BudgetPolicy]:
    """The ``budgets`` table of the config TOML as ``{customer or "*": BudgetPolicy}``.

    Examples
    --------
    >>> import tomllib
    >>> doc = tomllib.loads('''
    ... [budgets."*"]
    ... period = "day"
    ... limit_usd = "10"
    ... [budgets.acme]
    ... period = "month"
    ... limit_usd = "500"
    ... soft_ratio = 0.9
    ... ''')
    >>> sorted(parse_budgets(doc["budgets"]))
    ['*', 'acme']
    """
    if not isinstance(table, Mapping):
        raise ValueError(f"budgets: expected a table of [budgets.<customer>] tables, got {type(table).__name__}")
    return {str(name): BudgetPolicy.from_table(str(name), value) for name, value in table.items()}


class BudgetSignal(msgspec.Struct, frozen=True, kw_only=True):
    """A budget threshold crossed by one event (the worker turns it into an alert).

    ``index`` is the event's position in the batch passed to :meth:`BudgetBook.add_batch`;
    ``model`` and ``feature`` are that event's, when the batch gave them.
    """

    kind: Literal["budget_soft", "budget_hard"]
    severity: Literal["warning", "critical"]
    customer: str
    period: str
    spend_pico: int
    threshold_pico: int
    limit_pico: int
    event_time_ms: int
    index: int
    model: Any = None
    feature: Any = None

    @property
    def spend_usd(self) -> str:
        return format_usd(self.spend_pico)

    @property
    def threshold_usd(self) -> str:
        return format_usd(self.threshold_pico)

    @property
    def limit_usd(self) -> str:
        return format_usd(self.limit_pico)

    @property
    def dedup_key(self) -> str:
        """One key per customer, period and threshold: the next period may alert again."""
        return f"{self.kind}|{self.customer}|{self.period}"


@njit(cache=True)
def _days_from_civil(y, m, d):
    # H. Hinnant's algorithm, proleptic Gregorian calendar.
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def _civil_from_days(z):
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400
    return (y + 1 if m <= 2 else y), m, d


@njit(cache=True)
def _period_bounds(kind, time_ms):
    """[start, end) in ms of the UTC day (kind 1) or month (kind 2) holding ``time_ms``."""
    day = time_ms // DAY_MS
    if kind == 1:
        return day * DAY_MS, (day + 1) * DAY_MS
    y, m, _ = _civil_from_days(day)
    next_y, next_m = (y, m + 1) if m < 12 else (y + 1, 1)
    return _days_from_civil(y, m, 1) * DAY_MS, _days_from_civil(next_y, next_m, 1) * DAY_MS


@njit(cache=True)
def _add_batch(customers, time_ms, cost, kind, limit, soft, slot_start, slot_end, slot_spend, slot_flags, clock,
               retention_ms, sig_index, sig_kind, sig_spend, sig_start):
    """Add events in order; returns (signals written, expired events, index of an overflow or -1)."""
    n_signals = 0
    expired = 0
    for i in range(len(customers)):
        c = customers[i]
        t = time_ms[i]
        if t > clock[0]:
            clock[0] = t
        if kind[c] == 0:
            continue
        s = -1
        for j in range(slot_start.shape[1]):
            if slot_start[c, j] <= t < slot_end[c, j]:
                s = j
                break
        if s >= 0:
            start, end = slot_start[c, s], slot_end[c, s]
        else:  # the calendar only for a period new to the customer: it costs ~200 ns a month
            start, end = _period_bounds(kind[c], t)
        if end + retention_ms <= clock[0]:
            expired += 1
            continue
        if s < 0:
            # The slot with the oldest start: an empty slot, or an expired period (there are at
            # most len(slots) - 1 live periods besides this one).
            s = 0
            for j in range(1, slot_start.shape[1]):
                if slot_start[c, j] < slot_start[c, s]:
                    s = j
            slot_start[c, s] = start
            slot_end[c, s] = end
            slot_spend[c, s] = 0
            slot_flags[c, s] = 0
        if cost[i] > _INT64_MAX - slot_spend[c, s]:
            return n_signals, expired, i
        spend = slot_spend[c, s] + cost[i]
        slot_spend[c, s] = spend
        for bit in (_SOFT, _HARD):
            threshold = soft[c] if bit == _SOFT else limit[c]
            if slot_flags[c, s] & bit == 0 and spend >= threshold:
                slot_flags[c, s] |= bit
                sig_index[n_signals] = i
                sig_kind[n_signals] = bit
                sig_spend[n_signals] = spend
                sig_start[n_signals] = start
                n_signals += 1
    return n_signals, expired, -1


@njit(cache=True)
def _current_status(kind, slot_start, slot_spend, slot_flags, now_ms, out_start, out_spend, out_state):
    """Per customer: start, spend and state (0 ok, 1 soft, 2 hard) of the period holding ``now_ms``."""
    current = (_EMPTY, _period_bounds(1, now_ms)[0], _period_bounds(2, now_ms)[0])
    for c in range(len(out_start)):
        start = current[kind[c]]
        out_start[c] = start
        out_spend[c] = 0
        out_state[c] = 0
        if kind[c] == 0:
            continue
        for j in range(slot_start.shape[1]):
            if slot_start[c, j] == start:
                out_spend[c] = slot_spend[c, j]
                flags = slot_flags[c, j]
                out_state[c] = 2 if flags & _HARD else (1 if flags & _SOFT else 0)


def _period_label(kind: int, start_ms: int) -> str:
    start = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(start_ms))
    return start.strftime("%Y-%m-%d" if kind == 1 else "%Y-%m")


class BudgetBook:
    """Spend per customer and calendar period against each customer's budget, for one partition.

    Customers are interned by the book: :meth:`intern` maps names to dense int ids (kept in the
    snapshot), which :meth:`add_batch` takes. A customer without its own policy uses ``"*"``;
    without either it has no budget and its events only advance the clock.

    Parameters
    ----------
    policies
        ``{customer or "*": BudgetPolicy}``, or the raw ``budgets`` TOML table (see
        :func:`parse_budgets`).
    retention_ms
        How long after its end a period still takes late events (event time).

    Examples
    --------
    >>> import numpy as np
    >>> book = BudgetBook({"*": {"period": "month", "limit_usd": "10", "soft_ratio": 0.5}})
    >>> ids = book.intern(["acme", "acme", "globex"])
    >>> nov_22 = 1_795_305_600_000  # 2026-11-22T00:00:00Z
    >>> usd = 10**12
    >>> signals = book.add_batch(ids, np.array([nov_22, nov_22 + 1, nov_22 + 2]),
    ...                          np.array([4 * usd, 7 * usd, 1 * usd]), models=["m1", "m2", "m1"])
    >>> [(s.kind, s.customer, s.period, s.spend_usd, s.model) for s in signals]
    [('budget_soft', 'acme', '2026-11', '11.000000000000', 'm2'), ('budget_hard', 'acme', '2026-11', '11.000000000000', 'm2')]
    >>> book.status("acme")["state"], book.status("globex")["spend_usd"]
    ('hard', '1.000000000000')
    >>> book.add_batch(book.intern(["acme"]), np.array([nov_22 + 3]), np.array([usd]))
    []
    """

    def __init__(self, policies: Mapping[str, Any], *, retention_ms: int = DAY_MS):
        if retention_ms < 0:
            raise ValueError(f"retention_ms must be >= 0, got {retention_ms!r}")
        self.policies = parse_budgets(policies)
        # (kind, limit, soft threshold) per policy, computed once rather than per new customer.
        self._resolved = {name: (_KINDS[p.period], p.limit_pico, p.soft_pico) for name, p in self.policies.items()}
        self.retention_ms = int(retention_ms)
        self.expired_events = 0
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._clock = np.array([_EMPTY], np.int64)
        slots = math.ceil(self.retention_ms / DAY_MS) + 1
        self._kind = np.zeros(0, np.int8)
        self._limit = np.zeros(0, np.int64)
        self._soft = np.zeros(0, np.int64)
        self._slot_start = np.full((0, slots), _EMPTY, np.int64)
        self._slot_end = np.full((0, slots), _EMPTY, np.int64)
        self._slot_spend = np.zeros((0, slots), np.int64)
        self._slot_flags = np.zeros((0, slots), np.int8)
        self._reported = np.zeros((0, 3), np.int64)  # start, spend, state at the last report

    # -- customers ------------------------------------------------------------------------------

    def intern(self, names: Iterable[str]) -> np.ndarray:
        """Int64 ids of customer names, adding new customers (their policy resolved now)."""
        names = names if isinstance(names, list) else list(names)
        index = self._index
        ids = [index.get(name, -1) for name in names]
        if -1 in ids:  # new customers, added in bulk in order of first appearance
            new = [name for name in dict.fromkeys(names) if name not in index]
            start = len(self._names)
            if start + len(new) > len(self._kind):
                self._grow(max(8, 2 * (start + len(new))))
            default = self._resolved.get("*")
            resolved = [self._resolved.get(name, default) for name in new]
            with_policy = [k for k, r in enumerate(resolved) if r is not None]
            if with_policy:
                rows = start + np.array(with_policy, np.int64)
                self._kind[rows], self._limit[rows], self._soft[rows] = np.array(
                    [resolved[k] for k in with_policy], np.int64).T
            self._names.extend(new)
            index.update(zip(new, range(start, start + len(new))))
            ids = [index[name] for name in names]
        return np.array(ids, np.int64)

    def _grow(self, capacity: int) -> None:
        def grown(arr, fill):
            out = np.full((capacity,) + arr.shape[1:], fill, arr.dtype)
            out[: len(arr)] = arr
            return out

        self._kind, self._limit, self._soft = grown(self._kind, 0), grown(self._limit, 0), grown(self._soft, 0)
        self._slot_start, self._slot_end = grown(self._slot_start, _EMPTY), grown(self._slot_end, _EMPTY)
        self._slot_spend, self._slot_flags = grown(self._slot_spend, 0), grown(self._slot_flags, 0)
        self._reported = grown(self._reported, -1)

    def _policy(self, name: str) -> BudgetPolicy | None:
        return self.policies.get(name, self.policies.get("*"))

    @property
    def customers(self) -> list[str]:
        """Interned names; a customer's id is its position."""
        return list(self._names)

    # -- events ---------------------------------------------------------------------------------

    def add_batch(self, customer_ids, time_ms, cost_pico, *, models: Sequence | None = None,
                  features: Sequence | None = None) -> list[BudgetSignal]:
        """Add one micro-batch, in offset order; return the thresholds it crossed, in order.

        Parameters
        ----------
        customer_ids
            Int ids from :meth:`intern`.
        time_ms
            Event times, int64 ms since the epoch (UTC).
        cost_pico
            Costs, int64 picodollars, >= 0.
        models, features
            Optional per-event sequences (names, or the caller's ids); a signal carries the
            element of the event that crossed the threshold.
        """
        ids = np.ascontiguousarray(customer_ids, dtype=np.int64)
        times = np.ascontiguousarray(time_ms, dtype=np.int64)
        costs = np.ascontiguousarray(cost_pico, dtype=np.int64)
        if not ids.shape == times.shape == costs.shape or ids.ndim != 1:
            raise ValueError(f"customer_ids, time_ms and cost_pico must be 1-D of one length, got "
                             f"{ids.shape}, {times.shape}, {costs.shape}")
        for name, column in (("models", models), ("features", features)):
            if column is not None and len(column) != len(ids):
                raise ValueError(f"{name} has {len(column)} elements for {len(ids)} events")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self._names)):
            raise ValueError(f"customer id out of range [0, {len(self._names)}): intern names first")
        if len(costs) and costs.min() < 0:
            raise ValueError(f"negative cost {int(costs.min())} picodollars")
        n = len(ids)
        sig_index, sig_kind = np.empty(2 * n, np.int64), np.empty(2 * n, np.int64)
        sig_spend, sig_start = np.empty(2 * n, np.int64), np.empty(2 * n, np.int64)
        n_signals, expired, overflow_at = _add_batch(
            ids, times, costs, self._kind, self._limit, self._soft, self._slot_start, self._slot_end, self._slot_spend,
            self._slot_flags, self._clock, self.retention_ms, sig_index, sig_kind, sig_spend, sig_start)
        self.expired_events += expired
        if overflow_at >= 0:
            name = self._names[ids[overflow_at]]
            raise OverflowError(f"spend of customer {name!r} exceeds int64 picodollars at batch position "
                                f"{overflow_at}; the book is valid only up to that event")
        signals = []
        for k in range(n_signals):
            i, c = int(sig_index[k]), int(ids[sig_index[k]])
            hard = sig_kind[k] == _HARD
            signals.append(BudgetSignal(
                kind="budget_hard" if hard else "budget_soft",
                severity="critical" if hard else "warning",
                customer=self._names[c],
                period=_period_label(int(self._kind[c]), int(sig_start[k])),
                spend_pico=int(sig_spend[k]),
                threshold_pico=int(self._limit[c] if hard else self._soft[c]),
                limit_pico=int(self._limit[c]),
                event_time_ms=int(times[i]),
                index=i,
                model=None if models is None else models[i],
                feature=None if features is None else features[i],
            ))
        return signals

    # -- status ---------------------------------------------------------------------------------

    @property
    def clock_ms(self) -> int | None:
        """The largest event time seen, which selects each customer's current period."""
        return None if self._clock[0] == _EMPTY else int(self._clock[0])

    def _statuses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(self._names)
        start, spend, state = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
        if self.clock_ms is not None:
            _current_status(self._kind, self._slot_start, self._slot_spend, self._slot_flags,
                            self.clock_ms, start, spend, state)
        else:
            start[:], spend[:], state[:] = _EMPTY, 0, 0
        return start, spend, state

    def status(self, customer: str) -> dict:
        """The ``customer_status`` value: spend and state in the period holding :attr:`clock_ms`.

        Raises ``KeyError`` when the customer has no budget, ``LookupError`` before any event.
        """
        policy = self._policy(customer)
        if policy is None:
            raise KeyError(f"customer {customer!r} has no budget and there is no '*' default")
        if self.clock_ms is None:
            raise LookupError("no event seen yet: the current period is unknown")
        kind = _KINDS[policy.period]
        start, spend, state = _period_bounds(kind, self.clock_ms)[0], 0, 0
        if customer in self._index:
            _, spends, states = self._statuses()
            cid = self._index[customer]
            spend, state = int(spends[cid]), int(states[cid])
        return {"customer": customer, "period": _period_label(kind, start), "spend_usd": format_usd(spend),
                "limit_usd": format_usd(policy.limit_pico), "state": _STATES[state]}

    def statuses(self, customers) -> list[dict]:
        """:meth:`status` of many customers, computing every customer's period state once."""
        if self.clock_ms is None:
            raise LookupError("no event seen yet: the current period is unknown")
        _, spends, states = self._statuses()
        spends, states = spends.tolist(), states.tolist()
        labels = {kind: _period_label(kind, _period_bounds(kind, self.clock_ms)[0]) for kind in _KINDS.values()}
        # per policy, not per customer: its period's label and its limit
        described: dict[int, tuple[str, str]] = {}
        index = self._index
        out = []
        for customer in customers:
            policy = self._policy(customer)
            if policy is None:
                raise KeyError(f"customer {customer!r} has no budget and there is no '*' default")
            period_limit = described.get(id(policy))
            if period_limit is None:
                period_limit = described[id(policy)] = (labels[_KINDS[policy.period]], format_usd(policy.limit_pico))
            cid = index.get(customer)
            spend, state = (0, 0) if cid is None else (spends[cid], states[cid])
            out.append({"customer": customer, "period": period_limit[0], "spend_usd": format_usd(spend),
                        "limit_usd": period_limit[1], "state": _STATES[state]})
        return out

    def encoded_statuses(self, ids: np.ndarray) -> list[bytes]:
        """:meth:`statuses` of customer ids, as the JSON records of ``customer_status``, byte for
        byte as msgspec writes those dicts, formatted in bulk: with many customers a status goes
        out for most of them every few seconds.

        >>> book = BudgetBook(parse_budgets({"*": {"period": "month", "limit_usd": "10"}}))
        >>> ids = book.intern(["acme"]); _ = book.add_batch(ids, [1_795_316_400_000], [8_500_000_000_000])
        >>> book.encoded_statuses(ids)[0] == msgspec.json.encode(book.statuses(["acme"])[0])
        True
        """
        if self.clock_ms is None:
            raise LookupError("no event seen yet: the current period is unknown")
        customers = self.customer_names(ids)
        if (self._kind[ids] == 0).any():  # no budget: statuses() says which
            return [msgspec.json.encode(status) for status in self.statuses(customers)]
        _, spends, states = self._statuses()
        units, fractions = np.divmod(spends[ids], PICO_PER_USD)
        kinds, limits = self._kind[ids], self._limit[ids]
        labels = {kind: _period_label(kind, _period_bounds(kind, self.clock_ms)[0]).encode()
                  for kind in np.unique(kinds).tolist()}
        limit_text = {limit: format_usd(limit).encode() for limit in np.unique(limits).tolist()}
        state_text = [s.encode() for s in _STATES]
        return [b'{"customer":%b,"period":"%b","spend_usd":"%d.%012d","limit_usd":"%b","state":"%b"}'
                % (msgspec.json.encode(customer), labels[kind], whole, fraction, limit_text[limit], state_text[state])
                for customer, kind, whole, fraction, limit, state in zip(
                    customers, kinds.tolist(), units.tolist(), fractions.tolist(), limits.tolist(), states[ids].tolist())]

    def __len__(self) -> int:
        """Interned customers."""
        return len(self._names)

    def ids_of(self, names: Iterable[str]) -> np.ndarray:
        """Ids of those of ``names`` that are interned (others are left out)."""
        index = self._index
        return np.array([index[name] for name in names if name in index], np.int64)

    def customer_names(self, ids: np.ndarray) -> list[str]:
        """The names of customer ids (without copying every name, as :attr:`customers` does)."""
        names = self._names
        return [names[i] for i in ids.tolist()]

    def changed_since_last_call(self) -> np.ndarray:
        """Ids of the customers with a budget whose :meth:`status` (period, spend or state)
        changed since the previous call, in order. Call it at the rate statuses should be emitted."""
        start, spend, state = self._statuses()
        now = np.stack([start, spend, state], axis=1)
        reported = self._reported[: len(self._names)]
        changed = np.flatnonzero((self._kind[: len(self._names)] != 0) & (now != reported).any(axis=1))
        reported[changed] = now[changed]
        return changed

    def used_ratio(self) -> dict[str, float]:
        """Spend / limit in the current period for each customer with its own policy (not ``"*"``),
        a gauge whose label set is bounded by the config."""
        own = [name for name in self.policies if name != "*"]
        if self.clock_ms is None:
            return {name: 0.0 for name in own}
        _, spend, _ = self._statuses()
        return {name: (int(spend[self._index[name]]) if name in self._index else 0) / self.policies[name].limit_pico
                for name in own}

    # -- snapshots ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Policies, customers, spend and crossing flags; :meth:`from_bytes` continues identically."""
        n = len(self._names)
        return msgspec.msgpack.encode({
            "version": 1,
            "policies": self.policies,
            "retention_ms": self.retention_ms,
            "expired_events": self.expired_events,
            "clock": int(self._clock[0]),
            "names": self._names,
            "slot_start": self._slot_start[:n].astype("<i8").tobytes(),
            "slot_end": self._slot_end[:n].astype("<i8").tobytes(),
            "slot_spend": self._slot_spend[:n].astype("<i8").tobytes(),
            "slot_flags": self._slot_flags[:n].tobytes(),
            "reported": self._reported[:n].astype("<i8").tobytes(),
        })

    @classmethod
    def from_bytes(cls, blob: bytes) -> "BudgetBook":
        snap = msgspec.msgpack.decode(blob)
        if not isinstance(snap, dict) or snap.get("version") != 1:
            raise ValueError("not a BudgetBook snapshot")
        book = cls(snap["policies"], retention_ms=snap["retention_ms"])
        book.intern(snap["names"])
        n, slots = len(snap["names"]), book._slot_start.shape[1]
        book._slot_start[:n] = np.frombuffer(snap["slot_start"], "<i8").reshape(n, slots)
        book._slot_end[:n] = np.frombuffer(snap["slot_end"], "<i8").reshape(n, slots)
        book._slot_spend[:n] = np.frombuffer(snap["slot_spend"], "<i8").reshape(n, slots)
        book._slot_flags[:n] = np.frombuffer(snap["slot_flags"], np.int8).reshape(n, slots)
        book._reported[:n] = np.frombuffer(snap["reported"], "<i8").reshape(n, 3)
        book._clock[0] = snap["clock"]
        book.expired_events = snap["expired_events"]
        return book

    def __repr__(self) -> str:
        return f"BudgetBook(customers={len(self._names)}, policies={len(self.policies)})"
