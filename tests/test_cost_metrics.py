"""The cost unit's counters: customers capped to the top-N spenders plus ``__other__``, sums exact."""

from __future__ import annotations

from collections import namedtuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.config import load_config
from streams.costs.unit import CostUnit
from streams.metrics import OTHER, Metrics, TopCustomers
from streams.producer import EventBuilder
from streams.sink import Sink

Record = namedtuple("Record", "key value offset")


def samples(metrics: Metrics, name: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition()[0].decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def usage(builder: EventBuilder, customer: str, tokens: int, offset: int) -> Record:
    message = builder.usage(customer=customer, model="gpt-4o-mini", input_tokens=tokens, output_tokens=0,
                            feature="chat", time="2026-11-22T03:00:00Z")
    return Record(message.key, message.value, offset)


def test_the_top_spenders_get_labels_and_the_rest_is_other():
    cfg = load_config("driftmeter.toml")
    metrics = Metrics(top_customers=2)
    unit = CostUnit(0, cfg, metrics)
    builder = EventBuilder("gw")
    # gpt-4o-mini input: 0.15 USD per million tokens
    spend = {"big": 4_000_000, "bigger": 8_000_000, "small": 1_000_000, "tiny": 10}
    records = [usage(builder, customer, tokens, i) for i, (customer, tokens) in enumerate(spend.items())]
    unit.process(cfg.topics.usage, records, Sink(cfg.topics))
    cost = samples(metrics, "driftmeter_cost_usd_total")
    by_customer = {dict(labels)["customer"]: value for labels, value in cost.items()}
    assert by_customer == pytest.approx({"bigger": 1.2, "big": 0.6, OTHER: 0.15 + 0.0000015})
    # later spend of a labelled customer keeps its label; a newcomer's goes to __other__ until re-ranked
    unit.process(cfg.topics.usage, [usage(builder, "big", 1_000_000, 4), usage(builder, "huge", 90_000_000, 5)],
                 Sink(cfg.topics))
    by_customer = {dict(labels)["customer"]: value for labels, value in samples(metrics, "driftmeter_cost_usd_total").items()}
    assert by_customer == pytest.approx({"bigger": 1.2, "big": 0.75, OTHER: 0.15 + 0.0000015 + 13.5})
    tokens = samples(metrics, "driftmeter_tokens_total")
    assert tokens[(("customer", "big"), ("model", "gpt-4o-mini"), ("type", "input"))] == 5_000_000


def test_labels_stay_until_twice_n_then_the_smallest_are_demoted():
    top = TopCustomers(2)
    top.offer("cost/0", ["a", "b"], [10, 9])
    generation = top.generation
    top.offer("cost/1", ["c", "d"], [50, 40])  # a and b keep their labels: 4 <= 2n
    assert top.labelled == {"a", "b", "c", "d"} and top.generation > generation
    top.offer("cost/2", ["e"], [60])  # 5 > 2n: the top n stay
    assert top.labelled == {"e", "c"}


def test_demoted_customers_lose_their_series_so_labels_stay_bounded():
    metrics = Metrics(top_customers=2)
    for round_ in range(20):  # a new biggest spender every round: 20 customers come and go
        for customer in (f"c{round_}", f"d{round_}"):
            metrics.cost_usd(customer, "m", "f").inc(1)
            metrics.tokens(customer, "m", "input").inc(1)
        metrics.offer_top_customers("cost/0", [f"c{round_}", f"d{round_}"], [100 * round_ + 2, 100 * round_ + 1])
    for name in ("driftmeter_cost_usd_total", "driftmeter_tokens_total"):
        customers = {dict(labels)["customer"] for labels in samples(metrics, name)}
        assert customers <= metrics.top_customers.labelled and len(customers) <= 4
    assert {"c19", "d19"} <= metrics.top_customers.labelled
    assert not samples(metrics, "driftmeter_cost_usd_created")  # no *_created series
