import subprocess
import sys


def test_help_lists_the_program_with_first_steps():
    out = subprocess.run([sys.executable, "-m", "node.cli", "--help"], capture_output=True, text=True, check=True)
    assert "examples (a node in ~/.vouchnet, or --dir DIR, or $VOUCHNET_DIR):\n  vouchnet demo " in out.stdout
    assert "\n  vouchnet init --name 'Acme Agents' && vouchnet run\n" in out.stdout


def test_demo_signs_logs_and_proves_a_record():
    out = subprocess.run([sys.executable, "-m", "node.cli", "demo"], capture_output=True, text=True, check=True)
    assert "inclusion proof" in out.stdout and "consistency proof" in out.stdout and "verifies" in out.stdout


def test_the_command_line_loads_without_py_libp2p():
    """Every `vouchnet` command, and every signature worker a node spawns (spawn imports the main module first),
    starts by importing node.cli: py-libp2p would add a second to each. Only the commands that need it load it."""
    code = "import sys, node.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'libp2p')[:3])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
