"""Where the tests' files go: in memory (/dev/shm, where an fsync costs nothing) where the machine has room there,
so that tmp_path, tmp_path_factory and tempfile's directories do not wait on the disk; the tests of what survives a
killed process (DESIGN §4, crash safety) take `disk_path`, a directory on the disk, as a node's data directory is.
Each test starts with the SDK's log limit unspent. Property tests (hypothesis) run under the "vouchnet" profile: no
deadline on an example's time. The garbage collector is off while the tests are collected."""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio.testing
from hypothesis import settings

from node.logs import OWN_LOGGERS, LogfmtFormatter

DISK = Path(tempfile.gettempdir())  # before the change below: $TMPDIR or /tmp
MEMORY = Path("/dev/shm")

MEMORY_NEEDED = 2 * 2**30  # bytes free: a container's /dev/shm is often 64 MiB, which the suite would fill


# Wall seconds every task of a test over loopback sockets waits, with no input ready, before loopback_clock jumps:
# more than loopback takes to hand a peer what was sent, so the clock jumps only where the hosts wait for a timer
LOOPBACK_IDLE_S = 0.01


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[None]:
    """The collector is off while the test modules are imported and their asserts rewritten (which frees its garbage
    as it goes, by reference counts): the import of some 200 modules made 30-odd full collections, each walking all
    that was imported before it, 12 s of the 28 s of CPU a collection of the suite took on this loaded machine."""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()


def _roomy(directory: Path) -> bool:
    if not (directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)):
        return False
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize >= MEMORY_NEEDED


# An example's time is no behaviour a test asserts: on a loaded 2-core machine an example of some milliseconds took
# past hypothesis' default deadline (200 ms), and the run failed with DeadlineExceeded (or "Unreliable test timings")
# though every example held. Without a deadline, HealthCheck.too_slow waits for 30 s of drawing, not 1 s. The rest is
# the profile hypothesis loaded (its "ci" one where a CI variable is set: derandomized, no example database).
settings.register_profile("vouchnet", settings.default, deadline=None)
settings.load_profile("vouchnet")

IN_MEMORY = _roomy(MEMORY)
if IN_MEMORY:
    tempfile.tempdir = str(MEMORY)  # read by pytest's tmp_path_factory too, unless --basetemp is given


def _disk_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(dir=DISK, prefix="vouchnet-disk-")


@pytest.fixture
def disk_path() -> Iterator[Path]:
    """A fresh directory on the disk, removed after the test: for tests that kill a process writing to it."""
    with _disk_directory() as directory:
        yield Path(directory)


@pytest.fixture(scope="module")
def module_disk_path() -> Iterator[Path]:
    """disk_path for a module's fixtures: removed after the module's last test."""
    with _disk_directory() as directory:
        yield Path(directory)


@pytest.fixture(autouse=True)
def _fresh_sdk_log_limit(monkeypatch) -> None:
    """Each test starts with the SDK's log limit unspent (node.client._log.LIMIT counts across the process): a test
    reading the SDK's lines must not find them suppressed for what earlier tests logged."""
    sdk_log = sys.modules.get("node.client._log")
    if sdk_log is not None:
        monkeypatch.setattr(sdk_log.LIMIT, "_sites", {})


@pytest.fixture(autouse=True)
def _fresh_libp2p_log_limit(monkeypatch) -> None:
    """Each test starts with py-libp2p's log limit unspent (gossip.host.LIBP2P_LOG_LIMIT counts across the
    process, one line a call site a minute): a test reading py-libp2p's lines must not find them suppressed for
    earlier tests'."""
    host = sys.modules.get("gossip.host")
    if host is not None:
        monkeypatch.setattr(host.LIBP2P_LOG_LIMIT, "_sites", {})


@pytest.fixture(autouse=True)
def _umask_restored() -> Iterator[None]:
    """Each test leaves the process's umask as it found it: `vouchnet run` sets 077 for what the node writes, and a
    test running it in-process made every later test's files 0600 (a config edit that keeps a file's 0640 failed)."""
    mask = os.umask(0o077)
    os.umask(mask)
    yield
    os.umask(mask)


@pytest.fixture(autouse=True)
def _node_logging_removed() -> Iterator[None]:
    """Each test leaves no handler of node.logs.configure_logging (`vouchnet run` in-process) on the root logger, nor
    its level, nor that of vouchnet's own loggers: one left on the test's captured stderr, closed after it, gave every
    later test that logged "Logging error" lines in its own stderr (a test reading a command's stderr lines failed),
    and an own logger left at INFO hid its debug lines from a later test's caplog. pytest's own handlers, added and
    removed around each phase, are left to it."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *OWN_LOGGERS)}
    yield
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, LogfmtFormatter)]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def loopback_clock() -> trio.testing.MockClock:
    """A mock clock for a test of hosts talking over loopback: still while they work, it jumps to the next timer once
    they all wait (LOOPBACK_IDLE_S of the wall's time with no input ready), so that their timeouts and the test's
    waits of seconds take milliseconds, and none runs out only because the machine was busy."""
    return trio.testing.MockClock(autojump_threshold=LOOPBACK_IDLE_S)
