import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def test_help_lists_the_program_with_first_steps():
    out = subprocess.run([sys.executable, "-m", "node.cli", "--help"], capture_output=True, text=True, check=True)
    assert "examples (a node in ~/.vouchnet, or --dir DIR, or $VOUCHNET_DIR):\n  vouchnet demo " in out.stdout
    assert "\n  vouchnet init --name 'Acme Agents' && vouchnet run\n" in out.stdout


def test_python_dash_m_node_is_the_vouchnet_command():
    """`python -m node` said `No module named node.__main__`: an operator without the script on PATH had to know the
    command's module."""
    out = subprocess.run([sys.executable, "-m", "node", "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("usage: vouchnet ")
    assert subprocess.run([sys.executable, "-m", "node", "no-such-command"], capture_output=True).returncode == 2


def test_a_command_interrupted_exits_130_without_python_s_warnings_about_tasks_it_never_started():
    """Ctrl-C as `key rotate`'s catch-up started its services: after the command's line saying nothing was signed,
    Python's `sys:1: RuntimeWarning: coroutine 'SyncService._fetch_reported_gaps' was never awaited` (a task the
    interrupted trio run had yet to start, collected at exit). In a process of its own, as at exit."""
    code = ("import sys\nfrom node import cli\nasync def never():\n    pass\ndef interrupted(argv):\n"
            "    global left\n    left = never()\n    raise KeyboardInterrupt\n"
            "cli._run = interrupted\nsys.exit(cli.main([]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (130, "")


def test_demo_signs_logs_and_proves_a_record():
    out = subprocess.run([sys.executable, "-m", "node.cli", "demo"], capture_output=True, text=True, check=True)
    assert "inclusion proof" in out.stdout and "consistency proof" in out.stdout and "verifies" in out.stdout


def test_the_command_line_loads_without_py_libp2p():
    """Every `vouchnet` command, and every signature worker a node spawns (spawn imports the main module first),
    starts by importing node.cli: py-libp2p would add a second to each. Only the commands that need it load it."""
    code = "import sys, node.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'libp2p')[:3])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["testnet", "--help"], ["sim", "--help"]],
                         ids=" ".join)
def test_help_loads_neither_py_libp2p_nor_the_api_server(argv):
    """py-libp2p and FastAPI take seconds to load on a loaded machine; `--help`, which lists every command, and the
    help of those that run the node's code (`run`, a testnet) need neither. In a process of its own."""
    code = ("import sys; from node import cli; code = cli.main(sys.argv[1:]); "
            "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'libp2p', 'fastapi', 'starlette', 'scipy'}))")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "0 []"


@pytest.mark.parametrize("argv", [["--help"], [], ["no-such-command"], ["--version"]], ids=repr)
def test_vouchnet_s_own_help_imports_no_command_s_module(argv):
    """`vouchnet --help` imported every command's module to list the commands (the node's stores, httpx, the
    testnet: 0.5-0.7 s of CPU where it now takes 0.05 s, found by stop 45's ops walk); it lists them from
    cli.COMMANDS, as no command or a mistyped one does. In a process of its own."""
    code = ("import sys; from node import cli; code = cli.main(sys.argv[1:]); heavy = ('node.commands', 'testnet', "
            "'gossip', 'ledger', 'httpx'); print(code, sorted(m for m in sys.modules if m.startswith(heavy)))")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert result.stdout.splitlines()[-1] == f"{0 if argv in (['--help'], ['--version']) else 2} []"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, whose every write fails ENOSPC")
@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("argv", [["--help"], ["log", "verify", "--help"], ["--version"], ["demo"]], ids=" ".join)
def test_output_that_cannot_be_written_fails_the_command_saying_why(argv, buffered):
    """Written to a full disk, `--help` exited 0 having written nothing (argparse drops the error), and `--version`
    or `demo` (what stayed buffered until Python's exit) 120 with Python's own `Exception ignored` lines: each exits 2
    with one line saying why, as a command does for any file it cannot write."""
    env = {**os.environ, "PYTHONUNBUFFERED": "" if buffered else "1"}
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "node.cli", *argv], stdout=full, stderr=subprocess.PIPE,
                                text=True, env=env)
    name = "vouchnet demo" if argv == ["demo"] else "vouchnet"
    assert (result.returncode, result.stderr) == (2, f"{name}: No space left on device\n")


@pytest.mark.parametrize("body", [
    b'{"error": "bad_request", "detail": "agent \\u001b[2J\\u001b]0;owned\\u0007 unknown"}',  # in the node's form
    b"<html>\x1b[2J\x1b]0;owned\x07 Bad Gateway</html>",  # a proxy's, or another server's, page
])
def test_an_error_answer_reaches_the_terminal_with_its_control_characters_escaped(body):
    """Whatever answers at --api writes the error text `vouchnet` prints: its escape sequences (clear the screen,
    retitle the window) are shown as text, not obeyed by the operator's terminal."""
    with answering(400, body) as url:
        result = subprocess.run([sys.executable, "-m", "node.cli", "status", "--api", url],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "\\x1b[2J\\x1b]0;owned\\x07" in result.stderr
    assert not any(c in result.stderr for c in "\x1b\x07")


@contextmanager
def answering(status: int, body: bytes) -> Iterator[str]:
    """The URL of a server on 127.0.0.1 that answers every GET with `status` and `body`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
