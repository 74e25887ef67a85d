"""Portable credentials: an ordinary JWT library (PyJWT), given only the JWKS URL, verifies score statements,
agent credentials from `vouchnet agent new`, and vouches exported as vc+jwt."""

import argparse
import itertools
import json
import re
import stat
import threading
import time
from datetime import datetime, timezone
from functools import partial

import httpx
import jwt as pyjwt
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from node.credentials import (
    VOUCH_CREDENTIAL_DAYS,
    agent_credential,
    did_url,
    jwks,
    public_key_from_kid,
    record_from_credential_evidence,
    score_statement,
    vouch_credential,
)
from node.jwt import JwtError, b64url, decode_jwt, encode_jwt
from node import cli
from node.api import create_app
from node.api.http_server import serve
from node.commands import agents
from node.commands.common import CommandFailed, UsageError
from node import signed_lists
from node.credential_registry import CredentialRegistry
from node.credential_status import bit, decode_list, list_url, vouch_list_url, vouch_status_entry
from node.credentials_api import RETIRED_KEY_GRACE_S, credentials_router
from node.keys import load_org_key, load_token
from node.setup import init_data_dir
from vouching import did_key, org_body, revoke_body, verify_record, vouch_body

from ..factories import Org, new_did
from ..fsyncs import recorded_fsyncs
from ..refused_port import refused_port
from .fake_node import fake_node
from .in_process import running
from .kill_points import killed_at
from .telemetry_node import PUBLIC_URL, guarded_app, served, telemetry_node

AGENT = new_did()
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def pyjwt_verify(url: str, token: str, **options) -> dict:
    """What a relying party does: fetch the JWKS, pick the key by kid, verify (blocking, so in a thread)."""
    client = pyjwt.PyJWKClient(f"{url}/.well-known/jwks.json")
    key = client.get_signing_key_from_jwt(token)
    return pyjwt.decode(token, key.key, algorithms=["EdDSA"], **options)


@pytest.fixture
def node(tmp_path):
    with telemetry_node(tmp_path) as node:
        yield node


async def test_score_statements_verify_with_pyjwt_against_the_jwks(node):
    token = score_statement(node.key, agent=AGENT, score=734, tier="trusted")
    async with served(node.app()) as url:
        claims = await trio.to_thread.run_sync(lambda: pyjwt_verify(url, token))
    assert claims == {"agent": AGENT, "score": 734, "tier": "trusted", "iat": claims["iat"],
                      "exp": claims["iat"] + 300, "iss": node.replica.did}


async def test_an_expired_statement_is_refused(node):
    token = score_statement(node.key, agent=AGENT, score=1, tier="untrusted", now=1_000_000)
    async with served(node.app()) as url:
        with pytest.raises(pyjwt.ExpiredSignatureError):
            await trio.to_thread.run_sync(lambda: pyjwt_verify(url, token))
    with pytest.raises(JwtError, match="exp"):
        decode_jwt(token, public_key_from_kid)


def test_the_jwks_is_the_org_key_as_an_rfc8037_jwk():
    key = SigningKey.generate()
    (jwk,) = jwks([key.verify_key])["keys"]
    did = did_key(bytes(key.verify_key))
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(key.verify_key)),
                   "kid": f"{did}#{did[len('did:key:'):]}", "alg": "EdDSA", "use": "sig"}
    assert public_key_from_kid({"kid": jwk["kid"]}) == bytes(key.verify_key)


async def test_after_a_rotation_the_jwks_serves_every_org_key_current_first(node):
    older, old = SigningKey.generate(), SigningKey.generate()
    now = int(time.time())
    app = guarded_app([credentials_router(node.key, node.replica, node.credentials, PUBLIC_URL,
                                          retired_keys=[(old.verify_key, now), (older.verify_key, now - 3600)])])
    async with served(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            served_keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
        for key in (node.key, old, older):  # a credential minted under any of them still verifies
            token = agent_credential(key, AGENT)
            claims = await trio.to_thread.run_sync(pyjwt_verify, url, token)
            assert claims["iss"] == did_key(bytes(key.verify_key))
    assert [jwk["kid"] for jwk in served_keys] == [did_url(did_key(bytes(key.verify_key)))
                                                  for key in (node.key, old, older)]


async def test_a_retired_key_is_served_while_what_it_signed_lives_and_no_longer(node):
    """A copy of a retired key can mint credentials as it likes: they verify only while its org serves the key."""
    old, retired = SigningKey.generate(), 1_000_000
    now = [float(retired)]
    app = guarded_app([credentials_router(node.key, node.replica, node.credentials, PUBLIC_URL,
                                          retired_keys=[(old.verify_key, retired)], clock=lambda: now[0])])

    async def served() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:
            return [jwk["kid"] for jwk in (await client.get("/.well-known/jwks.json")).json()["keys"]]

    current, former = (did_url(did_key(bytes(k.verify_key))) for k in (node.key, old))
    assert await served() == [current, former]
    now[0] = retired + RETIRED_KEY_GRACE_S  # a day on, nothing it minted lives
    assert await served() == [current]
    node.credentials.allocate(AGENT, name=None, issued_at=retired - 10, expires_at=retired + 3 * 86_400)
    node.credentials.allocate(new_did(), name="later", issued_at=retired + 10, expires_at=retired + 9 * 86_400)
    assert await served() == [current, former]  # an agent credential it minted lives two days more
    now[0] = retired + 3 * 86_400
    assert await served() == [current]  # (the one issued after the rotation was signed by the new key)
    node.credentials.allocate(new_did(), name="long", issued_at=retired - 5, expires_at=retired + 30 * 86_400)
    assert await served() == [current, former]
    node.credentials.revoke("long", reason="left", at=retired)
    assert await served() == [current]


async def test_a_credential_minted_in_the_second_its_key_was_retired_keeps_the_key_served(node):
    """Both times are whole seconds (the rotation record's ts // 1000, a credential's issued_at): one the old key
    minted in the second it then signed its rotation was counted as issued after, so its key left the JWKS a day on
    while the credential had weeks to live."""
    old, retired = SigningKey.generate(), 1_000_000
    now = [float(retired + RETIRED_KEY_GRACE_S)]
    app = guarded_app([credentials_router(node.key, node.replica, node.credentials, PUBLIC_URL,
                                          retired_keys=[(old.verify_key, retired)], clock=lambda: now[0])])
    node.credentials.allocate(AGENT, name=None, issued_at=retired, expires_at=retired + 30 * 86_400)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:
        kids = [jwk["kid"] for jwk in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert kids == [did_url(did_key(bytes(k.verify_key))) for k in (node.key, old)]


async def test_the_registry_is_read_in_worker_threads_its_kept_answers_on_the_loop(node):
    """A status list of the agents' credentials counted its revoked on the event loop at every GET (19 ms at 65,536)
    and read them there when signed anew (189 ms with the signing), and the JWKS scanned every credential there after
    each change of the registry once a key was retired (65 ms at 131,072; benchmarks/credential_status.py): each held
    up gossip and every other request. They are read in worker threads now; the answers the registry kept are served
    on the loop while data_version says no other connection changed it (through a thread, each GET waited 1-6 ms
    for its hop), and the JWKS asks nothing in a retired key's first day, when it serves the key whatever was
    minted. A change through another connection, as `vouchnet agent` makes, is served at the next GET."""
    statements: list[tuple[str, threading.Thread]] = []
    node.credentials._db.set_trace_callback(lambda statement: statements.append((statement,
                                                                                 threading.current_thread())))
    old, retired = SigningKey.generate(), 1_000_000
    now = [float(retired + RETIRED_KEY_GRACE_S - 1)]
    app = guarded_app([credentials_router(node.key, node.replica, node.credentials, PUBLIC_URL,
                                          retired_keys=[(old.verify_key, retired)], clock=lambda: now[0])])
    node.credentials.allocate(AGENT, name=None, issued_at=retired - 10, expires_at=retired + 3 * 86_400)
    node.credentials.revoke(AGENT, reason="left", at=retired)
    loop = threading.main_thread()

    async def keys_and_bits() -> tuple[int, list[bool]]:
        """How many keys the JWKS serves, and the status list's first two bits."""
        keys = len((await client.get("/.well-known/jwks.json")).json()["keys"])
        token = (await client.get("/v1/credentials/status/0")).text
        bits = decode_list(pyjwt.decode(token, options={"verify_signature": False})["credentialSubject"]["encodedList"])
        return keys, [bit(bits, 0), bit(bits, 1)]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:
        statements.clear()
        assert len((await client.get("/.well-known/jwks.json")).json()["keys"]) == 2 and statements == []
        now[0] += 1  # a day on: served while a credential it may have minted lives, and none does
        assert await keys_and_bits() == (1, [True, False])
        assert {s for s, thread in statements if thread is loop} == {"PRAGMA data_version"}
        assert any(s.startswith("SELECT COUNT(*)") for s, thread in statements if thread is not loop)
        statements.clear()
        assert await keys_and_bits() == (1, [True, False])
        assert statements == [("PRAGMA data_version", loop)] * 3  # the JWKS's one expiry, the list's span and count
        other = CredentialRegistry.open(node.directory)  # as `vouchnet agent new` and `revoke` beside the node
        other.allocate(new_did(), name=None, issued_at=retired - 5, expires_at=retired + 3 * 86_400)
        assert (await keys_and_bits())[0] == 2
        other.revoke(1, reason="left", at=retired + 1)
        other.close()
        statements.clear()
        assert await keys_and_bits() == (1, [True, True])
        assert {s for s, thread in statements if thread is loop} == {"PRAGMA data_version"}


async def test_a_list_beyond_the_last_is_not_counted(node):
    """A count is kept until the registry changes: one was counted and kept for every list number a client named,
    up to MAX_LISTS (10^9), a 404 each, growing the node's memory without bound."""
    statements: list[str] = []
    node.credentials._db.set_trace_callback(statements.append)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        for number in range(1, 50):
            assert (await client.get(f"/v1/credentials/status/{number}")).status_code == 404
        assert (await client.get("/v1/credentials/status/0")).status_code == 200
    assert sum(s.startswith("SELECT COUNT(*)") for s in statements) == 1


@pytest.mark.parametrize("keys", [[], "twice"])
def test_a_jwks_names_each_key_once(keys):
    key = SigningKey.generate().verify_key
    with pytest.raises(ValueError, match="each once"):
        jwks([key, key] if keys == "twice" else keys)


def agent_new(*argv):
    parser = argparse.ArgumentParser(prog="vouchnet")
    agents.register(parser.add_subparsers())
    args = parser.parse_args(["agent", "new", *argv])
    return args.func(args)


async def test_agent_new_mints_a_key_and_a_credential_pyjwt_accepts(tmp_path, capsys):
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",),
                         api="127.0.0.1:8700")
    assert agent_new("--name", "alice", "--out", str(tmp_path / "agents"), "--dir", str(made.data_dir)) == 0
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert "verifiers elsewhere cannot check its revocation there" in err  # the API binds to 127.0.0.1:8700
    # What it says to do can be done: "mint again" alone ran into the refusal to overwrite below, and left this
    # credential valid.
    assert (f"mint a new one under another --name or --out (these files are not overwritten); `vouchnet agent revoke "
            f"{printed['did']} --dir {made.data_dir} --reason ...` retires this one.") in err
    key_file = tmp_path / "agents" / "alice.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert printed["did"] == did_key(bytes(load_org_key(key_file).verify_key))
    token = (tmp_path / "agents" / "alice.vc.jwt").read_text().strip()
    assert stat.S_IMODE((tmp_path / "agents" / "alice.vc.jwt").stat().st_mode) == 0o600  # whoever holds it is alice
    assert pyjwt.get_unverified_header(token)["typ"] == "vc+jwt"
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key")) as node:
        async with served(node.app()) as url:
            claims = await trio.to_thread.run_sync(lambda: pyjwt_verify(url, token, issuer=node.replica.did))
    assert claims["@context"] == ["https://www.w3.org/ns/credentials/v2"]
    assert claims["type"] == ["VerifiableCredential", "VouchnetAgentCredential"]
    assert claims["credentialSubject"] == {"id": printed["did"], "operator": made.did, "name": "alice"}
    assert (claims["sub"], claims["issuer"]) == (printed["did"], made.did)
    with pytest.raises(UsageError, match="refusing to overwrite"):
        agent_new("--name", "alice", "--out", str(tmp_path / "agents"), "--dir", str(made.data_dir))
    assert sorted(p.name for p in (tmp_path / "agents").iterdir()) == ["alice.key", "alice.vc.jwt"]
    assert cli.main(["agent", "revoke", printed["did"], "--dir", str(made.data_dir), "--reason", "loopback"]) == 0
    registry = CredentialRegistry.open(made.data_dir)
    assert [c.revoked_at is not None for c in registry.issued()] == [True]
    registry.close()


def test_agent_new_given_a_file_for_out_says_it_takes_a_directory(tmp_path):
    """Found by stop 45's operator walk: `--out config.toml` was refused as `config.toml: File exists`, which did not
    say that --out names a directory; nothing is minted."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",),
                         api="127.0.0.1:8700")
    out = made.data_dir / "config.toml"
    with pytest.raises(UsageError) as refused:
        agent_new("--name", "alice", "--out", str(out), "--dir", str(made.data_dir))
    assert str(refused.value) == (f"--out {out}: not a directory: give --out the directory to write the key and "
                                  "credential in (made if missing)")
    assert not (made.data_dir / "credentials.db").exists()


def test_agent_new_on_an_api_port_the_os_picks_refuses_until_a_public_url_is_set(tmp_path, capsys):
    """Before: the credential's status list was at http://127.0.0.1:0/..., which no verifier can ever fetch, so
    none could check the credential; the API's port is picked anew at each start. Refused before anything is minted
    or recorded, with exit status 1 (the node's config lacks an address; exit 2 was a bad argument's)."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    assert cli.main(["agent", "new", "--name", "alice", "--out", str(tmp_path / "agents"),
                     "--dir", str(made.data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"vouchnet agent new: {made.data_dir / 'config.toml'}: [api] bind has port 0 and no [api] "
                          "public_url is set: the OS picks the API's port anew at each start")
    assert err.endswith("set [api] public_url in config.toml to where other orgs reach this API\n")
    assert not (tmp_path / "agents").exists()
    registry = CredentialRegistry.open(made.data_dir)
    assert registry.issued() == []
    registry.close()
    config = made.data_dir / "config.toml"
    config.write_text(config.read_text().replace('public_url = ""', f'public_url = "{PUBLIC_URL}"'))
    assert agent_new("--name", "alice", "--out", str(tmp_path / "agents"), "--dir", str(made.data_dir)) == 0
    token = (tmp_path / "agents" / "alice.vc.jwt").read_text().strip()
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert claims["credentialStatus"]["statusListCredential"] == f"{PUBLIC_URL}/v1/credentials/status/0"


@pytest.mark.parametrize("days", ["0", "1.5", "-3", "²", "9" * 101])
def test_agent_new_takes_whole_days(tmp_path, capsys, days):
    """argparse's own type said "invalid int value" for 1.5, and 0 or -3 were refused only after the key was read."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",),
                         api="127.0.0.1:8700")
    assert cli.main(["agent", "new", "--out", str(tmp_path / "agents"), "--dir", str(made.data_dir),
                     "--days", days]) == 2
    assert f"--days: expected whole days, 1 or more, got {days!r}" in capsys.readouterr().err
    assert not (tmp_path / "agents").exists()


@pytest.mark.parametrize("days", [3_000_000, 10**20])
def test_agent_new_refuses_a_credential_that_would_outlive_the_year_9999(tmp_path, capsys, days):
    """Its validUntil cannot say so, nor a verifier accept its exp (node.jwt.MAX_NUMERIC_DATE). It raised out of the
    signing with a traceback once the agent's key was written and its index recorded as expiring then, which kept
    every key the org rotated away from in its JWKS until then (node.credentials_api); 10^20 days overflowed
    SQLite's integer."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",),
                         api="127.0.0.1:8700")
    assert cli.main(["agent", "new", "--name", "alice", "--out", str(tmp_path / "agents"),
                     "--dir", str(made.data_dir), "--days", str(days)]) == 2
    assert "--days: the credential must expire by the end of the year 9999" in capsys.readouterr().err
    assert not (tmp_path / "agents").exists()
    registry = CredentialRegistry.open(made.data_dir)
    assert registry.issued() == []
    registry.close()


async def test_a_node_on_an_api_port_the_os_picks_exports_no_vouch_without_a_public_url(node):
    """A vouch's credential names its status list's URL too: on port 0 it would never be checked (409, saying
    what to set); the status lists themselves are still served, and a credential naming another URL verifies."""
    vouch = node.replica.issue("vouch", vouch_body(AGENT, 0.75, "audit"))
    app = guarded_app([credentials_router(node.key, node.replica, node.credentials, "http://127.0.0.1:0")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:
        refused = await client.get(f"/v1/records/{vouch.id.hex()}/vc")
        listed = await client.get(f"/v1/credentials/vouch-status/{node.replica.did}/0")
    assert (refused.status_code, refused.json()["error"]) == (409, "no_public_url")
    assert "set [api] public_url in config.toml" in refused.json()["detail"]
    assert listed.status_code == 200


def test_agent_new_killed_at_any_point_of_its_writes_leaves_whole_files_named_after_the_agent_alone(tmp_path):
    """Each point a SIGKILL can land among its file writes (tests/node/kill_points.py): a key or credential there is
    whole, a credential is the key's and its index is in the registry, and nothing else is left but a partial file
    of one of them (named here without its random part, ledger.files), which the next write of that name removes.
    Before: the key was first written to a hidden file of its own name, a private key a kill between its write and
    its rename left behind for good."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:8700")
    for point in itertools.count(1):
        out = tmp_path / f"killed-at-{point}"
        if not killed_at(point, lambda: agent_new("--name", "alice", "--out", str(out), "--dir", str(made.data_dir))):
            break
        names = [p.name for p in out.iterdir()] if out.exists() else []
        left = {re.sub(r"\.[0-9a-f]{16}\.partial$", ".partial", name) for name in names}
        assert left <= {"alice.key", "alice.vc.jwt", ".alice.key.partial", ".alice.vc.jwt.partial"}, point
        if "alice.vc.jwt" in left:
            agent = did_key(bytes(load_org_key(out / "alice.key").verify_key))
            org = bytes(load_org_key(made.data_dir / "org.key").verify_key)
            _, claims = decode_jwt((out / "alice.vc.jwt").read_text().strip(), org)
            assert claims["sub"] == agent
            registry = CredentialRegistry.open(made.data_dir)
            assert agent in {c.agent for c in registry.issued()}
            registry.close()
        elif "alice.key" in left:
            load_org_key(out / "alice.key")
    assert point > 5


def test_agent_new_syncs_the_directories_it_makes_into_their_parents(tmp_path, monkeypatch):
    """Before: --out was made unsynced, so a power cut could take it, with the key and credential in it, after the
    command had printed them."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:8700")
    synced = recorded_fsyncs(monkeypatch)
    assert agent_new("--name", "alice", "--out", str(tmp_path / "new" / "agents"), "--dir", str(made.data_dir)) == 0
    assert {str(tmp_path.resolve()), str(tmp_path.resolve() / "new")} <= set(synced)


@pytest.mark.parametrize("public_url", ["", PUBLIC_URL], ids=["port 0, no public_url", "public_url"])
async def test_the_status_lists_a_running_node_serves_name_where_they_are_served(tmp_path, public_url):
    """With [api] bind's port 0 and no public_url, the lists named http://127.0.0.1:0/... (the router was made
    from the config before the API listened): they name the port the OS picked. With a public_url, that."""
    async with running(tmp_path, settings={"public_url": public_url}) as node:
        node.telemetry.credentials.allocate(AGENT, name="alice", issued_at=1, expires_at=2)
        did = node.replica.did
        async with httpx.AsyncClient(base_url=node.api_url) as client:
            served = [await client.get(path) for path in (list_url("", 0), vouch_list_url("", did, 0))]
    claims = [pyjwt.decode(answer.text, options={"verify_signature": False}) for answer in served]
    where = public_url or node.api_url
    assert [c["id"] for c in claims] == [list_url(where, 0), vouch_list_url(where, did, 0)]
    assert [c["credentialSubject"]["id"] for c in claims] == [f"{c['id']}#list" for c in claims]


async def test_agent_new_can_vouch_for_the_agent_through_the_running_node(tmp_path, capsys):
    (tmp_path / "store").mkdir()
    with fake_node(tmp_path / "store") as node:
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(partial(serve, create_app(node), "127.0.0.1", 0,
                                                         refused=lambda status, code: None,
                                                         dropped=lambda reason: None))
            made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",),
                                 api=url.removeprefix("http://"))
            node.token = load_token(made.data_dir / "api.token")
            (made.data_dir / "org.key").write_bytes(bytes(node.replica.key))  # the directory of the node serving
            await trio.to_thread.run_sync(lambda: agent_new("--out", str(tmp_path), "--dir", str(made.data_dir),
                                                            "--vouch", "0.9"))
            nursery.cancel_scope.cancel()
        printed = json.loads(capsys.readouterr().out)
        vouch = verify_record(node.replica.store.get(bytes.fromhex(printed["vouch"])))
    assert (vouch.body.subject, vouch.body.weight, vouch.body.basis) == (printed["did"], 0.9, "operator")
    assert (tmp_path / f"agent-{printed['did'][-10:]}.key").exists()


def test_agent_new_whose_vouch_fails_says_the_agent_is_minted_and_how_to_vouch(tmp_path, capsys):
    with refused_port() as port:  # the node is not running
        made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",),
                             api=f"127.0.0.1:{port}")
        with pytest.raises(CommandFailed) as failed:
            agent_new("--name", "bob", "--out", str(tmp_path), "--dir", str(made.data_dir), "--vouch", "0.9")
    printed = json.loads(capsys.readouterr().out)
    assert (tmp_path / "bob.vc.jwt").exists()
    assert (f"minted {printed['did']} ({tmp_path / 'bob.vc.jwt'}), but the vouch failed: cannot reach"
            in str(failed.value))
    assert f"vouchnet vouch --dir {made.data_dir} {printed['did']} --weight 0.9 --basis operator" in str(failed.value)


async def test_a_vouch_exports_as_a_credential_carrying_its_record(node):
    vouch = node.replica.issue("vouch", vouch_body(AGENT, 0.75, "audit", scope=["search"]))
    async with served(node.app()) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get(f"/v1/records/{vouch.id.hex()}/vc")
        assert response.headers["content-type"] == "application/vc+jwt"
        claims = await trio.to_thread.run_sync(lambda: pyjwt_verify(url, response.text))
    assert claims["credentialSubject"] == {"id": AGENT, "weight": 0.75, "basis": "audit", "scope": ["search"]}
    assert verify_record(record_from_credential_evidence(claims)) == vouch


async def test_after_a_rotation_the_org_s_vouches_under_its_earlier_key_export_signed_with_the_current(tmp_path):
    """Before: a vouch the org made under its old key, which still counts as the org's (DESIGN §2), was refused as
    not this org's (409), and one exported before the rotation stops verifying once the JWKS drops the old key."""
    successor = SigningKey.generate()
    with telemetry_node(tmp_path) as before:
        vouch = before.replica.issue("vouch", vouch_body(AGENT, 0.75, "audit"))
        before.replica.issue("org", org_body("a", "test", next=did_key(bytes(successor.verify_key))))
        old = before.replica.did
    with telemetry_node(tmp_path, key=successor) as node:
        node.replica.issue("org", org_body("a", "test", prior=old))
        async with served(node.app()) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.get(f"/v1/records/{vouch.id.hex()}/vc")
            claims = await trio.to_thread.run_sync(lambda: pyjwt_verify(url, response.text))
    assert claims["issuer"] == node.replica.did and claims["credentialSubject"]["id"] == AGENT
    assert verify_record(record_from_credential_evidence(claims)) == vouch
    assert f"/{old}/" in claims["credentialStatus"]["statusListCredential"]  # revocable in the old key's list


async def test_only_this_org_s_live_vouches_export(node):
    peer = Org()
    node.replica.issue("vouch", vouch_body(peer.did, 0.5, "org-peer"))
    node.replica.accept([peer.record()])
    theirs = node.store.query(issuer=peer.did)[0][1]
    revoked = node.replica.issue("vouch", vouch_body(AGENT, 0.5, "operator"))
    node.replica.issue("revoke", revoke_body(revoked.id, "left the org"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        for record_id, status in ((verify_record(theirs).id.hex(), 409), (revoked.id.hex(), 409),
                                  ("00" * 32, 404), ("xyz", 422)):
            response = await client.get(f"/v1/records/{record_id}/vc")
            assert (response.status_code, set(response.json())) == (status, {"error", "detail"})


async def test_a_vouch_credential_can_be_found_revoked_or_lapses(node):
    """A vouch exports as a credential only while it stands, but what was exported stayed valid: one of a vouch
    without an expiry had no `exp` and no `credentialStatus`, so after its vouch was revoked every verifier (an
    ordinary JWT library against the JWKS) accepted it for ever, the revocation notwithstanding."""
    vouch = node.replica.issue("vouch", vouch_body(AGENT, 0.75, "audit"))
    now = int(time.time())
    async with served(node.app()) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            token = (await client.get(f"/v1/records/{vouch.id.hex()}/vc")).text
            node.replica.issue("revoke", revoke_body(vouch.id, "left the org"))
            claims = await trio.to_thread.run_sync(lambda: pyjwt_verify(url, token))
            entry = claims["credentialStatus"]
            listed = await client.get(entry["statusListCredential"].replace(PUBLIC_URL, url))
        status_list = await trio.to_thread.run_sync(lambda: pyjwt_verify(url, listed.text))
    assert now + VOUCH_CREDENTIAL_DAYS * 86_400 <= claims["exp"] <= int(time.time()) + VOUCH_CREDENTIAL_DAYS * 86_400
    assert claims["validUntil"] == datetime.fromtimestamp(claims["exp"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert claims["nbf"] == vouch.ts // 1000  # validFrom is still the vouch's
    assert entry == vouch_status_entry(PUBLIC_URL, node.replica.did, vouch.seq)
    assert status_list["id"] == entry["statusListCredential"]
    assert bit(decode_list(status_list["credentialSubject"]["encodedList"]), int(entry["statusListIndex"]))


@given(now=st.integers(1_700_000_000, 2_000_000_000), expires_in=st.one_of(st.none(), st.integers(1, 10**12)))
def test_a_vouch_credential_lapses_at_its_vouch_s_expiry_or_after_its_lifetime(now, expires_in):
    org = Org(ts=now * 1000)
    expires = None if expires_in is None else org.ts + 1 + expires_in  # (Org.sign steps ts by 1 ms)
    record = org.record("vouch", vouch_body(AGENT, 0.5, "operator", expires=expires))
    claims = pyjwt.decode(vouch_credential(org.key, record, PUBLIC_URL, now=now), options={"verify_signature": False})
    lifetime = now + VOUCH_CREDENTIAL_DAYS * 86_400
    assert claims["exp"] == (lifetime if expires is None else min(lifetime, expires // 1000))
    assert expires is None or claims["exp"] * 1000 <= expires  # never valid past the vouch


async def test_a_vouch_that_expires_after_the_year_9999_exports_valid_for_its_lifetime(node):
    # The record rules allow any expiry up to 2^53 - 1 ms (year 287396), which a credential's validUntil cannot say:
    # such vouches were refused as credentials. Their credentials now lapse long before.
    vouch = node.replica.issue("vouch", vouch_body(AGENT, 0.5, "operator", expires=2**53 - 1))
    now = int(time.time())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        answer = await client.get(f"/v1/records/{vouch.id.hex()}/vc")
    claims = pyjwt.decode(answer.text, options={"verify_signature": False})
    assert now + VOUCH_CREDENTIAL_DAYS * 86_400 <= claims["exp"] <= int(time.time()) + VOUCH_CREDENTIAL_DAYS * 86_400


def test_tokens_signed_as_ed25519_verify_and_others_do_not():
    key = SigningKey.generate()
    kid = f"{did_key(bytes(key.verify_key))}#{did_key(bytes(key.verify_key))[8:]}"
    header = b64url(json.dumps({"alg": "Ed25519", "kid": kid}).encode())
    payload = b64url(json.dumps({"hello": "world"}).encode())
    token = f"{header}.{payload}.{b64url(key.sign(f'{header}.{payload}'.encode()).signature)}"
    assert decode_jwt(token, public_key_from_kid)[1] == {"hello": "world"}
    good = encode_jwt({"a": 1}, key, kid=kid)
    h, p, s = good.split(".")
    for bad, rule in [
        (f"{b64url(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{p}.", "alg"),
        (f"{b64url(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{p}.{s}", "alg"),
        (f"{h}.{b64url(json.dumps({'a': 2}).encode())}.{s}", "signature"),
        (f"{h}.{p}", "three"),
        (f"{b64url(json.dumps({'alg': 'EdDSA', 'kid': 'did:key:zNo#x'}).encode())}.{p}.{s}", "kid"),
    ]:
        with pytest.raises(JwtError, match=rule):
            decode_jwt(bad, public_key_from_kid)


def test_only_the_token_as_it_was_signed_verifies():
    key = SigningKey.generate()
    token = encode_jwt({"a": 1}, key, kid=did_url(did_key(bytes(key.verify_key))))
    h, p, s = token.split(".")
    spare_bits = _B64URL_ALPHABET[_B64URL_ALPHABET.index(s[-1]) | 1]  # 64 bytes end in 4 unused bits
    for altered in [f"{token}!!", f"{h}.{p}.{s[:40]}\n{s[40:]}", f"{h}.{p}.{s[:-1]}{spare_bits}"]:
        with pytest.raises(JwtError, match="signature: not unpadded base64url"):
            decode_jwt(altered, public_key_from_kid)


@pytest.mark.parametrize("leeway", [0, 60])
def test_a_token_expires_at_its_exp_and_is_valid_from_its_nbf(leeway):
    """RFC 7519 §4.1.4: exp is the time "on or after which the JWT MUST NOT be accepted" (PyJWT refuses at exp too):
    a token was accepted for the whole instant of exp + leeway, and the verifier's cache kept it for that instant."""
    key = SigningKey.generate()
    token = encode_jwt({"nbf": 900, "exp": 1000}, key, kid="k")
    for now in (900 - leeway, 999.5 + leeway):
        assert decode_jwt(token, bytes(key.verify_key), now=now, leeway=leeway)[1]["exp"] == 1000
    for now, rule in ((899.5 - leeway, "nbf"), (1000 + leeway, "exp")):
        with pytest.raises(JwtError, match=f"payload.{rule}"):
            decode_jwt(token, bytes(key.verify_key), now=now, leeway=leeway)


@pytest.mark.parametrize("claims", ['{"exp": NaN}', '{"exp": Infinity}', '{"exp": 1e400}', f'{{"exp": {10**400}}}',
                                    '{"nbf": NaN}', '{"nbf": -Infinity}', '{"iat": NaN}', '{"iat": "yesterday"}'])
def test_a_time_claim_that_is_no_date_is_refused(claims):
    """RFC 7519 §2 NumericDate: JSON has no NaN or Infinity, which Python's parser reads (an exp of NaN compared as
    never passed, so the token never expired; one of Infinity, or of 1e400, which reads as it, likewise), and a
    number past the year 9999 (which VC 2.0's validUntil cannot say) overflowed a float where a verifier added to it
    (node.client.identity's status lists), an exception out of the check rather than a refusal."""
    key = SigningKey.generate()
    signing_input = f"{b64url(json.dumps({'alg': 'EdDSA', 'kid': 'k'}).encode())}.{b64url(claims.encode())}"
    token = f"{signing_input}.{b64url(key.sign(signing_input.encode()).signature)}"
    name = next(iter(json.loads(claims)))
    with pytest.raises(JwtError, match=f"payload.{name}: must be a NumericDate"):
        decode_jwt(token, bytes(key.verify_key))


def test_agent_credentials_expire():
    key = SigningKey.generate()
    token = agent_credential(key, AGENT, now=1_000_000, days=1)
    assert decode_jwt(token, bytes(key.verify_key), typ="vc+jwt", now=1_000_000 + 86000)
    with pytest.raises(JwtError, match="exp"):
        decode_jwt(token, bytes(key.verify_key), now=1_000_000 + 87000)


async def test_a_status_list_is_signed_again_only_once_revoked_or_a_minute_old(node, monkeypatch):
    """Every GET of a status list, which needs no token and other orgs fetch, signed it anew: 8 ms of CPU (its gzip)
    for a list of a thousand revocations, at the cost of a request line to whoever sends it."""
    now, signed = [1_000_000.0], []
    monkeypatch.setattr(signed_lists, "status_list_credential",
                        lambda *args, real=signed_lists.status_list_credential, **kwargs: (
                            signed.append(1), real(*args, **kwargs))[1])
    app = guarded_app([credentials_router(node.key, node.replica, node.credentials, PUBLIC_URL, clock=lambda: now[0])])
    for agent in ("alice", "bob"):
        node.credentials.allocate(new_did(), name=agent, issued_at=int(now[0]), expires_at=int(now[0]) + 86_400)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:
        async def revoked() -> list[int]:
            token = (await client.get("/v1/credentials/status/0")).text
            subject = pyjwt.decode(token, options={"verify_signature": False})["credentialSubject"]
            bits = decode_list(subject["encodedList"])
            return [i for i in range(2) if bit(bits, i)]

        assert [await revoked() for _ in range(10)] == [[]] * 10 and len(signed) == 1  # 10 before
        node.credentials.revoke("bob", reason="left", at=int(now[0]))
        assert await revoked() == [1] and len(signed) == 2  # a revocation is served at once
        now[0] += signed_lists.LIST_REUSE_S - 1
        assert await revoked() == [1] and len(signed) == 2
        now[0] += 1
        assert await revoked() == [1] and len(signed) == 3
