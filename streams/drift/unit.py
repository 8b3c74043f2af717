"""The drift unit: partition ``p`` of ``predictions`` and ``labels``.

Per micro-batch of predictions (all numeric work in numba, over every stream at once):

1. each event's features and prediction become observations of their streams (one stream per
   model, version and feature; the prediction is the stream ``prediction``) until the version's
   reference is complete, they are collected to build it;
2. :class:`~streams.drift.windows.WindowSet` fills every stream's tumbling window and counts
   nulls, type mismatches and out-of-range / unseen values in one kernel call; each completed window
   is scored against the reference with Evidently's default test (``data_drift`` /
   ``prediction_drift``) and checked for quality (``data_quality``);
3. the calibrated streaming detector bank (ADWIN by default) sees every numeric value, standardized
   by its stream's reference, in one call (``data_drift`` / ``prediction_drift``);
4. latencies go into per-version DDSketches over a sliding window (``latency_slo``);
5. predictions are remembered for the label join.

Per micro-batch of labels: join each label to its prediction, turn it into an error, feed the
per-version HDDM_W and HDDM_A banks (0/1 errors) or ADWIN (absolute errors) (``concept_drift``) and the
rolling accuracy / MAE (``accuracy_drop``). Labels for unknown, expired or already labelled
predictions are dead-lettered with the reason.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from detectors.adwin import ADWIN, ADWINBank
from detectors.hddm_a import HDDM_A, HDDM_ABank
from detectors.hddm_w import HDDM_W, HDDM_WBank
from detectors.kswin import KSWIN, KSWINBank
from detectors.page_hinkley import PageHinkley, PageHinkleyBank
from detectors.stats import score
from streams.alerts import AlertBook, Signal
from streams.config import Config, ModelOverrides
from streams.drift.accuracy import RollingError
from streams.drift.labels import PredictionStore
from streams.drift.latency import QUANTILES, LatencyWindow
from streams.drift.reference import CATEGORICAL, NUMERIC, StreamReference, category_of, infer_kind, is_number, load_reference_file
from streams.drift.windows import FLAGGED, MISMATCH, MISMATCHES, NULL, NULLS, VALUE, WindowSet
from streams.events import decode_batch
from streams.units import Admitted, Unit

PREDICTION = "prediction"
# Labels waiting for a prediction the predictions stream has not reached yet, at most.
MAX_PENDING_LABELS = 100_000
# A model or topic silent for this many stall periods is taken as retired.
STALL_FORGET = 10
P_VALUE_TESTS = frozenset({"ks", "chisquare", "z"})
STREAMING = {"adwin": (ADWIN, ADWINBank), "page_hinkley": (PageHinkley, PageHinkleyBank), "kswin": (KSWIN, KSWINBank)}
_NO_OVERRIDES = ModelOverrides()


def _bank(detector: type, bank: type):
    return bank(0, **detector.calibrated()._public_params())


def _overwhelming(result) -> bool:
    """Evidence no single noisy window gives: a distance twice the threshold, a p-value 100x below it."""
    if not result.drift_detected:
        return False
    if result.test in P_VALUE_TESTS:
        return result.drift_score <= result.threshold / 100
    return result.drift_score >= 2 * result.threshold


class _Waiting(NamedTuple):
    key: bytes | None
    value: bytes
    offset: int


@lru_cache(maxsize=4)
def _reference_file(path: str):
    return load_reference_file(Path(path))


class DriftUnit(Unit):
    prefix = "drift"
    kinds = {"predictions": "prediction", "labels": "label"}

    def __init__(self, partition: int, cfg: Config, metrics):
        super().__init__(partition, cfg, metrics)
        d = cfg.drift
        self.alerts = AlertBook(cfg.alerts, metrics)
        self.versions: list[tuple[str, str]] = []
        self.version_id: dict[tuple[str, str], int] = {}
        self.collecting: dict[int, list] = {}
        self.classes: list[dict[str, int]] = []  # per version: class label -> code
        self.label_kind: list[str | None] = []  # per version: "binary" or "numeric" once labels arrive
        self.streams: list[tuple[int, str]] = []
        self.stream_id: dict[tuple[int, str], int] = {}
        self.version_streams: list[list[int]] = []  # per version: its stream ids
        self.refs: list[StreamReference | None] = []
        # per stream: scored by the streaming detector, and the reference mean and std it is scaled by
        self.numeric = np.zeros(0, np.bool_)
        self.scale = np.zeros((0, 2), np.float64)
        self.drifting_windows: list[int] = []  # per stream: consecutive windows the test flagged
        max_window = max([d.window_size] + [o.window_size or 0 for o in d.models.values()])
        self.windows = WindowSet(max_window)
        self.streaming = _bank(*STREAMING[d.detector]) if d.detector != "none" else None
        self.predictions = PredictionStore(d.label_capacity, int(d.label_ttl_seconds * 1000))
        self.errors = RollingError(d.accuracy_window)
        # HDDM_W reacts fastest to a higher error rate, HDDM_A raises nearly no false alarm; DDM
        # calibrated to the same false-alarm rate is ~20x slower (benchmarks/RESULTS.md).
        self.error_detectors = {"hddm_w": _bank(HDDM_W, HDDM_WBank), "hddm_a": _bank(HDDM_A, HDDM_ABank),
                                "adwin": _bank(ADWIN, ADWINBank)}
        self.latency = LatencyWindow(int(d.latency_window_seconds * 1000))
        self.last_seen: dict[str, int] = {}  # "model:<name>" / "topic:<name>" -> wall ms
        # The join's watermark: a label newer than every prediction seen may still find its
        # prediction (the two topics are read independently), so it waits as
        # (event time, offset, key, value, wall ms it started waiting, prediction id).
        self.newest_prediction_ms = -(2**62)
        self.pending_labels: list[tuple[int, int, bytes | None, bytes, int, str]] = []
        self._now_ms = 0

    # -- catalog -----------------------------------------------------------------------------
    def overrides(self, model: str) -> ModelOverrides:
        return self.cfg.drift.models.get(model, _NO_OVERRIDES)

    def _new_version(self, model: str, version: str) -> int:
        vid = len(self.versions)
        self.versions.append((model, version))
        self.version_id[(model, version)] = vid
        self.classes.append({})
        self.label_kind.append(None)
        self.version_streams.append([])
        self.latency.add_version()
        self.errors.add_version()
        for bank in self.error_detectors.values():
            bank.add_streams(1)
        reference = self.cfg.drift.reference_path
        rows = _reference_file(str(self.cfg.path(reference))).get((model, version)) if reference else None
        if rows:
            self._build_reference(vid, rows)
        else:
            self.collecting[vid] = []
        return vid

    def _new_stream(self, vid: int, feature: str, ref: StreamReference | None) -> int:
        sid = len(self.streams)
        self.streams.append((vid, feature))
        self.stream_id[(vid, feature)] = sid
        self.version_streams[vid].append(sid)
        self.refs.append(ref)
        self.drifting_windows.append(0)
        self._index_stream(ref)
        window = self.overrides(self.versions[vid][0]).window_size or self.cfg.drift.window_size
        self.windows.add_stream(window)
        if self.streaming is not None:
            self.streaming.add_streams(1)
        return sid

    def _index_stream(self, ref: StreamReference | None) -> None:
        numeric = ref is not None and ref.kind == NUMERIC
        std = ref.summary.std if numeric and ref.summary.std > 0 else 1.0
        self.numeric = np.append(self.numeric, numeric)
        self.scale = np.vstack([self.scale, [[ref.summary.mean if numeric else 0.0, std]]])

    def _build_reference(self, vid: int, rows: list) -> None:
        model, _ = self.versions[vid]
        hints = self.overrides(model)
        ignored = set(hints.ignore_features)
        names = []
        for features, _ in rows:
            names.extend(n for n in features if n not in names and n not in ignored)
        tolerance = self.cfg.drift.range_tolerance
        columns = {name: [features.get(name) for features, _ in rows] for name in names}
        columns[PREDICTION] = [prediction for _, prediction in rows]
        for name, values in columns.items():
            kind = NUMERIC if name in hints.numeric else CATEGORICAL if name in hints.categorical else infer_kind(values)
            ref = StreamReference.build(values, kind, tolerance) if kind else None
            self._new_stream(vid, name, ref)

    # -- predictions -------------------------------------------------------------------------
    def apply(self, kind: str, admitted: Admitted, sink) -> list[tuple[int, str]]:
        self._now_ms = int(time.time() * 1000)
        topic = self.cfg.topics.predictions if kind == "prediction" else self.cfg.topics.labels
        self.last_seen[f"topic:{topic}"] = self._now_ms
        if kind == "prediction":
            self._predictions(admitted, sink)
            return []
        return self._labels(admitted, sink)

    def _predictions(self, admitted: Admitted, sink) -> None:
        """A batch of predictions, column by column: one comprehension per stream, numpy for the rest."""
        datas = [e.data for e in admitted.events]
        times = admitted.time_ms
        version_id = self.version_id
        keys = [(d.model, d.model_version) for d in datas]
        vids = np.fromiter((version_id.get(k, -1) for k in keys), np.int64, len(keys))
        for i in np.flatnonzero(vids < 0).tolist():
            vids[i] = version_id.get(keys[i], -1)
            if vids[i] < 0:
                vids[i] = self._new_version(*keys[i])
        for model in {k[0] for k in keys}:
            self.last_seen[f"model:{model}"] = self._now_ms
        predictions = [d.prediction for d in datas]
        numeric = np.fromiter((is_number(p) for p in predictions), np.bool_, len(predictions))
        codes = np.full(len(predictions), -1, np.int64)
        for i in np.flatnonzero(~numeric).tolist():
            classes = self.classes[vids[i]]
            codes[i] = classes.setdefault(str(predictions[i]), len(classes))
        values = np.where(numeric, [p if n else 0.0 for p, n in zip(predictions, numeric.tolist())], 0.0)
        self.predictions.put([e.id for e in admitted.events], vids, codes, values, times)
        self.newest_prediction_ms = max(self.newest_prediction_ms, int(times.max()))
        latency = np.array([math.nan if d.latency_ms is None else d.latency_ms for d in datas], np.float64)
        errors = np.fromiter((d.status == "error" for d in datas), np.bool_, len(datas))
        self._latency(vids, times, latency, errors, sink)
        columns = []
        for vid in np.unique(vids).tolist():
            at = np.flatnonzero(vids == vid)
            pending = self.collecting.get(vid)
            if pending is not None:
                room = self.cfg.drift.reference_size - len(pending)
                pending.extend((datas[i].features, predictions[i]) for i in at[:room].tolist())
                if len(pending) < self.cfg.drift.reference_size:
                    continue
                del self.collecting[vid]
                self._build_reference(vid, pending)
                at = at[room:]
                if not len(at):
                    continue
            columns.extend(self._columns(vid, at, datas, predictions, times))
        if columns:
            sids, kinds, obs, flags, obs_times = (np.concatenate(c) for c in zip(*columns))
            self._streaming(sids, kinds, obs, obs_times, sink)
            done = self.windows.push(sids, kinds, obs, flags)
            last_time = int(times.max())
            for sid, counters, window_values in zip(*done):
                self._window(int(sid), counters, window_values, last_time, sink)
        self._settle_labels(sink)

    def _columns(self, vid: int, at: np.ndarray, datas: list, predictions: list, times: np.ndarray):
        """Observations of every stream of one version: (stream ids, kinds, values, flags, times) per stream.

        A feature absent from an event is a null, like an explicit ``null``.
        """
        rows = at.tolist()
        features = [datas[i].features for i in rows]
        t = times[at]
        n = len(rows)
        for sid in self.version_streams[vid]:
            ref = self.refs[sid]
            if ref is None:
                continue
            name = self.streams[sid][1]
            column = [predictions[i] for i in rows] if name == PREDICTION else [f.get(name) for f in features]
            nulls = np.fromiter((v is None for v in column), np.bool_, n)
            if ref.kind == NUMERIC:
                # The codec refuses non-finite numbers, so NaN marks "not a number" here.
                values = np.fromiter((v if type(v) is float else math.nan for v in column), np.float64, n)
                valid = ~np.isnan(values)
                flags = valid & ((values < ref.low) | (values > ref.high))
                values[~valid] = 0.0
            else:
                categories = [category_of(v) for v in column]
                valid = np.fromiter((c is not None for c in categories), np.bool_, n)
                code = ref.code
                values = np.fromiter((code(c) if c is not None else 0 for c in categories), np.float64, n)
                flags = valid & (values >= ref.n_reference)
            kinds = np.where(valid, VALUE, np.where(nulls, NULL, MISMATCH)).astype(np.int64)
            yield np.full(n, sid, np.int64), kinds, values, flags, t

    def _streaming(self, sids, kinds, values, times, sink) -> None:
        if self.streaming is None:
            return
        numeric = (kinds == VALUE) & self.numeric[sids]
        if not numeric.any():
            return
        s, v, t = sids[numeric], values[numeric], times[numeric]
        standardized = (v - self.scale[s, 0]) / self.scale[s, 1]
        hit_streams, hit_index = self.streaming.update_many(s, standardized)
        detector = self.cfg.drift.detector
        for sid, i in zip(hit_streams.tolist(), hit_index.tolist()):
            vid, feature = self.streams[sid]
            model, version = self.versions[vid]
            self.metrics.drift_detected(model, version, feature, detector).inc()
            self._drift(sid, detector, float(standardized[i]), 0.0, int(t[i]),
                        f"{detector} detected a change in {feature} of {model} v{version}", sink)

    def _drift(self, sid: int, detector: str, value: float, threshold: float, t_ms: int, summary: str, sink) -> None:
        vid, feature = self.streams[sid]
        model, version = self.versions[vid]
        if feature == PREDICTION:
            kind, key, feature_label = "prediction_drift", f"prediction_drift|{model}|{version}", None
        else:
            kind, key, feature_label = "data_drift", f"data_drift|{model}|{version}|{feature}", feature
        self._signal(Signal(kind=kind, dedup_key=key, subject=model, model=model, model_version=version,
                            feature=feature_label, detector=detector, value=value, threshold=threshold,
                            event_time_ms=t_ms, summary=summary), sink)

    def _window(self, sid: int, counters, window_values, t_ms: int, sink) -> None:
        vid, feature = self.streams[sid]
        model, version = self.versions[vid]
        ref = self.refs[sid]
        filled = int(counters[0])
        n_values = int(counters[1])
        null_ratio = counters[NULLS] / filled
        self.metrics.feature_null_ratio(model, version, feature).set(null_ratio)
        values = window_values[:n_values]
        if n_values:
            window = values if ref.kind == NUMERIC else ref.window_counts(values)
            result = score(ref.summary, window)
            self.metrics.drift_statistic(model, version, feature, result.test).set(result.drift_score)
            self.drifting_windows[sid] = self.drifting_windows[sid] + 1 if result.drift_detected else 0
            if result.drift_detected:
                self.metrics.drift_detected(model, version, feature, result.test).inc()
            if self.drifting_windows[sid] >= self.cfg.drift.confirm_windows or _overwhelming(result):
                self._drift(sid, result.test, result.drift_score, result.threshold, t_ms,
                            f"{feature} of {model} v{version} drifted from its reference: "
                            f"{result.test} {result.drift_score:.4g} vs threshold {result.threshold:g} "
                            f"in {self.drifting_windows[sid]} consecutive windows", sink)
        self._quality(model, version, feature, ref, null_ratio, counters, filled, t_ms, sink)

    def _quality(self, model, version, feature, ref, null_ratio, counters, filled, t_ms, sink) -> None:
        d = self.cfg.drift
        o = self.overrides(model)
        checks = [
            ("null_ratio", null_ratio - ref.null_ratio, o.null_ratio_max if o.null_ratio_max is not None else d.null_ratio_max),
            ("type_mismatch", counters[MISMATCHES] / filled, d.type_mismatch_max),
            ("out_of_range" if ref.kind == NUMERIC else "unseen_category", counters[FLAGGED] / filled,
             d.out_of_range_max if ref.kind == NUMERIC else d.unseen_category_max),
        ]
        for check, value, limit in checks:
            if value > limit:
                self._signal(Signal(
                    kind="data_quality", dedup_key=f"data_quality|{model}|{version}|{feature}|{check}",
                    subject=model, model=model, model_version=version, feature=None if feature == PREDICTION else feature,
                    detector=check, value=float(value), threshold=float(limit), event_time_ms=t_ms,
                    summary=f"{check.replace('_', ' ')} of {feature} of {model} v{version} is {value:.3f} "
                            f"(limit {limit:g}) over the last {filled} events"), sink)

    def _latency(self, vids, times, latency_ms, errors, sink) -> None:
        self.latency.add(vids, times, latency_ms, errors)
        last_time = int(times.max())
        for vid in np.unique(vids).tolist():
            model, version = self.versions[vid]
            ratio = self.latency.error_ratio(vid)
            if ratio is not None:
                self.metrics.prediction_errors(model, version).set(ratio)
            found = self.latency.quantiles(vid)
            if found is None:
                continue
            quantiles, count = found
            for q, value in zip(QUANTILES, quantiles.tolist()):
                self.metrics.prediction_latency(model, version, str(q)).set(value)
            slo = self.overrides(model).latency_slo_ms or self.cfg.drift.latency_slo_ms
            p99_ms = quantiles[-1] * 1000.0
            if slo is not None and count >= 100 and p99_ms > slo:
                self._signal(Signal(
                    kind="latency_slo", dedup_key=f"latency_slo|{model}|{version}", subject=model, model=model,
                    model_version=version, detector="ddsketch_p99", value=p99_ms, threshold=float(slo),
                    event_time_ms=last_time,
                    summary=f"p99 latency of {model} v{version} is {p99_ms:.0f} ms over the last "
                            f"{count} predictions (SLO {slo:g} ms)"), sink)

    # -- labels ------------------------------------------------------------------------------
    def _labels(self, admitted: Admitted, sink, defer: bool = True) -> list[tuple[int, str | None]]:
        events = admitted.events
        found, vids, codes, values, _ = self.predictions.take([e.data.prediction_id for e in events])
        rejected, keep_vid, keep_err, keep_time = [], [], [], []
        for i, event in enumerate(events):
            label = event.data.label
            t = int(admitted.time_ms[i])
            if not found[i] and defer and t > self.newest_prediction_ms and len(self.pending_labels) < MAX_PENDING_LABELS:
                record = admitted.records[i]
                self.pending_labels.append((t, record.offset, record.key, record.value, self._now_ms,
                                            event.data.prediction_id))
                rejected.append((i, None))
                continue
            if not found[i]:
                rejected.append((i, f"data.prediction_id: no prediction {event.data.prediction_id!r} is waiting "
                                    f"for a label (unknown, already labelled, or older than "
                                    f"{self.cfg.drift.label_ttl_seconds:g} s)"))
                continue
            vid = int(vids[i])
            if self.versions[vid][0] != event.data.model:
                rejected.append((i, f"data.model: the prediction is of model {self.versions[vid][0]!r}, "
                                    f"not {event.data.model!r}"))
                continue
            error, kind = self._error(vid, int(codes[i]), float(values[i]), label)
            if error is None:
                rejected.append((i, kind))
                continue
            if self.label_kind[vid] is None:
                self.label_kind[vid] = kind
            elif self.label_kind[vid] != kind:
                rejected.append((i, f"data.label: expected a {self.label_kind[vid]} label like the earlier "
                                    f"labels of {event.data.model} v{self.versions[vid][1]}, got {label!r}"))
                continue
            keep_vid.append(vid)
            keep_err.append(error)
            keep_time.append(int(admitted.time_ms[i]))
        if keep_vid:
            self._errors(np.array(keep_vid, np.int64), np.array(keep_err, np.float64), np.array(keep_time, np.int64), sink)
        return rejected

    def _settle_labels(self, sink, waited_since_ms: int | None = None) -> None:
        """Settle the waiting labels whose prediction has arrived, those the predictions stream has
        passed (a prediction precedes its label), and those waiting since before ``waited_since_ms``."""
        if not self.pending_labels:
            return
        newest, cutoff = self.newest_prediction_ms, -(2**62) if waited_since_ms is None else waited_since_ms
        arrived = self.predictions.contains([p[5] for p in self.pending_labels]).tolist()
        done = [a or p[0] <= newest or p[4] < cutoff for p, a in zip(self.pending_labels, arrived)]
        if not any(done):
            return
        ready = [p for p, d in zip(self.pending_labels, done) if d]
        self.pending_labels = [p for p, d in zip(self.pending_labels, done) if not d]
        self.dirty = True
        ready.sort(key=lambda p: p[1])
        records = [_Waiting(p[2], p[3], p[1]) for p in ready]
        events, _ = decode_batch("label", [r.value for r in records])
        admitted = Admitted(records, np.array([r.offset for r in records], np.int64),
                            np.array([p[0] for p in ready], np.int64), events)
        topic = self.cfg.topics.labels
        rejected = self._labels(admitted, sink, defer=False)
        for i, reason in rejected:
            r = records[i]
            sink.dead_letter(topic, self.partition, r.offset, r.key, reason, r.value)
        if rejected:
            self.metrics.events(topic, "invalid").inc(len(rejected))
        if len(records) > len(rejected):
            self.metrics.events(topic, "processed").inc(len(records) - len(rejected))

    def _error(self, vid: int, code: int, value: float, label) -> tuple[float | None, str]:
        """(error, "binary"|"numeric"), or (None, reason) when label and prediction do not match."""
        if code >= 0:
            if type(label) is not str:
                return None, f"data.label: expected a class label (string) like the prediction, got {label!r}"
            return float(self.classes[vid].get(label, -1) != code), "binary"
        if not is_number(label):
            return None, f"data.label: expected a number like the prediction, got {label!r}"
        if label in (0, 1) and 0.0 <= value <= 1.0:
            return float((value >= 0.5) != bool(label)), "binary"
        return abs(value - label), "numeric"

    def _errors(self, vids, errors, times, sink) -> None:
        self.errors.push(vids, errors)
        binary = np.array([self.label_kind[v] == "binary" for v in vids.tolist()], np.bool_)
        for name, bank in self.error_detectors.items():
            mask = binary if name != "adwin" else ~binary
            if not mask.any():
                continue
            hit_streams, hit_index = bank.update_many(vids[mask], errors[mask])
            t = times[mask]
            for vid, i in zip(hit_streams.tolist(), hit_index.tolist()):
                model, version = self.versions[vid]
                self.metrics.drift_detected(model, version, "error", name).inc()
                self._signal(Signal(
                    kind="concept_drift", dedup_key=f"concept_drift|{model}|{version}", subject=model,
                    model=model, model_version=version, detector=name, value=float(self.errors.mean(vid)),
                    threshold=0.0, event_time_ms=int(t[i]),
                    summary=f"{name} detected a change in the error rate of {model} v{version}"), sink)
        last = int(times.max())
        for vid in np.unique(vids).tolist():
            self._accuracy(vid, last, sink)

    def _accuracy(self, vid: int, t_ms: int, sink) -> None:
        model, version = self.versions[vid]
        mean = self.errors.mean(vid)
        binary = self.label_kind[vid] == "binary"
        if binary:
            self.metrics.accuracy(model, version).set(1.0 - mean)
        else:
            self.metrics.mae(model, version).set(mean)
        if not self.errors.full(vid):
            return
        o, d = self.overrides(model), self.cfg.drift
        floor = o.accuracy_floor if o.accuracy_floor is not None else d.accuracy_floor
        drop = o.accuracy_drop if o.accuracy_drop is not None else d.accuracy_drop
        reference = self.errors.reference_mean(vid)
        if binary:
            accuracy = 1.0 - mean
            limits = [floor] if floor is not None else []
            if reference is not None:
                limits.append(1.0 - reference - drop)
            limit = max(limits) if limits else None
            bad = limit is not None and accuracy < limit
            value, what = accuracy, "accuracy"
        else:
            limit = None if reference is None else reference * (1.0 + drop)
            bad = limit is not None and mean > limit
            value, what = mean, "mean absolute error"
        if bad:
            self._signal(Signal(
                kind="accuracy_drop", dedup_key=f"accuracy_drop|{model}|{version}", subject=model, model=model,
                model_version=version, detector="rolling_" + ("accuracy" if binary else "mae"), value=value,
                threshold=limit, event_time_ms=t_ms,
                summary=f"{what} of {model} v{version} is {value:.3f} over the last {self.errors.window} labels "
                        f"(limit {limit:.3f})"), sink)

    # -- alerts and timers ---------------------------------------------------------------------
    def _signal(self, signal: Signal, sink) -> None:
        if self.alerts.signal(signal, self._now_ms, sink):
            self.urgent = True

    def tick(self, now_ms: int, sink, caught_up: bool = False) -> None:
        self._now_ms = now_ms
        stall_ms = self.cfg.drift.stall_seconds * 1000
        # A model silent this long was retired: forget it, so its stall alert resolves.
        for name in [n for n, last in self.last_seen.items() if now_ms - last > STALL_FORGET * stall_ms]:
            del self.last_seen[name]
        for name, last in self.last_seen.items():
            if now_ms - last > stall_ms:
                what, _, value = name.partition(":")
                self._signal(Signal(
                    kind="pipeline_stall", dedup_key=f"pipeline_stall|{what}|{value}|{self.partition}",
                    subject=value, model=value if what == "model" else None, detector="silence",
                    value=(now_ms - last) / 1000.0, threshold=stall_ms / 1000.0, event_time_ms=last,
                    summary=f"{what} {value} (partition {self.partition}) has been silent for "
                            f"{(now_ms - last) / 1000:.0f} s"), sink)
        # A label that waited the stall time for its prediction will not find it.
        self._settle_labels(sink, waited_since_ms=now_ms - stall_ms)
        if self.alerts.sweep(now_ms, sink):
            self.urgent = True

    # -- checkpoint ----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "versions": [list(v) for v in self.versions],
            "collecting": {str(k): [[f, p] for f, p in v] for k, v in self.collecting.items()},
            "classes": self.classes,
            "label_kind": self.label_kind,
            "streams": [list(s) for s in self.streams],
            "refs": [r.state() if r is not None else None for r in self.refs],
            "drifting_windows": self.drifting_windows,
            "windows": self.windows.state(),
            "streaming": self.streaming.to_bytes() if self.streaming is not None else None,
            "predictions": self.predictions.state(),
            "errors": self.errors.state(),
            "error_detectors": {k: b.to_bytes() for k, b in self.error_detectors.items()},
            "latency": self.latency.state(),
            "last_seen": self.last_seen,
            "newest_prediction_ms": self.newest_prediction_ms,
            "pending_labels": [list(p) for p in self.pending_labels],
            "alerts": self.alerts.state(),
        }

    def _restore_state(self, state: dict) -> None:
        self.versions = [tuple(v) for v in state["versions"]]
        self.version_id = {v: i for i, v in enumerate(self.versions)}
        self.collecting = {int(k): [tuple(x) for x in v] for k, v in state["collecting"].items()}
        self.classes = state["classes"]
        self.label_kind = state["label_kind"]
        self.streams = [tuple(s) for s in state["streams"]]
        self.stream_id = {s: i for i, s in enumerate(self.streams)}
        self.version_streams = [[] for _ in self.versions]
        for sid, (vid, _) in enumerate(self.streams):
            self.version_streams[vid].append(sid)
        self.refs = [StreamReference.from_state(r) if r is not None else None for r in state["refs"]]
        self.drifting_windows = list(state["drifting_windows"])
        self.numeric = np.zeros(0, np.bool_)
        self.scale = np.zeros((0, 2), np.float64)
        for ref in self.refs:
            self._index_stream(ref)
        self.windows = WindowSet.from_state(state["windows"])
        if state["streaming"] is not None:
            self.streaming = type(self.streaming).from_bytes(state["streaming"])
        self.predictions = PredictionStore.from_state(state["predictions"])
        self.errors = RollingError.from_state(state["errors"])
        self.error_detectors = {k: type(self.error_detectors[k]).from_bytes(b) for k, b in state["error_detectors"].items()}
        self.latency = LatencyWindow.from_state(state["latency"])
        # Silence is measured from now: the worker's own downtime is not the models' silence.
        now = int(time.time() * 1000)
        self.last_seen = {name: now for name in state["last_seen"]}
        self.newest_prediction_ms = state["newest_prediction_ms"]
        self.pending_labels = [tuple(p) for p in state["pending_labels"]]
        self.alerts.restore(state["alerts"])
