"""Real node processes for the benchmarks: `vouchnet init`, config values set for the run, `vouchnet run`, where
the node listens read from its "node running" log line, its CPU time from /proc, SIGTERM to stop it.
"""

from __future__ import annotations

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.config import CONFIG_FILE, load_config  # noqa: E402

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


def init(data_dir: Path, *, network: str, roots: tuple[str, ...] = (), bootstrap: tuple[str, ...] = (),
         **values: float | int) -> str:
    """`vouchnet init` on loopback (ports chosen by the OS), then set config keys (by their unique names in
    config.toml, e.g. epoch_seconds=1); the org's did."""
    args = ["init", "--dir", str(data_dir), "--network", network, "--listen", "/ip4/127.0.0.1/tcp/0",
            "--api", "127.0.0.1:0"]
    for root in roots:
        args += ["--root", root]
    for addr in bootstrap:
        args += ["--bootstrap", addr]
    printed = vouchnet(*args)
    path = data_dir / CONFIG_FILE
    text = path.read_text()
    for key, value in values.items():
        text, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
        if found != 1:
            raise ValueError(f"config.toml: no single key {key!r}")
    path.write_text(text)
    load_config(data_dir)  # the values must load
    return re.search(r"^org did\s+(\S+)", printed, re.MULTILINE).group(1)  # type: ignore[union-attr]


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
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(data_dir: Path, *, log_level: str = "warning") -> Daemon:
    """`vouchnet run --dir data_dir`; returns once the node logs that every service is up."""
    process = subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--dir", str(data_dir), "--log-level", "info"],
                               cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if "node running" in line:
            fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))
            break
    else:
        raise RuntimeError(f"the node in {data_dir} exited with {process.wait()} before it was running")
    threading.Thread(target=_drain, args=(process.stderr, log_level), daemon=True).start()
    return Daemon(process, data_dir, fields["did"], fields["api"], fields["listen"].split(",")[0],
                  (data_dir / "api.token").read_text().strip())


def _drain(stream: object, level: str) -> None:
    """Read the node's log so that its pipe never fills; pass on lines at `level` or worse."""
    shown = {"warning": ("level=warning", "level=error"), "error": ("level=error",)}.get(level, ())
    for line in stream:  # type: ignore[attr-defined]
        if any(mark in line for mark in shown):
            sys.stderr.write(line)


@contextmanager
def running(data_dirs: list[Path]) -> Iterator[list[Daemon]]:
    """Start a node in each data directory (in order); stop them all on exit."""
    with ExitStack() as stack:
        daemons = []
        for data_dir in data_dirs:
            daemon = start(data_dir)
            stack.callback(daemon.stop)
            daemons.append(daemon)
        yield daemons
