"""What a server can make the SDK's synchronous requests cost (DESIGN §8, fail closed): a deadline for the whole
request, and a cap on the size of a body read. httpx's timeouts bound each read, so a server that trickles its
answer, a byte at a time (headers included), would otherwise hold a request, and the check waiting on it, for ever;
and the resolution of a host's name, which takes no timeout, as long as the resolver retries.
"""

from __future__ import annotations

import contextvars
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import httpx

from . import _breaker
from ._http import BodyTooLarge, with_body

IDENTITY = {"Accept-Encoding": "identity"}  # the headers of a request whose body `read_capped` reads
# When (time.monotonic) the current thread's request must be done; None: no deadline (httpx's timeouts alone).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("vouchnet_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Requests of this thread made in the block, over a `bounded_transport`, must finish within `seconds` of its
    start, or by the deadline of an enclosing block if that comes first: past it, their next read, write or connect
    raises httpx's timeout error."""
    end, outer = time.monotonic() + seconds, _deadline.get()
    token = _deadline.set(end if outer is None else min(end, outer))
    try:
        yield
    finally:
        _deadline.reset(token)


def renew(seconds: float) -> None:
    """Move the deadline of the enclosing `deadline` block to `seconds` from now (an idle bound: a long-lived stream
    renews it at each line it receives)."""
    _deadline.set(time.monotonic() + seconds)


def bounded_transport() -> httpx.HTTPTransport:
    """httpx's own transport, its network reads, writes and connects held to the thread's `deadline`."""
    import httpcore  # here: it imports trio (when installed), and importing the SDK must not (test_import.py)

    transport = httpx.HTTPTransport()
    pool = transport._pool  # httpx takes no network backend: wrap the one its connection pool was given
    if not isinstance(pool, httpcore.ConnectionPool):
        raise RuntimeError(f"httpx {httpx.__version__}: its transport's pool is not an httpcore.ConnectionPool")
    pool._network_backend = _Backend(pool._network_backend)
    return transport


def read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    """The body of a streamed `response`, refused (BodyTooLarge, naming `what`) once longer than `limit` bytes.
    Read as sent: a compressed body could inflate past any cap before it is counted (ask with `IDENTITY`)."""
    _check_stated(response, limit, what)
    body = _Capped(limit, what)
    for chunk in response.iter_bytes():  # the body as sent (identity, checked above), or as a transport read it
        body.add(chunk)
    return body.joined()


async def aread_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    """`read_capped` for a response of httpx.AsyncClient."""
    _check_stated(response, limit, what)
    body = _Capped(limit, what)
    async for chunk in response.aiter_bytes():
        body.add(chunk)
    return body.joined()


def _check_stated(response: httpx.Response, limit: int, what: str) -> None:
    """Refuse a body compressed against the request's wish, or that says it is longer than `limit`."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise BodyTooLarge(f"{what}: compressed ({encoding}) though asked for identity")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"{what}: {length} bytes, over the limit of {limit}")


class _Capped:
    """A body gathered chunk by chunk, refused once longer than `limit` bytes."""

    def __init__(self, limit: int, what: str) -> None:
        self._limit, self._what = limit, what
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise BodyTooLarge(f"{self._what}: longer than the limit of {self._limit} bytes")
        self._chunks.append(chunk)

    def joined(self) -> bytes:
        return b"".join(self._chunks)


def _left(timeout: float | None, operation: str) -> float | None:
    """`timeout`, shortened to what is left of the deadline; raises httpcore's `<operation>Timeout` once nothing is
    (httpx maps it to its own, as it does a socket's timeout)."""
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        import httpcore  # loaded already: a connection of it is asking

        raise getattr(httpcore, f"{operation}Timeout")("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream:
    """A connection whose every operation waits at most until the deadline of the request using it (httpcore's
    NetworkStream interface, not its class: see bounded_transport's import)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, "Read"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, "Write"))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> _Stream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout, "Connect")))

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


def _within(seconds: float, connect: Callable[[], Any], host: str) -> Any:
    """What `connect()` returns, if it returns within `seconds`; else httpcore's ConnectTimeout, and what it opens
    later is closed."""
    done, lock = threading.Event(), threading.Lock()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            result: tuple[str, Any] = ("stream", connect())
        except BaseException as error:  # handed to the caller, who raises it
            result = ("error", error)
        with lock:
            if outcome.get("abandoned") and result[0] == "stream":
                result[1].close()
            outcome[result[0]] = result[1]
        done.set()

    threading.Thread(target=run, name="vouchnet-connect", daemon=True).start()
    done.wait(seconds)
    with lock:
        if "stream" not in outcome and "error" not in outcome:
            outcome["abandoned"] = True
            import httpcore  # loaded already: a connection of it is asking

            raise httpcore.ConnectTimeout(f"the request's deadline passed resolving or connecting to {host}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["stream"]


class _Backend:
    """Opens `_Stream`s (httpcore's NetworkBackend interface)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> _Stream:
        """A connection to `host`, within the deadline including the resolution of its name: that is getaddrinfo,
        which takes no timeout and blocks while the resolver retries (seconds to tens of seconds), so the connect
        runs in a thread of its own, left to finish (and close what it opened) if the deadline passes first."""
        left = _left(timeout, "Connect")
        connect = partial(self._inner.connect_tcp, host, port, left, local_address, socket_options)
        return _Stream(connect() if _deadline.get() is None else _within(left, connect, host))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(path, _left(timeout, "Connect"),
                                                       socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def get_capped(http: httpx.Client, url: str, limit: int, timeout: float) -> bytes:
    """GET `url` with `http` (its transport a `bounded_transport`): the body, within `timeout` seconds as a whole
    and at most `limit` bytes, through the breaker of its origin (node.client._breaker: while it is open, a
    ConnectError saying so at once); raises httpx.HTTPError (BodyTooLarge, a timeout, a status error). A refusal's
    body is read too (as capped), for the breaker to tell a proxy's 502, 503 or 504 page from the node's own
    refusal, as it does for the policy's requests."""
    try:
        with _breaker.BREAKERS.of(url).attempt(httpx.TransportError, what=f"{url}: "):
            with deadline(timeout), http.stream("GET", url, headers=IDENTITY) as response:
                body = read_capped(response, limit, url)
                with_body(response, body).raise_for_status()
                return body
    except _breaker.NodeFailing as error:
        raise httpx.ConnectError(str(error)) from None
