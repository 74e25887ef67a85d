"""`vouchnet init`: a complete, private data directory, or a clear refusal that changes nothing."""

import itertools
import os
import signal
import stat

import pytest

from node import cli
from node.config import ConfigError, load_config
from node.keys import KeyFileError, load_org_key, load_token
from node.setup import init_data_dir
from node.strict_modes import check_strict_modes
from vouching import did_key


def _init(path, **overrides):
    args = dict(network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    return init_data_dir(path, **{**args, **overrides})


def test_init_creates_key_token_and_config(tmp_path):
    made = _init(tmp_path / "node", roots=("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",))
    key = load_org_key(made.data_dir / "org.key")
    assert made.did == did_key(bytes(key.verify_key))
    assert load_token(made.data_dir / "api.token")
    assert stat.S_IMODE(made.data_dir.stat().st_mode) == 0o700
    config = load_config(made.data_dir)
    assert config.network == "testnet" and len(config.roots) == 1


def test_init_sets_the_digest_epoch_a_demo_can_wait_for(tmp_path, capsys):
    """Before, a node's first digests came an hour after its first events, unless one found and edited
    [telemetry] epoch_seconds in config.toml: the README's two nodes never showed a digest reach the other."""
    assert cli.main(["init", "--dir", str(tmp_path / "node"), "--epoch-seconds", "30"]) == 0
    assert load_config(tmp_path / "node").epoch_seconds == 30.0
    assert load_config(_init(tmp_path / "default").data_dir).epoch_seconds == 3600.0


def test_init_writes_a_config_only_its_owner_may_write_whatever_the_umask(tmp_path):
    """Under the umask 002 of many distributions' users, config.toml was group-writable, which `vouchnet run`
    refuses (node.strict_modes)."""
    previous = os.umask(0o002)
    try:
        made = _init(tmp_path / "node")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((made.data_dir / "config.toml").stat().st_mode) == 0o644
    check_strict_modes(made.data_dir)


def test_init_refuses_an_existing_node_and_changes_nothing(tmp_path):
    made = _init(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyFileError, match="already"):
        _init(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert load_org_key(made.data_dir / "org.key")


def test_init_with_a_bad_option_leaves_no_half_made_directory(tmp_path):
    with pytest.raises(ConfigError, match="trust.roots"):
        _init(tmp_path, roots=("alice",))
    assert list(tmp_path.iterdir()) == []


def test_init_with_a_bad_option_leaves_no_directory_it_made(tmp_path):
    with pytest.raises(ConfigError, match="p2p.listen"):
        _init(tmp_path / "node", listen=("127.0.0.1:4001",))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("option", "value", "rule"), [
    ("--network", "Demo", "must be 1 to 64 characters of a-z 0-9 . _ -"),
    ("--listen", "127.0.0.1:4001", "not a multiaddr: must be /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>, "
                                   "got '127.0.0.1:4001'"),
    ("--bootstrap", "127.0.0.1:4001", "not a multiaddr: must be /ip4/<address>/tcp/<port>/p2p/<peer id> (or /ip6, "
                                      "/dns, /dns4, /dns6), got '127.0.0.1:4001'"),
    ("--bootstrap", "/ip4/127.0.0.1/tcp/4001", "a peer address must end in /p2p/<peer id>"),
    ("--api", "localhost", "expected HOST:PORT, got 'localhost'"),
    # Each was taken as a host name, and `vouchnet run` failed binding it (or bound what the resolver made of it).
    ("--api", "999.1.1.1:80", "'999.1.1.1' is not an IP address: an IPv4 address is four decimal numbers 0-255 "
                              "between dots, without leading zeros, such as 127.0.0.1"),
    ("--api", "127.1:8700", "'127.1' is not an IP address"),
    ("--api", "[1::2::3]:8700", "[1::2::3] is not an IPv6 address"),
    ("--api", "my host:8700", "'my host' is not a host name (letters, digits, '-' and '_' in labels of 1-63 between "
                              "dots), such as localhost"),
    ("--name", "a\tb", "must be 1-128 printable characters"),
    ("--epoch-seconds", "0.5", "must be at least 1, got 0.5"),
    ("--epoch-seconds", "nan", "must be a finite number, got nan"),
])
def test_init_refuses_a_bad_option_by_its_name(tmp_path, capsys, option, value, rule):
    """Before: `vouchnet init --network Demo` answered `x/config.toml: network: ...`, naming a file that init had not
    written, and `--api localhost` `api.bind: ...`: a newcomer looked for a config to mend."""
    assert cli.main(["init", "--dir", str(tmp_path / "x"), option, value]) == 2
    assert capsys.readouterr().err.startswith(f"vouchnet init: {option}: {rule}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("api", ["localhost:8700", "node_1.internal:0", "vouchnet.example.org.:8700", "0.0.0.0:8700",
                                 "[::1]:8700"])
def test_init_takes_an_api_address_by_host_name_or_ip_address(tmp_path, capsys, api):
    assert cli.main(["init", "--dir", str(tmp_path / "x"), "--api", api]) == 0
    assert load_config(tmp_path / "x").api_host == api.rpartition(":")[0].strip("[]")


def _complete(data_dir):
    """The node's did if `data_dir` holds a whole node (config, key, token, all loading), else None."""
    try:
        config = load_config(data_dir)
        load_token(config.token_path)
        return did_key(bytes(load_org_key(config.key_path).verify_key))
    except (ConfigError, KeyFileError):
        return None


def test_init_killed_at_any_moment_of_its_writes_is_finished_by_running_it_again(tmp_path, local_cli):
    """Before: config.toml was written first, in place and unsynced: killed after it was created, init left a
    directory `vouchnet run` refused (an empty config, or no org.key) and so did `vouchnet init` ("already a node's
    data directory"), until the operator removed it by hand; a power cut after init left an empty config.toml.
    (In memory: a SIGKILL leaves what was written, synced or not; ledger.files's tests check the fsyncs.)"""
    for point in itertools.count(1):
        data_dir = tmp_path / f"killed-at-{point}"
        args = ["init", "--dir", str(data_dir), "--network", "crash", "--api", "127.0.0.1:0"]
        killed = local_cli.run(args, kill_at=point)
        if killed.returncode == 0:
            break
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        if _complete(data_dir) is None:
            kept = (data_dir / "org.key").exists()
            again = local_cli.run(args)
            assert again.returncode == 0, f"killed at point {point}, then: {again.stderr}"
            assert again.stdout.startswith(f"finished {data_dir}, an init cut short: it keeps the org key that init "
                                           "made" if kept else f"created {data_dir}"), again.stdout
        assert _complete(data_dir), point
    assert point > 10  # every write of the init was a point


def test_init_refuses_a_directory_others_may_write_before_writing_anything(tmp_path, capsys):
    """A directory made for the node that `vouchnet run` would refuse is refused by init, not once the node starts,
    and init writes nothing in it."""
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o775)
    data_dir.chmod(0o775)
    assert cli.main(["init", "--dir", str(data_dir)]) == 2
    assert f"{data_dir}: writable by group or others (permissions 0775)" in capsys.readouterr().err
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize("where", ["itself", "a parent"])
def test_init_names_a_file_where_the_data_directory_or_a_parent_must_be(tmp_path, capsys, where):
    """`init --dir FILE` said only "FILE: File exists", and a path through a file "Not a directory"."""
    (tmp_path / "file").write_bytes(b"kept")
    data_dir = tmp_path / "file" if where == "itself" else tmp_path / "file" / "node"
    assert cli.main(["init", "--dir", str(data_dir)]) == 2
    parent = "" if where == "itself" else f" (in the path of {data_dir})"
    assert (f"{tmp_path / 'file'}{parent} is a file, not a directory; --dir names the node's data directory, made if "
            "missing") in capsys.readouterr().err
    assert (tmp_path / "file").read_bytes() == b"kept"


def test_init_takes_a_parent_another_init_makes_as_it_looks_for_a_directory(tmp_path, monkeypatch):
    """Found by a CI run of stop 38: `testnet up` inits its nodes at once, in one parent; an init that found the parent
    not a directory, then there (another init had made it), refused it as "a file, not a directory". The other init
    makes it as the file system is first asked about it (os.stat: under Path.stat, is_dir and exists, os.path.isdir)."""
    parent, real_stat = tmp_path / "nodes", os.stat

    def made_meanwhile(path, *, dir_fd=None, follow_symlinks=True) -> os.stat_result:
        if os.fspath(path) == str(parent) and follow_symlinks and not os.path.lexists(parent):
            parent.mkdir()  # (by the other init, just after this one looked)
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "stat", made_meanwhile)
    assert cli.main(["init", "--dir", str(parent / "n00")]) == 0
    assert (parent / "n00" / "config.toml").is_file()


def test_init_names_a_symbolic_link_to_nothing_where_the_data_directory_must_be(tmp_path, capsys):
    (tmp_path / "node").symlink_to(tmp_path / "gone")
    assert cli.main(["init", "--dir", str(tmp_path / "node")]) == 2
    assert f"{tmp_path / 'node'} is a symbolic link to {tmp_path / 'gone'}, which does not exist" in \
        capsys.readouterr().err
    assert not (tmp_path / "gone").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux's /proc, which takes no directory")
def test_init_names_a_directory_the_file_system_will_not_make(capsys):
    """`init --dir /proc/x` ended in a RecursionError traceback (ledger.files.make_directory asked again and again)."""
    assert cli.main(["init", "--dir", "/proc/vouchnet"]) == 2
    assert capsys.readouterr().err == "vouchnet init: /proc/vouchnet: No such file or directory\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file away")
def test_init_run_as_root_leaves_nothing_of_root_s_in_a_users_directory(tmp_path, capsys):
    """`sudo vouchnet init` in a directory made for a service user (or finishing an init that user cut short) wrote
    an org.key, api.token and config.toml of root's, mode 0600 for the first two, that the node, run as that user,
    could not read: refused, as `vouchnet run` refuses it, before anything is written."""
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, 12345, -1)
    assert cli.main(["init", "--dir", str(data_dir)]) == 2
    assert f"{data_dir}: owned by uid 12345, not by root (uid 0) vouchnet runs as" in capsys.readouterr().err
    assert list(data_dir.iterdir()) == []


def test_init_s_help_says_it_refuses_a_directory_run_would_refuse(capsys):
    """Its --help named only a directory holding a node: an operator learnt that init refuses one others may write, or
    another user owns, only from the refusal."""
    assert cli.main(["init", "--help"]) == 0
    assert ("Refuses to touch a directory that already holds a node (a config.toml), or one there already that "
            "`vouchnet run` would refuse: writable by group or others, or owned by a user other than the one it runs "
            "as and root") in " ".join(capsys.readouterr().out.split())
