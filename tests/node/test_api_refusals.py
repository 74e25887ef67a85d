"""The API's refusals counted for an operator's alerts: by status and the node's own error codes, every code the
API gives among them, never a label from what the caller sent."""

import ast
import inspect
import json
import logging
import socket
import struct
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from node.api import create_app
from node.api.hosts import HostGuard
from node.api.origins import OriginGuard
from node.api import http_server
from node.api.http_server import MAX_HEAD_BYTES
from node.api.refusals import BUSY, REFUSALS, count_answers, refusal_reason, refusals_counter
from node.ingest_api import ingest_router
from node.telemetry import Telemetry
from node.metrics import Registry

from ..factories import new_did
from .fake_node import TOKEN, fake_node
from .in_process import running

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def counted(tmp_path):
    with fake_node(tmp_path) as node:
        app = create_app(node)
        metrics = Registry()
        refused = refusals_counter(metrics)
        count_answers(app, refused)
        yield HostGuard(app, refused=refused), metrics  # as node.daemon.api_app, ScoreFastPath aside


def refusals(metrics: Registry) -> dict[tuple[str, str], float]:
    return {(s.labels["status"], s.labels["reason"]): s.value
            for family in text_string_to_metric_families(metrics.render()) for s in family.samples
            if s.name == "vouchnet_api_refusals_total"}


async def test_each_refusal_is_counted_by_status_and_code_and_nothing_the_caller_sent(counted):
    """Before: a caller guessing the token (401) or sending bad records (4xx) moved nothing in /metrics."""
    app, metrics = counted
    assert refusals(metrics) == {(str(status), code): 0 for code, status in {**REFUSALS, **BUSY}.items()}
    hostile = new_did()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as api:
        vouch = {"subject": new_did(), "weight": 0.5, "basis": "operator"}
        assert (await api.post("/v1/vouches", json=vouch)).status_code == 401
        guessed = {"Authorization": "Bearer guess"}
        assert (await api.post("/v1/vouches", json=vouch, headers=guessed)).status_code == 401
        assert (await api.post("/v1/vouches", json={**vouch, "subject": hostile}, headers=AUTH)).status_code == 201
        assert (await api.post("/v1/vouches", json={**vouch, "subject": "x" * 40}, headers=AUTH)).status_code == 422
        assert (await api.get("/v1/records?kind=bogus")).status_code == 422
        assert (await api.get(f"/v1/records/{'00' * 32}")).status_code == 404
        assert (await api.get(f"/v1/{hostile}/no/such/path")).status_code == 404
        assert (await api.delete("/v1/vouches", headers=AUTH)).status_code == 405
        assert (await api.get("/healthz")).status_code == 200
        assert (await api.get("/healthz", headers={"Host": "evil.example"})).status_code == 403  # DNS rebinding
    counts = refusals(metrics)
    assert {pair: n for pair, n in counts.items() if n} == {
        ("401", "unauthorized"): 2, ("422", "invalid_record"): 1, ("422", "invalid_request"): 1,
        ("404", "not_found"): 2, ("405", "method_not_allowed"): 1, ("403", "forbidden_host"): 1}
    assert set(counts) == {(str(status), code) for code, status in {**REFUSALS, **BUSY}.items()}  # (no path or did)


@pytest.mark.parametrize("answering, told", [(HostGuard, "refused"), (OriginGuard, "refused"),
                                             (http_server.serve, "refused"), (http_server.serve_on, "refused"),
                                             (http_server.serve, "dropped"), (http_server.serve_on, "dropped"),
                                             (ingest_router, "refused"), (Telemetry.routers, "refused")])
def test_whatever_answers_before_or_instead_of_the_app_must_be_told_where_to_count_its_refusals(answering, told):
    """`refused`, and the HTTP server's `dropped`, are keyword-only and have no default: each defaulted to a no-op,
    so a caller that forgot one served refusals, or dropped connections, that /metrics never counted."""
    parameter = inspect.signature(answering).parameters[told]
    assert (parameter.kind, parameter.default) == (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.empty)


def test_an_answer_not_in_the_error_shape_or_of_an_unknown_code_is_other():
    assert refusal_reason(401, b'{"error": "unauthorized", "detail": "..."}') == "unauthorized"
    assert refusal_reason(400, b"\x08\x03\x12\x05bad") == "other"  # an OTLP protobuf google.rpc.Status
    assert refusal_reason(404, b'{"error": "unauthorized"}') == "other"  # not a code of that status
    assert refusal_reason(404, b'{"error": "did:key:z6Mk"}') == "other"
    assert refusal_reason(404, b'["not_found"]') == "other"


def _given_refusals(path: Path) -> set[tuple[int, str]]:
    """The (status, code) pairs of 4xx refusals that `path` makes: ApiError, error_response, ingest_api's _Refused
    and _otlp_error calls, an ingest Reply's body, errors._HTTP_ERRORS, the HTTP server's `refused` calls and its
    _REFUSAL_CODES."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in {
                "ApiError", "error_response", "_Refused", "_otlp_error", "Reply", "refused"} and len(node.args) >= 2:
            status, code = node.args[:2]
            if isinstance(code, ast.Dict):  # Reply(422, {"error": ..., ...})
                code = next((v for k, v in zip(code.keys, code.values)
                             if isinstance(k, ast.Constant) and k.value == "error"), None)
            if isinstance(status, ast.Constant) and isinstance(code, ast.Constant):
                found.add((status.value, code.value))
        elif isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_HTTP_ERRORS":
            found |= {(k.value, v.elts[0].value) for k, v in zip(node.value.keys, node.value.values)}
        elif isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_REFUSAL_CODES":
            found |= {(k.value, v.value) for k, v in zip(node.value.keys, node.value.values)}
    return {(status, code) for status, code in found if 400 <= status < 500}


def test_every_refusal_the_api_gives_is_a_known_pair():
    """A code left out would count as `other`, and the alerts on it never fire; one the API no longer gives, a
    series of 0 for ever."""
    given = set().union(*(_given_refusals(path) for path in Path("node").rglob("*.py") if "client" not in path.parts))
    assert ("401", "unauthorized") in {(str(s), c) for s, c in given} and len(given) > 15
    assert given == {(status, code) for code, status in REFUSALS.items()}


async def test_a_running_node_counts_the_refusals_its_http_server_answers_itself(tmp_path):
    """A malformed request (400) or a head too long (431) is answered by the HTTP server before any app: it moved
    nothing in /metrics (nor did a body sent too slowly, 408: test_http_server's)."""
    async with running(tmp_path / "a") as node:
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        for request in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: node\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1)):
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(request)
            with trio.fail_after(10):
                while await stream.receive_some():  # answered, then closed
                    pass
            await stream.aclose()
        async with httpx.AsyncClient() as api:
            scraped = (await api.get(f"{node.api_url}/metrics")).text
    counts = {(s.labels["status"], s.labels["reason"]): s.value
              for family in text_string_to_metric_families(scraped) for s in family.samples
              if s.name == "vouchnet_api_refusals_total" and s.value}
    assert counts == {("400", "bad_request"): 1, ("431", "head_too_large"): 1}


@pytest.mark.parametrize("path", [b"/v1/events", b"/v1/vouches"])
async def test_a_running_node_answers_a_malformed_chunked_body_400_as_the_caller_s(tmp_path, caplog, path):
    """The body's framing broken (a chunk size not in hex): the node answered 500 `internal` and logged it as its
    own failure (/v1/events), or 400 saying the body was not UTF-8 JSON (/v1/vouches), neither counted."""
    async with running(tmp_path / "a") as node:
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              b"Authorization: Bearer " + node.token.encode() + b"\r\nTransfer-Encoding: chunked\r\n"
                              b"\r\n5\r\n{\"sub\r\nzz\r\n")
        answer = b""
        with trio.fail_after(10):
            while data := await stream.receive_some():  # answered, then closed
                answer += data
        await stream.aclose()
        async with httpx.AsyncClient() as api:
            scraped = (await api.get(f"{node.api_url}/metrics")).text
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"\r\nconnection: close" in head.lower()
    assert json.loads(body) == {"error": "bad_request", "detail": "illegal chunk header: 'zz\\r\\n'"}
    counts = {(s.labels["status"], s.labels["reason"]): s.value
              for family in text_string_to_metric_families(scraped) for s in family.samples
              if s.name == "vouchnet_api_refusals_total" and s.value}
    assert counts == {("400", "bad_request"): 1}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("how", ["leaves", "resets", "stalls"])
async def test_a_client_that_leaves_or_stalls_mid_body_is_no_refusal_of_the_app_s(tmp_path, monkeypatch, how):
    """A client that left midway through its body was counted as a 400 bad_request (the app's answer to the body it
    could not read, which no one reads), whether it closed its side or reset the connection; one too slow, as the
    server's 408 and the app's 400 both."""
    if how == "stalls":  # (only then: a client that leaves, waited for on a loaded machine, could stall that long)
        monkeypatch.setattr(http_server, "READ_TIMEOUT_S", 0.2)
    async with running(tmp_path / "a") as node:
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        token = node.token
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"POST /v1/vouches HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"sub")
        if how in ("leaves", "resets"):
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the app reads the body
            if how == "resets":  # a close with SO_LINGER 0 sends RST, not FIN
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()
        else:
            with trio.fail_after(10):
                while await stream.receive_some():  # answered 408, then closed
                    pass
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the app has answered
        async with httpx.AsyncClient() as api:
            scraped = (await api.get(f"{node.api_url}/metrics")).text
    counts = {(s.labels["status"], s.labels["reason"]): s.value
              for family in text_string_to_metric_families(scraped) for s in family.samples
              if s.name == "vouchnet_api_refusals_total" and s.value}
    assert counts == ({} if how != "stalls" else {("408", "request_timeout"): 1})


async def test_a_running_node_counts_the_connections_it_drops_for_want_of_a_slot(tmp_path, monkeypatch):
    """A node whose slots clients held by sending slowly closed the longest waiting for each newcomer, and nothing
    in /metrics said so."""
    monkeypatch.setattr(http_server, "MAX_CONNECTIONS", 2)
    async with running(tmp_path / "a") as node:
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        slow = []
        for _ in range(2):
            slow.append(await trio.open_tcp_stream(host, int(port)))
            await slow[-1].send_all(b"GET / HTTP/1.1\r\nHo")  # a head it never finishes
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the server waits for the rest of it
        async with httpx.AsyncClient() as api:  # a newcomer: the first slow one, waiting longest, is closed for it
            scraped = (await api.get(f"{node.api_url}/metrics")).text
        with trio.fail_after(10):
            assert await slow[0].receive_some() == b""
        for stream in slow:
            await stream.aclose()
    counts = {s.labels["reason"]: s.value for family in text_string_to_metric_families(scraped)
              for s in family.samples if s.name == "vouchnet_api_connections_dropped_total"}
    assert counts == {"evicted": 1, "full": 0}
