"""DNS rebinding: a running node's API on loopback answers only requests naming a loopback host or its public_url's
(node.api.hosts). A page on evil.example that resolves to 127.0.0.1 sends `Host: evil.example`."""

from __future__ import annotations

import httpx
import pytest

from node.api.hosts import HostGuard

from .in_process import running

EVIL = "evil.example"


async def _get(url: str, path: str, host: str, method: str = "GET") -> httpx.Response:
    """`method` `path` of the API at `url`, sent with `Host: host` as a browser on that name sends it."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.request(method, path, headers={"Host": host}, json={} if method == "POST" else None)


async def test_a_node_on_loopback_refuses_a_request_naming_another_host(tmp_path):
    async with running(tmp_path / "a") as node:
        port = node.api_url.rsplit(":", 1)[1]
        for path in ("/v1/node", "/metrics", f"/v1/agents/{node.did}/score", "/healthz"):
            answer = await _get(node.api_url, path, f"{EVIL}:{port}")
            assert answer.status_code == 403, path
            assert answer.json()["error"] == "forbidden_host"
            assert EVIL in answer.json()["detail"]
        check = await _get(node.api_url, f"/v1/agents/{node.did}/check", EVIL, method="POST")
        assert check.status_code == 403
        for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST.", f"agents.localhost:{port}",
                     f"[::1]:{port}", "10.1.2.3"):
            assert (await _get(node.api_url, "/v1/node", host)).status_code == 200, host
            assert (await _get(node.api_url, f"/v1/agents/{node.did}/score", host)).status_code == 200, host
        for host in ("localhost.evil.example", "127.0.0.1.evil.example", "", "evil.example:80@127.0.0.1"):
            assert (await _get(node.api_url, "/v1/node", host)).status_code == 403, host


async def test_a_node_answers_for_its_public_url_host(tmp_path):
    async with running(tmp_path / "a", settings={"public_url": "https://Vouchnet.Example.org"}) as node:
        assert (await _get(node.api_url, "/v1/node", "vouchnet.example.org")).status_code == 200
        assert (await _get(node.api_url, "/v1/node", "vouchnet.example.org:443")).status_code == 200
        assert (await _get(node.api_url, "/v1/node", EVIL)).status_code == 403


@pytest.mark.parametrize("server, checked", [(("127.0.0.1", 8700), True), (("127.5.6.7", 8700), True),
                                             (("::1", 8700), True), (("::ffff:127.0.0.1", 8700), True),
                                             (("192.0.2.7", 8700), False), (("2001:db8::1", 8700), False), (None, False)])
async def test_only_a_request_that_reached_a_loopback_address_is_checked(server, checked):
    answered = []

    async def app(scope, receive, send):
        answered.append(scope["path"])

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/v1/node", "headers": [(b"host", EVIL.encode())],
             "server": server}
    await HostGuard(app)(scope, None, send)
    assert (not answered and sent[0]["status"] == 403) if checked else answered == ["/v1/node"]
