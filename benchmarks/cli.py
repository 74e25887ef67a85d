"""How long `vouchnet` commands take to start and finish, which operators and scripts run constantly (a health check
calling `vouchnet status` every few seconds, CI issuing vouches): the wall and CPU time (user + system, as
`/usr/bin/time` reports them) of each command's whole process, the median of `--runs` runs, against `python -c pass`
measured in the same run, and what each imports (one run, its sys.modules as it exits): how many modules, and which
of the heavy packages a client command should not need. The node they talk to is a `vouchnet run` process on loopback
ports. A figure with no target; it is not a test.

Also the import of gossip/host.py, the module that wraps py-libp2p, which `vouchnet run` pays for.

    python benchmarks/cli.py [--runs 11]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The repository root before this folder: benchmarks/ledger.py would otherwise shadow the ledger package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey  # noqa: E402

from benchmarks import daemons  # noqa: E402
from benchmarks.machine import Run  # noqa: E402
from vouching import did_key  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("libp2p", "trio", "anyio", "fastapi", "hypercorn", "numpy", "gossip", "ledger")  # top-level packages watched
# Prefixed to a process's code: it prints the modules it holds as it exits.
_AT_EXIT = ("import atexit, sys; "
            "atexit.register(lambda: print(*(f'module {m}' for m in sys.modules), sep='\\n', file=sys.stderr)); ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(tmp: Path) -> tuple[daemons.Daemon, Path]:
    """`vouchnet init` with the API on a free port and `vouchnet run`; another port if another process took that one
    in between (on a machine where others run tests, it happens)."""
    for attempt in range(5):
        data_dir = tmp / f"node{attempt}"
        daemons.vouchnet("init", "--dir", str(data_dir), "--network", "clibench", "--listen", "/ip4/127.0.0.1/tcp/0",
                         "--api", f"127.0.0.1:{_free_port()}")
        try:
            return daemons.start(data_dir), data_dir
        except RuntimeError as failed:
            error = failed
    raise error


def _new_did() -> str:
    return did_key(bytes(SigningKey.generate().verify_key))


def measure(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one process running `argv` from the repository root; its output is discarded."""
    with tempfile.TemporaryFile() as err:
        wall = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - wall
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so that Popen does not wait again
        if process.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv[3:])} exited {process.returncode}: {err.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def imports(argv: list[str]) -> tuple[int, list[str]]:
    """How many modules `argv` (a `python -m ...` or `python -c ...`) holds as it exits, and which HEAVY packages.
    (`-X importtime` also lists imports that failed, as httpcore's of trio in a command, node.commands.common.)"""
    python, option, target, *rest = argv
    code = target if option == "-c" else (f"import runpy; runpy.run_module({target!r}, run_name='__main__', "
                                          "alter_sys=True)")
    done = subprocess.run([python, "-c", _AT_EXIT + code, *rest], cwd=ROOT, capture_output=True, text=True)
    names = [line.removeprefix("module ") for line in done.stderr.splitlines() if line.startswith("module ")]
    return len(names), sorted({n.split(".")[0] for n in names} & set(HEAVY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="runs of each command (default: %(default)s)")
    args = parser.parse_args()

    run = Run.start()
    print(run.header(f"vouchnet commands, median of {args.runs} runs each"))
    with tempfile.TemporaryDirectory() as tmp:
        node, data_dir = _start_node(Path(tmp))
        out = Path(tmp) / "agents"
        try:
            d = ["--dir", str(data_dir)]
            python, cli = [sys.executable], [sys.executable, "-m", "node.cli"]
            commands: list[tuple[str, Callable[[], list[str]]]] = [
                ("python -c pass (baseline)", lambda: [*python, "-c", "pass"]),
                ("vouchnet --help", lambda: [*cli, "--help"]),
                ("vouchnet status --help", lambda: [*cli, "status", "--help"]),
                ("vouchnet status", lambda: [*cli, "status", *d]),
                ("vouchnet vouch", lambda: [*cli, "vouch", _new_did(), "--weight", "0.5", "--basis", "audit", *d]),
                ("vouchnet records", lambda: [*cli, "records", *d]),
                ("vouchnet log verify", lambda: [*cli, "log", "verify", *d]),
                ("vouchnet agent new", lambda: [*cli, "agent", "new", "--out", str(out), *d]),
                ("import gossip.host (py-libp2p)", lambda: [*python, "-c", "import gossip.host"]),
            ]
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in commands}
            for _ in range(args.runs):  # round by round, so that a change in the machine's load touches every command
                for name, argv in commands:
                    samples[name].append(measure(argv()))
            modules = {name: imports(argv()) for name, argv in commands}
        finally:
            node.stop()

    base_wall, base_cpu = (statistics.median(s[i] for s in samples[commands[0][0]]) for i in (0, 1))
    print(f"{'command':32} {'wall s':>7} {'CPU s':>7} {'CPU - baseline':>15} {'modules':>8}  heavy packages imported")
    for name, _ in commands:
        wall, cpu = (statistics.median(s[i] for s in samples[name]) for i in (0, 1))
        count, heavy = modules[name]
        print(f"{name:32} {wall:7.3f} {cpu:7.3f} {cpu - base_cpu:15.3f} {count:8}  {', '.join(heavy) or '-'}")
    print(f"baseline: {base_wall:.3f} s wall, {base_cpu:.3f} s CPU")
    print(run.footer())


if __name__ == "__main__":
    main()
