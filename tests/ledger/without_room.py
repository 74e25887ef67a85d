"""Running code as on a full disk: in a child process no file of which may grow past 4 KiB (RLIMIT_FSIZE), so that
SQLite cannot size the -shm file of a WAL database as it opens one (SQLITE_IOERR_SHMSIZE), as on a full tmpfs."""

import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
_PRELUDE = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
"""


def without_room(code: str, *args: str) -> str:
    """What `code` prints, run with `args` as sys.argv[1:] where no file may grow past 4 KiB."""
    return subprocess.run([sys.executable, "-c", _PRELUDE + code, *args], cwd=_ROOT, capture_output=True, text=True,
                          check=True).stdout
