"""Saves the hold of a clock stepped ahead (node.node_time) for a restart to go on with (node.clock_hold): as the
node starts, and each `HOLD_SAVE_SECONDS` after while the clock is held, so that a crash loses that much of the hold
at most, even in a crash loop whose runs last less than a minute (a run saved nothing before its first minute, and
such a loop held the clock for ever); and removes the file at the first save once the hold is over. Each write (two
fsyncs: milliseconds, up to a second on a loaded disk) is on a worker thread, so the trio loop never waits on it; one
at a time, in the order taken (NodeTime.write)."""

from __future__ import annotations

import trio

from .node_time import HOLD_SAVE_SECONDS, NodeTime


class HoldSaver:
    """A service for the root nursery: saves `node_time`'s hold every `HOLD_SAVE_SECONDS` of trio's clock."""

    def __init__(self, node_time: NodeTime) -> None:
        self.node_time = node_time

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Save now (the node's first reading, which starts or goes on with a hold, has been taken), then every
        HOLD_SAVE_SECONDS. A cancel waits for a write under way, so the audit log's save as it closes comes after."""
        task_status.started()
        due = trio.current_time()
        while True:
            if (save := self.node_time.to_save()) is not None:
                await trio.to_thread.run_sync(self.node_time.write, save)
            due = max(due + HOLD_SAVE_SECONDS, trio.current_time())
            await trio.sleep_until(due)
