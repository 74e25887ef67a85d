"""`python -m node.cli ARGS` in a process of its own, without paying for the node's imports each time.

Importing the node takes most of the seconds a `vouchnet run` that stops at start-up, or a `vouchnet init`, lasts.
`ForkedCli` starts this module as a server once: it imports the node, then for each run forks a child that runs
node/cli.py as `python -m` does, its stdout and stderr going to files, and answers with the child's exit status.
`spawn` starts a run that the test signals, such as `vouchnet run`: the server forks it and answers at once, and
reaps it when asked how it is (`ForkedProcess`, as much of subprocess.Popen as the tests use).
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from . import kill_points

_ROOT = Path(__file__).resolve().parents[2]


class ForkedCli:
    """The server process, having imported `preload`; `run` to have it run one command line, its output kept in
    `workdir`."""

    def __init__(self, workdir: Path, preload: Sequence[str] = ("node.cli", "node.daemon")) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self._workdir, self._runs = workdir, 0
        self._server = subprocess.Popen([sys.executable, "-m", "tests.node.forked_cli", *preload], cwd=_ROOT,
                                        text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def __enter__(self) -> ForkedCli:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, args: Sequence[str], timeout: int = 60, kill_at: int | None = None
            ) -> subprocess.CompletedProcess[str]:
        """What `python -m node.cli *args` printed and returned; a run lasting `timeout` s is killed (SIGALRM). With
        `kill_at`, the run SIGKILLs itself at that point of its file writes (tests/node/kill_points.py): returncode
        -9, unless it ended before."""
        self._runs += 1
        out, err = self._workdir / f"{self._runs}.stdout", self._workdir / f"{self._runs}.stderr"
        status = self._ask({"args": list(args), "out": str(out), "err": str(err), "timeout": timeout,
                            "kill_at": kill_at})
        return subprocess.CompletedProcess(list(args), int(status), out.read_text(), err.read_text())

    def spawn(self, args: Sequence[str], log: Path, before: Sequence[str] = ()) -> ForkedProcess:
        """Start `python -m node.cli *args` without waiting for it, its stderr appended to `log`; with `before`
        (module, function, its string arguments...), that function is called in the run's process first (to give
        the run a disk that hangs, say)."""
        request = {"spawn": list(args), "log": str(log), "before": list(before)}
        return ForkedProcess(self, list(args), int(self._ask(request)), log)

    def returncode(self, pid: int) -> int | None:
        """The exit status of the spawned run `pid`, or None while it runs."""
        status = self._ask({"status": pid})
        return None if status == "running" else int(status)

    def _ask(self, request: dict[str, object]) -> str:
        assert self._server.stdin is not None and self._server.stdout is not None
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        answer = self._server.stdout.readline()
        if not answer:
            raise RuntimeError(f"the forking server ended ({self._server.wait()})")
        return answer.strip()

    def close(self) -> None:
        assert self._server.stdin is not None
        self._server.stdin.close()
        self._server.wait(timeout=30)


class ForkedProcess:
    """A run `ForkedCli.spawn` started: its pid, and poll, send_signal, kill and wait as subprocess.Popen's; its
    stderr in `log`."""

    def __init__(self, cli: ForkedCli, args: list[str], pid: int, log: Path) -> None:
        self.args, self.pid, self.log, self._cli = args, pid, log, cli
        self.returncode: int | None = None

    def logged(self, words: str, timeout: float) -> str | None:
        """The first line of the run's log that holds `words`, once there; None if the run ends, or `timeout` s
        pass, before it is."""
        deadline = time.monotonic() + timeout
        while True:
            ended = self.poll() is not None  # (asked before the log is read: a line written as the run ends counts)
            text = self.log.read_text() if self.log.exists() else ""  # (the run opens it as it starts)
            found = next((line for line in text.splitlines() if words in line), None)
            if found is not None or ended or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._cli.returncode(self.pid)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # not reaped yet, so the pid is still this run's
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.02)
        return code


def _redirect(out: str, err: str, flags: int) -> None:
    """stdout and stderr to files opened with `flags` too, stdin from /dev/null."""
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600), fd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)


def _run_cli(args: list[str]) -> None:
    sys.argv = [str(_ROOT / "node" / "cli.py"), *args]
    runpy.run_module("node.cli", run_name="__main__", alter_sys=True)


def _spawned(args: list[str], log: str, before: list[str]) -> None:
    """Run node/cli.py as `python -m node.cli *args` would, to the end of the interpreter (its exit status from the
    SystemExit or exception that ends the run), as a run that is signalled is timed to its process's end; `before`,
    if given, called first (ForkedCli.spawn)."""
    _redirect(os.devnull, log, os.O_APPEND)
    if before:
        module, function, *arguments = before
        getattr(import_module(module), function)(*arguments)
    _run_cli(args)
    sys.exit(0)


def _child(args: list[str], out: str, err: str, timeout: int, kill_at: int | None) -> None:
    """Run node/cli.py as `python -m node.cli *args` would, then end the process with its exit status."""
    _redirect(out, err, os.O_TRUNC)
    if kill_at is not None:
        kill_points.kill_at(kill_at)
    signal.alarm(timeout)  # as subprocess.run's timeout: a hung run fails its test rather than holding up the suite
    code = 0
    try:
        _run_cli(args)
    except SystemExit as stop:  # as the interpreter reads it
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _serve(preload: Sequence[str]) -> None:
    for module in preload:  # the imports the children share
        import_module(module)
    # Out of the cycle collector's sight, as `vouchnet run` puts its modules as it begins: the server's exit walked
    # them all, 0.6 s of CPU (3-7 s to close a server at load 9), and a child's collections copied their pages.
    gc.freeze()
    spawned: dict[int, int | None] = {}  # pid: exit status, once reaped
    for line in sys.stdin:
        request = json.loads(line)
        if "status" in request:
            answer = spawned[request["status"]]
            if answer is None and (reaped := os.waitpid(request["status"], os.WNOHANG))[0]:
                answer = spawned[request["status"]] = os.waitstatus_to_exitcode(reaped[1])
            sys.stdout.write(f"{'running' if answer is None else answer}\n")
        elif "spawn" in request:
            if (pid := os.fork()) == 0:
                _spawned(request["spawn"], request["log"], request["before"])
            spawned[pid] = None
            sys.stdout.write(f"{pid}\n")
        else:
            if (pid := os.fork()) == 0:
                _child(request["args"], request["out"], request["err"], request["timeout"], request["kill_at"])
            sys.stdout.write(f"{os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1:])
