"""`python -m node.cli ARGS` in a process of its own, without paying for the node's imports each time.

Importing the node takes most of the seconds a `vouchnet run` that stops at start-up, or a `vouchnet init`, lasts.
`ForkedCli` starts this module as a server once: it imports the node, then for each run forks a child that runs
node/cli.py as `python -m` does, its stdout and stderr going to files, and answers with the child's exit status.
Only for runs that end by themselves: a run the test must signal is started with subprocess.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
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
        assert self._server.stdin is not None and self._server.stdout is not None
        self._runs += 1
        out, err = self._workdir / f"{self._runs}.stdout", self._workdir / f"{self._runs}.stderr"
        request = {"args": list(args), "out": str(out), "err": str(err), "timeout": timeout, "kill_at": kill_at}
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        status = self._server.stdout.readline()
        if not status:
            raise RuntimeError(f"the forking server ended ({self._server.wait()})")
        return subprocess.CompletedProcess(list(args), int(status), out.read_text(), err.read_text())

    def close(self) -> None:
        assert self._server.stdin is not None
        self._server.stdin.close()
        self._server.wait(timeout=30)


def _child(args: list[str], out: str, err: str, timeout: int, kill_at: int | None) -> None:
    """Run node/cli.py as `python -m node.cli *args` would, then end the process with its exit status."""
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    if kill_at is not None:
        kill_points.kill_at(kill_at)
    signal.alarm(timeout)  # as subprocess.run's timeout: a hung run fails its test rather than holding up the suite
    sys.argv = [str(_ROOT / "node" / "cli.py"), *args]
    code = 0
    try:
        runpy.run_module("node.cli", run_name="__main__", alter_sys=True)
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
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request["args"], request["out"], request["err"], request["timeout"], request["kill_at"])
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        sys.stdout.write(f"{status}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1:])
