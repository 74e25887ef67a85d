"""DNS rebinding: a running node's API answers only requests naming an IP address, localhost, a name of [api] hosts
or its public_url's or bind's host, whatever address they reached (node.api.hosts). A page on evil.example that
resolves to the node's address sends `Host: evil.example`."""

from __future__ import annotations

import socket

import httpx
import pytest
import trio

from node.api.hosts import HostGuard

from ..factories import new_did
from .in_process import running

EVIL = "evil.example"
AGENT = new_did()  # an agent's did: an org's, the node's own, is refused 409 not_an_agent


async def _get(url: str, path: str, host: str, method: str = "GET") -> httpx.Response:
    """`method` `path` of the API at `url`, sent with `Host: host` as a browser on that name sends it."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.request(method, path, headers={"Host": host}, json={} if method == "POST" else None)


async def test_a_node_on_loopback_refuses_a_request_naming_another_host(tmp_path):
    async with running(tmp_path / "a") as node:
        port = node.api_url.rsplit(":", 1)[1]
        for path in ("/v1/node", "/metrics", f"/v1/agents/{AGENT}/score", "/healthz"):
            answer = await _get(node.api_url, path, f"{EVIL}:{port}")
            assert answer.status_code == 403, path
            assert answer.json()["error"] == "forbidden_host"
            assert EVIL in answer.json()["detail"]
        check = await _get(node.api_url, f"/v1/agents/{AGENT}/check", EVIL, method="POST")
        assert check.status_code == 403
        for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST.", f"agents.localhost:{port}",
                     f"[::1]:{port}", "10.1.2.3"):
            assert (await _get(node.api_url, "/v1/node", host)).status_code == 200, host
            assert (await _get(node.api_url, f"/v1/agents/{AGENT}/score", host)).status_code == 200, host
        for host in ("localhost.evil.example", "127.0.0.1.evil.example", "", "evil.example:80@127.0.0.1"):
            assert (await _get(node.api_url, "/v1/node", host)).status_code == 403, host


async def test_a_request_in_absolute_form_is_judged_by_the_host_its_target_names(tmp_path):
    """RFC 9112 §3.2.2: the authority of a target in absolute form is the request's host, its Host header ignored:
    `GET http://evil.example/v1/node` sent with `Host: 127.0.0.1` names evil.example (it was answered 200, judged by
    its Host header, until stop 40)."""
    async with running(tmp_path / "a") as node:
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        for authority, status in ((EVIL, 403), (f"{host}:{port}", 200)):
            answer = await _sent(node.api_url, b"http://%s/v1/node" % authority.encode(), f"{host}:{port}")
            assert answer.startswith(b"HTTP/1.1 %d " % status), (authority, answer[:200])


async def test_a_target_whose_fragment_hides_the_host_it_names_is_refused(tmp_path):
    """Found by stop 41's reader: an absolute-form target's authority ran on past `#`, so
    `GET http://evil.example#@127.0.0.1/v1/node` from a page on evil.example was judged as naming 127.0.0.1, and
    answered 200. A target never holds a fragment (RFC 9110 §4.2.4): it is refused 400, in origin form too (where the
    path with its fragment matched no route: 404)."""
    async with running(tmp_path / "a") as node:
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        for target in (b"http://%s#@%s:%s/v1/node" % (EVIL.encode(), host.encode(), port.encode()), b"/v1/node#x"):
            answer = await _sent(node.api_url, target, f"{host}:{port}" if target.startswith(b"/") else EVIL)
            assert answer.startswith(b"HTTP/1.1 400 ") and b"fragment" in answer, (target, answer[:200])


async def _sent(url: str, target: bytes, host: str) -> bytes:
    """The whole answer of the API at `url` to `GET target` sent with `Host: host`, over a socket of its own: an HTTP
    client would send the target otherwise."""
    address, port = url.removeprefix("http://").rsplit(":", 1)
    async with await trio.open_tcp_stream(address, int(port)) as stream:
        await stream.send_all(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target, host.encode()))
        answer = b""
        while chunk := await stream.receive_some():
            answer += chunk
    return answer


async def test_a_node_answers_for_its_public_url_host(tmp_path):
    async with running(tmp_path / "a", settings={"public_url": "https://Vouchnet.Example.org"}) as node:
        assert (await _get(node.api_url, "/v1/node", "vouchnet.example.org")).status_code == 200
        assert (await _get(node.api_url, "/v1/node", "vouchnet.example.org:443")).status_code == 200
        assert (await _get(node.api_url, "/v1/node", EVIL)).status_code == 403


async def test_a_node_answers_to_the_names_of_its_hosts_setting(tmp_path):
    async with running(tmp_path / "a", settings={"hosts": ("vouchnet.internal", "Ops.Example.org.")}) as node:
        for host in ("vouchnet.internal", "VOUCHNET.internal:8700", "ops.example.org", "ops.example.org.:80"):
            assert (await _get(node.api_url, "/v1/node", host)).status_code == 200, host
        for host in (EVIL, "internal", "evil.vouchnet.internal", "vouchnet.internal.evil.example"):
            answer = await _get(node.api_url, "/v1/node", host)
            assert answer.status_code == 403, host
            assert "[api] hosts" in answer.json()["detail"]


async def test_a_node_whose_hosts_is_a_star_answers_any_host_and_warns_of_it(tmp_path, caplog):
    async with running(tmp_path / "a", settings={"hosts": ("*",)}) as node:
        for host in (EVIL, f"{EVIL}:8700", "anything.at.all", "127.0.0.1"):
            assert (await _get(node.api_url, "/v1/node", host)).status_code == 200, host
    assert [r.message for r in caplog.records if "DNS rebinding" in r.message and r.levelname == "WARNING"] == [
        '[api] hosts = ["*"]: the API answers a request naming any host, so a web page on a name its owner points at '
        "this node's address (DNS rebinding) reads it and sends it open writes; list the names you call it by instead"]


async def test_a_node_answers_to_the_name_it_binds(tmp_path):
    """`vouchnet init --api NAME:PORT`: clients reach the API by that name, so it is answered, public_url set or not."""
    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, None)
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    async with running(tmp_path / "a", settings={"api_host": name, "api_port": 0,
                                                 "public_url": "https://vouchnet.example.org"}) as node:
        assert (await _get(node.api_url, "/v1/node", name)).status_code == 200
        assert (await _get(node.api_url, "/v1/node", EVIL)).status_code == 403


def _an_address_of_this_machine_not_loopback() -> str:
    """The IPv4 address this machine sends from to the wider network (a UDP connect sends nothing); skips if none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))  # TEST-NET-1 (RFC 5737): only the route is looked up
        except OSError:
            pytest.skip("this machine has no route off loopback")
        address = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return address


async def test_a_node_bound_to_every_address_refuses_another_host_on_a_non_loopback_one(tmp_path):
    """As a node in a container published on the host's 127.0.0.1 takes its connections: on the container's
    address. A page rebinding its name to that address read the API before HostGuard checked every address."""
    address = _an_address_of_this_machine_not_loopback()
    async with running(tmp_path / "a", settings={"api_host": "0.0.0.0", "api_port": 0}) as node:
        url = f"http://{address}:{node.api_url.rsplit(':', 1)[1]}"
        answer = await _get(url, "/v1/node", EVIL)
        assert (answer.status_code, answer.json()["error"]) == (403, "forbidden_host")
        assert (await _get(url, f"/v1/agents/{AGENT}/check", EVIL, method="POST")).status_code == 403
        assert (await _get(url, "/v1/node", address)).status_code == 200


@pytest.mark.parametrize("server", [("127.0.0.1", 8700), ("127.5.6.7", 8700), ("::1", 8700),
                                    ("::ffff:127.0.0.1", 8700), ("192.0.2.7", 8700), ("2001:db8::1", 8700),
                                    ("172.17.0.2", 8700), None])
@pytest.mark.parametrize("names, any_host, answered", [((), False, False), (("evil.example",), False, True),
                                                       (("other.example",), False, False), ((), True, True)])
async def test_every_request_is_checked_whatever_address_it_reached(server, names, any_host, answered):
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/v1/node", "headers": [(b"host", EVIL.encode())],
             "server": server}
    refusals = []
    await HostGuard(app, names, any_host=any_host, refused=lambda *refusal: refusals.append(refusal))(scope, None, send)
    assert reached == ["/v1/node"] if answered else (not reached and sent[0]["status"] == 403)
    assert refusals == ([] if answered else [(403, "forbidden_host")])
