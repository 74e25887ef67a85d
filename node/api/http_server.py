"""The local API's HTTP/1.1 server: h11 parses and frames, trio carries the bytes, and an ASGI 3 app answers
(the ASGI HTTP connection scope, spec 2.3; no lifespan, websockets or HTTP/2, which the API does not use).

Why not hypercorn, which served the API before: its trio worker cost 0.59 ms of CPU per request with an app that
does nothing, and p99 2.9 ms at 1,000 requests/s, above issue 3's 2 ms for a whole score request; this server
costs 0.26-0.33 ms and p99 0.45-0.49 ms for the same (benchmarks/score_http.py's floor, on this machine). h11 is
the HTTP/1.1 parser hypercorn itself uses, so what reaches the app is parsed as strictly as before.

Per connection: one request at a time (a pipelined next request waits in h11's buffer); a request head must
arrive whole within KEEP_ALIVE_S of the connection opening or falling idle, and is refused (431) if longer than
MAX_HEAD_BYTES, however it arrives; each read of a request body must come within READ_TIMEOUT_S, and the whole
request, head and body, within REQUEST_DEADLINE_S of the connection opening or falling idle: else it is answered
408 with a JSON reason (if no answer was begun) and the connection closes, so that a body trickled a byte per
READ_TIMEOUT_S holds no connection for hours. A streamed response's wait for its client to leave is no request
being received. Each write of the response must be taken within WRITE_TIMEOUT_S (a client that stops reading is
let go). What an answer left unread of its request's body (a 413 or 401 sent before it) is read and dropped before
the connection goes on or closes, so that a client still uploading reads that answer rather than a reset: up to
LINGER_BYTES of a body of known length, as a body is read (each read within READ_TIMEOUT_S, all by the request's
deadline), and the connection goes on; an answer that leaves more unread, or any of a chunked body, or one its
client holds back for 100 Continue, says `Connection: close`, and up to LINGER_BYTES within LINGER_S are dropped.
A malformed request gets h11's 4xx with a JSON reason and the connection closes (400 too for a body framed both by
Transfer-Encoding and Content-Length, or by a Transfer-Encoding in HTTP/1.0: _framing_fault), as does one the server
cannot serve: 501 `not_implemented` for a transfer coding other than chunked, 505 `http_version_not_supported` for
an HTTP version other than 1.x (RFC 9112 §2.3; HTTP/2's preface, say); empty lines before a request line, which h11
refuses, are ignored (RFC 9112 §2.2). An app that fails before answering gives a 500 (its traceback goes to the log,
not to the client), after that the connection closes.
While a response streams (server-sent events), the app's `receive` reports the client's disconnect, as it does
for a client that leaves before its request's body is whole (no failure of the app's, nor a malformed request) and
for a body malformed (its chunked framing), which the server answers as a malformed head, the app's answer dropped. A
HEAD's answer is its head alone (RFC 9110 §9.3.2): what the app sends after it is dropped and its `receive` reports
a disconnect, so that a stream asked for by HEAD ends and the connection carries the next request. At
most MAX_CONNECTIONS at once: when all are taken, a newcomer takes the slot of the connection whose request began
longest ago among those waiting on their client for it (_Slots), else it is answered 503 `busy` with Retry-After,
its request unread (its bytes dropped until it closes, within BUSY_WRITE_S, for MAX_BUSY newcomers at once), and
closed (_busy). Nothing of a request is logged but, on a failure, its method and path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import h11
import trio

log = logging.getLogger(__name__)

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]
Refused = Callable[[int, str], None]  # told of each 4xx this server answers itself: (status, error code)
Dropped = Callable[[str], None]  # told of each connection closed for want of a slot: "evicted" or "full" (_Slots)
DROPS = ("evicted", "full")
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 1024
KEEP_ALIVE_S = 5.0
READ_TIMEOUT_S = 10.0
REQUEST_DEADLINE_S = 30.0  # for a whole request, head and body, from the connection opening or falling idle
WRITE_TIMEOUT_S = 30.0
_READ_BYTES = 64 * 1024
# The most of a request body its answer left unread (a 413 or 401 sent before it) that is read and dropped for the
# connection to go on, and before it closes (then within LINGER_S of the answer): twice the largest body the API
# takes (4 MiB of traces).
LINGER_BYTES = 8 << 20
LINGER_S = 1.0
BUSY_WRITE_S = 1.0  # the longest a newcomer refused a slot is written to (_busy)
BUSY_RETRY_S = 1  # its Retry-After
MAX_BUSY = MAX_CONNECTIONS // 4  # newcomers refused a slot whose requests are read off at once (_busy)
# Each status's reason phrase in IANA's registry (RFC 9110 section 15, via http.HTTPStatus); a code it does not name
# goes out with an empty one, which RFC 9112 section 4 allows
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
# The error code of the answer to each request the server refuses itself (_refuse), by its status; else bad_request
_REFUSAL_CODES = {431: "head_too_large", 501: "not_implemented", 505: "http_version_not_supported"}
# h11's reason for an empty line where a request line was due, which the server ignores instead (_skip_empty_lines)
_EMPTY_LINE = "no request line received"
_EMPTY_LINES = re.compile(rb"(?:\r?\n)*(?:\r\Z)?")  # and a CR that ends what was read, its LF still to come
# How h11 quotes the text of a malformed request in its reasons (Python's repr of a bytearray): see _detail
_BYTEARRAY = re.compile(r"bytearray\(b('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\)")


class _Closed(Exception):
    """The client went away, or must be let go (timeout, protocol error already answered)."""


class _Late(_Closed):
    """The request did not arrive whole by its deadline (REQUEST_DEADLINE_S)."""


class _Gone(_Closed):
    """The client closed its side before its request was whole."""


async def serve(app: ASGIApp, host: str, port: int, *, refused: Refused, dropped: Dropped,
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on host:port (port 0: a free one) until cancelled, as serve_on does; `task_status.started` gets
    the base URLs."""
    await serve_on(app, await trio.open_tcp_listeners(port, host=host), refused=refused, dropped=dropped,
                   task_status=task_status)


async def serve_on(app: ASGIApp, listeners: list[trio.SocketListener], *, refused: Refused, dropped: Dropped,
                   task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on `listeners` (trio.open_tcp_listeners': bound first, so that the app can be made knowing the
    port) until cancelled, closing them; `task_status.started` gets their base URLs. `refused(status, code)` is told
    of each 4xx the server answers before or instead of the app (408 `request_timeout`, a malformed request's
    `bad_request`, a head too long's 431 `head_too_large`), as the app's own are counted (node.api.refusals);
    `dropped(reason)`, of each connection closed for want of a slot (_Slots)."""
    urls = [_base_url(listener) for listener in listeners]
    slots = _Slots(dropped)
    reading_off = trio.CapacityLimiter(MAX_BUSY)

    async def handle(stream: trio.SocketStream) -> None:
        connection = _Connection(app, stream, refused)
        if not slots.admit(connection):
            await _busy(stream, reading_off)
            return
        try:
            await connection.run()
        finally:
            slots.release(connection)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(urls)


class _Slots:
    """The connections served, at most MAX_CONNECTIONS. When all are taken, a newcomer takes the slot of the one whose
    request began longest ago among those waiting on their client for it (slow to send it, or idle between
    requests), which is closed; if none waits (each runs the app, or writes or streams an answer), it is refused
    (_busy). So clients that hold their slots by sending slowly (slowloris) cannot keep out the next caller.
    `dropped` is told of each: "evicted" (the one closed for a newcomer) or "full" (a newcomer refused)."""

    def __init__(self, dropped: Dropped) -> None:
        self.held: set[_Connection] = set()
        self.dropped = dropped

    def admit(self, connection: _Connection) -> bool:
        if len(self.held) >= MAX_CONNECTIONS:
            waiting = [held for held in self.held if held.waiting]
            if not waiting:
                self.dropped("full")
                return False
            oldest = min(waiting, key=lambda held: held.deadline)
            self.held.discard(oldest)
            oldest.cancel.cancel()
            self.dropped("evicted")
        self.held.add(connection)
        return True

    def release(self, connection: _Connection) -> None:
        self.held.discard(connection)


async def _busy(stream: trio.SocketStream, reading_off: trio.CapacityLimiter) -> None:
    """Answer a newcomer refused a slot (_Slots) 503 `busy` and close, its request unread: within BUSY_WRITE_S, so that
    one that never reads holds no task for longer (it is no connection of the MAX_CONNECTIONS). What it sent is read
    and dropped (up to LINGER_BYTES, until it closes) before the close: closed with its request unread, the socket
    resets the connection (RFC 9293 §3.6.1), and a client that sent its request before reading (curl, http.client)
    saw ECONNRESET, not the 503 (19 in 20 on loopback). At most MAX_BUSY (`reading_off`'s tokens) are read off at
    once; a newcomer beyond them is closed once answered (and may read a reset), so that a flood of newcomers, each
    kept open, holds no more descriptors and tasks than that."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError), trio.move_on_after(BUSY_WRITE_S):
        await stream.send_all(_BUSY)
        await stream.send_eof()
        try:
            reading_off.acquire_nowait()
        except trio.WouldBlock:
            pass  # MAX_BUSY are read off: closed now
        else:
            try:
                await _read_off(stream)
            finally:
                reading_off.release()
    await stream.aclose()


async def _read_off(stream: trio.SocketStream) -> None:
    """Read and drop what the client sends until it closes, up to LINGER_BYTES: a socket closed with bytes unread
    resets the connection (RFC 9293 §3.6.1), and a client that sent them before reading sees ECONNRESET, not its
    answer."""
    dropped = 0
    while dropped <= LINGER_BYTES and (data := await stream.receive_some(_READ_BYTES)):
        dropped += len(data)


def _base_url(listener: trio.SocketListener) -> str:
    """The URL of the address `listener` is bound to, e.g. "http://127.0.0.1:8700"."""
    host, port = listener.socket.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Connection:
    def __init__(self, app: ASGIApp, stream: trio.SocketStream, refused: Refused) -> None:
        self.app = app
        self.stream = stream
        self.refused = refused
        self.h11 = _parser()
        self._reading = trio.Lock()  # the app's receive and the request loop never read at once
        self.awaiting_continue = False  # the request asked for 100 Continue and has not been sent it
        self.client = _address(stream, "peer")
        self.server = _address(stream, "local")
        self.deadline = math.inf  # trio time by which the request being received must be in whole
        self.waiting = False  # for bytes of a request from the client (next_event)
        self.head_request = False  # the last request read is a HEAD: its answer has no body (h11 refuses one)
        self.cancel = trio.CancelScope()  # cancelled to close the connection for a newcomer (_Slots)

    async def run(self) -> None:
        try:
            with self.cancel:
                await self._serve()
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await self.stream.aclose()

    async def _serve(self) -> None:
        try:
            while True:
                self.deadline = trio.current_time() + REQUEST_DEADLINE_S
                event = await self.next_event(KEEP_ALIVE_S if self.h11.their_state is h11.IDLE else READ_TIMEOUT_S)
                if isinstance(event, h11.ConnectionClosed):
                    return
                assert isinstance(event, h11.Request)
                self.awaiting_continue = self.h11.they_are_waiting_for_100_continue and _has_body(event)
                if not await _Exchange(self, event).run() or not await self._next_cycle():
                    return
        except h11.RemoteProtocolError as error:
            await self._refuse(error)
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # one connection's failure must never reach the server's nursery
            log.exception("the API's connection with %s failed", self.client)

    async def _next_cycle(self) -> bool:
        """Ready for the next request on this connection; False if it must close. What the app left unread of
        the request body (a GET's empty body; one answered 413 or 401 before it was read) is read and dropped
        first: a client that sends its whole body before reading (Python's http.client and requests) then reads its
        answer, where a close with its bytes unread resets the connection (RFC 9293 §3.6.1) and it saw ECONNRESET
        instead. After an answer that said nothing of closing (at most LINGER_BYTES of a body of known length left:
        _Exchange._closes_after), the rest is read as a body is, each read within READ_TIMEOUT_S and all by the
        request's deadline, so that the connection goes on as its answer said, however slowly the body comes; after
        one that said `Connection: close`, up to LINGER_BYTES within LINGER_S, as nginx's lingering close does."""
        if self.awaiting_continue:  # never told 100 Continue, the client need not send its body: it cannot be skipped
            await self._linger()  # but it may have sent it anyway (RFC 9110 §10.1.1), or begun to
            return False
        if self.h11.our_state is h11.DONE:  # the answer kept the connection (one saying it closes: MUST_CLOSE)
            while self.h11.their_state is h11.SEND_BODY:
                await self.next_event(READ_TIMEOUT_S)
            self.h11.start_next_cycle()
            return True
        dropped = 0
        with trio.move_on_after(LINGER_S):
            while self.h11.their_state is h11.SEND_BODY and dropped <= LINGER_BYTES:
                event = await self.next_event(READ_TIMEOUT_S)
                dropped += len(event.data) if isinstance(event, h11.Data) else 0
        return False

    async def next_event(self, timeout: float) -> h11.Event:
        """The next event from the client, reading as needed; raises _Closed unless it comes within `timeout`, _Late
        unless it comes by the request's deadline, and _Gone if the client closed its side midway through a
        request (h11 would raise RemoteProtocolError, as for a malformed one) or reset the connection (trio's
        BrokenResourceError, which the app made a 400 of, logged failing to send and counted as a refusal)."""
        if (event := self._next_or_gone()) is not h11.NEED_DATA:
            return event  # already read (a GET's end of message comes with its head)
        async with self._reading:
            read_by = trio.current_time() + timeout
            self.waiting = True
            try:
                with trio.move_on_at(min(read_by, self.deadline)):
                    while (event := self._next_or_gone()) is h11.NEED_DATA:
                        try:
                            data = await self.stream.receive_some(_READ_BYTES)
                        except trio.BrokenResourceError:
                            raise _Gone() from None
                        self.h11.receive_data(data)
                    return event
            finally:
                self.waiting = False
            raise _Late() if self.deadline < read_by else _Closed()

    def _next_or_gone(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """h11's next event; a request head longer than MAX_HEAD_BYTES raises RemoteProtocolError (431) however it
        was read: h11 refuses one only while that much of it waits incomplete, so a longer head read whole (in one
        read, or with the body before it) was taken."""
        idle = self.h11.their_state is h11.IDLE
        buffered = self._buffered() if idle else 0  # (a head comes only then)
        try:
            event = self.h11.next_event()
        except h11.RemoteProtocolError as error:
            held, closed = self.h11.trailing_data
            if self.h11.their_state is h11.ERROR and closed:  # the client closed its side
                raise _Gone() from None
            if idle and (str(error) == _EMPTY_LINE or held == b"\r"):  # (a CR whose LF is still to come)
                self._skip_empty_lines(held)
                return self._next_or_gone()
            raise
        if isinstance(event, h11.Request):
            self.head_request = event.method == b"HEAD"
            if buffered - self._buffered() > MAX_HEAD_BYTES:
                raise h11.RemoteProtocolError("request head too long", error_status_hint=431)
            if not event.http_version.startswith(b"1."):  # h11 takes any d.d and would serve it as HTTP/1.1
                raise h11.RemoteProtocolError(f"HTTP/{event.http_version.decode()}: this server speaks HTTP/1.1 only",
                                              error_status_hint=505)
            if (fault := _target_fault(event) or _framing_fault(event)) is not None:
                raise h11.RemoteProtocolError(fault, error_status_hint=400)
        return event

    def _skip_empty_lines(self, held: bytes) -> None:
        """Ignore the empty lines before a request line, as RFC 9112 §2.2 says a server SHOULD (some clients send one
        after a POST's body), where h11 refuses them (having taken the first off its buffer), and a CR that ends what
        was read, its LF still to come, which h11 refuses as a request line: the parser, between requests and
        holding nothing of one, is made again with what it `held` but those. Its buffer is copied (trailing_data)
        once for each run of empty lines, and never for a request without."""
        self.h11 = _parser()
        if rest := held[_EMPTY_LINES.match(held).end():]:  # (no bytes at all would tell h11 the client closed)
            self.h11.receive_data(rest)

    def _buffered(self) -> int:
        """The bytes h11 holds unparsed, as h11 counts them against its own limit (the length of its receive
        buffer, not public): its trailing_data copies them, and a pipelined burst's heads each waited on a copy or
        two of up to a read's 64 KiB, 4.3 us each, where the server spends some 105 us on a request."""
        return len(self.h11._receive_buffer)

    async def wait_for_close(self) -> None:
        """Return once the client has closed its side. Bytes it sends meanwhile (a pipelined request) wait in h11,
        up to MAX_HEAD_BYTES; a client that sends more is let go as if it had left."""
        waiting = 0
        async with self._reading:
            while True:
                try:
                    data = await self.stream.receive_some(_READ_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                waiting += len(data)
                if not data or waiting > MAX_HEAD_BYTES:
                    return
                self.h11.receive_data(data)

    async def send(self, *events: h11.Event) -> None:
        """Write events; raises _Closed if the client takes none of it for WRITE_TIMEOUT_S (it stopped reading)."""
        data = b"".join(self.h11.send(e) or b"" for e in events)
        with trio.move_on_after(WRITE_TIMEOUT_S):
            await self.stream.send_all(data)
            return
        raise _Closed()

    async def _refuse(self, error: h11.RemoteProtocolError) -> None:
        """Answer a malformed request with h11's status (400, 431, 501) or 505 (_next_or_gone), its error code
        (_REFUSAL_CODES), a JSON reason and `Connection: close` (RFC 9112 §9.6), if still possible, then read and drop
        what the client sends (the rest of a head too long, say) before the close (_linger), as _busy does."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = error.error_status_hint
        code = _REFUSAL_CODES.get(status, "bad_request")
        if status < 500:  # a request the server cannot serve (501, 505) is no fault of the caller's to count
            self.refused(status, code)
        detail = f"request head: longer than {MAX_HEAD_BYTES} bytes (its request line and header fields)" \
            if status == 431 else _detail(error)
        body = json.dumps({"error": code, "detail": detail}).encode()
        head = self.head_request and self.h11.our_state is h11.SEND_RESPONSE  # (else h11 has read no request)
        try:
            with trio.move_on_after(READ_TIMEOUT_S):
                await self.send(*_json_answer(status, body, head=head))
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return
        await self._linger()

    async def _linger(self) -> None:
        """Before closing the connection: end this side, then read and drop what the client sends until it closes,
        up to LINGER_BYTES within LINGER_S (_read_off), so that it reads the answer sent rather than a reset."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_eof()
            self.waiting = True  # on its client: a newcomer may take its slot (_Slots)
            with trio.move_on_after(LINGER_S):
                await _read_off(self.stream)


class _Exchange:
    """One request and its response: the ASGI app's `receive` and `send`."""

    def __init__(self, connection: _Connection, request: h11.Request) -> None:
        self.connection = connection
        self.request = request
        self.authority, self.target = _origin_form(request.target)
        self.head = request.method == b"HEAD"
        self.started: h11.Response | None = None  # the response head, written with the first body bytes
        self.head_written = False
        self.finished = False
        self.body_done = False
        self.disconnected = False
        self.cut_off = False  # the body did not arrive (_too_late, or its client left): what the app sends is dropped
        self.body_read = 0  # bytes of the request body handed to the app
        self.malformed: h11.RemoteProtocolError | None = None  # why the body could not be read (its chunked framing)
        self.awaiting_close: trio.CancelScope | None = None  # a streaming response's wait for its client to leave

    def _path(self) -> str:
        """The request's path as a log line shows it: without its query string, which may carry a caller's
        credentials (an `?access_token=` some clients send; the node takes none there)."""
        return self.target.partition(b"?")[0].decode("ascii", errors="replace")

    def scope(self) -> dict[str, Any]:
        raw_path, _, query = self.target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.request.http_version.decode(),
            "method": self.request.method.decode(),
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": _with_host(self.request.headers, self.authority),
            "client": self.connection.client,
            "server": self.connection.server,
        }

    async def run(self) -> bool:
        """Run the app for this request; whether the connection may carry another."""
        try:
            await self.connection.app(self.scope(), self.receive, self.send)
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            raise
        except Exception:
            log.exception("the API failed on %s %s", self.request.method.decode(), self._path())
        else:
            if not self.head_written and self.malformed is None:
                log.error("the API did not answer %s %s", self.request.method.decode(), self._path())
        if self.malformed is not None:  # answered as a malformed head is (_Connection._refuse); the app's was dropped
            raise self.malformed
        if not self.head_written:
            body = b'{"error":"internal","detail":"the node failed to answer; see its log"}'
            self.started = _response(500, _json_headers(body))
            await self.send({"type": "http.response.body", "body": body})
        # A response begun and not finished (a stream the app ended, or whose client left, or a failure midway):
        # closing the connection is the only way left to end it.
        return self.finished

    async def receive(self) -> dict[str, Any]:
        if self.cut_off:
            return {"type": "http.disconnect"}
        if self.body_done:  # a streaming response listens for the client leaving
            if not self.disconnected:
                with trio.CancelScope() as self.awaiting_close:  # (a HEAD's answer ends it: send)
                    await self.connection.wait_for_close()
                self.disconnected = True
            return {"type": "http.disconnect"}
        if self.connection.awaiting_continue and not self.head_written:
            self.connection.awaiting_continue = False
            await self.connection.send(h11.InformationalResponse(status_code=100, headers=[], reason=_REASONS[100]))
        try:
            event = await self.connection.next_event(READ_TIMEOUT_S)
        except _Gone:  # the client left before its body was whole: no one to answer, no failure of the app's
            self.cut_off = self.disconnected = True
            self.head_written = True  # nor a 500 for the app's answer that never went out
            return {"type": "http.disconnect"}
        except _Late:
            await self._too_late(f"the request did not arrive whole within {REQUEST_DEADLINE_S:g} s")
            return {"type": "http.disconnect"}
        except _Closed:  # no byte of the body for READ_TIMEOUT_S: not the app's failure, as it was when raised to it
            await self._too_late(f"no byte of the request came for {READ_TIMEOUT_S:g} s")
            return {"type": "http.disconnect"}
        except h11.RemoteProtocolError as error:  # raised into an app that answers every failure (FastAPI), it was a
            self.malformed = _body_fault(error)  # 500 and a traceback logged as the node's, or a 400 blaming the JSON
            self.cut_off = self.disconnected = True
            return {"type": "http.disconnect"}
        if isinstance(event, h11.Data):
            self.body_read += len(event.data)
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        if isinstance(event, h11.EndOfMessage):
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.disconnected = True
        return {"type": "http.disconnect"}

    async def _too_late(self, detail: str) -> None:
        """Answer 408 (`detail` saying why) for a request whose body did not arrive in time, unless an answer was
        begun; the app is told the client left and what it sends is dropped (its answer to a body it could not
        read is no failure to log), and the connection closes."""
        self.cut_off = self.disconnected = True
        if self.head_written:
            return
        self.head_written = True  # nor a 500 for the app's answer that never went out
        self.connection.refused(408, "request_timeout")
        body = json.dumps({"error": "request_timeout", "detail": detail}).encode()
        with contextlib.suppress(_Closed, trio.BrokenResourceError, trio.ClosedResourceError):  # it closes anyway
            await self.connection.send(*_json_answer(408, body, head=self.head))

    def _closes_after(self) -> bool:
        """Whether the connection closes after this answer, begun before the request's body was read whole, so that
        its head must say `Connection: close` (RFC 9112 §9.6), lest a client keeping connections alive send its next
        request into a closed one: the client waits to be told 100 Continue before it sends a body that then cannot
        be skipped, or more of a body of known length is still to come than _next_cycle reads and drops
        (LINGER_BYTES), or the body is chunked, its length not known ahead: read and dropped all the same, it may run
        past LINGER_BYTES or LINGER_S, which closed the connection unsaid."""
        if self.connection.awaiting_continue:
            return True
        if self.connection.h11.their_state is not h11.SEND_BODY:
            return False
        length = _body_length(self.request)
        return length is None or length - self.body_read > LINGER_BYTES

    async def send(self, message: dict[str, Any]) -> None:
        if self.cut_off:
            return  # the request was answered 408, or its client left, and its connection closes
        kind = message["type"]
        if kind == "http.response.start":
            if self.started is not None:
                raise RuntimeError("ASGI: http.response.start sent twice")
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            self.started = _response(message["status"], headers)
            return
        if kind != "http.response.body":
            raise RuntimeError(f"ASGI: unexpected message {kind!r}")
        if self.started is None or self.finished:
            raise RuntimeError("ASGI: http.response.body before http.response.start, or after the last body")
        if self.disconnected:
            raise _Closed()
        events: list[h11.Event] = []
        if not self.head_written:
            if self._closes_after():
                self.started = _response(self.started.status_code, [*self.started.headers, (b"connection", b"close")])
            events.append(self.started)
            self.head_written = True
        body = message.get("body", b"")
        if body and not self.head:
            events.append(h11.Data(data=body))
        if not message.get("more_body", False) or self.head:
            events.append(h11.EndOfMessage())
            self.finished = True
        await self.connection.send(*events)
        if self.head:  # a HEAD's answer ends with its head (RFC 9110 §9.3.2): a stream's app is told its client left
            self.cut_off = True  # and what more it sends is dropped, so that the connection goes on
            if self.awaiting_close is not None:
                self.awaiting_close.cancel()


def _parser() -> h11.Connection:
    """h11's server side for a connection: a request head still incomplete past MAX_HEAD_BYTES is refused (431)."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)


def _body_fault(error: h11.RemoteProtocolError) -> h11.RemoteProtocolError:
    """The refusal of a request whose chunked body h11 could not read (`error`): h11's 431, its buffer full while a
    line of the body was incomplete, is a chunk's size line (with its extensions) or the trailer fields longer than
    MAX_HEAD_BYTES, a 400 saying so, where it was answered as a request head too long."""
    if error.error_status_hint != 431:
        return error
    return h11.RemoteProtocolError(f"chunked body: a chunk's size line (with its extensions), or its trailer fields, "
                                   f"longer than {MAX_HEAD_BYTES} bytes", error_status_hint=400)


def _response(status: int, headers: list[tuple[bytes, bytes]]) -> h11.Response:
    """A response head whose status line carries the status's standard reason phrase (`200 OK`, not `200 `)."""
    return h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


def _detail(error: h11.RemoteProtocolError) -> str:
    """h11's reason a request is malformed, the text it quotes as a quoted string: h11 shows it as Python's repr of a
    bytearray (`illegal header line: bytearray(b'X y')`), which an API caller has no use for."""
    return _BYTEARRAY.sub(r"\1", str(error)) or "malformed HTTP request"


def _origin_form(target: bytes) -> tuple[bytes | None, bytes]:
    """`target`'s authority if it has one, and `target` in origin form (RFC 9112 §3.2.1, `/path?query`): one in
    absolute form (§3.2.2, `http://host/path`, as a client sends through a proxy), which a server must accept, without
    its scheme and authority (and any userinfo the authority carries). A target holding a fragment, where the
    authority would end, never comes here (_target_fault)."""
    _, absolute, rest = target.partition(b"://")
    if not absolute or target.startswith(b"/"):
        return None, target
    start = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    path = rest[start:]
    return rest[:start].rpartition(b"@")[2], path if path.startswith(b"/") else b"/" + path


def _with_host(headers: list[tuple[bytes, bytes]], authority: bytes | None) -> list[tuple[bytes, bytes]]:
    """The request's headers as the app sees them: with an absolute-form target, its `authority` as the Host, which
    the server must use in place of the Host header received (RFC 9112 §3.2.2), so that the app's Host check
    (forbidden_host) judges the host the request names."""
    if authority is None:
        return list(headers)
    return [(name, value) for name, value in headers if name != b"host"] + [(b"host", authority)]


def _body_length(request: h11.Request) -> int | None:
    """The length of `request`'s body by its framing (RFC 9112 §6.3): its Content-Length, 0 without one, or None if
    chunked (Transfer-Encoding, the only one h11 takes), its length not known ahead."""
    headers = dict(request.headers)
    return None if b"transfer-encoding" in headers else int(headers.get(b"content-length", b"0"))


def _target_fault(request: h11.Request) -> str | None:
    """Why `request`'s target is not one a request carries: it holds a fragment (`#`), which RFC 9110 §4.2.4 says is
    never sent, and neither form a server takes has (RFC 9112 §3.2.1 origin form, §3.2.2 absolute form): an
    absolute-form target's authority would run on past it (`http://evil.example#@127.0.0.1/`), and an origin-form
    one's path hold it. None if it holds none."""
    if b"#" not in request.target:
        return None
    return "request target: a fragment (`#` and what follows) is never sent in a request (RFC 9110 §4.2.4); " \
           "send the target without it"


def _framing_fault(request: h11.Request) -> str | None:
    """Why `request`'s body cannot be framed safely, which h11 takes as chunked (RFC 9112 §6.1): a Transfer-Encoding
    with a Content-Length, whose body a proxy in front may have read by the other (request smuggling), or in HTTP/1.0,
    which has no transfer codings (its framing faulty); None if it can."""
    names = {name for name, _ in request.headers}
    if b"transfer-encoding" not in names:
        return None
    if b"content-length" in names:
        return "Transfer-Encoding and Content-Length: send one, not both (RFC 9112 §6.1)"
    if request.http_version == b"1.0":
        return "Transfer-Encoding in an HTTP/1.0 request, which has none: send Content-Length (RFC 9112 §6.1)"
    return None


def _has_body(request: h11.Request) -> bool:
    """Whether `request` has a body to send: chunked, or a Content-Length above 0. One without asks for 100 Continue
    in vain (h11 still says its client waits for it): nothing of it is to come."""
    return (length := _body_length(request)) is None or length > 0


def _json_answer(status: int, body: bytes, *, head: bool) -> list[h11.Event]:
    """The events of an answer the server gives itself (`body` JSON) before it closes the connection; to a HEAD
    request (`head`) without its body, which h11 refuses to send (RFC 9110 §9.3.2), its length a GET's."""
    headers = [*_json_headers(body), (b"connection", b"close")]
    return [_response(status, headers), *([] if head else [h11.Data(data=body)]), h11.EndOfMessage()]


def _busy_response() -> bytes:
    """What _busy writes: a whole HTTP/1.1 503 in the API's error shape, made once."""
    body = json.dumps({"error": "busy", "detail": f"the node serves {MAX_CONNECTIONS:,} connections, each busy; try "
                                                  f"again in {BUSY_RETRY_S} s"}).encode()
    head = [b"HTTP/1.1 503 Service Unavailable", *(b"%s: %s" % pair for pair in _json_headers(body)),
            b"retry-after: %d" % BUSY_RETRY_S, b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _address(stream: trio.SocketStream, which: str) -> tuple[str, int] | None:
    try:
        name = stream.socket.getpeername() if which == "peer" else stream.socket.getsockname()
    except OSError:
        return None
    return str(name[0]), int(name[1])


_BUSY = _busy_response()
