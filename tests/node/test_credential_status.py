"""Revocable agent credentials: the W3C Bitstring Status List format, the registry of minted credentials that
`vouchnet agent new` and `vouchnet agent revoke` keep, and the node's status lists as an ordinary JWT library
sees them."""

import argparse
import base64
import gzip
import json
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import cli, credential_registry
from node.commands import agents
from node.commands.common import UsageError
from node.credential_registry import CredentialRegistry, NotKept, RegistryError
from node.credential_status import (
    LIST_ENTRIES,
    MAX_ENCODED_BITS,
    StatusEntry,
    StatusListError,
    bit,
    decode_list,
    encode_list,
    parse_entry,
    status_entry,
)
from node.keys import load_org_key
from node.setup import init_data_dir
from vouching.schema import InvalidRecord, text

from ..factories import new_did
from .telemetry_node import PUBLIC_URL, served, telemetry_node

positions = st.sets(st.integers(0, LIST_ENTRIES - 1), max_size=50)


def multibase(data: bytes) -> str:
    return "u" + base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the format ------------------------------------------------------------------------------------------------


@given(positions)
def test_a_list_decodes_to_exactly_the_positions_encoded(revoked):
    bits = decode_list(encode_list(revoked))
    assert len(bits) * 8 == LIST_ENTRIES
    # Every byte is checked, but bit() reads only the positions in the bytes a revoked position falls in: calling
    # it for all 131,072 positions took a tenth of a second an example, and in a zero byte it reads none as set.
    touched = {p // 8 for p in revoked}
    assert not any(byte for i, byte in enumerate(bits) if i not in touched)
    assert {p for i in touched for p in range(8 * i, 8 * i + 8) if bit(bits, p)} == revoked


@pytest.mark.parametrize("revoked, error", [
    ([3, LIST_ENTRIES], f"position {LIST_ENTRIES} is outside a list of {LIST_ENTRIES}"),
    ([-1], f"position -1 is outside a list of {LIST_ENTRIES}"),
    ([2**64], f"positions must be integers within a list of {LIST_ENTRIES}"),
    ([1.0], f"positions must be integers within a list of {LIST_ENTRIES}"),
    (["1"], f"positions must be integers within a list of {LIST_ENTRIES}"),
])
def test_a_position_outside_the_list_or_not_an_integer_is_refused(revoked, error):
    with pytest.raises(ValueError, match=f"^{re.escape(error)}$"):
        encode_list(revoked)


def test_the_first_position_is_the_most_significant_bit_of_the_first_byte():
    bits = gzip.decompress(base64.urlsafe_b64decode(encode_list({0, 9})[1:] + "=="))
    assert bits[:2] == bytes([0x80, 0x40]) and not any(bits[2:])


@pytest.mark.parametrize("encoded, reason", [
    (encode_list({1})[1:], "multibase base64url"),  # no 'u'
    (encode_list({1}) + "=", "multibase base64url"),
    (encode_list({1})[:40] + "+/" + encode_list({1})[42:], "multibase base64url"),  # the other alphabet
    (encode_list({1})[:40] + " \n" + encode_list({1})[40:], "multibase base64url"),  # stray characters
    (multibase(b"not gzip"), "not base64url of GZIP"),
    (multibase(gzip.compress(bytes(16384))[:-12]), "truncated GZIP"),
    (multibase(gzip.compress(bytes(17 * 1024 * 1024))), "inflates beyond"),  # a gzip bomb
    (42, "multibase base64url"),
])
def test_a_list_that_is_not_the_spec_s_encoding_is_refused(encoded, reason):
    with pytest.raises(StatusListError, match=reason):
        decode_list(encoded)


def test_a_position_beyond_the_list_is_an_error_not_a_valid_credential():
    with pytest.raises(StatusListError, match="beyond the list's 8 entries"):
        bit(b"\x00", 8)


def test_entries_name_their_list_and_bit():
    entry = status_entry("https://org.example/", LIST_ENTRIES + 5)
    assert entry == {"id": "https://org.example/v1/credentials/status/1#5", "type": "BitstringStatusListEntry",
                     "statusPurpose": "revocation", "statusListIndex": "5",
                     "statusListCredential": "https://org.example/v1/credentials/status/1"}
    assert parse_entry(entry) == StatusEntry("https://org.example/v1/credentials/status/1", 5)
    suspension = {**entry, "statusPurpose": "suspension"}
    assert parse_entry([suspension, entry]) == parse_entry(entry)
    assert parse_entry(suspension) is None and parse_entry(None) is None


@pytest.mark.parametrize("change, reason", [
    ({"type": "StatusList2021Entry"}, "of type BitstringStatusListEntry"),
    ({"statusListIndex": 5}, "decimal digits"),
    ({"statusListIndex": "-5"}, "decimal digits"),
    ({"statusListIndex": "٥"}, "decimal digits"),  # a digit, but not an ASCII one
    ({"statusListIndex": "1" * 5_000}, "beyond the longest list"),  # more digits than int() takes
    ({"statusListIndex": str(MAX_ENCODED_BITS)}, "beyond the longest list"),
    ({"statusListCredential": "file:///etc/passwd"}, "http"),
])
def test_a_malformed_entry_is_refused(change, reason):
    with pytest.raises(StatusListError, match=reason):
        parse_entry({**status_entry("https://org.example", 5), **change})


# --- the registry ----------------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path):
    registry = CredentialRegistry.open(tmp_path)
    yield registry
    registry.close()


def mint(registry, agent, name=None):
    return registry.allocate(agent, name=name, issued_at=1, expires_at=2)


def test_indexes_are_handed_out_once_even_to_concurrent_minters(tmp_path):
    taken, lock = [], threading.Lock()

    def minter():
        registry = CredentialRegistry.open(tmp_path)
        indexes = [mint(registry, new_did()) for _ in range(25)]
        registry.close()
        with lock:
            taken.extend(indexes)

    threads = [threading.Thread(target=minter) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(100))
    reopened = CredentialRegistry.open(tmp_path)
    assert mint(reopened, new_did()) == 100
    reopened.close()


def test_the_latest_expiry_follows_every_change_even_another_process_s(tmp_path, registry):
    """The JWKS asks it at every request; `vouchnet agent` mints and revokes through another connection."""
    assert registry.latest_expiry(100) is None
    registry.allocate(new_did(), name="old", issued_at=10, expires_at=500)
    assert registry.latest_expiry(100) == 500
    other = CredentialRegistry.open(tmp_path)
    other.allocate(new_did(), name="older", issued_at=5, expires_at=900)
    other.allocate(new_did(), name="newer", issued_at=200, expires_at=2000)  # issued after: not counted
    assert registry.latest_expiry(100) == 900
    other.revoke("older", reason="left", at=50)
    other.close()
    assert registry.latest_expiry(100) == 500
    registry.revoke("old", reason="left", at=60)
    assert registry.latest_expiry(100) is None


@settings(max_examples=40)
@given(st.lists(st.one_of(st.tuples(st.just("mint"), st.booleans(), st.integers(0, 200), st.integers(0, 400)),
                          st.tuples(st.just("revoke"), st.booleans(), st.integers(0, 12)),
                          st.tuples(st.just("ask"), st.integers(0, 200))), max_size=20))
def test_counts_and_expiries_follow_every_change_and_are_read_once_between_changes(ops):
    """The lists' span, a status list's revoked count and the JWKS's latest expiry are asked at every (public) GET:
    each is read from the table once after a change of the registry, through this connection or another process's
    (`vouchnet agent`), and served from what was read until the next change. The count was read at every GET (19 ms
    at 65,536 revoked). Asked `kept_only` (as on the event loop), they are the same or NotKept, never stale, and
    nothing but data_version is read."""
    with tempfile.TemporaryDirectory() as directory:
        registry, other = CredentialRegistry.open(Path(directory)), CredentialRegistry.open(Path(directory))
        statements: list[str] = []
        registry._db.set_trace_callback(statements.append)
        credentials = []  # [issued_at, expires_at, revoked]
        try:
            for op in ops:
                writer = registry if op[0] != "ask" and op[1] else other
                if op[0] == "mint":
                    writer.allocate(new_did(), name=None, issued_at=op[2], expires_at=op[3])
                    credentials.append([op[2], op[3], False])
                elif op[0] == "revoke" and op[2] < len(credentials):
                    writer.revoke(op[2], reason="left", at=1)
                    credentials[op[2]][2] = True
                elif op[0] == "ask":
                    expected = (1, sum(revoked for _, _, revoked in credentials),
                                max((e for i, e, revoked in credentials if i <= op[1] and not revoked), default=None))

                    def asked() -> tuple[int, int, int | None]:
                        return registry.lists(), registry.revoked_count(0), registry.latest_expiry(op[1])

                    statements.clear()
                    try:
                        with registry.kept_only():
                            assert asked() == expected
                    except NotKept:
                        pass
                    assert set(statements) <= {"PRAGMA data_version"}
                    for again in (False, True):
                        statements.clear()
                        assert asked() == expected
                        assert not again or statements == ["PRAGMA data_version"] * 3
                    with registry.kept_only():
                        assert asked() == expected
        finally:
            registry.close()
            other.close()


@pytest.mark.slow
def test_a_kept_answer_is_not_served_after_another_process_changed_the_registry(tmp_path, registry):
    """`vouchnet agent new` and `revoke` write the registry in processes of their own beside the node, whose event
    loop serves the answers it kept (`kept_only`) while data_version says nothing changed."""
    mint(registry, new_did())
    assert (registry.lists(), registry.revoked_count(0)) == (1, 0)
    with registry.kept_only():
        assert (registry.lists(), registry.revoked_count(0)) == (1, 0)
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from node.credential_registry import "
                    "CredentialRegistry; CredentialRegistry.open(Path(sys.argv[1])).revoke(0, reason='left', at=1)",
                    str(tmp_path)], check=True, timeout=60)
    with pytest.raises(NotKept), registry.kept_only():
        registry.revoked_count(0)
    assert (registry.lists(), registry.revoked_count(0)) == (1, 1)
    with registry.kept_only():
        assert (registry.lists(), registry.revoked_count(0)) == (1, 1)


def test_revoking_by_name_did_or_index(registry):
    alice, bob = new_did(), new_did()
    first, second, third = mint(registry, alice, "alice"), mint(registry, alice, "alice"), mint(registry, bob)
    assert [c.index for c in registry.revoke("alice", reason="key leaked", at=7)] == [first, second]
    assert registry.revoke(alice, reason="again", at=8) == []  # already revoked: nothing changes
    assert [(c.index, c.reason) for c in registry.revoke(third, reason="retired", at=9)] == [(third, "retired")]
    assert [(c.revoked_at, c.reason) for c in registry.issued()] == [(7, "key leaked"), (7, "key leaked"),
                                                                     (9, "retired")]
    with pytest.raises(RegistryError, match="no credential of this org has this agent did or name"):
        registry.revoke("carol", reason="x", at=1)
    with pytest.raises(RegistryError, match="has this index"):
        registry.revoke(3, reason="x", at=1)
    with pytest.raises(RegistryError, match="reason: must be printable text of 1 to 500 characters"):
        registry.revoke(bob, reason="x" * 501, at=1)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=600), st.sampled_from(["", " \n", "key\x00leaked", "\u202e", "x" * 501])))
def test_a_revocation_takes_the_reasons_a_revoke_record_takes(registry, reason):
    """Printable text of 1 to 500 characters, as schema.text has a revoke record's reason (there 1 to 256); any
    other reason is refused and revokes nothing."""
    index = mint(registry, new_did())
    try:
        text(reason, "reason", 500)
    except InvalidRecord:
        with pytest.raises(RegistryError, match="reason: must be printable text of 1 to 500 characters"):
            registry.revoke(index, reason=reason, at=1)
        assert registry.issued()[-1].revoked_at is None
    else:
        assert [c.reason for c in registry.revoke(index, reason=reason, at=1)] == [reason]


def test_revocations_land_in_the_list_of_their_index(registry, monkeypatch):
    monkeypatch.setattr(credential_registry, "LIST_ENTRIES", 8)
    assert registry.lists() == 1  # an empty list 0 exists before anything was minted
    for _ in range(10):
        mint(registry, new_did())
    registry.revoke(9, reason="x", at=1)
    registry.revoke(2, reason="x", at=1)
    assert (registry.lists(), registry.revoked_positions(0), registry.revoked_positions(1)) == (2, [2], [1])


def test_a_file_that_is_not_a_registry_is_reported(tmp_path):
    (tmp_path / "credentials.db").write_bytes(b"not sqlite" * 100)
    with pytest.raises(RegistryError, match="not a credential registry"):
        CredentialRegistry.open(tmp_path)


# --- the node's lists, and the CLI ---------------------------------------------------------------------------


def agent_command(*argv):
    parser = argparse.ArgumentParser(prog="vouchnet")
    agents.register(parser.add_subparsers())
    args = parser.parse_args(["agent", *argv])
    return args.func(args)


def pyjwt_status_list(url: str, list_url: str) -> dict:
    """What a relying party does: fetch the list, verify it against the org's JWKS, read its bits."""
    token = httpx.get(list_url).text
    key = pyjwt.PyJWKClient(f"{url}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    return pyjwt.decode(token, key.key, algorithms=["EdDSA"])


async def test_the_cli_mints_revocable_credentials_and_the_node_publishes_their_revocation(tmp_path, capsys):
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = made.data_dir / "config.toml"
    config.write_text(config.read_text().replace('public_url = ""', f'public_url = "{PUBLIC_URL}/"'))
    minted = []
    for name in ("alice", "bob"):
        assert agent_command("new", "--name", name, "--out", str(tmp_path / "agents"), "--dir", str(made.data_dir)) == 0
        out, err = capsys.readouterr()
        assert err == ""  # public_url is set: no warning that other orgs cannot reach the lists
        minted.append(json.loads(out))
    alice, bob = minted
    assert (alice["index"], bob["index"]) == (0, 1)
    claims = pyjwt.decode((tmp_path / "agents" / "bob.vc.jwt").read_text().strip(), options={"verify_signature": False})
    assert claims["credentialStatus"] == status_entry(PUBLIC_URL, 1)

    assert agent_command("revoke", "bob", "--reason", "key leaked", "--dir", str(made.data_dir)) == 0
    assert [c["index"] for c in json.loads(capsys.readouterr().out)["revoked"]] == [1]
    assert agent_command("revoke", "bob", "--reason", "again", "--dir", str(made.data_dir)) == 0  # (a retry: no error)
    out, err = capsys.readouterr()
    assert json.loads(out) == {"revoked": []}
    assert err == "nothing revoked now: every credential of bob was revoked already\n"
    with pytest.raises(UsageError, match="no credential"):
        agent_command("revoke", "carol", "--reason", "x", "--dir", str(made.data_dir))
    for reason in ("", "key\nleaked"):
        assert cli.main(["agent", "revoke", "alice", "--reason", reason, "--dir", str(made.data_dir)]) == 2
        assert capsys.readouterr().err == ("vouchnet agent revoke: reason: must be printable text of 1 to 500 "
                                           "characters\n")
    assert agent_command("list", "--dir", str(made.data_dir)) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["reason"]) for c in listed] == [("alice", None), ("bob", "key leaked")]

    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key")) as node:
        async with served(node.app()) as url:
            claims = await trio.to_thread.run_sync(pyjwt_status_list, url, f"{url}/v1/credentials/status/0")
            missing = await trio.to_thread.run_sync(httpx.get, f"{url}/v1/credentials/status/1")
            bad = await trio.to_thread.run_sync(httpx.get, f"{url}/v1/credentials/status/-1")
    assert claims["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    assert (claims["iss"], claims["id"]) == (made.did, f"{PUBLIC_URL}/v1/credentials/status/0")
    assert claims["exp"] - claims["iat"] == 300
    subject = claims["credentialSubject"]
    assert (subject["type"], subject["statusPurpose"]) == ("BitstringStatusList", "revocation")
    bits = decode_list(subject["encodedList"])
    assert (bit(bits, 0), bit(bits, 1)) == (False, True)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_request")  # as every malformed parameter


def test_agent_revoke_and_list_never_read_the_org_key(tmp_path, capsys):
    """They sign nothing: a leaked agent's revocation does not wait for org.key to be restored (before: refused,
    "org.key: missing"), nor is the org's secret read by a command that has no use for it."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = made.data_dir / "config.toml"
    config.write_text(config.read_text().replace('public_url = ""', f'public_url = "{PUBLIC_URL}/"'))
    assert agent_command("new", "--name", "alice", "--out", str(tmp_path / "agents"), "--dir", str(made.data_dir)) == 0
    (made.data_dir / "org.key").rename(tmp_path / "org.key.offline")
    capsys.readouterr()
    assert cli.main(["agent", "revoke", "alice", "--reason", "key leaked", "--dir", str(made.data_dir)]) == 0
    assert [c["name"] for c in json.loads(capsys.readouterr().out)["revoked"]] == ["alice"]
    assert cli.main(["agent", "list", "--dir", str(made.data_dir)]) == 0
    assert [(c["name"], c["reason"]) for c in json.loads(capsys.readouterr().out)] == [("alice", "key leaked")]


@pytest.mark.parametrize("index", [str(2**63), "-1", "1.5", "\u00b2"])
def test_agent_revoke_refuses_an_index_that_is_none_naming_what_it_takes(tmp_path, capsys, index):
    """Before: an index beyond SQLite's integers ended in OverflowError's traceback."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    assert cli.main(["agent", "revoke", "--index", index, "--reason", "x", "--dir", str(made.data_dir)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"vouchnet agent revoke: error: argument --index: expected a credential's index, 0 to {2**63 - 1} (`vouchnet "
        f"agent list` shows them), got {index!r}")


def test_agent_revoke_says_what_is_wrong_with_a_did_as_score_does(tmp_path, capsys):
    """Where it would say only that no credential has this did or name, which sends an operator to `agent list`."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    did = new_did()
    for agent in (did[:-1], did.replace("did:key:", "did:web:"), "eyJhbGciOiJFZERTQSJ9.e30.c2ln"):
        assert cli.main(["score", agent]) == 2
        said = capsys.readouterr().err.splitlines()[-1].split("argument DID: ")[1]
        assert cli.main(["agent", "revoke", agent, "--reason", "x", "--dir", str(made.data_dir)]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == f"vouchnet agent revoke: error: argument AGENT: {said}"


async def test_a_damaged_registry_answers_503_storage_as_the_node_s_other_storage_does(tmp_path):
    """Before: credentials.db damaged under a running node (a disk's bad sector, a copy over it) answered 500
    internal: SQLite's DatabaseError was not taken for a storage failure, only its OperationalError."""
    with telemetry_node(tmp_path) as node:
        for n in range(200):
            node.credentials.allocate(new_did(), name=f"agent-{n}", issued_at=10, expires_at=10**9)
    path = tmp_path / "credentials.db"
    with open(path, "r+b") as db:  # every page but the first (the schema's) overwritten
        db.seek(4096)
        db.write(b"\xa5" * (path.stat().st_size - 4096))
    with telemetry_node(tmp_path) as node:
        transport = httpx.ASGITransport(app=node.app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as api:
            answer = await api.get("/v1/credentials/status/0")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "storage" and set(answer.json()) == {"error", "detail"}
    assert answer.headers["Retry-After"]
