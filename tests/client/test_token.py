"""The SDK takes the node's API token as a script reads it from api.token, and never quotes a token in an error."""

import os
import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.client import AsyncTrustClient, TelemetryCollector, TrustClient
from node.client._http import bearer_token
from node.keys import KeyFileError, load_token
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


@pytest.mark.parametrize("client", [TrustClient, AsyncTrustClient])
def test_a_token_shorter_than_the_node_takes_is_refused_without_quoting_it(client):
    """Before: sent, and every write refused 401 (a collector kept its batches, retrying them for ever); the node
    takes no token of fewer than 32 characters from its file."""
    with pytest.raises(ValueError, match=r"^token: must be the text the node's api.token holds; this one is too "
                                         r"short: 6 characters, where the node takes 32 at the least") as refused:
        client("http://127.0.0.1:8700", "secret\n")
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize("path", ["/tmp/walk/alice/api.token", "/home/operator/.vouchnet/api.token"])
def test_the_token_file_s_path_given_for_its_text_is_refused_saying_so(monkeypatch, path):
    """VOUCHNET_TOKEN=~/.vouchnet/api.token: a short path was refused as too short, a long one sent and refused by
    the node (401), each telemetry batch kept and retried."""
    monkeypatch.setenv("VOUCHNET_TOKEN", path)
    with pytest.raises(ValueError, match=r"^token: must be the text the node's api.token holds; this one ends in "
                                         r"api.token: it is the path of the node's token file"):
        TelemetryCollector("http://127.0.0.1:8700")


_AROUND = st.text(string.whitespace + "\x1c\x85\xa0\u2028", max_size=2)  # ASCII whitespace, and what is not


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",))),
    st.builds(lambda before, token, after: before + token + after, _AROUND,
              st.text(st.characters(max_codepoint=0x7f) | st.sampled_from("é\x85\xa0\u2028"), min_size=30,
                      max_size=34), _AROUND),
))
def test_the_sdk_sends_exactly_the_tokens_the_node_takes_from_its_file(tmp_path, text):
    """One rule (node.client._token): the SDK's clients refused no short token, and stripped whitespace around a
    token (U+00A0, U+2028) that the node refused in its file."""
    path = tmp_path / "api.token"
    path.write_bytes(text.encode())
    os.chmod(path, 0o600)
    try:
        sent = bearer_token(text)
    except ValueError:
        sent = None
    try:
        taken = load_token(path)
    except KeyFileError:
        taken = None
    assert sent == taken
