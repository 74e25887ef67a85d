"""Key and token files: mode 0600, never overwritten, refused when others can read them."""

import os
import stat
import subprocess

import pytest

from node.keys import KeyFileError, TokenFile, create_org_key, create_token, load_org_key, load_token


def test_org_key_is_private_and_round_trips(tmp_path):
    path = tmp_path / "org.key"
    key = create_org_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(load_org_key(path)) == bytes(key)


def test_existing_key_is_never_overwritten(tmp_path):
    path = tmp_path / "org.key"
    create_org_key(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        create_org_key(path)
    assert path.read_bytes() == before


def test_readable_key_is_refused(tmp_path):
    path = tmp_path / "org.key"
    create_org_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="too open"):
        load_org_key(path)


def test_malformed_key_is_refused(tmp_path):
    path = tmp_path / "org.key"
    path.write_bytes(b"short")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="32-byte"):
        load_org_key(path)


def test_a_missing_key_or_token_says_what_to_do_other_than_init(tmp_path):
    """`vouchnet init` refuses a directory that holds a node's config.toml, which every command reads first."""
    with pytest.raises(KeyFileError, match="org.key: missing; restore it from a backup of this data directory"):
        load_org_key(tmp_path / "org.key")
    with pytest.raises(KeyFileError, match="api.token: missing; restore it, or make a new one") as missing:
        load_token(tmp_path / "api.token")
    new = str(missing.value).split("`")[1]
    subprocess.run(new, shell=True, check=True)  # the command it gives makes a token the node takes
    assert len(load_token(tmp_path / "api.token")) >= 32


def test_token_round_trips(tmp_path):
    path = tmp_path / "api.token"
    token = create_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(path) == token


class _Killed(BaseException):
    """The process killed at this point."""


@pytest.mark.parametrize("step", ["write", "fsync"])
def test_a_key_write_killed_midway_leaves_no_key_file(tmp_path, monkeypatch, step):
    """Before: the file was created, then written, so a kill between left an empty or unsynced key file, which
    every later load refused (and `vouchnet key rotate` and the node's start, for org.key.next)."""
    path = tmp_path / "org.key.next"

    def killed(*args):
        raise _Killed

    with monkeypatch.context() as patched:
        patched.setattr(os, step, killed)
        with pytest.raises(_Killed):
            create_org_key(path)
    assert not path.exists()
    key = create_org_key(path)  # the next try writes it
    assert bytes(load_org_key(path)) == bytes(key)


def test_the_partial_file_a_kill_left_does_not_stop_the_next_write(tmp_path):
    path = tmp_path / "org.key"
    left = tmp_path / ".org.key.partial"
    left.write_bytes(b"half")
    os.chmod(left, 0o644)
    key = create_org_key(path)
    assert bytes(load_org_key(path)) == bytes(key) and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not left.exists()


@pytest.mark.parametrize("load", [load_org_key, load_token])
@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo])
def test_a_key_or_token_that_is_not_a_regular_file_is_refused(tmp_path, load, make):
    """A directory in its place failed `vouchnet run` with a traceback (IsADirectoryError), and a FIFO blocked the
    start for good, deaf to SIGTERM."""
    path = tmp_path / "secret"
    make(path, 0o700)
    refusal = rf"{path}: not a regular file \(a directory, a pipe or a device\); put the file itself there$"
    with pytest.raises(KeyFileError, match=refusal):
        load(path)


@pytest.mark.parametrize("token", ["é" * 32, "a" * 16 + "\x00" + "a" * 16])
def test_a_token_no_header_could_carry_is_refused(tmp_path, token):
    """The node took it, and then every write's token was refused; the SDK's clients refuse it (ValueError), which
    `vouchnet vouch --dir` did not catch."""
    path = tmp_path / "api.token"
    path.write_text(token)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=f"{path}: the token holds a character other than printable ASCII"):
        load_token(path)


def test_a_token_file_is_read_again_when_it_changes_and_none_while_it_is_no_token(tmp_path, caplog):
    path = tmp_path / "api.token"
    first = create_token(path)
    token = TokenFile(path)
    assert token.current() == first
    path.unlink()
    second = create_token(path)
    assert token.current() == second
    os.chmod(path, 0o644)  # too open: refused as at start
    assert token.current() is None
    os.chmod(path, 0o600)
    assert token.current() == second
    path.write_text("short\n")  # rewritten in place, as an editor might
    assert token.current() is None
    assert first not in caplog.text and second not in caplog.text
    assert "api.token cannot be read" in caplog.text


def test_a_token_file_unreadable_at_start_is_refused_as_before(tmp_path):
    with pytest.raises(KeyFileError, match="missing"):
        TokenFile(tmp_path / "api.token")


def test_a_short_write_still_stores_the_whole_key(tmp_path, monkeypatch):
    """Before: one os.write, whatever it took, was linked as the key: near a full disk (or under a file size limit) a
    write may take part of the seed, and every load then refused the org key ("found 16 bytes")."""
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, bytes(data[:16])))
    key = create_org_key(tmp_path / "org.key")
    monkeypatch.undo()
    assert bytes(load_org_key(tmp_path / "org.key")) == bytes(key)
