"""Real node processes for the benchmarks: `vouchnet init`, config values set for the run, `vouchnet run`, where
the node listens read from its "node running" log line, its CPU time from /proc, SIGTERM to stop it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.config import CONFIG_FILE, load_config  # noqa: E402
from node.logs import logfmt_fields  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat


def vouchnet(*args: str) -> str:
    """Run a `vouchnet` command (this checkout's, with this interpreter) and return what it printed."""
    done = subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"vouchnet {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def init(data_dir: Path, *, network: str, roots: tuple[str, ...] = (), listen: str = "/ip4/127.0.0.1/tcp/0",
         **values: object) -> str:
    """`vouchnet init` on loopback (the API on a port the OS picks), then `configure(**values)`; the org's did."""
    args = ["init", "--dir", str(data_dir), "--network", network, "--listen", listen, "--api", "127.0.0.1:0"]
    for root in roots:
        args += ["--root", root]
    printed = vouchnet(*args)
    configure(data_dir, **values)
    return re.search(r"^org did\s+(\S+)", printed, re.MULTILINE).group(1)  # type: ignore[union-attr]


def configure(data_dir: Path, **values: object) -> None:
    """Set keys of config.toml by their names, each unique in the file (e.g. epoch_seconds=1, roots=[...])."""
    path = data_dir / CONFIG_FILE
    text = path.read_text()
    for key, value in values.items():
        toml = json.dumps(value) if isinstance(value, (list, tuple, str)) else str(value)
        text, found = re.subn(rf"^{key} = .*$", lambda _: f"{key} = {toml}", text, flags=re.MULTILINE)
        if found != 1:
            raise ValueError(f"config.toml: no single key {key!r}")
    path.write_text(text)
    load_config(data_dir)  # the values must load


@dataclass
class Daemon:
    """A running `vouchnet run` process."""

    process: subprocess.Popen[str]
    data_dir: Path
    did: str
    api: str  # http://127.0.0.1:PORT
    listen: str  # multiaddr ending in /p2p/<peer id>
    token: str

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        _stop(self.process)

    def request(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An idempotent request to the node's API (a GET, or a POST with an Idempotency-Key), sent twice if the
        connection is lost (the server may close a kept-alive connection just as a request goes out);
        RuntimeError naming the exit status if the node has exited."""
        try:
            return client.request(method, f"{self.api}{path}", timeout=30, **kwargs)
        except httpx.TransportError:
            if self.process.poll() is not None:
                raise RuntimeError(f"the node in {self.data_dir} exited with {self.process.returncode}") from None
        return client.request(method, f"{self.api}{path}", timeout=30, **kwargs)


def start(data_dir: Path) -> Daemon:
    """`vouchnet run --dir data_dir`; returns once the node logs that every service is up."""
    return _ready(_spawn(data_dir), data_dir)


def _spawn(data_dir: Path, profile: str | None = None) -> subprocess.Popen[str]:
    """`vouchnet run`; under benchmarks/profiled_node.py, writing PROFILE-<n>.pstats, if `profile` is given."""
    program = ["node.cli"] if profile is None else ["benchmarks.profiled_node", profile]
    return subprocess.Popen([sys.executable, "-m", *program, "run", "--dir", str(data_dir), "--log-level", "info"],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def _ready(process: subprocess.Popen[str], data_dir: Path) -> Daemon:
    """Wait for the node's "node running" line; its log from then on goes to our stderr if a warning or worse."""
    assert process.stderr is not None
    for line in process.stderr:
        if "node running" in line:
            fields = logfmt_fields(line)
            break
    else:
        raise RuntimeError(f"the node in {data_dir} exited with {process.wait()} before it was running")
    threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
    return Daemon(process, data_dir, fields["did"], fields["api"], fields["listen"].split(",")[0],
                  (data_dir / "api.token").read_text().strip())


def _drain(stream: object) -> None:
    """Read the node's log so that its pipe never fills; pass on warnings, errors and anything that is not a log
    line (a traceback)."""
    for line in stream:  # type: ignore[attr-defined]
        if not line.startswith("ts=") or not ("level=info" in line or "level=debug" in line):
            sys.stderr.write(line)


@contextmanager
def running(data_dirs: list[Path], profile_last: str | None = None) -> Iterator[list[Daemon]]:
    """Start a node in each data directory, all at once, the last one profiled if `profile_last` is given (_spawn);
    stop them all on exit."""
    with ExitStack() as stack:
        processes = []
        for i, data_dir in enumerate(data_dirs):
            process = _spawn(data_dir, profile_last if i == len(data_dirs) - 1 else None)
            stack.callback(_stop, process)
            processes.append(process)
        yield [_ready(process, data_dir) for process, data_dir in zip(processes, data_dirs)]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
