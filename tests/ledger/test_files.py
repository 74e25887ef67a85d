"""ledger.files: a file written whole or not at all, durable once the call returns."""

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.files import create_file, make_directory, replace_file

from ..fsyncs import recorded_fsyncs


class _Killed(BaseException):
    """The process killed at this point."""


def _short_writes(monkeypatch, most: int) -> None:
    """Every os.write takes at most `most` bytes, as a write near a full disk or a file size limit may."""
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, bytes(data[:most])))


@given(data=st.binary(max_size=300), most=st.integers(1, 64))
def test_short_writes_still_write_the_whole_file(tmp_path_factory, data, most):
    path = tmp_path_factory.mktemp("short") / "file"
    with pytest.MonkeyPatch.context() as patched:
        _short_writes(patched, most)
        replace_file(path, b"old")
        replace_file(path, data)
        create_file(path.with_name("new"), data)
    assert path.read_bytes() == data == path.with_name("new").read_bytes()


def _operations(monkeypatch) -> list[tuple[str, str]]:
    """The fsyncs (of what), renames and links made from now on, in order, by the paths they name."""
    done: list[tuple[str, str]] = []
    fsync, replace, link = os.fsync, os.replace, os.link

    def synced(fd):
        done.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def replaced(src, dst):
        done.append(("rename", str(dst)))
        replace(src, dst)

    def linked(src, dst):
        done.append(("rename", str(dst)))
        link(src, dst)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", replaced)
    monkeypatch.setattr(os, "link", linked)
    return done


@pytest.mark.parametrize("write", [create_file, replace_file])
def test_the_data_is_synced_before_it_takes_the_name_and_the_directory_after(tmp_path, monkeypatch, write):
    """What a power cut needs: the data on disk before the name points at it, the name on disk before return."""
    path = tmp_path.resolve() / "file"
    done = _operations(monkeypatch)
    write(path, b"data")
    assert done == [("fsync", str(path.with_name(".file.partial"))), ("rename", str(path)), ("fsync", str(path.parent))]


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_a_replacement_killed_at_any_step_leaves_the_old_file_whole(tmp_path, monkeypatch, step):
    path = tmp_path / "file"
    replace_file(path, b"old")

    def killed(*args):
        raise _Killed

    with monkeypatch.context() as patched:
        patched.setattr(os, step, killed)
        with pytest.raises(_Killed):
            replace_file(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["file"]


def test_create_refuses_an_existing_file_and_changes_nothing(tmp_path):
    path = tmp_path / "file"
    create_file(path, b"first")
    with pytest.raises(FileExistsError):
        create_file(path, b"second")
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["file"]


def test_the_file_is_private_by_default_and_a_partial_file_a_crash_left_is_replaced(tmp_path):
    left = tmp_path / ".key.partial"
    left.write_bytes(b"half")
    os.chmod(left, 0o666)
    create_file(tmp_path / "key", b"whole")
    assert (tmp_path / "key").read_bytes() == b"whole" and stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600
    assert not left.exists()


@pytest.mark.parametrize("where", ["missing", "file"])
def test_a_write_the_file_system_refuses_names_the_file_asked_for(tmp_path, where):
    (tmp_path / "file").write_bytes(b"")
    path = tmp_path / where / "out"
    with pytest.raises(OSError) as refused:
        replace_file(path, b"data")
    assert refused.value.filename == str(path) and os.listdir(tmp_path) == ["file"]


def test_a_directory_made_is_synced_into_its_parent_with_each_parent_it_needed(tmp_path, monkeypatch):
    synced = recorded_fsyncs(monkeypatch)
    base = tmp_path.resolve()
    make_directory(base / "a" / "b", mode=0o700)
    make_directory(base / "a" / "b")  # there already: nothing to do
    assert synced == [str(base), str(base / "a")]
    assert stat.S_IMODE((base / "a" / "b").stat().st_mode) == 0o700 & ~_umask()
    (base / "file").write_bytes(b"")
    with pytest.raises(FileExistsError):
        make_directory(base / "file")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
