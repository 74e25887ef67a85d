"""config.toml: the template `init` writes loads back; every mistake is named by key and rule."""

import re
from pathlib import Path

import pytest

from nacl.signing import SigningKey

from gossip.host import peer_id_from_public_key
from node.config import ConfigError, load_config, parse_api_bind, render_template
from vouching import org_body
from vouching.policy import DEFAULT_HIGH_RISK_TOOLS

ROOT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
PEER = peer_id_from_public_key(bytes(SigningKey(b"\x01" * 32).verify_key))  # an org's PeerID, 12D3KooW...


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config.toml").write_text(text)
    return tmp_path


def test_template_round_trips(tmp_path):
    text = render_template(
        name='Acme "Agents" Ltd',
        network="testnet", listen=("/ip4/127.0.0.1/tcp/4001",), api="127.0.0.1:8701",
        bootstrap=(f"/ip4/127.0.0.1/tcp/4002/p2p/{PEER}", f"/dns4/peer.example/tcp/4001/p2p/{PEER}"), roots=(ROOT,),
    )
    config = load_config(_write(tmp_path, text))
    assert config.network == "testnet" and config.name == 'Acme "Agents" Ltd'
    assert config.listen == ("/ip4/127.0.0.1/tcp/4001",)
    assert config.bootstrap == (f"/ip4/127.0.0.1/tcp/4002/p2p/{PEER}", f"/dns4/peer.example/tcp/4001/p2p/{PEER}")
    assert config.roots == (ROOT,)
    assert (config.api_host, config.api_port) == ("127.0.0.1", 8701)
    assert config.key_path == tmp_path / "org.key"
    assert config.witnesses == 8 and "\nwitnesses = 8\n" in text
    assert config.checkpoint_gossip_interval == 10.0 and "\ngossip_interval = 10.0\n" in text
    assert config.fork_window == 600.0 and "\nfork_window = 600.0\n" in text
    assert config.verify_processes == 0 and "\nverify_processes = 0\n" in text
    assert config.sync_peers == 3 and "\nsync_peers = 3\n" in text
    assert config.startup_sync_seconds == 10.0 and "\nstartup_sync_seconds = 10.0\n" in text
    assert config.dial_private == "auto" and '\ndial_private = "auto"\n' in text
    assert load_config(
        _write(tmp_path, text.replace("verify_processes = 0", "verify_processes = 2"))).verify_processes == 2


def test_the_template_explains_every_setting_and_names_the_default_high_risk_tools():
    """An operator reads config.toml, not the code: a comment right above each setting, or one naming it above its
    group; and the high-risk tools in force when none are set, in full."""
    text = render_template(network="n", listen=("/ip4/127.0.0.1/tcp/1",), api="127.0.0.1:1", bootstrap=(), roots=())
    setting = re.compile(r"(?:# )?(\w+) = ")
    unexplained, comment, above = [], "", ""
    for line in text.splitlines():
        if found := setting.match(line):
            if not comment and f"`{found[1]}`" not in above:
                unexplained.append(found[1])
            comment = ""
        elif line.startswith("#"):
            comment = above = comment + line
        else:  # a blank line or a [table] ends what a comment explains
            comment = above = ""
    assert unexplained == []
    default = text[text.index("unset: "):text.index("Services using the SDK")]
    assert sorted(re.findall(r"[\w-]+", default.replace("#", ""))[1:]) == sorted(DEFAULT_HIGH_RISK_TOOLS)


def _known_keys(tmp_path: Path, section: str) -> set[str]:
    """The keys the loader takes in `section` ("" for the top level), read from its refusal of an unknown one."""
    text = "unknown_key = 1\n" if not section else f"[{section}]\nunknown_key = 1\n"
    with pytest.raises(ConfigError, match=r"\(known: ([\w, ]+)\)") as refused:
        load_config(_write(tmp_path, text))
    return set(re.search(r"\(known: ([\w, ]+)\)", str(refused.value))[1].split(", "))


def test_the_template_shows_every_key_the_loader_reads_and_no_other(tmp_path):
    """Each setting config.toml may hold is in the template (commented out where it has no default value), and
    each setting the template shows is read: uncommented, the template loads with its example values."""
    text = render_template(network="n", listen=("/ip4/127.0.0.1/tcp/1",), api="127.0.0.1:1", bootstrap=(), roots=())
    shown: dict[str, set[str]] = {"": set()}
    section = ""
    for line in text.splitlines():
        if table := re.fullmatch(r"\[(\w+)\]", line):
            section = table[1]
            shown[section] = set()
        elif setting := re.match(r"(?:# )?(\w+) = ", line):
            shown[section].add(setting[1])
    assert shown[""] == _known_keys(tmp_path, "") - set(shown)
    for name in set(shown) - {""}:
        assert shown[name] == _known_keys(tmp_path, name), name
    config = load_config(_write(tmp_path, re.sub(r"(?m)^# (\w+ = )", r"\1", text)))
    assert config.dp_epsilon == 1.0 and config.high_risk_tools == ("shell", "deploy", "payments", "email")


def test_template_warns_when_the_api_is_exposed():
    assert "WARNING" in render_template(network="n", listen=("/ip4/0.0.0.0/tcp/1",), api="0.0.0.0:1", bootstrap=(),
                                        roots=())
    assert "WARNING" not in render_template(network="n", listen=("/ip4/0.0.0.0/tcp/1",), api="[::1]:1", bootstrap=(),
                                            roots=())


@pytest.mark.parametrize("network", ["lab_2", "n" * 64, "a.b-c"])
def test_a_network_an_org_record_may_name_is_one_a_node_may_run(tmp_path, network):
    """The config refused `_` and a 64th character, which records' `network` takes: two definitions of one rule."""
    assert load_config(_write(tmp_path, f'network = "{network}"')).network == network
    org_body("org", network, ())  # (as an org record names it)


def test_an_empty_file_means_defaults(tmp_path):
    config = load_config(_write(tmp_path, ""))  # format 1, as a file from before formats were written
    assert config.api_host == "127.0.0.1"
    assert config.max_hops == 3


@pytest.mark.parametrize(
    "text,message",
    [
        ("network = 3", "network: must be a string, got int"),
        ('network = "Bad Name"', "network: must be 1 to 64 characters of a-z 0-9 . _ -"),
        ("[p2p]\nlisten = []", "p2p.listen: needs at least one address"),
        ('[p2p]\nlisten = ["tcp:4001"]', "p2p.listen: not a multiaddr"),
        # Each was taken (`vouchnet init --listen` too), and `vouchnet run` failed with a traceback (ValueError).
        *[(f'[p2p]\nlisten = ["{bad}"]', "p2p.listen: must be /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>")
          for bad in ("/ip4/127.0.0.1/udp/4001/quic-v1", "/dns4/localhost/tcp/4001", "/ip4/127.0.0.1/tcp/4001/ws",
                      "/ip4/999.0.0.1/tcp/4001", "/ip4/::1/tcp/4001", "/ip4/127.0.0.1", "/ip4/127.0.0.1/tcp/65536")],
        ('[p2p]\nbootstrap = ["/ip4/127.0.0.1/tcp/4001"]', "p2p.bootstrap: a peer address must end in /p2p/<peer id>"),
        ('[p2p]\nbootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/garbage"]', "p2p.bootstrap: 'garbage' is not a PeerID"),
        (f'[p2p]\nbootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/{PEER[:-1]}"]', "is not a PeerID of an org"),
        ('[p2p]\nbootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"]',
         "is not a PeerID of an org"),  # an RSA key's hash
        # Each was taken, and dialled in vain for good (logged at info as the peer being unreachable).
        *[(f'[p2p]\nbootstrap = ["{transport}/p2p/{PEER}"]', "p2p.bootstrap: the node dials TCP only: must be "
           "/ip4/<address>/tcp/<port>/p2p/<peer id>")
          for transport in ("/ip4/192.0.2.7/udp/4001/quic-v1", "/ip4/192.0.2.7/tcp/4001/ws", "/ip4/192.0.2.7")],
        ('[trust]\nroots = ["alice"]', "trust.roots: not an Ed25519 did:key"),
        ("[trust]\nmax_hops = 0", "trust.max_hops: must be 1-10"),
        ("[trust]\nmax_hops = true", "trust.max_hops: must be an integer, got bool"),
        ('[api]\nbind = "localhost"', "api.bind: expected HOST:PORT"),
        ('[api]\nbind = "127.0.0.1:70000"', "api.bind: port must be 0-65535"),
        # Each was read as a host name: `vouchnet run` failed only binding it, or bound what the resolver made of it
        # (`0` the wildcard, `127.1` loopback) where the node's checks, of loopback and of hosts, saw a name.
        *[(f'[api]\nbind = "{host}:8700"', f"api.bind: '{host}' is not an IP address: an IPv4 address is four decimal "
           "numbers 0-255 between dots") for host in ("999.1.1.1", "127.1", "0", "1.2.3.4.5", "0x7f.0.0.1", "010.0.0.1",
                                                       "127.0.0.1.")],
        ('[api]\nbind = "[1::2::3]:8700"', r"api.bind: \[1::2::3\] is not an IPv6 address"),
        ('[api]\nbind = "[127.0.0.1]:8700"', r"api.bind: \[127.0.0.1\] is not an IPv6 address"),
        ('[api]\nbind = "my host:8700"', "api.bind: 'my host' is not a host name"),
        ("[telemetry]\nepoch_seconds = 0.5", "telemetry.epoch_seconds: must be at least 1"),
        # Past these, the node's start failed with an OverflowError (their ms overflowed a float to inf).
        ("[telemetry]\nepoch_seconds = 1e306", "telemetry.epoch_seconds: must be at most 9007199254740 "),
        ("[telemetry]\nretention_days = 1e306", "telemetry.retention_days: must be at most 104249991 "),
        *[(f"[telemetry]\ndp_epsilon = {bad}", "telemetry.dp_epsilon: must be a number from about 1.2e-16 to 1490")
          for bad in ("0", "-1", "nan", "inf", "1e-17", "2000")],  # past these the first digests failed, as every start
        ("[witness]\nwitnesses = 0", "witness.witnesses: must be 1-63, got 0"),
        ("[witness]\ngossip_interval = 0", "witness.gossip_interval: must be positive, got 0"),
        ("[witness]\nfork_window = -1", "witness.fork_window: must be positive, got -1"),
        ("[witness]\nwitnesses = 64", "witness.witnesses: must be 1-63, got 64"),
        ("[witness]\nwitnesses = 2.5", "witness.witnesses: must be an integer, got float"),
        ("[p2p]\nverify_processes = -1", "p2p.verify_processes: must be 0-64, got -1"),
        ("[p2p]\nverify_processes = 1.0", "p2p.verify_processes: must be an integer, got float"),
        ("[p2p]\nsync_peers = 0", "p2p.sync_peers: must be 1-1024, got 0"),
        ("[p2p]\nstartup_sync_seconds = 0", "p2p.startup_sync_seconds: must be positive, got 0"),
        *[(f"[{section}]\n{key} = {bad}", f"{section}.{key}: must be a finite number, got {bad}")
          for section, key in [("p2p", "sync_interval"), ("witness", "checkpoint_interval"),
                               ("telemetry", "epoch_seconds"), ("telemetry", "retention_days"),
                               ("scoring", "recompute_seconds"), ("limits", "peer_bytes_per_second")]
          for bad in ("nan", "inf")],  # TOML has both; every one of these was taken
        ("[p2p]\nsync_peers = true", "p2p.sync_peers: must be an integer, got bool"),
        ('[p2p]\ndial_private = "yes"', "p2p.dial_private: must be 'auto', 'always' or 'never' \\(which loopback, "
                                        "private and link-local addresses that org records name the node dials\\), "
                                        "got 'yes'"),
        ("[p2p]\ndial_private = true", "p2p.dial_private: must be a string, got bool"),
        ("[limits]\nmax_peers = -1", "limits.max_peers: must be positive"),
        ("[limits]\nmax_pears = 1", "limits: unknown key 'max_pears'"),
        ("[limits]\ngossip_batch_bytes = 262145", "limits.gossip_batch_bytes: must be at most 262144, the largest "
                                                 "gossip message a node takes"),
        ("colour = 1", "config: unknown key 'colour'"),
        # A later vouchnet's config (a downgrade) was read as this one's, or refused naming a key it added.
        ("format = 2\n[future]\nx = 1", "format: 2: written for a later vouchnet \\(this one reads format 1\\); run "
                                        "that version, or restore a config.toml this one wrote"),
        ("format = 0", "format: must be 1-1, got 0"),
        ('format = "1"', "config.format: must be an integer, got str"),
        # Both were taken, and written into every credential the org issued (the first with its password).
        ('[api]\npublic_url = "https://ops:hunter2@vouchnet.example.org"',
         "api.public_url: must not hold a user or password: it is written into every credential this org issues"),
        *[(f'[api]\npublic_url = "https://vouchnet.example.org:{port}"', "api.public_url: expected an http")
          for port in ("99999", "0", "x")],
        # [api] hosts takes names only: each other form is named, so that no one believes it restricts anything.
        ('[api]\nhosts = ["https://vouchnet.example.org"]', "api.hosts: 'https://vouchnet.example.org' is a URL: give "
                                                          "its host name only"),
        ('[api]\nhosts = ["vouchnet.example.org:8700"]', "api.hosts: 'vouchnet.example.org:8700' has a port: give "
                                                        "the host name without it"),
        ('[api]\nhosts = ["vouchnet.example.org/api"]', "api.hosts: 'vouchnet.example.org/api' has a path"),
        ('[api]\nhosts = ["10.0.0.5"]', "api.hosts: '10.0.0.5' is an IP address: a request naming any IP address is "
                                        "answered already"),
        ('[api]\nhosts = ["[::1]"]', "api.hosts: '\\[::1\\]' is an IP address"),
        # Each was taken as a name, where `[api] bind` and `--api` refuse it (node.config.host_fault): no name's last
        # label is all digits, and the resolver reads `127.1` as 127.0.0.1.
        *[(f'[api]\nhosts = ["{host}"]', f"api.hosts: '{host}' is not a host name: its last label is all digits")
          for host in ("999.1.1.1", "127.1", "0", "1.2.3.4.5", "0x7f.0.0.1", "010.0.0.1", "127.0.0.1.")],
        ('[api]\nhosts = ["*.example.org"]', 'api.hosts: \'\\*.example.org\': "\\*" stands alone'),
        ('[api]\nhosts = ["*", "vouchnet.internal"]', 'api.hosts: "\\*" answers any host, so it stands alone'),
        ('[api]\nhosts = ["vouch net"]', "api.hosts: 'vouch net' is not a host name"),
        ('[api]\nhosts = [""]', "api.hosts: '' is not a host name"),
        ("[api]\nhosts = [7]", "api.hosts: each must be a string, got 7"),
        ('[api]\nhosts = "vouchnet.internal"', "api.hosts: must be a list, got str"),
        ("network = ", "not valid TOML"),
        # Both raised a ValueError out of int() (more than 4300 digits), a traceback at `vouchnet run` or `init --api`.
        ("[trust]\nmax_hops = " + "9" * 5000, "not valid TOML: Exceeds the limit"),
        ('[api]\nbind = "127.0.0.1:' + "9" * 5000 + '"', "api.bind: expected HOST:PORT"),
    ],
)
def test_mistakes_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize(("text", "message"), [
    (f'[p2p]\nbootstrap = ["/dnsaddr/bootstrap.example/p2p/{PEER}"]', "p2p.bootstrap: /dnsaddr is not supported (it "
     "needs DNS TXT lookups, which the node does not make): name the peer's host with "
     "/dns4/<name>/tcp/<port>/p2p/<peer id>, or /dns (IPv4 and IPv6), got '/dnsaddr/"),
    (f'[p2p]\nbootstrap = ["/dns4/-boot.example/tcp/4001/p2p/{PEER}"]', "p2p.bootstrap: the node dials TCP only: must "
     "be /ip4/<address>/tcp/<port>/p2p/<peer id> (or /ip6, /dns, /dns4, /dns6) ('-boot.example' is not a DNS name"),
    *[(f'[p2p]\nannounce = ["{bad}"]', "p2p.announce: must be /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port> "
       "(other orgs' nodes dial only IP addresses from org records, and the node adds /p2p/<its peer id>), got")
      for bad in ("/dns4/node.example/tcp/4001", f"/ip4/192.0.2.7/tcp/4001/p2p/{PEER}",
                  "/ip4/192.0.2.7/udp/1/quic-v1")],
    ('[p2p]\nannounce = ["/ip6/::/tcp/4001"]', "p2p.announce: :: is a wildcard, not an address other orgs can reach"),
])
def test_addresses_that_cannot_be_dialled_as_written_are_named(tmp_path, text, message):
    """A /dnsaddr bootstrap address was taken and never dialled; an announced DNS name or other transport was
    published in the org record and passed over by every peer (they dial org records' addresses by IP only), one
    with /p2p too unless it named the node's own peer id (which the node adds), and a wildcard had them dial their
    own machine."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_write(tmp_path, text))


def test_a_file_an_editor_began_with_a_byte_order_mark_loads(tmp_path):
    """It was refused as "not valid TOML: Invalid statement (at line 1, column 1)", a line that looks right."""
    (tmp_path / "config.toml").write_bytes(b"\xef\xbb\xbfnetwork = \"testnet\"\n")
    assert load_config(tmp_path).network == "testnet"


def test_missing_config_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="vouchnet init --dir"):
        load_config(tmp_path)


def test_api_bind_parses_ipv6():
    assert parse_api_bind("[::1]:8700") == ("::1", 8700)


def test_scoring_policy_options(tmp_path):
    config = load_config(_write(tmp_path, '[scoring]\nmin_score = 300\nhigh_risk_tools = ["deploy"]\n'))
    assert config.min_score == 300 and config.high_risk_tools == ("deploy",)
    with pytest.raises(ConfigError, match="scoring.min_score: must be 0-1000"):
        load_config(_write(tmp_path, "[scoring]\nmin_score = 2000\n"))
    for wrong in ('["shell", "--"]', '["shell", " "]', '[3]'):
        with pytest.raises(ConfigError, match="scoring.high_risk_tools: must be a list of tool names, each with"):
            load_config(_write(tmp_path, f"[scoring]\nhigh_risk_tools = {wrong}\n"))


def test_traces_can_be_made_to_need_the_token(tmp_path):
    assert load_config(_write(tmp_path, "")).traces_need_token is True  # a write, as every other
    assert load_config(_write(tmp_path, "[api]\ntraces_need_token = false\n")).traces_need_token is False
    with pytest.raises(ConfigError, match="api.traces_need_token: must be true or false"):
        load_config(_write(tmp_path, '[api]\ntraces_need_token = "yes"\n'))


def test_hosts_are_the_names_the_api_answers_to_or_a_star_for_any(tmp_path):
    assert load_config(_write(tmp_path, "")).hosts == ()
    named = load_config(_write(tmp_path, '[api]\nhosts = ["vouchnet.internal", "ops.example.org.", "node_1"]\n'))
    assert (named.hosts, named.any_host) == (("vouchnet.internal", "ops.example.org.", "node_1"), False)
    star = load_config(_write(tmp_path, '[api]\nhosts = ["*"]\n'))
    assert (star.hosts, star.any_host) == (("*",), True)


def test_the_public_url_is_where_other_orgs_reach_the_api(tmp_path):
    assert load_config(_write(tmp_path, '[api]\nbind = "0.0.0.0:8701"\n')).api_public_url == "http://127.0.0.1:8701"
    assert load_config(_write(tmp_path, '[api]\nbind = "[::]:8701"\n')).api_public_url == "http://[::1]:8701"
    given = load_config(_write(tmp_path, '[api]\npublic_url = "https://vouchnet.example.org/acme/"\n'))
    assert given.api_public_url == "https://vouchnet.example.org/acme"
    for wrong in ("vouchnet.example.org", "ftp://vouchnet.example.org", "https://", "https://example.org/?a=1"):
        with pytest.raises(ConfigError, match="api.public_url: expected an http"):
            load_config(_write(tmp_path, f'[api]\npublic_url = "{wrong}"\n'))


@pytest.mark.parametrize("value", ["auto", "always", "never"])
def test_dial_private_takes_each_of_its_values(tmp_path, value):
    assert load_config(_write(tmp_path, f'[p2p]\ndial_private = "{value}"')).dial_private == value
