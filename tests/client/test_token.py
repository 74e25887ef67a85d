"""The SDK takes the node's API token as a script reads it from api.token, and never quotes a token in an error."""

import time

import pytest

from node.client import AsyncTrustClient, TrustClient
from tests.factories import new_did


def test_a_token_read_with_its_file_s_newline_is_taken(running):
    """`open("api.token").read()`: httpx refused the header, in an error quoting the token (NodeUnreachable, which
    TelemetryCollector logs)."""
    event = {"agent": new_did(), "ts": int(time.time() * 1000), "category": "tool", "name": "search", "outcome": "ok"}
    with TrustClient(running.url, running.token + "\n") as client:
        assert client.report_events([event])["accepted"] == 1


@pytest.mark.parametrize("client", [TrustClient, AsyncTrustClient])
@pytest.mark.parametrize("token", ["secret\nsecret", "secret\x00", "sécret"])
def test_a_token_no_header_carries_is_refused_without_quoting_it(client, token):
    with pytest.raises(ValueError, match=r"^token: must be the text the node's api.token holds") as refused:
        client("http://127.0.0.1:8700", token)
    assert "secret" not in str(refused.value) and "sécret" not in str(refused.value)
