"""The node's metrics in the Prometheus text exposition format 0.0.4, and `GET /metrics`.

One `Registry` per node, passed to the services that count (never global: several nodes share a test process).
Services either own counters made here, or keep their plain `stats` dataclasses, which `add_stats` renders. A
family whose read fails is left out of that scrape alone, logged and counted (`Registry.render`).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from gossip.stats import HELP
from vouching import Record

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "vouchnet_"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

LabelValues = tuple[str, ...]
Sample = tuple[str, LabelValues, float]  # (name suffix, label values, value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**63 else repr(float(value))


class _Family:
    """One metric family: name, help, type, label names, and where its samples come from."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"metric name {name!r}: must match {_NAME.pattern}")
        for label in labels:
            if not _LABEL.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(f"metric {name}: label name {label!r} is not allowed")
        self.name, self.help, self.labels = name, help, tuple(labels)

    def _key(self, labels: Mapping[str, str]) -> LabelValues:
        if labels.keys() != set(self.labels):
            raise ValueError(f"metric {self.name}: labels must be exactly {', '.join(self.labels) or 'none'}")
        return tuple(str(labels[name]) for name in self.labels)

    def samples(self) -> Iterable[Sample]:
        raise NotImplementedError

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {_escape_help(self.help)}")
        out.append(f"# TYPE {self.name} {self.kind}")
        for suffix, values, value in self.samples():
            pairs = list(zip(self.labels, values)) if suffix != "_bucket" else list(zip((*self.labels, "le"), values))
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs)
            out.append(f"{self.name}{suffix}{{{label_text}}} {_number(value)}" if pairs else
                       f"{self.name}{suffix} {_number(value)}")


Known = Iterable[str] | Iterable[LabelValues]  # a closed set of a counter's label values (a tuple: one per label)


class Counter(_Family):
    """A monotonically increasing count, by label values; those of `known` (a closed set: a one-label counter's
    values, or tuples of each label's) are exported at 0 from the start, as Prometheus's instrumentation guidance
    asks, so that rate() and increase() see their first event."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), known: Known = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {} if labels else {(): 0.0}
        for values in known:
            key = (values,) if isinstance(values, str) else tuple(values)
            if len(key) != len(self.labels) or not self.labels:
                raise ValueError(f"metric {name}: known label values {key} do not match its labels {self.labels}")
            self._values[key] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name}: cannot decrease")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[Sample]:
        return (("", key, value) for key, value in sorted(self._values.items()))


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)


class Histogram(_Family):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError(f"histogram {name}: buckets must be increasing")
        self.buckets = tuple(buckets)
        self._series: dict[LabelValues, list[float]] = {}  # per bucket counts (+Inf last), then sum

    def observe(self, value: float, **labels: str) -> None:
        self.observe_many((value,), **labels)

    def observe_many(self, values: Iterable[float], **labels: str) -> None:
        """`observe` each value in turn, the labels checked once (a listener observes every record of a batch)."""
        key = self._key(labels)
        series, buckets = self._series.get(key), self.buckets
        for value in values:
            if series is None:  # (a series starts at its first observation)
                series = self._series[key] = [0.0] * (len(buckets) + 2)
            series[bisect.bisect_left(buckets, value)] += 1
            series[-1] += value

    def samples(self) -> Iterable[Sample]:
        for key, series in sorted(self._series.items()):
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), series):
                running += count
                yield "_bucket", (*key, "+Inf" if math.isinf(bound) else repr(float(bound))), running
            yield "_sum", key, series[-1]
            yield "_count", key, running


class _Collected(_Family):
    """Samples read at scrape time from a function."""

    def __init__(self, name: str, help: str, kind: str, labels: Sequence[str], read: Callable[[], Any]) -> None:
        super().__init__(name, help, labels)
        self.kind, self._read = kind, read

    def samples(self) -> Iterable[Sample]:
        value = self._read()
        if isinstance(value, Mapping):
            return (("", key if isinstance(key, tuple) else (str(key),), float(v)) for key, v in sorted(value.items()))
        return [("", (), float(value))]


class Registry:
    """The metric families of one node, rendered together."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._collect_errors = self.counter(
            "metrics_collect_errors_total", "Scrapes that left a metric out as reading it failed (logged with the "
            "error), by metric: its alerts see no data meanwhile, the other metrics are served", ("metric",))

    def _add(self, family: _Family) -> Any:
        if family.name in self._families:
            raise ValueError(f"metric {family.name}: registered twice")
        self._families[family.name] = family
        if isinstance(family, _Collected):  # (read at each scrape: it may fail)
            self._collect_errors.inc(0, metric=family.name)
        return family

    def counter(self, name: str, help: str, labels: Sequence[str] = (), known: Known = ()) -> Counter:
        return self._add(Counter(PREFIX + name, help, labels, known))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(PREFIX + name, help, labels))

    def histogram(self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> Histogram:
        return self._add(Histogram(PREFIX + name, help, buckets, labels))

    def collect(
        self, name: str, help: str, read: Callable[[], float | Mapping[Any, float]], *,
        kind: str = "gauge", labels: Sequence[str] = (),
    ) -> None:
        """A family read at scrape time: `read()` gives a number, or a map from label values to numbers."""
        if kind not in ("gauge", "counter"):
            raise ValueError(f"metric {name}: kind must be gauge or counter")
        self._add(_Collected(PREFIX + name, help, kind, labels, read))

    def add_stats(
        self, prefix: str, stats: Callable[[], Any] | Any, *, gauges: Iterable[str] = (), label: str = "reason"
    ) -> None:
        """Render a service's stats dataclass (or a function returning one) at every scrape.

        Each int or float field `f` becomes `vouchnet_<prefix>_<f>_total` (a counter), or `vouchnet_<prefix>_<f>`
        if `f` is in `gauges`; a dict field of numbers becomes one family with the dict key as `label`; a nested
        dataclass field recurses with prefix `<prefix>_<f>`. Each family's HELP is its field's (gossip.stats); a
        field without one is refused (ValueError).
        """
        read = stats if callable(stats) else (lambda: stats)
        self._add_fields(prefix, read, set(gauges), label)

    def _add_fields(self, prefix: str, read: Callable[[], Any], gauges: set[str], label: str) -> None:
        for f in dataclasses.fields(read()):
            field_read = (lambda name: lambda: getattr(read(), name))(f.name)
            sample = getattr(read(), f.name)
            name = f"{prefix}_{f.name}"
            kind = "gauge" if f.name in gauges else "counter"
            suffix = "" if kind == "gauge" else "_total"
            if dataclasses.is_dataclass(sample):
                self._add_fields(name, field_read, gauges, label)
            elif isinstance(sample, Mapping):
                self.collect(name + suffix, _help(f, name), field_read, kind=kind, labels=(label,))
            elif isinstance(sample, (int, float)) and not isinstance(sample, bool):
                self.collect(name + suffix, _help(f, name), field_read, kind=kind)

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter or gauge sample (for tests and the dashboard)."""
        family = self._families[PREFIX + name]
        key = family._key(labels)
        for suffix, values, value in family.samples():
            if suffix == "" and values == key:
                return value
        return 0.0

    def render(self) -> str:
        """Every family, in the text format; one whose read raises is left out of this scrape, logged and counted
        in vouchnet_metrics_collect_errors_total (rendered last, so it counts this scrape's): a vanished data
        directory or a closed database must not blind every alert at once with a failed scrape."""
        out: list[str] = []
        errors = self._collect_errors.name
        for name in sorted(self._families.keys() - {errors}) + [errors]:
            family = self._families[name]
            rendered: list[str] = []
            try:
                family.render(rendered)
            except Exception as error:
                self._collect_errors.inc(metric=name)
                log.error("metric %s left out of this scrape: reading it failed: %s: %s", name,
                          type(error).__name__, error)
                continue
            out += rendered
        return "\n".join(out) + "\n"


def _help(stats_field: dataclasses.Field[Any], name: str) -> str:
    """The HELP text a stats field carries (gossip.stats.counted, by_reason)."""
    if HELP not in stats_field.metadata:
        raise ValueError(f"metric {PREFIX}{name}: its stats field {stats_field.name!r} has no help text (make it with "
                         f"gossip.stats.counted or by_reason)")
    return str(stats_field.metadata[HELP])


def record_latency_listener(histogram: Histogram, own_did: str,
                            clock_ms: Callable[[], int]) -> Callable[[list[Record]], None]:
    """A Replica listener observing, for each accepted record of another org, seconds from its `ts` to now: how
    long gossip (or sync) took to bring it here, issuer clock skew included."""

    def listen(records: list[Record]) -> None:
        now = clock_ms()
        histogram.observe_many(max(0, now - record.ts) / 1000 for record in records if record.iss != own_did)

    return listen


def metrics_router(registry: Registry) -> APIRouter:
    """`GET /metrics`: the registry in the Prometheus text format."""
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Every counter of the node, in the Prometheus text exposition format 0.0.4."""
        return PlainTextResponse(registry.render(), media_type=CONTENT_TYPE)

    return router
