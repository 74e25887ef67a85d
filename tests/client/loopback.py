"""An ASGI app served by uvicorn on a free loopback port, in the test's asyncio loop or a thread of its own."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serving(app_for: Callable[[str], Any]) -> AsyncIterator[str]:
    """Serve the app `app_for(its base URL)` makes until the block ends; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound before uvicorn starts: no window for another process to take the port
    port = sock.getsockname()[1]
    app = app_for(f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):  # a server that never starts fails the test instead of hanging it
        while not server.started:  # uvicorn offers no event to wait on
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        sock.close()


@contextmanager
def serving_in_thread(app_for: Callable[[str], Any]) -> Iterator[str]:
    """`serving` on an event loop of its own in a thread, for code under test that runs `asyncio.run` itself."""
    ready, urls, failures = threading.Event(), [], []
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stopped = asyncio.Event()
        async with serving(app_for) as url:
            urls.append(url)
            stop.append((asyncio.get_running_loop(), stopped))
            ready.set()
            await stopped.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported to the test's thread
            failures.append(error)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    if failures or not urls:
        raise RuntimeError(f"the loopback server did not start: {failures}")
    try:
        yield urls[0]
    finally:
        loop, stopped = stop[0]
        loop.call_soon_threadsafe(stopped.set)
        thread.join(10)
