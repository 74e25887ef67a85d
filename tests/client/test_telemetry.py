"""The telemetry collector: what is recorded reaches the node (in batches, drained on shutdown), memory stays
bounded under a flood, and its timer never keeps a process alive."""

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.client import CollectorStats, TelemetryCollector, telemetry
from node.client.telemetry import BATCH_SIZE
from node.events import MAX_ATTR_KEY, MAX_ATTR_TEXT, MAX_ATTRS, MAX_BATCH_BYTES, MAX_NAME
from node.strict_json import MAX_DEPTH

from ..factories import API_TOKEN, new_did
from .trickling import trickling


def _until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_shutdown_sends_everything_recorded(running):
    agent = new_did()
    collector = TelemetryCollector(running.url, running.token, flush_interval=3600)
    for i in range(250):
        collector.record_tool_call(agent, "search", "ok" if i % 5 else "error", duration_ms=3.5)
    stats = collector.shutdown()
    assert (stats.recorded, stats.sent, stats.dropped, stats.buffered) == (250, 250, 0, 0)
    assert running.first_hand_events(agent) == 250


def test_a_full_batch_is_sent_without_waiting_for_the_interval(running):
    agent = new_did()
    collector = TelemetryCollector(running.url, running.token, flush_interval=3600, batch_size=10)
    try:
        for _ in range(10):
            collector.record_mcp_operation(agent, "tools/call", "files")
        assert _until(lambda: collector.stats.sent == 10)
    finally:
        collector.shutdown()


def test_each_kind_of_event_is_accepted_by_the_node(running):
    agent, peer = new_did(), new_did()
    collector = TelemetryCollector(running.url, running.token)
    collector.record_tool_call(agent, "shell", "denied", high_risk=True, attrs={"cwd": "/tmp"})
    collector.record_mcp_operation(agent, "resources/read", "docs", "timeout", 5000)
    collector.record_a2a_delegation(agent, "summarise", "ok", 12.0, peer=peer)
    collector.record_auth(agent, "credential", "error")
    stats = collector.shutdown()
    assert (stats.sent, stats.rejected) == (4, 0)


def test_the_node_rejecting_an_event_is_counted_not_retried(running):
    collector = TelemetryCollector(running.url, running.token)
    collector.record_tool_call("not-a-did", "search")
    collector.record_tool_call(new_did(), "search")
    stats = collector.shutdown()
    assert (stats.sent, stats.rejected, stats.failed_posts) == (1, 1, 0)


def test_events_the_node_rejects_of_a_batch_it_takes_are_logged_with_the_first_one_s_reason(running, caplog):
    """A service recording an agent by its name lost those events without a word while the rest of the batch went
    through: only stats.rejected counted them."""
    collector = TelemetryCollector(running.url, running.token, flush_interval=3600)
    collector.record_tool_call(new_did(), "search")
    collector.record_tool_call("billing-bot", "transfer")
    collector.record_tool_call("billing-bot", "refund")
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        stats = collector.shutdown()
    assert (stats.sent, stats.rejected) == (1, 2)
    [warned] = [r for r in caplog.records if r.getMessage().startswith("the node rejected telemetry events")]
    assert {key: warned.fields[key] for key in ("events", "of", "name", "agent")} == \
        {"events": 2, "of": 3, "name": "transfer", "agent": "billing-bot"}
    assert warned.fields["error"].startswith("agent: must be an Ed25519 did:key")


def test_a_batch_the_node_refuses_as_none_valid_is_logged_with_the_first_one_s_reason(running, caplog):
    """A batch every event of which the node rejects is refused whole (422 invalid_events): the log said only "the
    node refused a telemetry batch; dropped", not that the agent was given by name, as it says when some pass."""
    collector = TelemetryCollector(running.url, running.token, flush_interval=3600)
    collector.record_tool_call("billing-bot", "transfer")
    collector.record_tool_call("billing-bot", "refund")
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        stats = collector.shutdown()
    assert (stats.sent, stats.rejected, stats.failed_posts) == (0, 2, 0)
    [warned] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned.getMessage().startswith("the node rejected telemetry events; dropped")
    assert {key: warned.fields[key] for key in ("events", "of", "name", "agent")} == \
        {"events": 2, "of": 2, "name": "transfer", "agent": "billing-bot"}
    assert warned.fields["error"].startswith("agent: must be an Ed25519 did:key")


def test_an_unknown_outcome_is_a_programming_error():
    collector = TelemetryCollector("http://127.0.0.1:9", API_TOKEN)
    with pytest.raises(ValueError, match="outcome"):
        collector.record_tool_call(new_did(), "search", "success")


def test_a_flood_while_the_node_is_down_is_bounded_and_counted():
    collector = TelemetryCollector("http://127.0.0.1:9", API_TOKEN, max_buffer=1000, flush_interval=3600)
    agent = new_did()
    for i in range(50_000):
        collector.record_tool_call(agent, f"search-{i}")
    stats = collector.stats
    assert stats.dropped == 49_000 and stats.buffered == 1000
    waiting = [event["name"] for event in collector._buffer]  # a batch may be in flight, the rest waits
    assert len(waiting) >= 900 and waiting == [f"search-{i}" for i in range(50_000 - len(waiting), 50_000)]
    started = time.monotonic()
    stats = collector.shutdown(timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert stats.sent == 0 and stats.buffered == 1000 and stats.failed_posts >= 1
    assert not collector.record_tool_call(agent, "search")  # after shutdown: dropped


class _FailsOnce(httpx.BaseTransport):
    """The network between collector and node: the first request is lost, the rest go through."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers["idempotency-key"])
        if len(self.keys) == 1:
            raise httpx.ConnectError("the node is restarting")
        return self._real.handle_request(request)


def test_a_failed_batch_is_retried_with_the_same_idempotency_key(running):
    agent, network = new_did(), _FailsOnce()
    collector = TelemetryCollector(running.url, running.token, flush_interval=3600, transport=network)
    collector.record_tool_call(agent, "search")
    stats = collector.shutdown()
    assert (stats.sent, stats.failed_posts) == (1, 1)
    assert len(network.keys) == 2 and network.keys[0] == network.keys[1]
    assert running.first_hand_events(agent) == 1


class _Recording(httpx.BaseTransport):
    """The network between collector and node, remembering each post's size in bytes and the node's status."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, int]] = []
        self._real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._real.handle_request(request)
        self.posts.append((len(request.content), response.status_code))
        return response


def test_a_default_batch_of_the_largest_events_the_node_takes_fits_in_its_body_limit(running):
    """BATCH_SIZE events with as many attributes as the node takes, as long as it takes them, in 4-byte characters,
    are 2 MB of JSON: the node refused their batch (413) and dropped it as rejected. A batch is cut short where its
    body would pass the node's limit, the rest waiting for the next."""
    agent, network = new_did(), _Recording()
    attrs = {f"{i:02}" + "\U0001F600" * (MAX_ATTR_KEY - 2): "\U0001F600" * MAX_ATTR_TEXT for i in range(MAX_ATTRS)}
    collector = TelemetryCollector(running.url, running.token, flush_interval=3600, transport=network)
    for _ in range(BATCH_SIZE):
        collector.record_tool_call(agent, "\U0001F600" * MAX_NAME, attrs=attrs)
    stats = collector.shutdown()
    assert (stats.sent, stats.rejected, stats.failed_posts) == (BATCH_SIZE, 0, 0)
    assert [status for _, status in network.posts] == [200] * len(network.posts)
    assert max(size for size, _ in network.posts) <= MAX_BATCH_BYTES < sum(size for size, _ in network.posts)
    assert running.first_hand_events(agent) == BATCH_SIZE


@settings(max_examples=50)
@given(events=st.lists(st.tuples(st.text(min_size=1, max_size=60), st.text(max_size=200)), min_size=1, max_size=40))
def test_each_post_fits_in_the_node_s_limit_but_an_event_alone_and_every_event_goes_in_order(events):
    """Whatever the events hold (escaped, in UTF-8's multibyte characters), measured against a limit of 1 KB."""
    limit, posts = 1000, []

    def node(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)["events"]
        posts.append((len(request.content), [(event["name"], event["attrs"]["text"]) for event in batch]))
        return httpx.Response(200, json={"accepted": len(batch), "rejected": []})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(telemetry, "MAX_BATCH_BYTES", limit)
        collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600,
                                       transport=httpx.MockTransport(node))
        agent = new_did()
        for name, text in events:
            collector.record_tool_call(agent, name, attrs={"text": text})
        stats = collector.shutdown()
    assert stats.sent == len(events)
    assert [event for _, batch in posts for event in batch] == events
    assert [size for size, batch in posts if size > limit and len(batch) > 1] == []


def test_an_event_json_cannot_carry_is_dropped_as_rejected_and_the_rest_still_go(caplog):
    """Such an event raised in the sender as it encoded the batch: the daemon thread died (flush() raised), and no
    event was sent again."""
    posts = []

    def node(request: httpx.Request) -> httpx.Response:
        posts.append([event["name"] for event in json.loads(request.content)["events"]])
        return httpx.Response(200, json={"accepted": len(posts[-1]), "rejected": []})

    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600, batch_size=2,
                                   transport=httpx.MockTransport(node))
    agent = new_did()
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        collector.record_tool_call(agent, "a", duration_ms=float("nan"))
        collector.record_tool_call(agent, "b", attrs={"when": object()})  # type: ignore[dict-item]
        collector.record_tool_call(agent, "c\ud800")  # a lone surrogate, which UTF-8 cannot carry
        collector.record_tool_call(agent, "d")
        assert collector.flush(timeout=10)
        collector.record_tool_call(agent, "e")
        stats = collector.shutdown()
    assert posts == [["d"], ["e"]]
    assert (stats.sent, stats.rejected, stats.buffered) == (2, 3, 0)
    assert [r.getMessage().partition(" error=")[0] for r in caplog.records] == [
        "a telemetry event JSON cannot carry was dropped"] * 3


def test_an_event_nested_deeper_than_the_node_reads_is_refused_as_recorded_and_its_batch_still_goes(running, caplog):
    """The node refused a body nested past what it reads whole (400, once past about 950 levels): every event of
    the batch (up to 100) was lost with the one whose attributes nested so deep."""
    agent = new_did()
    collector = TelemetryCollector(running.url, running.token, flush_interval=3600)
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        # A body nests an event's attributes 3 deep: in the batch's object, its events array and the event
        assert collector.record_tool_call(agent, "deepest", attrs=_nested(MAX_DEPTH - 3))
        assert not collector.record_tool_call(agent, "too deep", attrs=_nested(MAX_DEPTH - 3 + 1))
        for _ in range(5):
            collector.record_tool_call(agent, "search")
        stats = collector.shutdown()
    # (The node rejects the deepest alone: attributes are text, numbers or booleans.)
    assert (stats.recorded, stats.sent, stats.rejected, stats.buffered) == (7, 5, 2, 0)
    assert running.first_hand_events(agent) == 5
    assert [r.getMessage().partition(" error=")[0] for r in caplog.records] == [
        f'a telemetry event whose attributes nest deeper than the node reads was dropped name="too deep" '
        f"max_depth={MAX_DEPTH}",
        f"the node rejected telemetry events; dropped events=1 of=6 name=deepest agent={agent}"]


def _nested(depth: int) -> dict:
    """Objects nested `depth` deep (1 or more)."""
    value: dict = {"a": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("background", [False, True], ids=["flush()", "the sender thread"])
def test_an_unexpected_fault_in_sending_drops_the_batch_in_flight_and_the_rest_still_go(caplog, background):
    """A fault no post should raise (here the HTTP transport's own) killed the sender thread, which sent nothing
    more, or raised out of flush(); the batch it held is dropped, said as an error, and the next one goes."""
    posts, sent = [], threading.Event()

    def node(request: httpx.Request) -> httpx.Response:
        posts.append([event["name"] for event in json.loads(request.content)["events"]])
        if len(posts) == 1:
            raise RuntimeError("a bug in the transport")
        sent.set()
        return httpx.Response(200, json={"accepted": len(posts[-1]), "rejected": []})

    collector = TelemetryCollector("http://svc:s3cret@node.invalid", API_TOKEN, flush_interval=3600, batch_size=2,
                                   transport=httpx.MockTransport(node))
    agent = new_did()
    with caplog.at_level(logging.ERROR, logger="vouchnet.client"):
        for name in "ab":
            collector.record_tool_call(agent, name)  # a full batch wakes the sender thread
        if background:
            assert _until(lambda: collector.stats.dropped == 2)
        else:
            assert not collector.flush(timeout=10)
        for name in "cd":
            collector.record_tool_call(agent, name)
        if background:
            assert sent.wait(10)
        else:
            assert collector.flush(timeout=10)
        stats = collector.shutdown()
    assert posts == [["a", "b"], ["c", "d"]]
    assert (stats.sent, stats.dropped, stats.buffered) == (2, 2, 0)
    [error] = caplog.records
    assert error.getMessage().startswith("sending telemetry failed unexpectedly") and error.exc_info
    assert error.fields == {"events": 2, "node": "http://svc@node.invalid"}  # its URL's password not shown
    assert "s3cret" not in caplog.text and API_TOKEN not in caplog.text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit that ends it
def test_a_sender_thread_ended_by_what_its_guard_lets_through_is_started_again_by_the_next_record(monkeypatch):
    """A BaseException out of a drain (SystemExit raised in it) ended the thread for good: the collector, its
    thread still set, never started another, and every later event waited unsent. The next record() starts one,
    which sends the batch the first held, under its key, at once; the exit hook stays registered once."""
    posts, hooks, sent = [], [], threading.Event()

    def node(request: httpx.Request) -> httpx.Response:
        posts.append(([event["name"] for event in json.loads(request.content)["events"]],
                      request.headers["idempotency-key"]))
        if len(posts) == 1:
            raise SystemExit("a library's sys.exit() in the transport")
        if len(posts) == 3:
            sent.set()
        return httpx.Response(200, json={"accepted": len(posts[-1][0]), "rejected": []})

    monkeypatch.setattr(telemetry.atexit, "register", hooks.append)
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600, batch_size=2,
                                   transport=httpx.MockTransport(node))
    agent = new_did()
    for name in "ab":
        collector.record_tool_call(agent, name)  # a full batch wakes the sender thread, which ends
    first = collector._thread
    first.join(10)
    assert not first.is_alive()
    collector.record_tool_call(agent, "c")  # not a full batch: only the restart sends at once
    assert sent.wait(10)
    stats = collector.shutdown()
    assert [names for names, _ in posts] == [["a", "b"], ["a", "b"], ["c"]]
    assert posts[0][1] == posts[1][1]  # the same batch, stored once
    assert (stats.sent, stats.dropped, stats.buffered) == (3, 0, 0)
    assert len(hooks) == 1


def _exit_after_recording(url: str, token: str, agent: str) -> float:
    """Seconds a process that records one event for `agent` takes to exit without shutdown(), from the end of its
    code (its start and imports, which took over 10 s on a loaded machine, are not the collector's)."""
    code = ("import time; from node.client import CollectorStats, TelemetryCollector; "
            f"c = TelemetryCollector({url!r}, {token!r}, flush_interval=3600); "
            f"c.record_tool_call({agent!r}, 'search'); "
            "print(time.monotonic())")  # CLOCK_MONOTONIC: one clock for every process of the machine
    done = subprocess.run([sys.executable, "-c", code], check=True, timeout=60, stdout=subprocess.PIPE, text=True)
    return time.monotonic() - float(done.stdout)


@pytest.mark.parametrize("up", [True, False], ids=["node up", "node down"])
def test_the_flush_timer_never_keeps_the_process_alive(running, up):
    """Not its timer, nor the try at exit to send what is left (one post, no retries)."""
    assert _exit_after_recording(running.url if up else "http://127.0.0.1:9", running.token, new_did()) < 10


def test_what_is_left_is_sent_when_the_process_exits_without_shutdown(running):
    """A service that never called shutdown() or aclose() (the MCP example serves until it is stopped) lost the
    events of its last flush_interval."""
    agent = new_did()
    _exit_after_recording(running.url, running.token, agent)
    assert running.first_hand_events(agent) == 1


@pytest.mark.parametrize("reply", [
    *(json.dumps(reply).encode() for reply in [{"rejected": 5}, {}, [], {"accepted": 2, "rejected": []}, "ok"]),
    b"<html>stored</html>", b"", b"[" * 100_000,
], ids=["rejected not a list", "no counts", "a list", "fewer than sent", "a string", "not JSON", "empty",
        "JSON nested deeper than the parser goes"])
def test_an_answer_that_does_not_account_for_the_batch_is_retried_not_counted_as_sent(reply):
    """Not the node's account of the batch (a proxy's page, another server at its address): the batch is kept and
    sent again with its Idempotency-Key, so it is stored once whatever became of the first post."""
    answers = [httpx.Response(200, content=reply), httpx.Response(200, json={"accepted": 3, "rejected": []})]
    keys = []

    def node(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return answers.pop(0) if len(answers) > 1 else answers[0]

    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600,
                                   transport=httpx.MockTransport(node))
    for _ in range(3):
        collector.record_tool_call(new_did(), "search")
    assert collector.flush(timeout=5)
    stats = collector.shutdown()
    assert (stats.sent, stats.rejected, stats.buffered, stats.failed_posts) == (3, 0, 0, 1)
    assert len(keys) == 2 and keys[0] == keys[1]  # the same batch, again


class _RefusesAtFirst:
    """A node whose first `refusals` posts get `refusal()` (its API token was changed under the collector, or a
    proxy in front of it refuses them), then it takes every batch. Remembers each post's event names and key."""

    def __init__(self, refusal: Callable[[], httpx.Response], refusals: int) -> None:
        self.refusal, self.refusals = refusal, refusals
        self.posts: list[list[str]] = []
        self.keys: list[str] = []
        self.refused = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        self.posts.append([event["name"] for event in events])
        self.keys.append(request.headers["idempotency-key"])
        if len(self.posts) <= self.refusals:
            self.refused.set()
            return self.refusal()
        return httpx.Response(200, json={"accepted": len(events), "rejected": []})


def _held_back_then_taken(node: _RefusesAtFirst, caplog, monkeypatch) -> CollectorStats:
    """Record a, b and c with room for two waiting: a is refused and kept in flight, b (the oldest waiting) is
    dropped for c; the stats once the node takes what is left. The backoffs after the first take 10 ms: b and c are
    recorded within the first (0.25 s), and how long the later ones last changes nothing here."""
    monkeypatch.setattr(telemetry, "_BACKOFF_S", (telemetry._BACKOFF_S[0], 0.01))
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600, batch_size=1,
                                   max_buffer=2, transport=httpx.MockTransport(node))
    agent = new_did()
    with caplog.at_level(logging.INFO, logger="vouchnet.client"):
        collector.record_tool_call(agent, "a")  # a full batch: sent at once, refused, kept in flight
        assert node.refused.wait(10)
        collector.record_tool_call(agent, "b")
        collector.record_tool_call(agent, "c")  # the buffer is full: b, the oldest waiting, goes
        assert collector.stats.buffered == 2
        assert collector.flush(timeout=10)
        return collector.shutdown()


@pytest.mark.parametrize("status, code, after", [(503, "busy", 1), (503, "storage", 3), (429, "slow_down", 2)])
def test_a_refusal_asking_to_wait_is_retried_no_sooner_than_it_asks(status, code, after, monkeypatch):
    """A node whose telemetry bodies fill their room answers 503 `busy` with Retry-After: 1 (its storage failing, 10):
    every service's collector retried after 0.25 s and 0.5 s, sooner than asked, adding to the load it refused. The
    retry waits the Retry-After (within the drain's deadline), then the backoff goes on as before."""
    node = _RefusesAtFirst(lambda: httpx.Response(status, json={"error": code, "detail": "come back later"},
                                                  headers={"Retry-After": str(after)}), 2)
    waits: list[float] = []
    monkeypatch.setattr(telemetry.time, "sleep", waits.append)
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600,
                                   transport=httpx.MockTransport(node))
    collector.record_tool_call(new_did(), "search")
    assert collector.flush(timeout=10)
    collector.shutdown()
    assert waits == [after, after] and len(node.posts) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_keeps_the_batch_says_so_once_and_drops_the_oldest_when_full(status, caplog, monkeypatch):
    node = _RefusesAtFirst(lambda: httpx.Response(status, json={"error": "unauthorized", "detail": "bad token"}), 3)
    stats = _held_back_then_taken(node, caplog, monkeypatch)
    assert node.posts == [["a"]] * 4 + [["c"]]
    assert (stats.sent, stats.dropped, stats.rejected, stats.failed_posts) == (2, 1, 0, 3)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "refuses the telemetry API token" in errors[0].getMessage()


@pytest.mark.parametrize("status, why", [(401, "refuses the telemetry API token"), (404, "has no POST /v1/events")])
def test_shutdown_stops_at_a_refusal_no_retry_changes_and_says_it_is_why_the_events_are_lost(status, why, caplog):
    """A service whose token the node refused (or whose node URL names no events endpoint) waited out shutdown's whole
    10 s at each stop, retrying what cannot change in them, and its last line said only that the deadline passed."""
    node = _RefusesAtFirst(lambda: httpx.Response(status, json={"error": "refused", "detail": "no"}), 1000)
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600,
                                   transport=httpx.MockTransport(node))
    collector.record_tool_call(new_did(), "search")
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        stats = collector.shutdown(timeout=20)
    assert len(node.posts) == 1 and (stats.sent, stats.buffered) == (0, 1)
    lost = [r for r in caplog.records if r.getMessage().startswith("telemetry events shutdown")]
    assert len(lost) == 1 and why in lost[0].fields["why"]


def test_shutdown_retries_a_refusal_not_in_the_node_s_form_for_what_answers_in_its_place_may_let_it_through():
    """A proxy's 401 page (its own login, say, restarting) is not the node refusing the token: shutdown retries it
    within its deadline, where it stops at the node's own 401 (test above), and the event goes once it lets it by."""
    page = {"Content-Type": "text/html"}
    node = _RefusesAtFirst(lambda: httpx.Response(401, content=b"<html>401 Authorization Required</html>",
                                                  headers=page), 2)
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600,
                                   transport=httpx.MockTransport(node))
    collector.record_tool_call(new_did(), "search")
    stats = collector.shutdown(timeout=20)
    assert len(node.posts) == 3 and (stats.sent, stats.buffered) == (1, 0)


def test_shutdown_says_the_latest_reason_the_events_are_lost_not_a_refusal_before_it(caplog):
    """The node refused the token, then became unreachable: shutdown's last line said the token was refused, the
    refusal kept as why until a post succeeded, though the events were lost as its deadline passed without an answer."""
    refused = threading.Event()

    def node(request: httpx.Request) -> httpx.Response:
        if refused.is_set():
            raise httpx.ConnectError("the node is down")
        refused.set()
        return httpx.Response(401, json={"error": "unauthorized", "detail": "bad token"})

    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600, batch_size=1,
                                   transport=httpx.MockTransport(node))
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        collector.record_tool_call(new_did(), "search")  # a full batch: sent at once, and refused
        assert refused.wait(10)
        stats = collector.shutdown(timeout=1)
    lost = [r for r in caplog.records if r.getMessage().startswith("telemetry events shutdown")]
    assert stats.buffered == 1 and [r.fields["why"] for r in lost] == ["its deadline passed"]


def test_flush_keeps_retrying_a_refused_token_for_the_node_may_take_it_again(caplog):
    node = _RefusesAtFirst(lambda: httpx.Response(401, json={"error": "unauthorized", "detail": "bad token"}), 2)
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600,
                                   transport=httpx.MockTransport(node))
    collector.record_tool_call(new_did(), "search")
    assert collector.flush(timeout=30)
    assert len(node.posts) == 3 and collector.shutdown().sent == 1


class _AddsAnAuthorization(httpx.HTTPTransport):
    """A proxy in front of the node that adds an Authorization header of its own to the first `times` requests."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.times > 0:
            self.times -= 1
            request = httpx.Request(request.method, request.url, content=request.read(),
                                    headers=[*request.headers.raw, (b"authorization", b"Basic cHJveHk6cHJveHk=")])
        return super().handle_request(request)


def test_a_malformed_authorization_header_keeps_the_batch_as_a_refused_token_does(running, caplog):
    """Sent twice, the header is malformed: the node answers 400 with `error="invalid_request"` in its challenge (RFC
    6750 §3.1), where it answered 401, and the collector took that 400 as a refusal of the batch itself: every batch
    was dropped as rejected while the proxy sent it so."""
    collector = TelemetryCollector(running.url, running.token, flush_interval=3600,
                                   transport=_AddsAnAuthorization(times=2))
    with caplog.at_level(logging.INFO, logger="vouchnet.client"):
        collector.record_tool_call(new_did(), "search")
        stats = collector.shutdown()
    assert (stats.sent, stats.rejected, stats.dropped, stats.failed_posts) == (1, 0, 0, 2)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "or the Authorization header carrying it" in errors[0].getMessage()


@pytest.mark.parametrize("status, code", [(404, "not_found"), (405, "method_not_allowed")])
def test_a_node_without_the_endpoint_where_batches_go_keeps_them_and_says_so_once(
        status, code, caplog, monkeypatch):
    """VOUCHNET_NODE=http://127.0.0.1:8700/v1/events (an endpoint's path, as OTLP exporters are given): the node
    answered 404 in its own error form, and every batch was dropped as rejected, all telemetry lost."""
    node = _RefusesAtFirst(lambda: httpx.Response(status, json={"error": code, "detail": "no such endpoint"}), 3)
    stats = _held_back_then_taken(node, caplog, monkeypatch)
    assert node.posts == [["a"]] * 4 + [["c"]]
    assert (stats.sent, stats.dropped, stats.rejected, stats.failed_posts) == (2, 1, 0, 3)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "the node has no POST /v1/events where the collector sends" in errors[0].getMessage()


def test_a_node_url_naming_the_events_endpoint_is_told_apart_from_a_refused_batch(running, caplog):
    collector = TelemetryCollector(running.url + "/v1/events", running.token, flush_interval=3600)
    collector.record_tool_call(new_did(), "search")
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        stats = collector.shutdown(timeout=1)
    assert (stats.sent, stats.rejected, stats.buffered) == (0, 0, 1)
    assert "VOUCHNET_NODE names an endpoint's path?" in caplog.text


@pytest.mark.parametrize("status, body, content_type", [
    (404, b"<html><body>404 Not Found</body></html>", "text/html"),
    (401, b"<html><body>401 Authorization Required</body></html>", "text/html"),
    (400, b'{"message": "no Route matched with those values"}', "application/json"),
    (422, b'{"error": "invalid", "detail": ["events"]}', "application/json"),
    (404, b"[" * 100_000, "application/json"),
    (308, b"", "text/plain"),
], ids=["404 page", "401 page", "JSON of another shape", "detail not a string",
        "JSON nested deeper than the parser goes", "redirect"])
def test_a_refusal_not_in_the_node_s_error_format_keeps_the_batch_says_so_once_and_stays_bounded(
        status, body, content_type, caplog, monkeypatch):
    """A reverse proxy's page is not the node refusing the batch, which it never saw: before, the batch was
    dropped as rejected, its events lost (and JSON nested too deep killed the sender). Kept and sent again under
    its Idempotency-Key, the oldest waiting event dropped once the buffer is full, as while the node is down."""
    headers = {"Content-Type": content_type, "Location": "https://node.invalid/"}  # (Location: for the redirect)
    node = _RefusesAtFirst(lambda: httpx.Response(status, content=body, headers=headers), 2)
    stats = _held_back_then_taken(node, caplog, monkeypatch)
    assert node.posts == [["a"]] * 3 + [["c"]] and len(set(node.keys[:3])) == 1
    assert (stats.sent, stats.dropped, stats.rejected, stats.buffered, stats.failed_posts) == (2, 1, 0, 0, 2)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "in a form that is not the node's" in errors[0].getMessage()


_NOT_THE_NODE_TOO_LARGE_SAID = "refuses a telemetry event sent alone as too large"


class _BodyLimit:
    """The node behind a body size limit of `limit` bytes: a longer post gets `refusal()` (a reverse proxy's 413
    page, or the node's own), the rest are taken whole. Remembers each post's event names and key."""

    def __init__(self, limit: int, refusal: Callable[[], httpx.Response]) -> None:
        self.limit, self.refusal = limit, refusal
        self.posts: list[list[str]] = []
        self.keys: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        self.posts.append([event["name"] for event in events])
        self.keys.append(request.headers["idempotency-key"])
        if len(request.content) > self.limit:
            return self.refusal()
        return httpx.Response(200, json={"accepted": len(events), "rejected": []})


@pytest.mark.parametrize("refusal, dropped, rejected, logged", [
    (lambda: httpx.Response(413, content=b"<html><body>413 Request Entity Too Large</body></html>",
                            headers={"Content-Type": "text/html"}),
     1, 0, "refuses a telemetry event sent alone as too large (413, in a form that is not the node's)"),
    (lambda: httpx.Response(413, json={"error": "too_large", "detail": "body: must be at most 2000 bytes"}),
     0, 1, "the node refused a telemetry batch; dropped"),
], ids=["a proxy's 413 page", "the node's own 413"])
def test_a_batch_refused_as_too_large_goes_in_halves_and_an_event_refused_alone_is_dropped(
        refusal, dropped, rejected, logged, caplog):
    """A proxy's 413 kept the batch, retried under its key for ever while the newer events were dropped as the
    buffer filled; the node's own dropped the whole batch as rejected. Halves, each under a new key (no one stored
    the batch refused), down to single events: one still refused is dropped, counted and logged."""
    node = _BodyLimit(2000, refusal)
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600, batch_size=8,
                                   transport=httpx.MockTransport(node))
    agent = new_did()
    with caplog.at_level(logging.INFO, logger="vouchnet.client"):
        for i in range(8):
            collector.record_tool_call(agent, f"e{i}", attrs={"blob": "x" * 3000} if i == 3 else None)
        assert collector.flush(timeout=10)
    stats = collector.shutdown()
    assert node.posts == [[f"e{i}" for i in range(8)], ["e0", "e1", "e2", "e3"], ["e0", "e1"], ["e2", "e3"],
                          ["e2"], ["e3"], ["e4", "e5", "e6", "e7"]]
    assert len(set(node.keys)) == len(node.posts)
    assert (stats.sent, stats.dropped, stats.rejected, stats.buffered, stats.failed_posts) == (
        7, dropped, rejected, 0, 0)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and logged in warned[0]


def test_a_proxy_refusing_every_event_as_too_large_is_said_once_until_an_event_goes_through(caplog):
    """A proxy whose body limit is below any event (a misconfiguration): each event, sent alone, is dropped, but
    said once, not once per event (thousands a second), and said again after one went through."""
    node = _BodyLimit(10, lambda: httpx.Response(413, content=b"<html>413</html>",
                                                 headers={"Content-Type": "text/html"}))
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600, batch_size=8,
                                   transport=httpx.MockTransport(node))
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        for i in range(8):
            collector.record_tool_call(new_did(), f"e{i}")
        assert collector.flush(timeout=10)
        node.limit = 10**6
        collector.record_tool_call(new_did(), "through")
        assert collector.flush(timeout=10)
        node.limit = 10
        collector.record_tool_call(new_did(), "refused again")
        assert collector.flush(timeout=10)
    stats = collector.shutdown()
    assert (stats.sent, stats.dropped) == (1, 9)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 2 and all(_NOT_THE_NODE_TOO_LARGE_SAID in message for message in warned)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_batch_the_node_refuses_for_what_it_is_is_dropped_and_counted(status, caplog):
    def node(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "bad_batch", "detail": "events: too many"})

    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600,
                                   transport=httpx.MockTransport(node))
    for _ in range(3):
        collector.record_tool_call(new_did(), "search")
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        assert collector.flush(timeout=5)
    stats = collector.shutdown()
    assert (stats.sent, stats.rejected, stats.buffered, stats.failed_posts) == (0, 3, 0, 0)
    assert any("refused a telemetry batch; dropped" in r.getMessage() for r in caplog.records)


def test_a_collector_without_an_api_token_is_refused_naming_where_the_token_comes_from(monkeypatch):
    """Without one, every post was a 401 and each shutdown waited out its whole timeout, retrying."""
    monkeypatch.delenv("VOUCHNET_TOKEN", raising=False)
    with pytest.raises(ValueError, match=r"token: .* \$VOUCHNET_TOKEN .*api\.token"):
        TelemetryCollector("http://127.0.0.1:9")


# --- shutdown's deadline: one for the whole of it, the last post included, and what it could not send said --------

POST_TIMEOUT = 2.0  # a post's own bound: shutdown with a shorter deadline must return before one post times out


def _lost(caplog) -> list[int]:
    return [r.fields["events"] for r in caplog.records if r.getMessage().startswith("telemetry events shutdown")]


@pytest.mark.parametrize("in_progress", [False, True], ids=["waiting", "a background post in progress"])
def test_shutdown_against_a_hung_node_returns_by_its_deadline(in_progress, caplog):
    """It took 14.3 s against an unreachable node where 10 s were said: the post in progress was waited for, then
    the flush retried for a fresh `timeout`, and its last post ran its own timeout past that."""
    with trickling(b"", b"") as (url, accepted):
        collector = TelemetryCollector(url, API_TOKEN, flush_interval=3600, batch_size=1 if in_progress else 100,
                                       timeout=POST_TIMEOUT)
        collector.record_tool_call(new_did(), "search")
        if in_progress:
            assert accepted.acquire(timeout=10)  # the sender's post is waiting on the hung node
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
            stats = collector.shutdown(timeout=0.5)
        assert time.monotonic() - started < POST_TIMEOUT
    assert (stats.sent, stats.buffered) == (0, 1) and _lost(caplog) == [1]


class _SlowNode(httpx.BaseTransport):
    """A node that takes every batch, each after `seconds` (its own time: a slow node, not a test's wait)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.posts = seconds, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.seconds)
        self.posts += 1
        return httpx.Response(200, json={"accepted": len(json.loads(request.content)["events"]), "rejected": []})


@pytest.mark.parametrize("at_exit", [False, True], ids=["shutdown", "at exit"])
def test_a_slow_node_that_answers_gets_what_the_deadline_allows_and_the_rest_is_said_lost(at_exit, caplog):
    """A slow node taking every batch had shutdown (and the exit) send them all, however long that took."""
    node = _SlowNode(0.2)
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, flush_interval=3600, batch_size=1, timeout=1.0,
                                   transport=node)
    agent = new_did()
    for i in range(20):
        collector.record_tool_call(agent, f"search-{i}")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        if at_exit:
            collector._at_exit()  # within the timeout of one post (1 s), one try a batch
        else:
            collector.shutdown(timeout=1.0)
    assert time.monotonic() - started < 2.0  # 20 posts of 0.2 s: 4 s
    stats = collector.stats
    assert 0 < stats.sent == node.posts < 20 and stats.sent + stats.buffered == 20
    assert _lost(caplog) == [stats.buffered]


class _ShutdownAsFirstRecordLeavesItsLock:
    """A collector's lock that runs shutdown() as the first record() leaves it: before that record() goes on to
    start the sender thread."""

    def __init__(self, collector: TelemetryCollector) -> None:
        self._lock, self._collector, self._fired = threading.Lock(), collector, False

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        if not self._fired:
            self._fired = True
            self._collector.shutdown(timeout=1)


def test_a_record_racing_the_first_shutdown_starts_no_sender_after_it(monkeypatch):
    """The record came first, so it was sent or said lost; but it then started the sender thread and registered the
    exit hook that shutdown() had just taken away: the collector was kept until the exit, which tried again."""
    registered: list[Callable[[], None]] = []
    monkeypatch.setattr(telemetry.atexit, "register", registered.append)
    collector = TelemetryCollector("http://node.invalid", API_TOKEN, transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={"accepted": 1, "rejected": []})))
    collector._lock = _ShutdownAsFirstRecordLeavesItsLock(collector)
    assert collector.record_tool_call(new_did(), "search")
    assert registered == [] and collector.stats.sent == 1
