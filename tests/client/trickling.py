"""A hostile server on loopback that answers every request with `head`, then one byte of `drip` every DRIP_S for
up to LAST_S: each read of its answer comes well within any per-read timeout, but the answer never ends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DRIP_S = 0.05
LAST_S = 10.0  # then the server hangs up: a client without a whole-request deadline waits this long


@contextmanager
def trickling(head: bytes, drip: bytes = b" ") -> Iterator[tuple[str, threading.Semaphore]]:
    """Serve until the block ends; yields the base URL and a semaphore released at each connection accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # accept() wakes to see the block end (closing the socket would not wake it)
    stop, accepted = threading.Event(), threading.Semaphore(0)

    def answer(conn: socket.socket) -> None:
        conn.settimeout(None)
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(head)
                for _ in range(int(LAST_S / DRIP_S)):
                    if stop.wait(DRIP_S):
                        return
                    conn.sendall(drip)
            except OSError:  # the client gave up and closed: what the test wants
                return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.release()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(10)
        listener.close()


TRICKLED_HEADERS = b"HTTP/1.1 200 OK\r\nX-Slow: "
TRICKLED_BODY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
TRICKLED_STREAM = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"  # a body until the server hangs up
