"""Node processes: started as `vouchnet run` in their own session, told apart from recycled pids by their start
time, stopped with SIGTERM and, past a bound, SIGKILL. Linux (/proc); only pids this testnet recorded are signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import node

from . import node_log

_NODE_LOG = node_log.__file__  # run as a script: the writer imports neither the testnet nor the node
_SOURCE_ROOT = str(Path(node.__file__).resolve().parent.parent)  # the checkout (or site-packages) holding `node`


def vouchnet_command(*args: str) -> list[str]:
    """`vouchnet ARGS...` run by this interpreter from the code this testnet runs (a checkout need not be installed)."""
    return [sys.executable, "-m", "node.cli", *args]


def child_env() -> dict[str, str]:
    """The environment of a `vouchnet` child: ours, with the source root first on PYTHONPATH, and the working
    directory kept off the front of sys.path (PYTHONSAFEPATH), where `python -m` puts it: run from inside another
    checkout, the nodes would import that checkout's code instead of this one's."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONSAFEPATH"] = "1"
    return env


def spawn_node(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Start `vouchnet run --dir data_dir`, its log lines appended to `log_path`; the node's process and its log
    process (spawn_logged)."""
    return spawn_logged(vouchnet_command("run", "--dir", str(data_dir)), log_path)


def spawn_logged(command: list[str], log_path: Path, *, max_bytes: int = node_log.MAX_BYTES,
                 backups: int = node_log.BACKUPS) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Start `command` in a new session (a Ctrl-C meant for the caller does not reach it), its stdout and stderr
    piped to a process of its own appending them to `log_path`, rotated past `max_bytes` with `backups` kept
    (testnet.node_log; in a session of its own too, and ending when `command` does). Returns both processes."""
    node_log.check_limits(max_bytes, backups)  # here: the writer's own error would go unseen
    writer = subprocess.Popen([sys.executable, "-I", _NODE_LOG, str(log_path), str(max_bytes), str(backups)],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    assert writer.stdin is not None
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=writer.stdin, stderr=subprocess.STDOUT,
                                   env=child_env(), start_new_session=True)
    finally:
        writer.stdin.close()  # the command's end of the pipe is its own: the writer ends with it
    return process, writer


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if there is no such live process (a zombie,
    which has exited but not been reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ", which may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None) -> bool:
    """Whether the process we started as `pid` at `started` still runs (not a later process given the same pid)."""
    return pid is not None and started is not None and start_time(pid) == started


def stop(processes: Iterable[tuple[int, int]], *, timeout: float) -> tuple[list[int], list[int]]:
    """SIGTERM each (pid, start time) still alive, wait up to `timeout` s, SIGKILL the rest and wait for them to go.
    Returns (pids that stopped on SIGTERM, pids that had to be killed)."""
    running = [(pid, started) for pid, started in processes if alive(pid, started)]
    for pid, _ in running:
        _signal(pid, signal.SIGTERM)
    remaining = _wait_gone(running, timeout)
    for pid, _ in remaining:
        _signal(pid, signal.SIGKILL)
    survivors = _wait_gone(remaining, 5.0)
    if survivors:
        raise RuntimeError(f"processes {[pid for pid, _ in survivors]} survived SIGKILL")
    killed = {pid for pid, _ in remaining}
    return [pid for pid, _ in running if pid not in killed], sorted(killed)


def kill(pid: int, started: int) -> None:
    """SIGKILL the process (if it is still the one we started) and wait until it is gone."""
    if alive(pid, started):
        _signal(pid, signal.SIGKILL)
        if _wait_gone([(pid, started)], 5.0):
            raise RuntimeError(f"process {pid} survived SIGKILL")


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_gone(processes: list[tuple[int, int]], timeout: float) -> list[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = [(pid, started) for pid, started in processes if alive(pid, started)]
        _reap(pid for pid, _ in processes)  # after the check: a zombie counts as gone, and is then collected
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.05)


def _reap(pids: Iterable[int]) -> None:
    """Collect those of `pids` that are our exited children, so that none lingers as a zombie."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child (started by an earlier `testnet up`): its parent, init, reaps it
