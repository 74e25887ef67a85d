import subprocess
import sys


def test_help_lists_the_program():
    out = subprocess.run([sys.executable, "-m", "node.cli", "--help"], capture_output=True, text=True, check=True)
    assert "vouchnet" in out.stdout


def test_demo_signs_logs_and_proves_a_record():
    out = subprocess.run([sys.executable, "-m", "node.cli", "demo"], capture_output=True, text=True, check=True)
    assert "inclusion proof" in out.stdout and "consistency proof" in out.stdout and "verifies" in out.stdout
