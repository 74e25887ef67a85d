"""The SSE parsing behind TrustPolicy's cache (WHATWG HTML §9.2): events as the node frames them, comments,
multi-line data, ids; what is not a well-formed score change is ignored, not trusted."""

import json
import logging
import threading
import time

import httpx
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from node.client import TrustPolicy
from node.client import score_stream
from node.client.score_stream import (
    MAX_RETRY_AFTER_S, ScoreChange, SseEvent, SseParser, TooLong, _lines, reconnect_wait, score_change,
)

from ..refused_port import refused_port
from .loopback import serving_in_thread
from .trickling import trickling


def _feed(text: str) -> tuple[list[SseEvent], SseParser]:
    parser = SseParser()
    events = [e for line in text.split("\n") if (e := parser.feed(line)) is not None]
    return events, parser


def test_events_are_parsed_as_the_node_frames_them():
    data = {"agent": "did:key:z6Mk", "score": 610, "tier": "trusted", "previous_score": 120,
            "previous_tier": "untrusted"}
    text = f"retry: 3000\n\n: keep-alive\n\nid: ab12-7\nevent: tier\ndata: {json.dumps(data)}\n\n"
    events, parser = _feed(text)
    assert events == [SseEvent("tier", json.dumps(data), "ab12-7")] and parser.last_id == "ab12-7"
    before = {"previous_score": 120, "previous_tier": "untrusted"}
    assert score_change(events[0]) == ScoreChange("did:key:z6Mk", 610, "trusted", **before)
    scoped = json.dumps({**data, "scopes": ["search", "fetch"]})
    assert score_change(SseEvent("score", scoped, None)) == ScoreChange("did:key:z6Mk", 610, "trusted",
                                                                         ("search", "fetch"), **before)
    partly = json.dumps({**data, "scopes": ["fetch"], "scopes_complete": False})
    assert score_change(SseEvent("score", partly, None)) == ScoreChange("did:key:z6Mk", 610, "trusted", ("fetch",),
                                                                         scopes_complete=False, **before)
    unsaid = json.dumps({**data, "previous_score": "120", "previous_tier": None})
    assert score_change(SseEvent("score", unsaid, None)) == ScoreChange("did:key:z6Mk", 610, "trusted")


def test_data_lines_join_and_an_event_without_a_name_is_a_message():
    events, _ = _feed("data: a\ndata:b\n\nevent: reset\ndata: {}\n\n")
    assert events == [SseEvent("message", "a\nb", None), SseEvent("reset", "{}", None)]


def test_what_is_not_a_score_change_is_ignored():
    for data in ("not json", "[]", '{"agent": "a", "score": "600", "tier": "trusted"}',
                 '{"agent": 1, "score": 600, "tier": "trusted"}', '{"score": 600}', "5",
                 '{"agent": "a", "score": 600, "tier": "trusted", "scopes": "search"}',
                 '{"agent": "a", "score": 600, "tier": "trusted", "scopes": [1]}',
                 '{"agent": "a", "score": 600, "tier": "trusted", "scopes": [], "scopes_complete": 0}'):
        assert score_change(SseEvent("score", data, None)) is None
    assert score_change(SseEvent("message", '{"agent": "a", "score": 1, "tier": "x"}', None)) is None


def test_an_event_saying_who_operates_the_agent_carries_it_and_one_that_does_not_say_leaves_it_unsaid():
    """node.trust._remember: an event lists the org keys whose credentials stand for the agent, and the cold start;
    an older node's event has neither."""
    data = {"agent": "did:key:z6Mk", "score": 610, "tier": "trusted", "issuers": ["did:key:z6MkA", "did:key:z6MkB"],
            "issuers_complete": True, "cold_start": 50}
    assert score_change(SseEvent("score", json.dumps(data), None)) == ScoreChange(
        "did:key:z6Mk", 610, "trusted", issuers=("did:key:z6MkA", "did:key:z6MkB"), cold_start=50)
    older = {key: value for key, value in data.items() if not key.startswith(("issuers", "cold_start"))}
    assert score_change(SseEvent("score", json.dumps(older), None)) == ScoreChange("did:key:z6Mk", 610, "trusted")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


_ABSENT = object()  # a field the event does not have


@example(issuers=[["did:key:z6MkA"]], cold_start=0, complete=True)  # (a list in it: a frozenset would raise)
@example(issuers=["did:key:z6MkA", 7], cold_start=0, complete=True)
@example(issuers=["did:key:z6MkA"], cold_start=0, complete=0)  # (not a boolean: not taken for false)
@given(issuers=_JSON | st.lists(st.text(max_size=5), max_size=3), cold_start=_JSON,
       complete=st.just(_ABSENT) | st.booleans() | _JSON)
def test_who_operates_the_agent_is_taken_only_as_a_list_of_keys_with_an_integer_cold_start(issuers, cold_start,
                                                                                            complete):
    """Anything else in those fields, however the node got it wrong, says nothing of who operates the agent (a
    cache then drops what it kept of that), and the event's score still counts; nothing raises. A list holding
    anything but keys is none: taken as keys, a list in it would make TrustPolicy._changed raise on the stream's
    thread. `issuers_complete` is a boolean, true if absent (a node listing them all); false, a cache asks the node
    of a key not listed."""
    data = {"agent": "did:key:z6Mk", "score": 610, "tier": "trusted", "issuers": issuers, "cold_start": cold_start,
            **({} if complete is _ABSENT else {"issuers_complete": complete})}
    change = score_change(SseEvent("score", json.dumps(data), None))
    complete = True if complete is _ABSENT else complete
    well_formed = (isinstance(issuers, list) and all(isinstance(key, str) for key in issuers)
                   and type(cold_start) is int and type(complete) is bool)
    assert change == (ScoreChange("did:key:z6Mk", 610, "trusted", issuers=tuple(issuers), cold_start=cold_start,
                                  issuers_complete=complete) if well_formed else
                      ScoreChange("did:key:z6Mk", 610, "trusted"))


_LINE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20)


@given(lines=st.lists(st.tuples(_LINE, st.sampled_from(["\n", "\r", "\r\n"])), max_size=10),
       cuts=st.lists(st.integers(0, 400), max_size=10))
def test_lines_split_at_any_chunk_boundary_are_the_lines_sent(lines, cuts):
    """CRLF, LF and CR all end a line (WHATWG HTML §9.2.5), a CRLF cut between chunks included."""
    # a CR-ended line then an empty LF-ended one are the bytes of one CRLF-ended line
    assume(not any(end == "\r" and following == ("", "\n") for (_, end), following in zip(lines, lines[1:])))
    sent = "".join(line + end for line, end in lines).encode()
    bounds = sorted({0, len(sent), *(c for c in cuts if c < len(sent))})
    chunks = [sent[a:b] for a, b in zip(bounds, bounds[1:])]
    received = list(_lines(chunks, 1024))
    expected = [line for line, _ in lines]
    # a CR at the very end may yet be the first half of a CRLF: its line waits for the next chunk
    assert received == (expected[:-1] if lines and lines[-1][1] == "\r" else expected)


def test_a_line_over_the_limit_is_refused_even_within_one_chunk():
    with pytest.raises(TooLong, match="a line longer than 8 bytes"):
        list(_lines([b"short\n" + b"x" * 9 + b"\nnext\n"], 8))
    assert list(_lines([b"x" * 8 + b"\n"], 8)) == ["x" * 8]


def _refusal(status: int, headers: dict[str, str] | list[tuple[bytes, bytes]]) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://node/v1/stream")
    return httpx.HTTPStatusError("refused", request=request, response=httpx.Response(status, headers=headers,
                                                                                      request=request))


@pytest.mark.parametrize(("error", "wait"), [
    (_refusal(503, {"Retry-After": "10"}), 10.0),  # the node serves as many streams as it may
    (_refusal(503, {"Retry-After": "86400"}), MAX_RETRY_AFTER_S),
    (_refusal(503, {"Retry-After": "0"}), 1.0),
    (_refusal(503, {"Retry-After": "Fri, 27 Nov 2026 10:00:00 GMT"}), 1.0),  # a date: not worth trusting a clock
    (_refusal(503, [(b"Retry-After", b"\xb2")]), 1.0),  # read as Latin-1, "²": isdigit, and float() refuses it
    (_refusal(500, {}), 1.0),
    (httpx.ReadTimeout("idle"), 1.0),
])
def test_a_refused_stream_reconnects_after_the_node_s_retry_after_within_a_bound(error, wait):
    assert reconnect_wait(error, 1.0) == wait


def test_a_process_following_many_streams_of_one_node_says_once_that_they_pile_up(monkeypatch, caplog):
    """A Vouchnet made per request (never closed) leaked a thread and a connection to the node each, silently, until
    the node's 256 streams were all taken, from every service of the org. The node is named without its URL's
    password."""
    monkeypatch.setattr(score_stream, "FOLLOWING", score_stream._Following())
    node = "http://ops:s3cret@127.0.0.1:9"  # nothing answers: each stream keeps retrying, as one would keep following
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        policies = [TrustPolicy(node) for _ in range(2 * score_stream.MANY_STREAMS)]
        for policy in policies[:score_stream.MANY_STREAMS - 1]:
            assert not policy.stream_connected.is_set()  # its stream started, and nothing answers it
        assert not [r for r in caplog.records if "streams of the node" in r.getMessage()]
        for policy in policies[score_stream.MANY_STREAMS - 1:]:
            assert not policy.stream_connected.is_set()
    said = [r.getMessage() for r in caplog.records if "streams of the node" in r.getMessage()]
    assert said == [f"this process follows {score_stream.MANY_STREAMS} streams of the node at http://ops@127.0.0.1:9, "
                    "a thread and one of the node's connections each: make one Vouchnet (or TrustPolicy) per service, "
                    "not per request, and close it; or pass TrustPolicy(listen=False) (said once) "
                    "node=http://ops@127.0.0.1:9"]
    for policy in policies:
        policy.close()
    assert score_stream.FOLLOWING.count(node) == 0  # a closed stream counts no more


class _Waits:
    """A stream's stop event that records each wait instead of waiting, and stops the stream after `count`."""

    def __init__(self, count: int) -> None:
        self.waits: list[float] = []
        self._count = count

    def is_set(self) -> bool:
        return len(self.waits) >= self._count

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.is_set()


@pytest.mark.parametrize("draw, waits", [(0.0, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
                                         (0.5, [0.9, 1.8, 3.6, 7.2, 14.4, 27.0, 27.0])])
def test_a_stream_that_cannot_connect_backs_off_as_the_breaker_does(monkeypatch, draw, waits):
    """It reconnected every second for as long as the node was down; now as node.client._breaker backs off."""
    with refused_port() as port:
        stream = score_stream.ScoreStream(f"http://127.0.0.1:{port}", on_change=lambda _: None,
                                          on_reset=lambda: None)
        monkeypatch.setattr(score_stream.random, "random", lambda: draw)
        stream._stop = stopping = _Waits(len(waits))
        stream._follow_until_closed()
        stream._http.close()
    assert stopping.waits == pytest.approx(waits)


def test_a_refused_stream_is_logged_without_the_password_of_the_node_s_url(caplog):
    """httpx's refusal names the URL as given: the `score stream disconnected` line showed its password."""
    def app(_: str) -> Starlette:
        async def full(_: object) -> JSONResponse:
            return JSONResponse({"error": "too_many_streams", "detail": "full"}, status_code=503)

        return Starlette(routes=[Route("/v1/stream", full)])

    with serving_in_thread(app) as url, caplog.at_level(logging.INFO, logger="vouchnet.client"):
        stream = score_stream.ScoreStream(url.replace("http://", "http://ops:s3cret@"), on_change=lambda _: None,
                                          on_reset=lambda: None)
        stream._stop = _Waits(1)
        stream._follow_until_closed()
        stream._http.close()
    [said] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("score stream disconnected")]
    assert f"http://ops@{url.removeprefix('http://')}/v1/stream" in said and "s3cret" not in caplog.text


def test_closing_a_stream_a_hung_node_never_answered_does_not_wait_for_it():
    """Its thread, waiting for the node's first answer, had no socket to shut: close() (and so aclose()) waited
    CLOSE_WAIT_S for it. It is left to end by itself, and calls nothing after the stop."""
    resets: list[None] = []
    with trickling(b"", b"") as (url, accepted):
        stream = score_stream.ScoreStream(url, on_change=lambda _: None, on_reset=lambda: resets.append(None))
        stream.start()
        assert accepted.acquire(timeout=10)
        started = time.monotonic()
        stream.close()
        assert time.monotonic() - started < score_stream.CLOSE_WAIT_S / 2
    stream._thread.join(10)  # the server hung up as its block ended
    assert not stream._thread.is_alive() and resets == [] and not stream.connected.is_set()


def test_a_tier_change_reaches_the_callback_once_saying_what_it_was_before():
    """The node announces a tier change as a `score` event and then a `tier` event of the same data (node.trust): a
    service watching the stream (`on_change`) was called twice for each, with nothing to tell a tier change by. It is
    called once a change, with the score and tier before; a `tier` event announcing another change still counts."""
    def event(kind: str, score: int, tier: str, previous: tuple[int, str]) -> bytes:
        data = {"agent": "did:key:z6Mk", "score": score, "tier": tier, "previous_score": previous[0],
                "previous_tier": previous[1]}
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    events = (event("score", 454, "provisional", (343, "provisional")) + event("score", 510, "trusted", (454,
              "provisional")) + event("tier", 510, "trusted", (454, "provisional")) + event("tier", 180, "untrusted",
              (510, "trusted")))
    changes: list[ScoreChange] = []
    third = threading.Event()

    def on_change(change: ScoreChange) -> None:
        changes.append(change)
        if len(changes) == 3:
            third.set()

    with trickling(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + events, b"\n") as (url, _):
        stream = score_stream.ScoreStream(url, on_change=on_change, on_reset=lambda: None)
        stream.start()
        assert third.wait(10)
        stream.close()
    assert [(c.score, c.tier, c.previous_tier) for c in changes[:3]] == [
        (454, "provisional", "provisional"), (510, "trusted", "provisional"), (180, "untrusted", "trusted")]


def test_a_stream_closed_by_its_own_callback_calls_nothing_after():
    """close() from on_change (the service tearing itself down) does not wait for the thread, its own: the events
    already read in the same chunk were still dispatched, into the closed service."""
    events = b"".join(b"event: score\ndata: " + json.dumps({"agent": agent, "score": 50, "tier": "known"}).encode()
                      + b"\n\n" for agent in ("did:key:first", "did:key:second"))
    changes: list[str] = []

    def on_change(change: ScoreChange) -> None:
        changes.append(change.agent)
        stream.close()

    with trickling(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + events, b"\n") as (url, _):
        stream = score_stream.ScoreStream(url, on_change=on_change, on_reset=lambda: None)
        stream.start()
        stream._thread.join(10)
    assert not stream._thread.is_alive() and changes == ["did:key:first"]


def test_streams_closed_while_a_hung_node_holds_their_threads_count_no_more(monkeypatch, caplog):
    """A closed stream still waiting for a hung node's first answer is left to end by itself, up to IDLE_S later:
    counted until then, a test suite or a service closing each policy it made was told it never closed them."""
    monkeypatch.setattr(score_stream, "FOLLOWING", score_stream._Following())
    streams = []
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"), trickling(b"", b"") as (url, accepted):
        for _ in range(score_stream.MANY_STREAMS):
            stream = score_stream.ScoreStream(url, on_change=lambda _: None, on_reset=lambda: None)
            stream.start()
            assert accepted.acquire(timeout=10)
            stream.close()
            streams.append(stream)
        assert any(stream._thread.is_alive() for stream in streams)  # (else this test shows nothing)
        assert score_stream.FOLLOWING.count(url) == 0
    assert not [r for r in caplog.records if "streams of the node" in r.getMessage()]
    for stream in streams:
        stream._thread.join(10)
    assert score_stream.FOLLOWING.count(url) == 0
