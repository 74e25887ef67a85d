"""The status lists of this org's vouches (node.credential_status): a vouch's credential names its bit, the vouch
record's seq, in a list of its key's vouches that the node derives from the revokes it holds."""

import threading

import httpx
import jwt as pyjwt
import pytest
import trio
from nacl.signing import SigningKey

from node import credential_status, credentials_api, signed_lists
from node.credential_status import bit, decode_list, vouch_list_url, vouch_status_entry
from node.credentials_api import MAX_VOUCH_LISTS, credentials_router
from vouching import revoke_body, vouch_body
from vouching.schema import MAX_UINT

from ..factories import Org, new_did
from .telemetry_node import PUBLIC_URL, guarded_app, telemetry_node


@pytest.fixture
def node(tmp_path):
    with telemetry_node(tmp_path) as node:
        yield node


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n")


async def vouch_list(app, issuer: str, list_number: int = 0) -> dict:
    """The claims of `issuer`'s vouch status list `list_number`, as served (unverified: test_credentials verifies
    one with PyJWT against the JWKS)."""
    async with client(app) as http:
        response = await http.get(vouch_list_url("", issuer, list_number))
    assert response.status_code == 200, response.text
    return pyjwt.decode(response.text, options={"verify_signature": False})


def revoked(claims: dict, positions: range) -> list[int]:
    bits = decode_list(claims["credentialSubject"]["encodedList"])
    return [position for position in positions if bit(bits, position)]


async def test_a_revoked_vouch_s_bit_is_set_and_no_other(node):
    vouches = [node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(3)]
    revoke = node.replica.issue("revoke", revoke_body(vouches[1].id, "left the org"))
    node.credentials.allocate(new_did(), name="alice", issued_at=1, expires_at=2)  # agent credentials: 0 and 1,
    node.credentials.allocate(new_did(), name="bob", issued_at=1, expires_at=2)
    node.credentials.revoke("alice", reason="key leaked", at=1)  # another numbering, another list
    app = node.app()
    claims = await vouch_list(app, node.replica.did)
    assert revoked(claims, range(revoke.seq + 1)) == [vouches[1].seq]
    assert (claims["id"], claims["iss"]) == (vouch_list_url(PUBLIC_URL, node.replica.did, 0), node.replica.did)
    async with client(app) as http:
        agents = pyjwt.decode((await http.get("/v1/credentials/status/0")).text, options={"verify_signature": False})
        credential = (await http.get(f"/v1/records/{vouches[2].id.hex()}/vc")).text
    assert revoked(agents, range(revoke.seq + 1)) == [0]
    status = pyjwt.decode(credential, options={"verify_signature": False})["credentialStatus"]
    assert status == vouch_status_entry(PUBLIC_URL, node.replica.did, vouches[2].seq)
    assert status["statusListIndex"] == str(vouches[2].seq)


async def test_a_revoke_is_served_at_once_and_a_list_is_signed_again_only_then_or_a_minute_on(node, monkeypatch):
    now, signed = [1_000_000.0], []
    monkeypatch.setattr(signed_lists, "status_list_credential",
                        lambda *args, real=signed_lists.status_list_credential, **kwargs: (
                            signed.append(1), real(*args, **kwargs))[1])
    app = guarded_app([credentials_router(node.key, node.replica, node.credentials, PUBLIC_URL, clock=lambda: now[0])])
    vouch = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    assert [revoked(await vouch_list(app, node.replica.did), range(8)) for _ in range(5)] == [[]] * 5
    node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))  # a record, not a revoke: the list stands
    assert revoked(await vouch_list(app, node.replica.did), range(8)) == [] and len(signed) == 1
    node.replica.issue("revoke", revoke_body(vouch.id, "left the org"))
    assert revoked(await vouch_list(app, node.replica.did), range(8)) == [vouch.seq] and len(signed) == 2
    now[0] += signed_lists.LIST_REUSE_S
    assert revoked(await vouch_list(app, node.replica.did), range(8)) == [vouch.seq] and len(signed) == 3


async def test_a_list_is_signed_in_a_worker_thread_once_for_the_asks_that_come_meanwhile(node, monkeypatch):
    """Signing a list of 20,000 revoked vouches held the event loop 13-40 ms after each revoke and each minute
    (benchmarks/vouch_status.py), and each ask until one had signed it signed it again. It is signed in a worker
    thread now, once: asks that come meanwhile wait for that signing while the loop serves other requests."""
    entered, opened, held, threads = threading.Event(), threading.Event(), [], []

    def signing(*args, real=signed_lists.status_list_credential, **kwargs):
        threads.append(threading.current_thread())
        entered.set()
        held.append(opened.wait(10))  # False if the loop was stuck (signing on it)
        return real(*args, **kwargs)

    monkeypatch.setattr(signed_lists, "status_list_credential", signing)
    vouch = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    node.replica.issue("revoke", revoke_body(vouch.id, "left the org"))
    answers = []
    async with client(node.app()) as http:
        async def ask() -> None:
            answers.append(await http.get(vouch_list_url("", node.replica.did, 0)))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(ask)
            assert await trio.to_thread.run_sync(entered.wait, 10)
            assert (await http.get("/.well-known/jwks.json")).status_code == 200  # the loop answers meanwhile
            opened.set()
    assert held == [True] and threads[0] is not threading.main_thread()
    assert [a.status_code for a in answers] == [200] * 5 and len({a.text for a in answers}) == 1
    assert revoked(pyjwt.decode(answers[0].text, options={"verify_signature": False}), range(8)) == [vouch.seq]


async def test_the_list_after_a_restart_is_identical(tmp_path):
    key = SigningKey.generate()
    with telemetry_node(tmp_path, key=key) as node:
        vouches = [node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(4)]
        for vouch in vouches[::2]:
            node.replica.issue("revoke", revoke_body(vouch.id, "left the org"))
        before = await vouch_list(node.app(), node.replica.did)
    with telemetry_node(tmp_path, key=key) as node:
        after = await vouch_list(node.app(), node.replica.did)
    assert after["credentialSubject"] == before["credentialSubject"]
    assert revoked(after, range(8)) == [vouches[0].seq, vouches[2].seq]


async def test_a_key_s_vouches_take_a_list_for_each_list_entries_seqs(node, monkeypatch):
    monkeypatch.setattr(credential_status, "LIST_ENTRIES", 8)  # as 131,072 records would
    monkeypatch.setattr(credentials_api, "LIST_ENTRIES", 8)
    vouches = [node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(20)]
    node.replica.issue("revoke", revoke_body(vouches[9].id, "left the org"))  # seq 10: list 1, bit 2; itself seq 21
    app = node.app()
    assert [revoked(await vouch_list(app, node.replica.did, n), range(8)) for n in range(3)] == [[], [2], []]
    async with client(app) as http:
        credential = (await http.get(f"/v1/records/{vouches[10].id.hex()}/vc")).text  # seq 11: list 1, bit 3
        beyond = await http.get(vouch_list_url("", node.replica.did, 3))
    status = pyjwt.decode(credential, options={"verify_signature": False})["credentialStatus"]
    assert (status["statusListCredential"], status["statusListIndex"]) == (
        vouch_list_url(PUBLIC_URL, node.replica.did, 1), "3")
    assert (beyond.status_code, beyond.json()["detail"]) == (404, "path.list_number: the records of this key span "
                                                                  "lists 0 to 2")


async def test_lists_no_key_of_this_org_has_get_a_clear_answer(node):
    node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    did, stranger = node.replica.did, new_did()
    async with client(node.app()) as http:
        answers = {path: await http.get(path) for path in (
            vouch_list_url("", did, 1), vouch_list_url("", did, MAX_VOUCH_LISTS + 1), vouch_list_url("", did, 10**30),
            vouch_list_url("", did, -1), vouch_list_url("", did, "x"), vouch_list_url("", stranger, 0),
            vouch_list_url("", "did:key:zNo", 0), vouch_list_url("", "x" * 2000, 0))}
    assert [(a.status_code, a.json()["error"]) for a in answers.values()] == (
        [(404, "not_found")] + [(422, "invalid_request")] * 4 + [(404, "not_found")] + [(422, "invalid_request")] * 2)
    assert answers[vouch_list_url("", did, 1)].json()["detail"] == ("path.list_number: the records of this key "
                                                                    "span lists 0 to 0")
    assert answers[vouch_list_url("", stranger, 0)].json()["detail"] == "path.did: not a key of this org"
    assert [a.json()["detail"].partition(" (")[0] for a in list(answers.values())[6:]] == [
        "path.did: not an Ed25519 did:key"] * 2
    async with client(node.app()) as http:  # the list of the last seq a record can have is one of this key's
        last = await http.get(vouch_list_url("", did, vouch_status_entry(PUBLIC_URL, did, MAX_UINT)[
            "statusListCredential"].rpartition("/")[2]))
    assert (last.status_code, last.json()["detail"]) == (404, "path.list_number: the records of this key span lists "
                                                              "0 to 0")


async def test_after_a_rotation_the_old_key_s_list_is_served_and_the_new_key_s_revokes_count(tmp_path):
    """The two keys' seqs are two numberings: each has its own lists, and a later key may revoke an earlier key's
    vouch (vouching.succession)."""
    old = Org()
    vouch = old.vouch(new_did(), 0.5, "operator")
    new, rotation, first = old.rotate()
    with telemetry_node(tmp_path, key=new.key) as node:
        node.replica.accept([first])
        node.replica.accept([vouch, rotation])
        assert node.replica.succession.earlier(node.replica.did) == (old.did,)
        ours = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))  # seq 2 of the new key
        node.replica.issue("revoke", revoke_body(vouch.id, "left the org"))  # vouch is seq 1 of the old key
        app = node.app()
        assert revoked(await vouch_list(app, old.did), range(8)) == [vouch.seq]
        assert revoked(await vouch_list(app, new.did), range(8)) == []
        node.replica.issue("revoke", revoke_body(ours.id, "left the org"))
        assert revoked(await vouch_list(app, old.did), range(8)) == [vouch.seq]
        assert revoked(await vouch_list(app, new.did), range(8)) == [ours.seq]
