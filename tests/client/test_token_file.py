"""The SDK given the node's token file rather than its token (node.client._token_file): it follows the token's
rotation as README "Rotating the API token" does it, one rename, without the service's restart."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import httpx
import pytest

from node.client import AsyncTrustClient, NodeApiError, NodeClient, TelemetryCollector, Vouchnet

from ..factories import new_did
from .running_node import node_in_thread


def _rotate(token_file: Path) -> None:
    """README's rotation: the new token written beside the file, then renamed over it."""
    new = token_file.with_name("api.token.new")
    new.write_text(secrets.token_urlsafe(32) + "\n")
    new.chmod(0o600)
    os.replace(new, token_file)


def test_telemetry_given_the_token_file_goes_on_being_delivered_across_a_rotation(tmp_path, monkeypatch):
    """A service holding the token itself had every batch refused (401) from the rotation on, and lost them at its
    shutdown or restart (the only way to give it the new token). Given the file (here by $VOUCHNET_TOKEN_FILE, as
    Vouchnet reads it), it reads the token again at each post: a batch refused with the old token goes at the next
    retry, and shutdown sends what was recorded after the rotation."""
    agent = new_did()
    with node_in_thread(tmp_path / "node") as node:
        token_file = node.data_dir / "api.token"
        monkeypatch.delenv("VOUCHNET_TOKEN", raising=False)
        monkeypatch.setenv("VOUCHNET_TOKEN_FILE", str(token_file))
        vouchnet = Vouchnet(node.url)
        collector = vouchnet.telemetry
        assert collector is not None
        collector.record_tool_call(agent, "search")
        assert collector.flush(timeout=10)
        _rotate(token_file)
        with pytest.raises(NodeApiError) as refused, NodeClient(node.url, node.token) as holding:
            holding.report_events([{"agent": agent, "ts": int(time.time() * 1000), "category": "tool",
                                    "name": "search", "outcome": "ok"}])
        assert refused.value.status == 401  # the token a service holds is refused from the rotation on
        collector.record_tool_call(agent, "search")
        assert collector.flush(timeout=10)
        _rotate(token_file)
        collector.record_tool_call(agent, "search")
        stats = collector.shutdown(timeout=10)
        vouchnet.policy.close()
        with node.client() as client:
            held = client.score(agent)["explanation"]["orgs"]
    assert (stats.sent, stats.buffered) == (3, 0)
    assert sum(part["events"] for part in held if part["first_hand"]) == 3


def test_a_token_file_that_holds_no_token_is_refused_naming_it_not_quoting_it(tmp_path):
    path = tmp_path / "api.token"
    path.write_text("short-secret\n")
    with pytest.raises(ValueError, match=rf"token_file: {path} does not hold the node's API token: the token is too "
                                         "short") as refused:
        TelemetryCollector("http://127.0.0.1:9", token_file=path)
    assert "short-secret" not in str(refused.value)
    with pytest.raises(ValueError, match=rf"token_file: cannot read {tmp_path / 'gone'}: No such file"):
        TelemetryCollector("http://127.0.0.1:9", token_file=tmp_path / "gone")


def test_both_the_token_and_its_file_are_refused_as_the_one_read_would_hide_the_other(tmp_path, monkeypatch):
    path = tmp_path / "api.token"
    path.write_text(secrets.token_urlsafe(32))
    with pytest.raises(ValueError, match="token, token_file: give one"):
        TelemetryCollector("http://127.0.0.1:9", secrets.token_urlsafe(32), token_file=path)
    monkeypatch.setenv("VOUCHNET_TOKEN", secrets.token_urlsafe(32))
    monkeypatch.setenv("VOUCHNET_TOKEN_FILE", str(path))
    with pytest.raises(ValueError, match=r"\$VOUCHNET_TOKEN, \$VOUCHNET_TOKEN_FILE: both are set"):
        Vouchnet("http://127.0.0.1:9")


@pytest.mark.parametrize("renewed", [True, False], ids=["the file renewed meanwhile", "the file as it was"])
def test_shutdown_retries_a_refused_token_only_once_its_file_holds_another(tmp_path, renewed):
    """The service's copy of the file renewed just after the node's (a secret mounted in two places): the node refuses
    the token a post carried, and shutdown, which stops at a refused token as no retry in its seconds changes it,
    retries with the file's new one; a file that still holds the refused token stops it at once, as before."""
    path = tmp_path / "api.token"
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path.write_text(old)
    seen: list[str] = []

    def node(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] != f"Bearer {new}":
            if renewed:
                path.write_text(new)
            return httpx.Response(401, json={"error": "unauthorized", "detail": "not this node's token"})
        return httpx.Response(200, json={"accepted": 1, "rejected": []})

    collector = TelemetryCollector("http://node.invalid", token_file=path, flush_interval=3600,
                                   transport=httpx.MockTransport(node))
    collector.record_tool_call(new_did(), "search")
    stats = collector.shutdown(timeout=10)
    assert seen == [f"Bearer {old}", f"Bearer {new}"] if renewed else [f"Bearer {old}"]
    assert (stats.sent, stats.buffered) == ((1, 0) if renewed else (0, 1))


async def test_an_async_client_given_the_token_file_reports_across_a_rotation(tmp_path):
    """Before: AsyncTrustClient took the token itself only, so that an async service's every report_events was refused
    (401) from the rotation on, until it restarted. Given the file, each write carries the token it holds then."""
    path = tmp_path / "api.token"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    seen: list[str] = []

    def node(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] != f"Bearer {path.read_text().strip()}":
            return httpx.Response(401, json={"error": "unauthorized", "detail": "not this node's token"})
        return httpx.Response(200, json={"accepted": 1, "rejected": []})

    event = {"agent": new_did(), "ts": int(time.time() * 1000), "category": "tool", "name": "search", "outcome": "ok"}
    async with AsyncTrustClient("http://node.invalid", token_file=path,
                                transport=httpx.MockTransport(node)) as client:
        before = await client.report_events([event])
        _rotate(path)
        after = await client.report_events([event])
    assert (before["accepted"], after["accepted"]) == (1, 1)
    assert seen[0] != seen[1]
    with pytest.raises(ValueError, match="token, token_file: give one"):
        AsyncTrustClient("http://node.invalid", secrets.token_urlsafe(32), token_file=path)
