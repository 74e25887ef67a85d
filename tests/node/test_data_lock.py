"""node.data_lock: the data directory's lock, and the process a refusal names as holding it."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.data_lock import (KEY_LOCK_FILE, LOCK_FILE, DataDirBusy, holder, locked_data_dir, replacing_key,
                            signing_with_key)

_ROOT = Path(__file__).resolve().parents[2]
_HOLD = """
import sys
from pathlib import Path
from node.data_lock import locked_data_dir
with locked_data_dir(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the kernel names lock holders in /proc/locks (Linux)")
def test_a_refusal_names_the_process_holding_the_directory(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], cwd=_ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "locked\n"
        with pytest.raises(DataDirBusy) as refused, locked_data_dir(tmp_path):
            pass
        assert str(refused.value) == (f"{tmp_path}: in use by another process, pid {child.pid} (is its node running? "
                                      "stop it first)")
    finally:
        child.communicate("")
    with locked_data_dir(tmp_path):  # released when it exited
        pass


def test_the_holder_is_read_from_the_kernel_s_flock_lines_only(tmp_path):
    """POSIX locks and waiters ("->") on the same file are not holders of its flock; another file's lines are not
    either; no such table (another system) names no one."""
    path = tmp_path / LOCK_FILE
    path.write_bytes(b"")
    st = os.stat(path)
    file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    locks = tmp_path / "locks"
    locks.write_text(f"1: POSIX  ADVISORY  WRITE 11 {file} 0 EOF\n"
                     f"2: FLOCK  ADVISORY  WRITE 12 {file}9 0 EOF\n"
                     f"3: -> FLOCK  ADVISORY  WRITE 13 {file} 0 EOF\n"
                     f"3: FLOCK  ADVISORY  WRITE 14 {file} 0 EOF\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert holder(fd, locks) == 14
        locks.write_text(f"1: FLOCK  ADVISORY  WRITE 0 {file} 0 EOF\n")
        assert holder(fd, locks) is None
        assert holder(fd, tmp_path / "missing") is None
    finally:
        os.close(fd)


@pytest.mark.parametrize("lock", [locked_data_dir, signing_with_key, replacing_key])
def test_a_symbolic_link_planted_as_a_lock_file_is_refused_not_followed(tmp_path, lock):
    """A data directory's owner could plant `node.lock` or `key.lock` as a link to a file of root's: a command run as
    root takes the lock before it checks the directory's owner (node.strict_modes), and would create that file."""
    data_dir, target = tmp_path / "node", tmp_path / "roots-file"
    data_dir.mkdir()
    for name in (LOCK_FILE, KEY_LOCK_FILE):
        (data_dir / name).symlink_to(target)
    with pytest.raises(OSError) as refused, lock(data_dir):
        pass
    assert refused.value.errno == errno.ELOOP and "symbolic link" in str(refused.value)
    assert not target.exists()
