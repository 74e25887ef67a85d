"""The node's own code run in the command's process, on its data directory: `vouchnet run`, and the catch-up sync
`vouchnet key rotate` runs first (node.daemon)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from node.config import NodeConfig
from node.keys import KeyFileError
from node.strict_modes import TooOpen, check_strict_modes

from .common import CommandFailed, UsageError

T = TypeVar("T")


def run_node_code(config: NodeConfig, main: Callable[[NodeConfig], Awaitable[T]], *,
                  setup: Callable[[], object] = lambda: None) -> T:
    """`main(config)` run by trio, as the node: refused first (UsageError) if the data directory or its files are
    open to others (node.strict_modes), before `setup` (the command's logging, say: nothing is logged before the
    refusal), which runs before the node's modules load (seconds: `setup` may say first that the node starts); what
    it writes readable by the org alone (umask 077: the audit log holds raw telemetry); a failure to open the node
    (node.daemon.StartupError, also inside trio's exception groups) raised as CommandFailed, an unusable org key as
    UsageError, and a Ctrl-C that trio raised in a task of a nursery as a bare KeyboardInterrupt (as in its main
    task)."""
    import trio

    try:
        check_strict_modes(config.data_dir)
    except TooOpen as error:
        raise UsageError(str(error)) from None
    setup()
    from node.daemon import StartupError  # here, after `setup`: py-libp2p's import would add seconds to every command

    umask = os.umask(0o077)
    try:
        return trio.run(main, config)
    except BaseException as error:  # a failure to start comes up through the node's nursery, in exception groups
        if isinstance(error, BaseExceptionGroup) and error.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None  # Ctrl-C met a task in a nursery: the command's to say (exit 130)
        if (unusable := _sole(error, KeyFileError)) is not None:
            raise UsageError(str(unusable)) from None
        failure = _sole(error, StartupError)
        if failure is None:
            raise
        raise CommandFailed(str(failure)) from None
    finally:
        os.umask(umask)


def _sole(error: BaseException, kind: type[Exception]) -> Exception | None:
    """`error` if it is a `kind`, or the one `kind` inside exception groups of one exception each (as trio's
    nurseries pass a failure up); else None."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error if isinstance(error, kind) else None
