"""Vouchnet, what a service makes once (DESIGN §8): what it says about how it was made."""

import logging

import pytest

from node.client import TrustPolicy, Vouchnet

NODE = "http://127.0.0.1:9"


@pytest.mark.parametrize("token", [None, "the-token"], ids=["no token", "a token"])
def test_without_an_api_token_it_warns_that_nothing_it_runs_is_reported(token, monkeypatch, caplog):
    """Without $VOUCHNET_TOKEN it made no collector and said nothing: no call was reported, so the node built no
    first-hand score from them (the whole of week 1, observing)."""
    monkeypatch.delenv("VOUCHNET_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        vouchnet = Vouchnet(NODE, token, policy=TrustPolicy(NODE, listen=False))
    warned = [r.getMessage() for r in caplog.records if "telemetry is off" in r.getMessage()]
    if token is None:
        assert vouchnet.telemetry is None and len(warned) == 1
        assert "$VOUCHNET_TOKEN" in warned[0] and "api.token" in warned[0]
    else:
        assert vouchnet.telemetry is not None and warned == []
        vouchnet.telemetry.shutdown(timeout=0)
