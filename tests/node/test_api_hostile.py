"""Hostile requests against the whole local API as the daemon assembles it (node.daemon.api_app): every route
and method of its OpenAPI document, each request valid but for one or two faults (junk path or query parameters,
a wrong method, token, header or body). Whatever a caller sends, the answer is a success or a 4xx with the error
shape (a protobuf OTLP client's: a google.rpc.Status), never a 5xx or an exception out of the app."""

from __future__ import annotations

import functools
import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from gossip.host import peer_id_from_public_key
from gossip.replica import Replica
from gossip.store import RecordStore
from node.api.refusals import refusals_counter
from node.config import load_config
from node.daemon import api_app
from node.keys import load_org_key
from node.metrics import Registry
from node.setup import init_data_dir
from node.telemetry import Telemetry
from node.trust import TrustService
from vouching import public_key_from_did, revoke_body, vouch_body
from vouching.policy import Policy

from ..factories import Org, new_did
from .fake_node import TOKEN, FakeNode
from .otlp_json import junk, lookalikes, numbers, otlp_json


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def call(app: Any, method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
               body: bytes) -> Answer:
    """One request through the ASGI app, with the scope node.api.http_server gives it; a streamed answer is cut
    off after its first chunk (the client leaves)."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path,
             "query_string": query, "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8700),
             "headers": [(b"host", b"127.0.0.1"), *headers, (b"content-length", str(len(body)).encode())]}
    answer = Answer(0, {}, b"")
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent or answer.status:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status, answer.headers = message["status"], dict(message.get("headers", []))
        else:
            answer.body += message.get("body", b"")

    await app(scope, receive, send)
    return answer


@dataclass(repr=False, eq=False)
class Hostile:
    """The app, its OpenAPI document, and what it holds: dids it knows, its own vouches' ids, peer ids, the boot
    prefix of its stream's event ids, the next record of its trust root, and the time (ms) it was set up."""

    app: Any
    spec: dict[str, Any]
    dids: list[str]
    record_ids: list[str]
    peer_ids: list[str]
    boot: str
    partner_record: bytes
    now: int


@pytest.fixture
def hostile(tmp_path):
    """The API of a node holding records of its own and of a partner, and a checkpoint."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = load_config(made.data_dir)
    key = load_org_key(config.key_path)
    partner = Org()
    metrics = Registry()
    with RecordStore.open(made.data_dir) as store:
        replica = Replica(key, store, roots=(partner.did,), max_hops=2, held_limit=100)
        telemetry = Telemetry.open(config, key=key, replica=replica, metrics=metrics)
        view = FakeNode(replica, telemetry.idempotency)
        trust = TrustService(replica, roots=(partner.did,), policy=Policy(min_score=0),
                             broadcaster=telemetry.broadcaster, metrics=metrics, recompute_interval=60,
                             epoch_ms=telemetry.digester.epoch_ms)
        replica.listeners.append(trust.on_records)
        try:
            replica.accept([partner.record("org"), partner.vouch(view.did)])
            agents = [new_did() for _ in range(3)]
            # vouches of every shape the routes read: plain, scoped and expiring as late as the rules allow, revoked
            ours = [replica.issue("vouch", vouch_body(agents[0], 0.5, "operator")),
                    replica.issue("vouch", vouch_body(agents[1], 1.0, "audit", scope=["search"], expires=2**53 - 1)),
                    replica.issue("vouch", vouch_body(agents[2], 0.1, "developer"))]
            ours.append(replica.issue("revoke", revoke_body(ours[2].id, "left")))
            view.sign_checkpoint()
            with telemetry.broadcaster.subscribe() as subscriber:  # an event id, as every stream client sees them
                telemetry.broadcaster.publish({"type": "score"})
                boot = subscriber.receive.receive_nowait().split(b"\n")[0].removeprefix(b"id: ").split(b"-")[0]
            dids = [view.did, partner.did, *agents]
            app = api_app(view, telemetry, trust, key, retired_keys=telemetry.retired_keys(), traces_need_token=True,
                          refused=refusals_counter(telemetry.metrics))
            yield Hostile(app, app.app.app.app.openapi(), dids, [r.id.hex() for r in ours],
                          [peer_id_from_public_key(public_key_from_did(did)) for did in dids], boot.decode(),
                          partner.record().raw, telemetry.audit.now())
        finally:
            telemetry.close()


# --- junk -----------------------------------------------------------------------------------------------

_texts = st.one_of(st.text(max_size=40), lookalikes, numbers.map(str), st.integers(4301, 4400).map(lambda n: "9" * n))
_header_text = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40),
    lookalikes.filter(lambda text: text.isprintable() and max(text, default=" ") <= "\xff"))


def _or_junk(plausible: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any] = junk) -> st.SearchStrategy[Any]:
    """One time in five `wrong`: a request should mostly reach the checks behind the first."""
    return st.sampled_from([plausible] * 4 + [wrong]).flatmap(lambda strategy: strategy)


def _object(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object of these fields, each plausible or junk, now and then one missing or one unknown added."""
    present = st.fixed_dictionaries({name: _or_junk(value) for name, value in fields.items()})
    return st.one_of(
        present,
        st.fixed_dictionaries({}, optional={name: _or_junk(value) for name, value in fields.items()}),
        st.builds(lambda known, extra: {**known, **extra}, present,
                  st.dictionaries(st.text(max_size=8), junk, min_size=1, max_size=1)))


@functools.cache
def _json_bodies(hostile: Hostile) -> dict[str, st.SearchStrategy[Any]]:
    """JSON bodies by route: the fields each reads, near enough to valid that every check is reached."""
    dids = st.sampled_from(hostile.dids) | st.builds(new_did)
    event = _object({"agent": dids, "ts": st.integers(-10**6, 10**6).map(lambda d: hostile.now + d),
                     "category": st.sampled_from(["tool", "mcp", "error", "zz", "Tool"]), "name": st.text(max_size=130),
                     "outcome": st.sampled_from(["ok", "error", "denied", "timeout", "OK"]),
                     "duration_ms": numbers, "high_risk": st.booleans(),
                     "attrs": st.dictionaries(st.text(max_size=70), junk, max_size=17)})
    return {
        "/v1/vouches": _object({
            "subject": dids, "weight": st.floats(0, 1), "basis": st.sampled_from(["operator", "org-peer", "friend"]),
            "scope": st.none() | st.lists(st.sampled_from(["search", "pay"]), min_size=1)
            | st.lists(st.text(max_size=130), max_size=65),
            "expires": st.integers(hostile.now, hostile.now + 10**9)}),
        "/v1/revocations": _object({"record": st.sampled_from(hostile.record_ids), "reason": st.text(max_size=300)}),
        "/v1/peers/blocked": _object({"peers": st.lists(st.sampled_from(hostile.peer_ids), max_size=3)}),
        "/v1/events": _object({"events": st.lists(event, max_size=4)}),
        "/v1/agents/{did}/check": _object({"action": st.sampled_from(["tool_call", "delegate", ""]),
                                           "tool": st.text(max_size=260) | st.sampled_from(["search", "a\u200b"])}),
        "/v1/traces": otlp_json(hostile.dids, hostile.now),
    }


def _mangled(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` cut short, with bytes changed, or with junk added."""
    return st.one_of(
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)), min_size=1, max_size=4).map(
            lambda changes: bytes(_changed(bytearray(data), changes))),
        st.binary(max_size=40).map(lambda junk: data + junk))


def _changed(data: bytearray, changes: list[tuple[int, int]]) -> bytearray:
    for at, value in changes:
        if at < len(data):
            data[at] = value
    return data


def _path_param(hostile: Hostile, name: str) -> st.SearchStrategy[str]:
    return {"did": st.sampled_from(hostile.dids) | st.builds(new_did),
            "record_id": st.sampled_from(hostile.record_ids) | st.sampled_from(hostile.record_ids).map(str.upper)
            | st.binary(min_size=32, max_size=32).map(bytes.hex),
            "list_number": st.integers(0, 1).map(str), "number": st.integers(0, 2).map(str)}[name]


_bad_path_params = _texts | st.sampled_from(["did:key:z6Mk", "did:key:z6Mk" + "1" * 60, "did:web:example.org",
                                             "a" * 64, "g" * 64, "ab" * 33, "%2F", "..", "-1", "1" * 30])
_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW"]
_CONTENT_TYPES = ["application/json", "application/cose", "application/x-protobuf", "text/plain", "",
                  "application/json; charset=latin-1", "APPLICATION/JSON", "multipart/form-data; boundary=x"]
# The header a route reads besides the token and the body's: absent or valid unless it is the fault.
_HEADERS = {"/v1/events": (b"idempotency-key", st.none() | st.uuids().map(str)),
            "/v1/stream": (b"last-event-id", st.none())}


def _faults(template: str, method: str, operation: dict[str, Any]) -> list[str]:
    """What can be wrong with a request to this route: the parts it reads, and the method and token."""
    places = {p["in"] for p in operation.get("parameters", [])}
    body = method in ("post", "put")
    return ["method", "token", *(["path"] if "path" in places else []), "query",
            *(["header"] if template in _HEADERS else []),
            *(["content-type", "content-encoding", "json", "bytes"] if body else [])]


@functools.cache
def _operations(hostile: Hostile) -> list[tuple[str, str]]:
    """Every route and method of the OpenAPI document, each once, and again for each thing it reads: a body (or
    a header) four times, a parameter once."""
    operations = []
    for template, methods in sorted(hostile.spec["paths"].items()):
        for method, operation in sorted(methods.items()):
            reads = 4 * (method in ("post", "put") or template in _HEADERS) + len(operation.get("parameters", []))
            operations += [(template, method)] * (1 + reads)
    return operations


@st.composite
def requests(draw: st.DrawFn, hostile: Hostile) -> tuple[str, bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    """A request to one of the documented routes, valid but for none, one or two faults."""
    template, method = draw(st.sampled_from(_operations(hostile)), "operation")
    documented = hostile.spec["paths"][template]
    applicable = st.sampled_from(_faults(template, method, documented[method]))
    faults = draw(st.sampled_from([0, 1, 1, 2]).flatmap(lambda n: st.sets(applicable, min_size=n, max_size=n)),
                  "faults")
    if "method" in faults:
        method = draw(st.sampled_from(_METHODS), "wrong method").lower()
    operation = documented.get(method, {})
    path = template
    for name in (p["name"] for p in operation.get("parameters", []) if p["in"] == "path"):
        value = draw(_bad_path_params if "path" in faults else _path_param(hostile, name), name)
        path = path.replace("{%s}" % name, quote(value, safe="", errors="surrogatepass") or "x")
    path = path.replace("{", "").replace("}", "")  # a method the route does not take: its names as they are

    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    query = b""
    if names or "query" in faults:
        if "query" in faults:
            keys = _or_junk(st.sampled_from(names), st.text(max_size=6)) if names else st.text(max_size=6)
        else:
            keys = st.sampled_from(names)  # the route's own only: another is refused before the route reads any
        values = _texts if "query" in faults else st.sampled_from(["0", "1", "2", "true", "false", "json", "cose"])
        pairs = draw(st.lists(st.tuples(keys, values), max_size=4), "query")
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='', errors='surrogatepass')}" for k, v in pairs).encode()
        if "query" in faults:
            query += draw(st.sampled_from([b"", b"&%zz=%", b"&limit=%ff", b"&&=&", b"&start=1&start=2"]), "raw query")

    headers: list[tuple[bytes, bytes]] = []
    token = draw(st.sampled_from([None, "", TOKEN + "x", "\xff" * 4, " " + TOKEN]), "token") if "token" in faults \
        else TOKEN
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode("latin-1")))
    content_type = {"/v1/records": "application/cose",
                    "/v1/traces": draw(st.sampled_from(["application/json", "application/x-protobuf"]), "otlp")}.get(
        template, "application/json")
    if "content-type" in faults:
        content_type = draw(st.sampled_from(_CONTENT_TYPES) | _header_text, "content-type")
    headers.append((b"content-type", content_type.encode("latin-1")))
    encodings = ["gzip", "deflate", "identity"] if template in ("/v1/events", "/v1/traces") else ["identity"]
    encoding = draw(st.sampled_from(encodings), "encoding")
    if "content-encoding" in faults:
        encoding = draw(st.sampled_from(["br", "gzip, gzip", "x-gzip", ""]) | _header_text, "bad encoding")
    headers.append((b"content-encoding", encoding.encode("latin-1")))
    name, plausible = _HEADERS.get(template, (b"accept", st.just("*/*")))
    value = draw(_or_junk(st.builds(lambda t: f"{hostile.boot}-{t}", _header_text), _header_text)
                 if "header" in faults else plausible, name.decode())
    if value is not None:
        headers.append((name, value.encode("latin-1")))

    body = b""
    if method in ("post", "put", "patch"):
        if template == "/v1/records":
            body = hostile.partner_record
        elif content_type == "application/x-protobuf":
            body = _PROTOBUF_TRACES
        else:
            body = json.dumps(draw(_json_bodies(hostile).get(template, junk), "json")).encode()
        if "json" in faults:
            body = draw(st.sampled_from([b"[" * 70_000, b"{" * 1000, b'{"a":' * 5000, b"\xff\xfe{}", b"", b"null",
                                         json.dumps("\udcff").encode(), b'{"a": NaN}']), "bad json")
        if "bytes" in faults:
            body = draw(_mangled(body), "mangled")
        if encoding in ("gzip", "deflate"):
            body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
            if "bytes" in faults and draw(st.booleans(), "mangle compressed"):
                body = draw(_mangled(body), "mangled compressed")
    return method.upper(), path.encode(), query, headers, body


def _protobuf_traces() -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name, span.start_time_unix_nano, span.end_time_unix_nano = "execute_tool", 1, 2
    for key, text in (("gen_ai.operation.name", "execute_tool"), ("gen_ai.agent.id", new_did())):
        attribute = span.attributes.add()
        attribute.key, attribute.value.string_value = key, text
    return request.SerializeToString()


_PROTOBUF_TRACES = _protobuf_traces()


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
async def test_whatever_a_caller_sends_every_route_answers_it_or_refuses_it_with_a_reason(hostile, data):
    method, path, query, headers, body = data.draw(requests(hostile), "request")
    answer = await call(hostile.app, method, path, query, headers, body)
    assert 200 <= answer.status < 500, answer
    if answer.status < 400:
        return
    if answer.headers.get(b"content-type") == b"application/x-protobuf":  # OTLP §Failures: a google.rpc.Status
        assert path == b"/v1/traces" and dict(headers)[b"content-type"] == b"application/x-protobuf", answer
    else:
        assert answer.headers[b"content-type"] == b"application/json", answer
        error = json.loads(answer.body)
        assert {"error", "detail"} <= set(error) and error["detail"], error  # (and a batch's rejected events)


# --- integer and boolean parameters -------------------------------------------------------------------------

def _exact_parameters(hostile: Hostile) -> list[tuple[str, str, str, str, str]]:
    """(method, path, where, name, type) for every integer path or query parameter and every boolean query
    parameter of the OpenAPI document, optional ones too: where is "path" or "query", type "integer" or
    "boolean"."""
    found = []
    for template, methods in sorted(hostile.spec["paths"].items()):
        for method, operation in sorted(methods.items()):
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                types = {s.get("type") for s in [schema, *schema.get("anyOf", [])]} & {"integer", "boolean"}
                if parameter["in"] in ("path", "query") and types:
                    found.append((method.upper(), template, parameter["in"], parameter["name"], types.pop()))
    return found


_not_plain_decimal = st.one_of(
    lookalikes, st.sampled_from(["01", "00", "1.0", "1 ", "\uff11", "\u0665", "1\n"]),
    st.integers(0, 10**6).map(lambda n: f"0{n}"), st.text(max_size=8),
).filter(lambda text: not text.isascii() or not text.isdigit() or (text.startswith("0") and text != "0") or not text)
_not_true_or_false = st.one_of(
    lookalikes, st.sampled_from(["yes", "no", "on", "off", "1", "0", "True", "FALSE", "t", " true", "false\n"]),
    st.text(max_size=8)).filter(lambda text: text not in ("true", "false"))
_WRONG = {"integer": _not_plain_decimal, "boolean": _not_true_or_false}
_PLAIN = {"integer": "1", "boolean": "true"}
_RULE = {"integer": "must be a decimal integer: digits only, without sign, spaces or leading zeros",
         "boolean": "must be true or false"}


def test_the_property_below_ranges_over_the_integer_and_boolean_parameters_of_the_api(hostile):
    """The OpenAPI document's integer and boolean parameters, found as the property finds them: not none by
    mistake, and the path's numbers still described as integers."""
    assert {(path, where, name, kind) for _, path, where, name, kind in _exact_parameters(hostile)} == {
        ("/v1/log/entries", "query", "start", "integer"), ("/v1/log/entries", "query", "end", "integer"),
        ("/v1/log/proof/inclusion", "query", "index", "integer"),
        ("/v1/log/proof/inclusion", "query", "size", "integer"),
        ("/v1/log/proof/consistency", "query", "old", "integer"),
        ("/v1/log/proof/consistency", "query", "new", "integer"), ("/v1/records", "query", "after", "integer"),
        ("/v1/records", "query", "limit", "integer"), ("/v1/orgs", "query", "limit", "integer"),
        ("/v1/credentials/status/{list_number}", "path", "list_number", "integer"),
        ("/v1/credentials/vouch-status/{did}/{list_number}", "path", "list_number", "integer"),
        ("/v1/agents/{did}/score", "query", "statement", "boolean"),
        ("/v1/agents/{did}/score", "query", "explain", "boolean"),
        ("/v1/peers", "query", "limit", "integer"), ("/v1/node/own-records", "query", "after", "integer"),
        ("/v1/node/own-records/{number}/cose", "path", "number", "integer"),
        ("/v1/node/own-records/{number}/conflicts-with/cose", "path", "number", "integer"),
    }


def _error(answer: Answer) -> Any:
    """The error of a refusal; the body of an answer, which need not be JSON (a status list is a JWT)."""
    return json.loads(answer.body) if answer.status >= 400 else answer.body


def _path(hostile: Hostile, template: str, name: str, value: str) -> bytes:
    """`template` with `value` as the parameter `name` and the node's own did as any other (a did)."""
    path = template.replace("{%s}" % name, quote(value, safe="", errors="surrogatepass"))
    return path.replace("{did}", quote(hostile.dids[0], safe="")).encode()


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_every_integer_and_boolean_parameter_is_plain(hostile, data):
    """FastAPI's lax parsers read "01", "+1", " 1", "1.0" or "1_0" as a number and "yes", "on" or "1" as
    true, so an answer (a page after another cursor, a proof for another size, another status list, a signed
    statement) would be for a value the client did not write: on every route, such a parameter is a 422 naming it
    (node.api.parameters), and a plain one is read."""
    method, template, where, name, kind = data.draw(st.sampled_from(_exact_parameters(hostile)), "parameter")
    value = data.draw(_WRONG[kind], "value")
    refused = {"error": "invalid_request", "detail": f"{where}.{name}: {_RULE[kind]}"}
    if where == "path":
        assume(value and "/" not in value)  # else another path, not this parameter
        answer = await call(hostile.app, method, _path(hostile, template, name, value), b"", [], b"")
        assert (answer.status, _error(answer)) == (422, refused)
        plain = await call(hostile.app, method, _path(hostile, template, name, "0"), b"", [], b"")
    else:
        path = _path(hostile, template, name, "")
        query = quote(name) + "=" + quote(value, safe="", errors="surrogatepass")
        answer = await call(hostile.app, method, path, query.encode(), [], b"")
        assert (answer.status, _error(answer)) == (422, refused)
        plain = await call(hostile.app, method, path, f"{name}={_PLAIN[kind]}".encode(), [], b"")
    assert not plain.body.startswith(b'{"error":"invalid_request","detail":"%s.%s' % (where.encode(), name.encode()))


def _query_parameters(hostile: Hostile) -> list[tuple[str, str, str]]:
    """(method, path, name) for every query parameter of the OpenAPI document, the path's own parameters filled in
    with values the route takes."""
    plain = {"did": hostile.dids[0], "record_id": hostile.record_ids[0], "list_number": "0", "number": "1"}
    return [(method.upper(), template.format_map(plain), parameter["name"])
            for template, methods in sorted(hostile.spec["paths"].items())
            for method, operation in sorted(methods.items())
            for parameter in operation.get("parameters", []) if parameter["in"] == "query"]


def test_the_property_below_ranges_over_every_query_parameter_of_the_api(hostile):
    """Strings, integers and booleans, optional ones and those of a write (a check's issuer) too."""
    assert {(method, name) for method, _, name in _query_parameters(hostile)} >= {
        ("GET", "issuer"), ("GET", "kind"), ("GET", "subject"), ("GET", "after"), ("GET", "format"),
        ("GET", "limit"), ("GET", "statement"), ("POST", "issuer")}


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_every_query_parameter_given_more_than_once_is_refused_naming_it(hostile, data):
    """FastAPI takes the last of a query parameter's values, so an answer would be for a value the client may not
    have meant (the records of another issuer, a page after another cursor, a check of another credential's issuer,
    a signed statement): on every route, a parameter given more than once is a 422 naming it, whatever its values
    (node.api.parameters), and given once it is read."""
    method, path, name = data.draw(st.sampled_from(_query_parameters(hostile)), "parameter")
    values = data.draw(st.lists(_texts | st.sampled_from(["0", "1", "true", "json", hostile.dids[0]]), min_size=2,
                                max_size=3), "values")
    headers, body = ([(b"content-type", b"application/json")], b'{"action": "tool_call"}') if method == "POST" \
        else ([], b"")
    query = "&".join(f"{quote(name)}={quote(value, safe='', errors='surrogatepass')}" for value in values)
    answer = await call(hostile.app, method, path.encode(), query.encode(), headers, body)
    assert (answer.status, _error(answer)) == (
        422, {"error": "invalid_request", "detail": f"query.{name}: given {len(values)} times; give it once"})
    once = await call(hostile.app, method, path.encode(), query.split("&")[0].encode(), headers, body)
    assert not once.body.startswith(b'{"error":"invalid_request","detail":"query.%s: given' % name.encode()), once


def _routes_and_their_query(hostile: Hostile) -> list[tuple[str, str, list[str]]]:
    """(method, path, query parameter names) for every operation of the OpenAPI document, the path's own parameters
    filled in with values the route takes, the names in the order the document lists them."""
    plain = {"did": hostile.dids[0], "record_id": hostile.record_ids[0], "list_number": "0", "number": "1"}
    return [(method.upper(), template.format_map(plain),
             [parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "query"])
            for template, methods in sorted(hostile.spec["paths"].items())
            for method, operation in sorted(methods.items())]


# A request each route would answer (the token; a body it reads, well formed), so that what it answers is the query's.
_WELL_FORMED = {"/v1/records": (b"application/cose", b""), "/v1/traces": (b"application/x-protobuf", b"")}
_PLAIN_NAMES = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", min_size=1, max_size=20)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_every_route_refuses_a_query_parameter_it_does_not_take_naming_those_it_does(hostile, data):
    """FastAPI ignores a query parameter a route does not read, so a misspelt filter (`/v1/records?subjet=...`) was
    answered as if none was given: every record, which looked filtered. On every route of the OpenAPI document, a
    name it does not list is a 422 naming it and those the route takes (node.api.parameters), before anything is
    read or written; a name that is not plain is shown quoted and cut."""
    method, path, names = data.draw(st.sampled_from(_routes_and_their_query(hostile)), "route")
    plain = data.draw(st.booleans(), "plain name")
    name = data.draw((_PLAIN_NAMES if plain else _texts).filter(lambda name: name not in names), "unknown name")
    given = data.draw(st.lists(st.sampled_from(names), max_size=2, unique=True) if names else st.just([]), "known")
    content_type, body = _WELL_FORMED.get(path, (b"application/json", b"{}"))
    headers = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", content_type)]
    pairs = [*((known, "1") for known in given), (name, data.draw(_texts, "value"))]
    query = "&".join(f"{quote(k, safe='', errors='surrogatepass')}={quote(v, safe='', errors='surrogatepass')}"
                     for k, v in data.draw(st.permutations(pairs), "order"))
    answer = await call(hostile.app, method, path.encode(), query.encode(), headers,
                        body if method in ("POST", "PUT") else b"")
    takes = f"not a parameter of this route; it takes {', '.join(names) or 'none'}"
    assert answer.status == 422, (name, answer)
    detail = _error(answer)["detail"]
    if plain:
        assert _error(answer) == {"error": "invalid_request", "detail": f"query.{name}: {takes}"}
    else:
        shown = detail.removeprefix("query.").removesuffix(f": {takes}")
        assert detail == f"query.{shown}: {takes}" and len(shown) <= len(repr(name[:64])) + 3, detail


async def test_a_misspelt_records_filter_is_refused_not_ignored(hostile):
    """The case that hid: `subjet` for `subject` listed every record, as if unfiltered."""
    answer = await call(hostile.app, "GET", b"/v1/records", f"subjet={quote(hostile.dids[2])}".encode(), [], b"")
    assert (answer.status, _error(answer)) == (422, {
        "error": "invalid_request",
        "detail": "query.subjet: not a parameter of this route; it takes issuer, kind, subject, after, limit"})
    assert "query parameter the operation does not take" in \
        hostile.spec["paths"]["/healthz"]["get"]["responses"]["422"]["description"]


# --- JSON bodies ------------------------------------------------------------------------------------------------

_JSON_WRITE = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")]


def _json_writes(hostile: Hostile) -> list[tuple[str, str]]:
    """(template, method) of every route whose OpenAPI entry takes an application/json body."""
    return [(template, method) for template, methods in hostile.spec["paths"].items()
            for method, operation in methods.items()
            if "application/json" in operation.get("requestBody", {}).get("content", {})]


async def test_every_write_taking_a_json_body_refuses_one_that_is_not_i_json(hostile):
    """A member given twice, NaN, 1e400 or UTF-16 (node.strict_json) is a 400 on every route whose OpenAPI entry
    takes application/json, before the body's fields are read: a route added later is covered too."""
    routes = _json_writes(hostile)
    assert len(routes) >= 5  # vouches, revocations, the block list, a check, events (and traces, not declared so)
    for template, method in routes:
        for body in (b'{"a": 1, "a": 2}', b'{"a": [NaN]}', b'{"a": {"b": 1e400}}', '{"a": 1}'.encode("utf-16")):
            answer = await call(hostile.app, method.upper(), _path(hostile, template, "", ""), b"", _JSON_WRITE,
                                body)
            assert answer.status == 400, (template, body, answer)
            assert _error(answer)["detail"].startswith("body: not JSON ("), (template, body, answer)


async def test_every_write_taking_a_json_body_refuses_one_sent_as_another_type_with_415(hostile):
    """A JSON body sent as text/plain or form data is 415 `unsupported_media_type` (RFC 9110 §15.5.16), declared in the
    OpenAPI entry, on every route whose entry takes application/json, as on events and traces: vouches, revocations
    and a check answered it 422 `invalid_request`, naming the body, not its type."""
    token = (b"authorization", f"Bearer {TOKEN}".encode())
    for template, method in _json_writes(hostile):
        assert "415" in hostile.spec["paths"][template][method]["responses"], template
        for content_type in (b"text/plain", b"text/plain; charset=utf-8", b"application/x-www-form-urlencoded"):
            answer = await call(hostile.app, method.upper(), _path(hostile, template, "", ""), b"",
                                [token, (b"content-type", content_type)], b'{"action": "tool_call"}')
            assert (answer.status, _error(answer)) == (415, {"error": "unsupported_media_type",
                                                             "detail": "Content-Type: must be application/json"}), \
                (template, content_type, answer)


async def test_every_write_taking_a_json_body_says_why_one_python_cannot_parse_is_refused(hostile):
    """An integer of over 4,300 digits, or arrays nested beyond the parser's depth, failed FastAPI's parser before
    the I-JSON check: 400 "body: cannot be read as UTF-8 JSON", which the body is."""
    for template, method in _json_writes(hostile):
        for body, reason in ((b'{"weight": %s}' % (b"9" * 5000), "(5000 digits) is beyond a JSON number's range"),
                             (b"[" * 10_000 + b"]" * 10_000, "nested too deep"),
                             (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested too deep")):
            answer = await call(hostile.app, method.upper(), _path(hostile, template, "", ""), b"", _JSON_WRITE,
                                body)
            assert answer.status == 400, (template, reason, answer)
            assert _error(answer)["detail"].startswith("body: not JSON ("), (template, answer)
            assert reason in _error(answer)["detail"], (template, answer)


async def test_every_route_refuses_a_browser_request_sent_for_a_page_of_another_site(hostile):
    """A page on any origin can make a browser send a simple request (a form's text/plain POST, an <img> GET) to
    127.0.0.1 (node.api.origins): every route of every method refuses it 403 before it runs, token or not, and
    answers the same request without Origin (curl, an SDK) or from its own origin."""
    routes = [(template, method.upper()) for template, methods in hostile.spec["paths"].items() for method in methods]
    assert len(routes) >= 20
    token = (b"authorization", f"Bearer {TOKEN}".encode())
    for template, method in routes:
        path = _path(hostile, template, "", "")
        for browser in ([(b"origin", b"https://evil.example"), (b"sec-fetch-site", b"cross-site")],
                        [(b"origin", b"http://127.0.0.1:3000")], [(b"origin", b"null")],
                        [(b"sec-fetch-site", b"same-site"), (b"sec-fetch-mode", b"no-cors")]):
            answer = await call(hostile.app, method, path, b"", [token, *browser, (b"content-type", b"text/plain")],
                                b'{"action": "tool_call"}')
            assert (answer.status, _error(answer)["error"]) == (403, "forbidden_origin"), (template, method, browser)
        for own in ([], [(b"origin", b"http://127.0.0.1"), (b"sec-fetch-site", b"same-origin")]):
            answer = await call(hostile.app, method, path, b"", [token, *own], b"")
            assert answer.status != 403, (template, method, own, answer)


async def test_a_body_its_client_leaves_midway_is_no_failure_of_the_node(hostile, caplog):
    """A client that leaves before its body is whole (a killed exporter; or one too slow, which node.api.http_server
    answers 408 and reports to the app as gone) is no failure to log, on any write: it logged two ERROR tracebacks
    (the error handler's and the server's, as the app raised ClientDisconnect) for events, traces and records."""
    writes = [(template, method.upper()) for template, methods in hostile.spec["paths"].items()
              for method in methods if method in ("post", "put")]
    for template, method in writes:
        parts = [{"type": "http.request", "body": b'{"events": [', "more_body": True}, {"type": "http.disconnect"}]
        sent = []

        async def receive():
            return parts.pop(0) if parts else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        path = _path(hostile, template, "", "").decode()
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8700),
                 "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {TOKEN}".encode()),
                             (b"content-type", b"application/json"), (b"content-length", b"100")]}
        with caplog.at_level("ERROR"):
            await hostile.app(scope, receive, send)
        assert sent and sent[0]["status"] < 500, (template, sent)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
