import subprocess
import sys


def test_help_lists_the_program():
    out = subprocess.run([sys.executable, "-m", "node.cli", "--help"], capture_output=True, text=True, check=True)
    assert "vouchnet" in out.stdout
