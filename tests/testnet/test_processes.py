"""Node processes: run from this checkout's code wherever they are started from, told apart from a later process
with the same pid, stopped with SIGTERM, killed past the bound, and never left behind as zombies."""

import subprocess
import sys
from pathlib import Path

from testnet import processes

IGNORES_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
                   "time.sleep(60)")
STOPS_ON_SIGTERM = "import time; print('ready', flush=True); time.sleep(60)"


def _spawn(code: str) -> tuple[int, int]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process.pid, processes.start_time(process.pid)


def test_sigterm_first_then_sigkill_past_the_bound_and_nothing_left():
    polite, stubborn = _spawn(STOPS_ON_SIGTERM), _spawn(IGNORES_SIGTERM)
    clean, killed = processes.stop([polite, stubborn], timeout=1.0)
    assert (clean, killed) == ([polite[0]], [stubborn[0]])
    for pid, started in (polite, stubborn):
        assert not processes.alive(pid, started)
        assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie


def test_a_recorded_pid_with_another_start_time_is_not_ours():
    pid, started = _spawn(STOPS_ON_SIGTERM)
    try:
        assert processes.alive(pid, started)
        assert not processes.alive(pid, started - 1)
        assert processes.stop([(pid, started - 1)], timeout=1.0) == ([], [])  # not signalled
        assert processes.alive(pid, started)
    finally:
        processes.kill(pid, started)
    assert not processes.alive(pid, started)
    assert not processes.alive(None, None)


def test_a_vouchnet_child_runs_this_code_even_from_inside_another_checkout(tmp_path):
    impostor = tmp_path / "node"
    impostor.mkdir()
    (impostor / "__init__.py").write_text("")
    (impostor / "cli.py").write_text("raise SystemExit('the node package of the working directory ran')\n")
    run = subprocess.run(processes.vouchnet_command("--help"), cwd=tmp_path, env=processes.child_env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "testnet" in run.stdout
