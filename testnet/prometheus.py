"""Reading a node's `/metrics` (the Prometheus text format, version 0.0.4): sample values by name and labels."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """Every sample line of an exposition (comments and blank lines skipped); a line that is not a sample raises
    ValueError naming it."""
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"/metrics line {number}: not a sample: {line[:80]!r}")
        name, labels, value = match.groups()
        parsed = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                  for k, v in _LABEL.findall(labels or "")}
        samples.append(Sample(name, parsed, _number(value)))
    return samples


def total(samples: list[Sample], name: str) -> float:
    """The sum of a metric's samples over all its labels (0 if it has none)."""
    return sum(s.value for s in samples if s.name == name)


def histogram(samples: list[Sample], name: str) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets as (upper bound, count), +Inf last, summed over its other labels."""
    buckets: dict[float, float] = {}
    for s in samples:
        if s.name == f"{name}_bucket":
            bound = _number(s.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + s.value
    return sorted(buckets.items())


def _number(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    return float(text)
