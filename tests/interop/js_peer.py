"""A js-libp2p peer in a Node.js process (js/peer.mjs), driven from trio tests over its stdin and stdout.

`make test` installs its packages with npm (js/package-lock.json). Where Node.js or those packages are missing the
interop tests skip and say why, unless VOUCHNET_INTEROP=required (CI sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

JS_DIR = Path(__file__).parent / "js"
STOP_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0  # the slowest command waits for a few GossipSub heartbeats


def require_js_peer() -> None:
    """Skip the calling test (fail it, under VOUCHNET_INTEROP=required) if the js peer cannot run here."""
    if shutil.which("node") is None:
        missing = "Node.js (the `node` command) is not installed"
    elif not (JS_DIR / "node_modules" / "libp2p").is_dir():
        missing = f"the js peer's packages are not installed (run: npm ci --prefix {JS_DIR})"
    else:
        return
    if os.environ.get("VOUCHNET_INTEROP") == "required":
        pytest.fail(f"VOUCHNET_INTEROP=required but {missing}")
    pytest.skip(missing)


class JsPeer:
    """One running js peer: `command` sends a command and returns its answer; gossip it receives queues up in
    `messages` as (topic, from, data)."""

    def __init__(self, process: trio.Process, ready: dict[str, Any], lines: trio.MemoryReceiveChannel[dict],
                 messages: trio.MemoryReceiveChannel[tuple[str, str, bytes]]) -> None:
        self._process = process
        self._answers = lines
        self.messages = messages
        self.peer_id: str = ready["peer"]
        self.addrs: list[str] = ready["addrs"]

    async def command(self, **command: Any) -> dict[str, Any]:
        """Run one command (see js/peer.mjs); raises AssertionError with the peer's words if it failed, and
        trio.TooSlowError if it takes more than COMMAND_TIMEOUT_S."""
        assert self._process.stdin is not None
        with trio.fail_after(COMMAND_TIMEOUT_S):
            await self._process.stdin.send_all(json.dumps(command).encode() + b"\n")
            answer = await _next(self._answers, self._process)
        assert answer["event"] != "error", f"js peer: {answer['command']} failed: {answer['error']}"
        return answer


@asynccontextmanager
async def js_peer(seed: bytes | None = None) -> AsyncIterator[JsPeer]:
    """A js peer (keyed by the 32-byte Ed25519 `seed`, if given) until the block ends; then it stops and exits."""
    require_js_peer()
    env = dict(os.environ)
    if seed is not None:
        env["VOUCHNET_INTEROP_SEED"] = seed.hex()  # not on the command line, where any process could read it
    process = await trio.lowlevel.open_process(["node", str(JS_DIR / "peer.mjs")], stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, env=env)
    send_line, lines = trio.open_memory_channel[dict](16)
    send_message, messages = trio.open_memory_channel[tuple[str, str, bytes]](10_000)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_events, process, send_line, send_message)
            with trio.fail_after(COMMAND_TIMEOUT_S):
                ready = await _next(lines, process)
            assert ready["event"] == "ready", ready
            yield JsPeer(process, ready, lines, messages)
            await _stop(process, lines)
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


async def _read_events(process: trio.Process, lines: trio.MemorySendChannel[dict],
                       messages: trio.MemorySendChannel[tuple[str, str, bytes]]) -> None:
    assert process.stdout is not None
    pending = b""
    async with lines, messages:  # closed when the peer's stdout ends: whoever waits on them hears of it
        while chunk := await process.stdout.receive_some(1 << 16):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                event = json.loads(line)
                if event["event"] == "message":
                    messages.send_nowait((event["topic"], event["from"], bytes.fromhex(event["data"])))
                else:
                    await lines.send(event)


async def _next(lines: trio.MemoryReceiveChannel[dict], process: trio.Process) -> dict[str, Any]:
    try:
        return await lines.receive()
    except trio.EndOfChannel:
        raise AssertionError(f"the js peer exited (status {await process.wait()}); its stderr says why") from None


async def _stop(process: trio.Process, lines: trio.MemoryReceiveChannel[dict]) -> None:
    assert process.stdin is not None
    await process.stdin.aclose()
    with trio.fail_after(STOP_TIMEOUT_S):
        assert (await _next(lines, process))["event"] == "stopped"
        assert await process.wait() == 0
