"""Cross-site requests: a running node's API refuses what a browser sends for a page of another origin, and answers
curl, SDKs and its own origin as before (node.api.origins)."""

from __future__ import annotations

import httpx
import pytest

from node.api.origins import OriginGuard

from ..factories import new_did
from .in_process import running

EVIL = "https://evil.example"
AGENT = new_did()  # an agent's did: an org's, the node's own, is refused 409 not_an_agent


async def _request(url: str, method: str, path: str, headers: dict[str, str], content: bytes = b"") -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.request(method, path, headers=headers, content=content)


async def test_a_running_node_refuses_a_pages_simple_post_and_answers_curl(tmp_path):
    """A page on evil.example POSTs to the open writes without a preflight: a form's text/plain, or a no-cors
    fetch of a Blob with no type, which FastAPI before 0.132 reads as JSON and so ran a policy check (no token
    needed) for any page its visitor opened. Each is refused at the door, whatever the route would make of it."""
    async with running(tmp_path / "a", settings={"traces_need_token": False}) as node:
        check = f"/v1/agents/{AGENT}/check"
        body = b'{"action": "tool_call"}'
        form = {"Origin": EVIL, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site",
                "Sec-Fetch-Mode": "navigate"}
        blob = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
        for headers in (form, blob):
            refused = await _request(node.api_url, "POST", check, headers, body)
            assert refused.status_code == 403
            assert refused.json()["error"] == "forbidden_origin"
            assert "evil.example" in refused.json()["detail"]
        traces = await _request(node.api_url, "POST", "/v1/traces", {"Origin": EVIL, "Content-Type": "text/plain"},
                                b"{}")
        assert traces.status_code == 403
        curl = await _request(node.api_url, "POST", check, {"Content-Type": "application/json"}, body)
        assert curl.status_code == 200
        own = await _request(node.api_url, "POST", check, {"Content-Type": "application/json",
                                                           "Origin": node.api_url}, body)
        assert own.status_code == 200


async def test_a_running_node_refuses_a_pages_reads_but_not_a_link_followed(tmp_path):
    """An <img> or <script> GET (no Origin) says whether the node answers 200 or 404 by its onload; a link an
    operator follows to /metrics opens in its own tab and is answered."""
    async with running(tmp_path / "a") as node:
        for path in ("/metrics", "/v1/node", f"/v1/agents/{AGENT}/score"):
            probe = await _request(node.api_url, "GET", path, {"Sec-Fetch-Site": "cross-site",
                                                               "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"})
            assert (probe.status_code, probe.json()["error"]) == (403, "forbidden_origin"), path
            link = await _request(node.api_url, "GET", path, {
                "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
            assert link.status_code == 200, path
            typed = await _request(node.api_url, "GET", path, {"Sec-Fetch-Site": "none"})
            assert typed.status_code == 200, path


async def test_a_node_behind_its_public_url_takes_requests_from_that_origin(tmp_path):
    async with running(tmp_path / "a", settings={"public_url": "https://Vouchnet.Example.org"}) as node:
        headers = {"Host": "vouchnet.example.org", "Content-Type": "application/json"}
        check = f"/v1/agents/{AGENT}/check"
        for origin, status in (("https://vouchnet.example.org", 200), ("https://vouchnet.example.org:443", 200),
                               ("https://evil.example", 403), ("https://vouchnet.example.org:8443", 403)):
            answer = await _request(node.api_url, "POST", check, {**headers, "Origin": origin}, b'{"action": "a"}')
            assert answer.status_code == status, origin


@pytest.mark.parametrize("headers, method, answered", [
    ([], "POST", True),
    ([(b"origin", b"http://127.0.0.1:8700")], "POST", True),
    ([(b"origin", b"HTTP://127.0.0.1:8700")], "POST", True),
    ([(b"origin", b"http://127.0.0.1")], "POST", False),  # another port: another origin
    ([(b"origin", b"https://127.0.0.1:8700")], "POST", False),
    ([(b"origin", b"null")], "POST", False),  # a sandboxed frame, a file:// page
    ([(b"origin", b"127.0.0.1:8700")], "POST", False),
    ([(b"origin", b"http://127.0.0.1:99999")], "POST", False),
    ([(b"origin", b"")], "GET", False),
    ([(b"sec-fetch-site", b"same-origin")], "DELETE", True),
    ([(b"sec-fetch-site", b"none")], "POST", True),
    ([(b"sec-fetch-site", b"Cross-Site")], "PUT", False),
    ([(b"sec-fetch-site", b"same-site")], "GET", False),  # a page on localhost:3000
    ([(b"sec-fetch-site", b"cross-site"), (b"sec-fetch-mode", b"navigate")], "GET", True),
    ([(b"sec-fetch-site", b"cross-site"), (b"sec-fetch-mode", b"navigate")], "POST", False),  # a form's
    ([(b"sec-fetch-site", b"cross-site"), (b"sec-fetch-mode", b"navigate"), (b"sec-fetch-dest", b"embed")], "GET",
     False),
])
async def test_a_request_is_refused_when_a_browser_sent_it_for_another_origin(headers, method, answered):
    reached = []
    sent = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "scheme": "http", "path": "/v1/vouches",
             "headers": [(b"host", b"127.0.0.1:8700"), *headers], "server": ("127.0.0.1", 8700)}
    refusals = []
    await OriginGuard(app, refused=lambda *refusal: refusals.append(refusal))(scope, None, send)
    assert (reached == ["/v1/vouches"]) if answered else (not reached and sent[0]["status"] == 403)
    assert refusals == ([] if answered else [(403, "forbidden_origin")])
