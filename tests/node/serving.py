"""Serve an ASGI app with hypercorn's trio worker on 127.0.0.1 (a free port), as the daemon does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


@asynccontextmanager
async def serving(app) -> AsyncIterator[str]:
    """The base URL of `app` served on 127.0.0.1 until the block ends."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None  # keep "Running on ..." out of the stderr the CLI tests read
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config))
        yield binds[0]
        nursery.cancel_scope.cancel()
