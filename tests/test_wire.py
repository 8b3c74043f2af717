"""The cost path's wire scanner against msgspec: every record it reads, msgspec reads to the same
values; what it cannot read it leaves to msgspec; a cost unit gives the same outputs either way."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.config import load_config
from streams.costs import unit as cost_unit
from streams.costs.keys import KeyIndex
from streams.costs.unit import CostUnit
from streams.costs.wire import COST_PICO, NO_COST, TIME_MS, TOKENS, UsageColumns, scan_usage
from streams.dedup import fingerprints
from streams.events import MAX_EVENT_BYTES, ContractError, decode_usage
from streams.costs.money import to_pico
from streams.metrics import Metrics
from streams.producer import EventBuilder
from streams.sink import Sink
from tests.test_events import DATA_INVALID, ENVELOPE_INVALID, RAW_INVALID, VALID, dumps, raw_with, with_changes

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                "reasoning_output_tokens")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def check_against_msgspec(raw, key: bytes | None) -> bool:
    """Scan one record; when the scan reads it, msgspec must read it to the same values.
    Returns whether the scan read it."""
    columns = scan_usage([raw], [key], MAX_EVENT_BYTES)
    if not columns.ok[0]:
        return False
    event = decode_usage(raw)  # raises if the scan accepted what msgspec refuses
    assert key == event.subject.encode()
    ints = columns.ints[0].tolist()
    assert ints[TIME_MS] == (event.time - _EPOCH) // dt.timedelta(milliseconds=1)
    assert ints[TOKENS:TOKENS + 5] == [getattr(event.data, f) for f in TOKEN_FIELDS]
    assert ints[COST_PICO] == (NO_COST if event.data.cost_usd is None else to_pico(event.data.cost_usd))
    assert columns.keys([0]) == [(event.subject, event.data.model, event.data.feature)]
    expected = np.concatenate([fingerprints([event.source], [event.id]),
                               fingerprints([event.subject], [event.data.model], [event.data.feature])]).ravel()
    assert columns.fingerprints[0].tolist() == expected.tolist()
    return True


def usage_raw(**changes) -> bytes:
    return raw_with("usage", **changes)


@pytest.mark.nojit
def test_the_contract_example_and_sdk_records_are_read_here():
    assert check_against_msgspec(usage_raw(), b"acme")
    record = EventBuilder("gw/eu-1").usage(customer="acme", model="gpt-4o-mini", input_tokens=1200,
                                           output_tokens=300, cache_read_input_tokens=1000, feature="chat",
                                           cost_usd="0.000321")
    assert check_against_msgspec(record.value, record.key)


@pytest.mark.parametrize(("kind", "changes", "attribute", "expected"), [v for v in VALID if v[0] == "usage"])
def test_valid_contract_cases_agree(kind, changes, attribute, expected):
    check_against_msgspec(dumps(with_changes(kind, changes)), b"acme")


@pytest.mark.parametrize("case", [*ENVELOPE_INVALID, *[c[1:] for c in DATA_INVALID if c[0] == "usage"], *RAW_INVALID],
                         ids=lambda c: repr(c)[:50])
def test_invalid_contract_cases_are_left_to_msgspec(case):
    changes = case[0]
    raw = changes if isinstance(changes, (bytes, type(None))) else dumps(with_changes("usage", changes))
    with pytest.raises((ContractError, TypeError)):
        decode_usage(raw)
    assert not scan_usage([raw], [b"acme"], MAX_EVENT_BYTES).ok[0]


@pytest.mark.nojit
@pytest.mark.parametrize(("text", "read"), [
    ("2026-11-22T03:00:00Z", True), ("2026-11-22T03:00:00.5Z", True), ("2026-11-22T03:00:00.123456Z", True),
    ("2026-11-22T03:00:00.1234567Z", False),  # msgspec rounds beyond microseconds
    ("2026-11-22T03:00:00+05:30", True), ("2026-11-22T03:00:00-00:00", True), ("1970-01-01T00:30:00+01:00", False),
    ("2024-02-29T23:59:59.999Z", True), ("2026-02-29T00:00:00Z", False), ("2026-11-22t03:00:00z", False),
    ("2026-11-22 03:00:00Z", False), ("2026-11-22T03:00:00", False), ("2026-11-22T24:00:00Z", False),
    ("2026-11-22T03:00:60Z", False), ("2026-11-22T03:00:00+24:00", False), ("1969-12-31T23:59:59Z", False),
    ("9999-12-31T23:59:59.999999+00:01", True), ("2026-13-01T00:00:00Z", False), ("2026-11-22T03:00:00.Z", False),
])
def test_times(text, read):
    assert check_against_msgspec(usage_raw(time=text), b"acme") is read


@pytest.mark.nojit
@pytest.mark.parametrize(("cost", "read"), [
    ("0", True), ("0.000321", True), ("999999.999999999999", True), ("12", True), (None, True),
    ("1000000", False), ("0.0000000000001", False), ("01", False), ("1.", False), (".5", False), ("1e-3", False),
    (0.5, False), ("", False), (" 1", False),
])
def test_costs(cost, read):
    read_here = check_against_msgspec(usage_raw(data__cost_usd=cost), b"acme")
    assert read_here is read


@pytest.mark.nojit
@pytest.mark.parametrize("raw", [
    usage_raw().replace(b'"acme"', b'"ac\\u006de"'),  # an escape
    usage_raw(data__extension="x"),  # a field the contract does not name
    usage_raw().replace(b'"data":{', b'"data":{"model":"x",'),  # a field given twice
    usage_raw(data__input_tokens=1200.0), usage_raw().replace(b"1200", b"01200"), usage_raw().replace(b"1200", b"-0"),
    usage_raw(data__feature=None), usage_raw(data__input_tokens=None), usage_raw(subject="é"),
])
def test_unusual_forms_are_left_to_msgspec(raw):
    assert not check_against_msgspec(raw, b"acme")


@pytest.mark.nojit
def test_whitespace_and_field_order_are_read():
    doc = json.loads(usage_raw())
    raw = json.dumps(dict(reversed(list(doc.items()))), indent=2).encode()
    assert check_against_msgspec(raw, b"acme")


@pytest.mark.nojit
def test_keys_must_be_the_subject():
    assert not scan_usage([usage_raw()], [None], MAX_EVENT_BYTES).ok[0]
    assert not scan_usage([usage_raw()], [b"acm"], MAX_EVENT_BYTES).ok[0]
    assert not scan_usage([None, b""], [b"acme", b"acme"], MAX_EVENT_BYTES).ok.any()


@pytest.mark.nojit
def test_the_key_index_keeps_ids_as_it_grows():
    rng = np.random.default_rng(1)
    hi, lo = rng.integers(-2**63, 2**63 - 1, (2, 5000), dtype=np.int64)
    index = KeyIndex(capacity=4)
    first = index.insert(hi[:3000], lo[:3000])
    assert first.tolist() == list(range(3000))
    again = index.insert(hi, lo)  # grows past its capacity on the way
    assert again.tolist() == list(range(5000)) and len(index) == 5000
    assert index.lookup(hi[::-1], lo[::-1]).tolist() == list(range(4999, -1, -1))
    assert index.lookup(lo[:2], hi[:2]).tolist() == [-1, -1]


JSON_BYTES = st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b" ", b"0", b"9", b"-", b".", b"e",
                              b"null", b"Z", b"T", b"+", b"a", b"\x00", b"\xc3\xa9", b"\x7f"])


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_records_are_read_as_msgspec_reads_them(data):
    raw = bytearray(usage_raw(data__cost_usd="0.5", data__feature="chat"))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        cut = data.draw(st.integers(0, 3))
        raw[at:at + cut] = data.draw(JSON_BYTES)
    raw = bytes(raw)
    if check_against_msgspec(raw, b"acme"):
        return
    try:  # left to msgspec: fine whatever it says, as long as the scan said nothing
        decode_usage(raw)
    except ContractError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)), min_size=1, max_size=1),
       st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 12, 30)),
       st.integers(-1439, 1439), st.integers(0, 6))
def test_generated_values_agree(tokens, when, offset, places):
    total, part = tokens[0]
    when = when.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset)))
    text = when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{when.microsecond:06d}"[: places + 1] if places else "")
    text += when.strftime("%z")[:3] + ":" + when.strftime("%z")[3:]
    raw = usage_raw(time=text, data__input_tokens=max(total, part), data__cache_read_input_tokens=min(total, part))
    assert check_against_msgspec(raw, b"acme") is (when.astimezone(dt.timezone.utc).year >= 1970)


# ---------------------------------------------------------------------------------------------
# A cost unit reads a batch to the same outputs with the scan as without it.

def _records(count: int, seed: int):
    from collections import namedtuple

    from streams.simulate import Simulation

    Record = namedtuple("Record", "key value offset")
    sim = Simulation(models=1, customers=40, count=count, seed=seed, start="2026-01-01T00:00:00Z", usage_share=1.0,
                     scenarios=["duplicates:rate=0.05", "malformed:rate=0.05"])
    records = [m for m in sim.events() if m.topic == "usage"]
    rng = np.random.default_rng(seed)
    out = []
    for i, m in enumerate(records):
        value = m.value
        if value and rng.random() < 0.1:  # the same event in a form the scan leaves to msgspec
            value = value.replace(b'"source":"', b'"source":"\\u0067', 1) if b'"source":"' in value else value
        out.append(Record(m.key, value, i))
    return out


def _run(records, monkeypatch, scan: bool):
    # statuses go out by the wall clock: both runs see the same one
    monkeypatch.setattr(cost_unit.time, "time", lambda: 1_800_000_000.0)
    if not scan:
        def nothing_read(values, keys, max_bytes):
            n = len(values)
            return UsageColumns(np.zeros(n, np.bool_), np.zeros((n, 7), np.int64), np.zeros((n, 6), np.int64),
                                np.zeros((n, 4), np.int64), b"")
        monkeypatch.setattr(cost_unit, "scan_usage", nothing_read)
    cfg = load_config("driftmeter.toml")
    unit = CostUnit(0, cfg, Metrics())
    sink = Sink(cfg.topics)
    for start in range(0, len(records), 700):
        unit.process(cfg.topics.usage, records[start:start + 700], sink)
    unit.tick(2**41, sink, caught_up=True)
    monkeypatch.undo()
    return sink.pending, unit.keys, unit.windows.to_bytes()


def test_a_cost_unit_gives_the_same_outputs_with_and_without_the_scan(monkeypatch):
    records = _records(6000, seed=3)
    scanned = _run(records, monkeypatch, scan=True)
    assert scanned == _run(records, monkeypatch, scan=False)
    assert len(scanned[0]) > 100
