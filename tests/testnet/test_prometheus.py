"""Reading /metrics: samples with labels, sums over labels, and a histogram's cumulative buckets."""

import math

import pytest

from testnet import prometheus

TEXT = """\
# HELP vouchnet_gossip_gate_rejected_total gossip_gate_rejected by reason
# TYPE vouchnet_gossip_gate_rejected_total counter
vouchnet_gossip_gate_rejected_total{reason="malformed"} 2
vouchnet_gossip_gate_rejected_total{reason="invalid_record"} 3
vouchnet_ledger_size 41
vouchnet_record_latency_seconds_bucket{le="0.1"} 4
vouchnet_record_latency_seconds_bucket{le="1.0"} 9
vouchnet_record_latency_seconds_bucket{le="+Inf"} 10
vouchnet_record_latency_seconds_sum 3.5
vouchnet_record_latency_seconds_count 10
odd_label{path="a \\"quoted\\" \\\\ one"} 1e3
"""


def test_samples_sums_and_histograms():
    samples = prometheus.parse(TEXT)
    assert prometheus.total(samples, "vouchnet_gossip_gate_rejected_total") == 5
    assert prometheus.total(samples, "vouchnet_ledger_size") == 41
    assert prometheus.total(samples, "absent") == 0
    assert prometheus.histogram(samples, "vouchnet_record_latency_seconds") == [(0.1, 4), (1.0, 9), (math.inf, 10)]
    assert samples[-1].labels == {"path": 'a "quoted" \\ one'} and samples[-1].value == 1000


def test_a_line_that_is_no_sample_is_named():
    with pytest.raises(ValueError, match="line 2: not a sample"):
        prometheus.parse("ok 1\nthis is not { a sample\n")
