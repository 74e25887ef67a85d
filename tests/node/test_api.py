"""The local API over a fake node with a real replica: every endpoint, the token, the error shape, paging."""

import base64
import functools
import json
import logging
import re
import sqlite3
import time
from contextlib import closing
from typing import NoReturn
from urllib.parse import quote

import httpx
import pytest
import trio
from fastapi import APIRouter, Depends, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from pydantic import BaseModel

from gossip.host import peer_id_from_public_key, peer_org
from gossip.own_records import OWN_RECORDS_FILE, OwnRecords
from gossip.peers import APART_FIRST, MAX_ERROR
from gossip.replica import Replica
from gossip.store import INDEX_FILE, RecordStore, StoreError
from ledger import Checkpoint, Ed25519Verifier, LedgerError, open_checkpoint, verify_consistency, verify_inclusion
from node.api import create_app
from node.api.errors import count_storage_refusals
from node.api.http_server import serve
from node.api.json_body import StrictJsonRoute
from node.api.status import MAX_LISTED_FLAGGED
from node.api.scores import CHECK_PATH
from node.idempotency import IdempotencyStore
from node.metrics import Registry
from vouching import EquivocationBody, org_body, public_key_from_did, verify_record, vouch_body

from ..factories import Org, new_did
from .fake_node import TOKEN, FakeNode, fake_node, report_own_equivocation
from .in_process import running

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def partner():
    return Org()


@pytest.fixture
def node(tmp_path, partner):
    with fake_node(tmp_path, roots=(partner.did,)) as node:
        yield node


@pytest.fixture
def app(node):
    return create_app(node)


@pytest.fixture
async def api(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
        yield client


async def vouch(api, subject=None, **fields):
    body = {"subject": subject or new_did(), "weight": 0.5, "basis": "operator", **fields}
    response = await api.post("/v1/vouches", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response, status, code, detail_start=""):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert body["detail"].startswith(detail_start), body["detail"]


# --- the node ---------------------------------------------------------------------------------------------


async def test_healthz_answers_while_the_node_runs(api):
    response = await api.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_node_shows_identity_addresses_and_what_it_holds(api, node, partner):
    await vouch(api)
    node.replica.issue("vouch", vouch_body(partner.did, 0.8, "org-peer"))
    node.replica.accept([partner.record()])
    info = (await api.get("/v1/node")).json()
    assert info["did"] == node.did and info["earlier_keys"] == []
    assert info["network"] == "testnet"
    assert info["peer_id"] == "12D3KooWFake"
    assert info["listen"] == ["/ip4/127.0.0.1/tcp/4001"]
    assert info["records"] == 3
    assert info["held"] == 0
    assert info["own_records_from_peers"] == 0
    assert info["takes_writes"] is True
    assert info["horizon"] == 2  # this org and its partner
    assert (info["flagged"], info["flagged_complete"], info["flagged_total"]) == ([], True, 0)


async def test_node_counts_records_of_its_key_that_came_from_peers(api, node):
    head = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    node.replica.accept([Org(key=node.replica.key, seq=head.seq, prev=head.id).record()])  # signed elsewhere
    assert (await api.get("/v1/node")).json()["own_records_from_peers"] == 1


async def test_records_of_its_key_from_peers_are_listed_and_acknowledged_with_the_token(api, node):
    head = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    elsewhere = Org(key=node.replica.key, seq=head.seq, prev=head.id)
    first, second = elsewhere.record(), elsewhere.record()
    node.replica.accept([first, second], "12D3KooWPeer")
    listed = (await api.get("/v1/node/own-records")).json()
    assert [(r["number"], r["id"], r["iss"], r["seq"], r["peer"], r["acknowledged"]) for r in listed["records"]] == [
        (n, r.id.hex(), r.iss, r.seq, "12D3KooWPeer", False) for n, r in enumerate((first, second), 1)]
    assert listed["unacknowledged"] == 2 and listed["next"] is None
    assert abs(listed["records"][0]["accepted_ms"] - time.time() * 1000) < 60_000
    path = "/v1/node/own-records/acknowledge"
    assert_error(await api.post(path, json={"through": 1}), 401, "unauthorized")
    for bad in ({"through": 0}, {"through": "2"}, {"through": 2.0}, {}, {"through": 2, "all": True},
                {"through_seq": 2}):
        assert_error(await api.post(path, json=bad, headers=AUTH), 422, "invalid_request", "body")
    assert_error(await api.post(path, content=b"{", headers={**AUTH, "Content-Type": "application/json"}), 400,
                 "bad_request")
    assert_error(await api.get("/v1/node/own-records", params={"after": -1}), 422, "invalid_request")
    answer = await api.post(path, json={"through": 1}, headers=AUTH)
    assert answer.status_code == 200 and answer.json() == {"acknowledged": 1, "unacknowledged": 1}
    assert (await api.get("/v1/node")).json()["own_records_from_peers"] == 1
    page = (await api.get("/v1/node/own-records", params={"after": 1})).json()
    assert [(r["seq"], r["acknowledged"]) for r in page["records"]] == [(second.seq, False)]


async def test_a_record_of_its_key_conflicting_with_one_it_holds_is_listed_with_its_bytes_to_fetch(api, node):
    """Refused with 409 as any fork, and listed: `stored` false, `conflicts_with` the record the node holds, and its
    bytes at /v1/node/own-records/{number}/cose, as the ledger does not hold them."""
    ours = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    theirs = Org(key=node.replica.key).fork(ours.seq, ours.prev)
    refused = await api.post("/v1/records", content=theirs.raw, headers={**AUTH, "Content-Type": "application/cose"})
    assert_error(refused, 409, "equivocation")
    stored = Org(key=node.replica.key, seq=ours.seq, prev=ours.id).record()
    node.replica.accept([stored], "12D3KooWPeer")
    page = (await api.get("/v1/node/own-records")).json()
    assert [(r["number"], r["id"], r["peer"], r["stored"], r["conflicts_with"]) for r in page["records"]] == [
        (1, theirs.id.hex(), None, False, ours.id.hex()), (2, stored.id.hex(), "12D3KooWPeer", True, None)]
    assert page["unacknowledged"] == 2 and page["conflicts_unlisted"] == 0
    fetched = await api.get("/v1/node/own-records/1/cose")
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "application/cose"
    assert fetched.content == theirs.raw
    assert_error(await api.get("/v1/node/own-records/2/cose"), 404, "not_found")  # stored: at /v1/records/{id}
    assert_error(await api.get("/v1/node/own-records/3/cose"), 404, "not_found")
    assert_error(await api.get("/v1/node/own-records/0/cose"), 404, "not_found")
    assert_error(await api.get("/v1/node/own-records/-1/cose"), 422, "invalid_request")
    assert (await api.get("/v1/node")).json()["own_records_from_peers"] == 2


async def test_a_conflicting_record_stored_once_the_held_one_it_conflicted_with_was_dropped_shows_stored(api, node):
    """Conflicting with a record held for a missing predecessor, which the predecessor then refuses (it does not
    follow it), and stored when it comes again: still listed as a conflict (the key signed both), but `stored` true,
    as the ledger holds it (and serves it to peers). Before: `stored` false, read from the row."""
    head = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    elsewhere = Org(key=node.replica.key, seq=head.seq, prev=head.id)
    first = elsewhere.record()
    held = elsewhere.fork(first.seq + 1, bytes(32))  # follows no record: held, then refused by `first`
    theirs = elsewhere.fork(first.seq + 1, first.id)
    assert node.replica.accept([held], "12D3KooWPeer").held == 1
    assert node.replica.accept([theirs], "12D3KooWThief").equivocations == [(held.raw, theirs)]
    node.replica.accept([first], "12D3KooWPeer")
    assert node.replica.accept([theirs], "12D3KooWThief").accepted == [theirs]
    page = (await api.get("/v1/node/own-records")).json()
    assert [(r["id"], r["stored"], r["conflicts_with"]) for r in page["records"]] == [
        (theirs.id.hex(), True, held.id.hex()), (first.id.hex(), True, None)]
    assert (await api.get("/v1/node/own-records/1/cose")).content == theirs.raw
    fetched = await api.get("/v1/node/own-records/1/conflicts-with/cose")  # the held one, stored nowhere
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "application/cose"
    assert fetched.content == held.raw
    assert_error(await api.get("/v1/node/own-records/2/conflicts-with/cose"), 404, "not_found")


async def test_the_row_of_a_record_of_its_key_in_a_batch_the_store_refused_shows_it_not_stored(api, node):
    """The row is written before the store takes the batch, and stays until the next start drops it: `stored` false,
    as GET /v1/records/{id} has no such record, until the record comes again and is stored. Before: true, assumed
    of every row but a conflicting one's."""
    head = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    record = Org(key=node.replica.key, seq=head.seq, prev=head.id).record()
    append = node.replica.store.append
    node.replica.store.append = lambda records: (_ for _ in ()).throw(StoreError("disk full"))
    with pytest.raises(StoreError):
        node.replica.accept([record], "12D3KooWPeer")
    page = (await api.get("/v1/node/own-records")).json()
    assert [(r["id"], r["stored"]) for r in page["records"]] == [(record.id.hex(), False)]
    assert_error(await api.get(f"/v1/records/{record.id.hex()}"), 404, "not_found")
    node.replica.store.append = append
    node.replica.accept([record], "12D3KooWPeer")
    assert [r["stored"] for r in (await api.get("/v1/node/own-records")).json()["records"]] == [True]


def _conflict_with_a_held_record(node):
    """A vouch the node signs (`ours`), a record of its key held for a missing predecessor (`held`) and a thief's
    conflicting with that one, listed as the next row: (ours, held)."""
    ours = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    held = Org(key=node.replica.key).fork(ours.seq + 2, bytes(32))
    node.replica.accept([held], "12D3KooWPeer")
    node.replica.accept([Org(key=node.replica.key).fork(held.seq, bytes(32))], "12D3KooWThief")
    return ours, held


async def test_the_bytes_of_an_acknowledged_conflict_dropped_to_make_room_for_a_later_one_are_said_gone(
        api, node, tmp_path, monkeypatch):
    """Past the bytes the list keeps (1 here), an acknowledged conflict's are dropped to make room for a later one's,
    the held record's it conflicted with among them: 410 `bytes_dropped`, after a restart too, where 404 would say
    there is no such conflict. The later conflict's own and the stored record's it conflicts with are served."""
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICTS", 1)
    node.replica.own_records = OwnRecords.open(tmp_path, lambda: 0, node.replica.store)
    ours, held = _conflict_with_a_held_record(node)
    assert (await api.get("/v1/node/own-records/1/conflicts-with/cose")).content == held.raw
    assert (await api.post("/v1/node/own-records/acknowledge", json={"through": 1}, headers=AUTH)).status_code == 200
    theirs = Org(key=node.replica.key).fork(ours.seq, ours.prev)
    node.replica.accept([theirs], "12D3KooWThief")
    node.replica.own_records.close()
    node.replica.own_records = OwnRecords.open(tmp_path, lambda: 0, node.replica.store)  # a restart
    for path in ("/v1/node/own-records/1/cose", "/v1/node/own-records/1/conflicts-with/cose"):
        assert_error(await api.get(path), 410, "bytes_dropped", "path.number: the bytes of record")
    assert (await api.get("/v1/node/own-records/2/cose")).content == theirs.raw
    assert (await api.get("/v1/node/own-records/2/conflicts-with/cose")).content == ours.raw  # from the ledger
    page = (await api.get("/v1/node/own-records")).json()
    assert [(r["number"], r["acknowledged"]) for r in page["records"]] == [(1, True), (2, False)]
    spec = (await api.get("/openapi.json")).json()["paths"]
    assert {"404", "410"} <= set(spec["/v1/node/own-records/{number}/cose"]["get"]["responses"])
    assert {"404", "410"} <= set(spec["/v1/node/own-records/{number}/conflicts-with/cose"]["get"]["responses"])
    node.replica.own_records.close()


async def test_the_list_says_of_each_conflicting_row_whether_the_node_serves_its_bytes_and_the_other_s(
        api, node, tmp_path, monkeypatch):
    """`bytes` and `conflicts_with_bytes` say what .../cose and .../conflicts-with/cose answer, without asking each
    row's: `kept` (200), `dropped` (410 bytes_dropped), `not_kept` (410 bytes_not_kept); null for a row conflicting
    with none. Before, only asking each path (or `vouchnet own-records evidence`) told an operator."""
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICTS", 1)
    node.replica.own_records = OwnRecords.open(tmp_path, lambda: 0, node.replica.store)
    ours, held = _conflict_with_a_held_record(node)
    node.replica.own_records.acknowledge(1)
    node.replica.accept([Org(key=node.replica.key).fork(ours.seq, ours.prev)], "12D3KooWThief")  # drops 1's bytes
    node.replica.own_records.acknowledge(2)
    never_held = Org(key=node.replica.key).fork(ours.seq + 3, bytes(32))  # as format 4 listed it: held, no bytes
    node.replica.own_records.add_conflicts([(Org(key=node.replica.key).fork(never_held.seq, bytes(32)),
                                             never_held.id, None, "12D3KooWThief")])  # drops 2's bytes
    node.replica.accept([Org(key=node.replica.key, seq=ours.seq, prev=ours.id).record()], "12D3KooWPeer")
    page = (await api.get("/v1/node/own-records")).json()
    assert [(r["number"], r["bytes"], r["conflicts_with_bytes"]) for r in page["records"]] == [
        (1, "dropped", "dropped"), (2, "dropped", "kept"), (3, "kept", "not_kept"), (4, None, None)]
    answers = {200: "kept", 410: None}
    for row in page["records"][:3]:
        for field, path in (("bytes", "cose"), ("conflicts_with_bytes", "conflicts-with/cose")):
            answer = await api.get(f"/v1/node/own-records/{row['number']}/{path}")
            said = answers[answer.status_code] or answer.json()["error"].removeprefix("bytes_")
            assert (row["number"], field, said) == (row["number"], field, row[field])
    node.replica.own_records.close()


async def test_the_list_is_served_while_the_ledger_s_index_cannot_be_read_saying_stored_is_not_known(
        api, node, caplog, monkeypatch):
    """The list is a file apart, evidence of a stolen key an operator needs then too: served, `stored` null on every
    row, `bytes` and `conflicts_with_bytes` as the list says and null where the ledger would, `ledger_unreadable`
    saying why, logged at ERROR; the failing index asked once a page, not once a row; the held record's bytes the
    row keeps served. Before: 503 for the whole page (and .../conflicts-with/cose)."""
    ours, held = _conflict_with_a_held_record(node)
    node.replica.accept([Org(key=node.replica.key).fork(ours.seq, ours.prev)], "12D3KooWThief")
    node.replica.accept([Org(key=node.replica.key, seq=ours.seq, prev=ours.id).record()], "12D3KooWPeer")
    failed = []

    def unreadable(**_):
        failed.append(1)
        raise StoreError(f"{INDEX_FILE}: cannot be read (disk I/O error)")

    monkeypatch.setattr(node.replica.store, "_level", unreadable)
    with caplog.at_level(logging.ERROR, logger="node.api.own_records"):
        answer = await api.get("/v1/node/own-records")
    assert answer.status_code == 200
    page = answer.json()
    assert [(r["number"], r["stored"], r["bytes"], r["conflicts_with_bytes"]) for r in page["records"]] == [
        (1, None, "kept", "kept"), (2, None, "kept", None), (3, None, None, None)]
    assert page["ledger_unreadable"] == f"{INDEX_FILE}: cannot be read (disk I/O error)" and len(failed) == 1
    assert f"{INDEX_FILE}: cannot be read (disk I/O error); served with `stored` unknown" in caplog.text
    assert (await api.get("/v1/node/own-records/1/conflicts-with/cose")).content == held.raw
    assert_error(await api.get("/v1/node/own-records/2/conflicts-with/cose"), 503, "storage")
    monkeypatch.undo()
    assert (await api.get("/v1/node/own-records")).json()["ledger_unreadable"] is None


async def test_the_list_s_own_file_failing_a_read_is_a_503_naming_it(api, node, monkeypatch):
    """own_records.db failing a read (an I/O error, a damaged file): the 503 `storage` said only SQLite's words, not
    which of the node's files failed."""
    _conflict_with_a_held_record(node)

    class Unreadable:
        def execute(self, *_):
            raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(node.replica.own_records, "_db", Unreadable())
    for path in ("", "/1/cose", "/1/conflicts-with/cose"):
        answer = await api.get(f"/v1/node/own-records{path}")
        assert_error(answer, 503, "storage", f"the node cannot read its storage now: {OWN_RECORDS_FILE}: cannot be "
                                             "read (disk I/O error); retry later")
    monkeypatch.undo()


async def test_the_bytes_of_a_held_record_a_row_listed_before_format_5_conflicted_with_are_said_never_kept(api, node):
    """A row as the upgrade from format 4 leaves it, the held record's bytes not kept: 410 `bytes_not_kept` once the
    node no longer holds it, the conflicting record's own served."""
    ours = node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    held = Org(key=node.replica.key).fork(ours.seq + 2, bytes(32))
    theirs = Org(key=node.replica.key).fork(held.seq, bytes(32))
    node.replica.own_records.add_conflicts([(theirs, held.id, None, "12D3KooWThief")])
    assert_error(await api.get("/v1/node/own-records/1/conflicts-with/cose"), 410, "bytes_not_kept", "path.number")
    assert (await api.get("/v1/node/own-records/1/cose")).content == theirs.raw


async def test_node_lists_orgs_flagged_for_equivocation(api, node, partner):
    honest = partner.record()
    node.replica.accept([honest])
    node.replica.accept([partner.fork(1, None)])
    info = (await api.get("/v1/node")).json()
    assert (info["flagged"], info["flagged_complete"], info["flagged_total"]) == ([partner.did], True, 1)
    assert info["own_org_flagged"] is False


async def test_a_stolen_keys_org_is_listed_and_counted_once_with_the_thiefs_key(api, node, partner):
    """A thief rotates the org's stolen key to its own and the org signs at that seq: both keys are flagged, but
    GET /v1/node (and `vouchnet testnet status` reading it) tells the operator of one flagged org, by its first key."""
    node.replica.accept([partner.record()])
    honest = partner.fork(partner.seq + 1, partner.prev)
    thief, rotation, first = partner.rotate()
    node.replica.accept([rotation, first, honest])
    assert {partner.did, thief.did} <= node.replica.flagged
    info = (await api.get("/v1/node")).json()
    assert (info["flagged"], info["flagged_complete"], info["flagged_total"]) == ([partner.did], True, 1)


async def test_node_says_when_its_own_org_is_flagged_among_more_than_it_lists(api, node, partner):
    node.replica.flagged.update(f"did:key:z{i:03}" for i in range(MAX_LISTED_FLAGGED))  # before ours in did order
    report_own_equivocation(node, partner)
    info = (await api.get("/v1/node")).json()
    assert node.did not in info["flagged"] and info["own_org_flagged"] is True


async def test_node_lists_the_first_flagged_orgs_in_did_order_and_counts_them_all(api, node):
    """An org's minted keys that equivocate grow the flagged set: the answer lists MAX_LISTED_FLAGGED of them."""
    flagged = [new_did() for _ in range(MAX_LISTED_FLAGGED + 5)]
    node.replica.flagged.update(flagged)  # as equivocation proofs of each would (see the test above)
    info = (await api.get("/v1/node")).json()
    assert info["flagged"] == sorted(flagged)[:MAX_LISTED_FLAGGED]
    assert (info["flagged_complete"], info["flagged_total"]) == (False, len(flagged))


async def test_peers_are_the_nodes_connected_peers(api, node):
    node.peer_list.append({"peer_id": "12D3KooWOther", "did": new_did(), "addrs": ["/ip4/10.0.0.2/tcp/4001"]})
    response = await api.get("/v1/peers")
    assert response.json()["peers"] == node.peer_list


def _peer(seed: int) -> tuple[str, str]:
    """A PeerID and an address dialling it."""
    peer = peer_id_from_public_key(bytes([seed]) * 32)
    return peer, f"/ip4/10.0.0.{seed}/tcp/4001/p2p/{peer}"


async def test_a_bootstrap_peer_that_is_down_is_known_unreachable_with_its_error_and_next_dial_then_connected(
        api, node):
    peer, addr = _peer(1)
    node.schedule.add(peer, [addr])
    before = time.time_ns() // 1_000_000
    delay = node.schedule.failed(peer, trio.current_time(), f"dial {addr}: connection refused")
    answer = (await api.get("/v1/peers")).json()
    after = time.time_ns() // 1_000_000
    [down] = answer["known"]
    assert answer["peers"] == [] and answer["next"] is None
    next_dial = down.pop("next_dial_at")
    assert down == {"peer_id": peer, "org": peer_org(peer), "addrs": [addr], "connected": False, "source": "bootstrap",
                    "failures": 1, "last_error": f"dial {addr}: connection refused", "other_network": None}
    assert before + delay * 1000 - 2 <= next_dial <= after + delay * 1000 + 2  # (whole ms, either way)
    node.peer_list.append({"peer_id": peer, "org": peer_org(peer)})
    node.schedule.connected(peer, trio.current_time())
    answer = (await api.get("/v1/peers")).json()
    assert answer["peers"] == node.peer_list
    assert [(p["peer_id"], p["connected"], p["next_dial_at"]) for p in answer["known"]] == [(peer, True, None)]


async def test_a_peer_found_on_another_network_is_shown_with_it_and_dialled_later(api, node):
    """A mistyped bootstrap address, say: before, nothing told why its connections ended, and it was dialled again
    within a minute."""
    peer, addr = _peer(3)
    node.schedule.add(peer, [addr])
    node.schedule.other_network(peer, "othernet", trio.current_time())
    before = time.time_ns() // 1_000_000
    [shown] = (await api.get("/v1/peers")).json()["known"]
    assert (shown["source"], shown["other_network"]) == ("bootstrap", "othernet")
    assert shown["last_error"] == "the peer is on network 'othernet', not this node's"
    assert shown["next_dial_at"] >= before + (APART_FIRST / 2 - 1) * 1000


async def test_a_hostile_peers_dial_error_is_shown_as_one_printable_line(api, node):
    peer, addr = _peer(2)
    node.schedule.announce(peer, [addr])
    node.schedule.failed(peer, trio.current_time(), "refused: \x1b[2J\x1b]0;owned\x07\r\nok\u202e" + "x" * 5000)
    [shown] = (await api.get("/v1/peers")).json()["known"]
    assert shown["source"] == "org_record" and shown["last_error"].isprintable()
    assert shown["last_error"].startswith("refused: \\x1b[2J\\x1b]0;owned\\x07\\r\\nok\\u202exx")
    assert len(shown["last_error"]) == MAX_ERROR


async def test_known_peers_are_paged_in_peer_id_order_each_once(api, node):
    peers = [_peer(seed) for seed in range(1, 8)]
    for peer, addr in peers[:5]:
        node.schedule.add(peer, [addr])
    node.peer_list += [{"peer_id": peer} for peer, _ in peers[4:]]  # one of them dialled, two dialled in
    seen, after = [], None
    while True:
        answer = (await api.get("/v1/peers", params={"limit": 3, **({"after": after} if after else {})})).json()
        assert len(answer["known"]) <= 3 and answer["peers"] == node.peer_list
        seen += [(p["peer_id"], p["source"]) for p in answer["known"]]
        if (after := answer["next"]) is None:
            break
    assert seen == sorted([(p, "bootstrap") for p, _ in peers[:5]] + [(p, "inbound") for p, _ in peers[5:]])
    assert len((await api.get("/v1/peers", params={"limit": 500})).json()["known"]) == 7


@pytest.mark.parametrize(("query", "detail"), [
    ({"after": "12D3KooW0lI"}, "query.after: must be a PeerID"), ({"after": "a" * 65}, "query.after"),
    ({"limit": 0}, "query.limit"), ({"limit": 501}, "query.limit"),
])
async def test_a_bad_page_of_peers_is_refused_naming_the_parameter(api, query, detail):
    assert_error(await api.get("/v1/peers", params=query), 422, "invalid_request", detail)


async def test_the_block_list_is_replaced_whole_and_read_back(api, node):
    first, second = peer_id_from_public_key(bytes(32)), peer_id_from_public_key(bytes(range(32)))
    response = await api.put("/v1/peers/blocked", json={"peers": [second, first, second]}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"peers": sorted([first, second])}
    assert (await api.get("/v1/peers/blocked")).json() == {"peers": sorted([first, second])}
    await api.put("/v1/peers/blocked", json={"peers": []}, headers=AUTH)
    assert (await api.get("/v1/peers/blocked")).json() == {"peers": []}


@pytest.mark.parametrize(("peers", "detail"), [
    (["12D3KooWnot-base58!"], "body.peers[0]: not an Ed25519 PeerID"),
    ([new_did()], "body.peers[0]: not an Ed25519 PeerID"),
    (["12D3KooWFake"], "body.peers[0]: this node's own PeerID"),
])
async def test_a_block_list_entry_that_is_not_another_peer_is_refused_by_index(api, node, peers, detail):
    good = peer_id_from_public_key(bytes(32))
    await api.put("/v1/peers/blocked", json={"peers": [good]}, headers=AUTH)
    peers = [good, *peers]
    response = await api.put("/v1/peers/blocked", json={"peers": peers}, headers=AUTH)
    assert_error(response, 422, "invalid_request", detail.replace("[0]", "[1]"))
    assert node.blocked_peers() == [good]


async def test_changing_the_block_list_needs_the_token(api, node):
    response = await api.put("/v1/peers/blocked", json={"peers": []})
    assert_error(response, 401, "unauthorized")


# --- records submitted as a peer would gossip them ------------------------------------------------------

COSE = {**AUTH, "content-type": "application/cose"}


async def test_a_submitted_record_of_an_org_in_the_horizon_is_accepted_once(api, node, partner):
    record = partner.record()
    response = await api.post("/v1/records", content=record.raw, headers=COSE)
    assert response.status_code == 201, response.text
    assert response.json()["id"] == record.id.hex()
    assert response.headers["location"] == f"/v1/records/{record.id.hex()}"
    assert node.replica.store.index_of(record.id) == 0
    again = await api.post("/v1/records", content=record.raw, headers=COSE)
    assert (again.status_code, again.json()["index"]) == (200, 0)
    assert node.replica.store.size == 1


async def test_a_submitted_record_ahead_of_its_chain_is_held_until_the_gap_fills(api, node, partner):
    first, second = partner.record(), partner.record()
    for _ in range(2):  # offered twice: held, and still held
        response = await api.post("/v1/records", content=second.raw, headers=COSE)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "held"
    assert (await api.post("/v1/records", content=first.raw, headers=COSE)).status_code == 201
    assert node.replica.store.index_of(second.id) is not None


async def test_a_submitted_fork_is_refused_and_becomes_equivocation_evidence(api, node, partner):
    honest = partner.record()
    await api.post("/v1/records", content=honest.raw, headers=COSE)
    response = await api.post("/v1/records", content=partner.fork(1, None).raw, headers=COSE)
    assert_error(response, 409, "equivocation", "seq: the node holds another record")
    assert node.replica.flagged == {partner.did}
    ((_, evidence),) = node.replica.store.query(issuer=node.did, kind="equivocation", after=-1, limit=10)
    body = verify_record(evidence).body
    assert isinstance(body, EquivocationBody) and (body.type, body.offender) == ("record", partner.did)


async def test_a_submitted_record_of_an_org_outside_the_horizon_is_refused(api, node):
    response = await api.post("/v1/records", content=Org().record().raw, headers=COSE)
    assert_error(response, 409, "outside_horizon", "iss: ")
    assert node.replica.store.size == 0


async def test_a_new_keys_record_is_refused_until_the_rotation_naming_it_arrives(api, node, partner):
    new, rotation, first = partner.rotate()
    later = new.record()
    node.replica.issue("vouch", vouch_body(new.did, 0.5, "org-peer"))  # inside the horizon on its own
    assert (await api.post("/v1/records", content=first.raw, headers=COSE)).status_code == 201
    assert_error(await api.post("/v1/records", content=later.raw, headers=COSE), 409, "unlinked",
                 f"iss: {new.did} names a key it replaces")
    assert (await api.post("/v1/records", content=rotation.raw, headers=COSE)).status_code == 201
    assert (await api.post("/v1/records", content=later.raw, headers=COSE)).status_code == 201


async def test_a_submitted_record_that_breaks_its_chain_is_rejected_with_the_reason(api, node, partner):
    await api.post("/v1/records", content=partner.record().raw, headers=COSE)
    stranger = partner.sign("vouch", vouch_body(new_did(), 0.5, "operator"), seq=2, prev=b"\2" * 32)
    assert_error(await api.post("/v1/records", content=stranger.raw, headers=COSE), 409, "rejected", "prev: ")


async def test_submitting_needs_cose_bytes_and_the_token(api, node, partner):
    record = partner.record()
    assert_error(await api.post("/v1/records", content=record.raw, headers={"content-type": "application/cose"}),
                 401, "unauthorized")
    assert_error(await api.post("/v1/records", content=record.raw, headers={**AUTH, "content-type": "text/plain"}),
                 415, "unsupported_media_type", "Content-Type: must be application/cose")
    assert_error(await api.post("/v1/records", content=record.raw[:-1], headers=COSE), 422, "invalid_record")
    assert node.replica.store.size == 0


# --- writes need the token ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/vouches", "/v1/revocations"])
async def test_a_write_without_a_token_is_refused_with_a_bearer_challenge(api, node, path):
    response = await api.post(path, json={"subject": new_did(), "weight": 0.5, "basis": "operator"})
    assert_error(response, 401, "unauthorized", "Authorization: a bearer token is required")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert node.replica.store.size == 0


@pytest.mark.parametrize("header, challenge", [
    (f"Bearer {TOKEN[:-1]}", ', error="invalid_token"'), (f"Bearer {TOKEN}x", ', error="invalid_token"'),
    ("Bearer é", ', error="invalid_token"'), (f"Basic {TOKEN}", ""), (f"bearer  {TOKEN}x", ', error="invalid_token"')])
async def test_a_write_with_another_token_is_refused(api, node, header, challenge):
    """RFC 6750 §3: another token is `invalid_token`; another scheme's credentials, as none, carry no error code."""
    body = {"subject": new_did(), "weight": 0.5, "basis": "operator"}
    response = await api.post("/v1/vouches", json=body, headers={"Authorization": header.encode()})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer realm="vouchnet"{challenge}'
    assert node.replica.store.size == 0


@pytest.mark.parametrize("header, detail", [("Bearer", "Authorization: Bearer without a token"),
                                            ("Bearer    ", "Authorization: Bearer without a token"),
                                            (f"Bearer:{TOKEN}", "Authorization: Bearer must be followed by a space"),
                                            (f"Bearer\t{TOKEN}", "Authorization: Bearer must be followed by a space")])
async def test_a_write_whose_bearer_credentials_are_malformed_is_a_400_invalid_request(api, node, header, detail):
    """Found by stop 41: RFC 6750 §3.1 has a malformed request `invalid_request`, answered 400; `Bearer` without its
    token was a 401 saying a bearer token is required, with no error code, as for a request without any."""
    body = {"subject": new_did(), "weight": 0.5, "basis": "operator"}
    response = await api.post("/v1/vouches", json=body, headers={"Authorization": header.encode()})
    assert_error(response, 400, "bad_request", detail)
    assert response.headers["www-authenticate"] == 'Bearer realm="vouchnet", error="invalid_request"'
    assert TOKEN not in response.text and node.replica.store.size == 0


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/events", "/v1/vouches"])
async def test_a_token_whose_space_is_percent_encoded_is_refused_saying_so(api, node, path):
    """An OTLP exporter that sends OTEL_EXPORTER_OTLP_TRACES_HEADERS undecoded (`Bearer%20<token>`) was told that
    a bearer token is required, though it sent one."""
    response = await api.post(path, json={}, headers={"Authorization": f"Bearer%20{TOKEN}"})
    assert_error(response, 400, "bad_request", "Authorization: the space after Bearer is percent-encoded")
    assert response.headers["www-authenticate"] == 'Bearer realm="vouchnet", error="invalid_request"'
    assert TOKEN not in response.text


@pytest.mark.parametrize("second", [f"Bearer {TOKEN}", "Bearer guess", "Basic x"])
@pytest.mark.parametrize("first_is_the_token", [True, False])
async def test_a_write_with_two_authorization_headers_is_refused_whichever_holds_the_token(api, node, second,
                                                                                          first_is_the_token):
    """The first header was taken and the second not read: the write went through on the token, or was refused
    as without it, depending on which of the two a proxy or client had put first. A 400, as RFC 6750 §3.1 has
    `invalid_request` (a 401 before stop 41)."""
    sent = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", second)]
    headers = sent if first_is_the_token else sent[::-1]
    response = await api.post("/v1/vouches", json={"subject": new_did(), "weight": 0.5, "basis": "operator"},
                              headers=headers)
    assert_error(response, 400, "bad_request", "Authorization: sent 2 times; send one, the bearer token")
    assert response.headers["www-authenticate"] == 'Bearer realm="vouchnet", error="invalid_request"'
    assert node.replica.store.size == 0


async def test_the_token_is_checked_before_the_body(api):
    response = await api.post("/v1/vouches", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 401, "unauthorized")


async def test_the_token_never_appears_in_answers_or_logs(api, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "Bearer guess-" + "y" * 40
    answers = [
        await api.post("/v1/vouches", json={"subject": new_did(), "weight": 0.5, "basis": "operator"}, headers=AUTH),
        await api.post("/v1/vouches", json={"weight": 7}, headers=AUTH),
        await api.post("/v1/revocations", json={"record": "00" * 32, "reason": "x"}, headers={"Authorization": wrong}),
    ]
    seen = caplog.text + "".join(a.text for a in answers)
    assert TOKEN not in seen and "guess-" not in seen


async def test_reads_need_no_token(api):
    assert (await api.get("/v1/records")).status_code == 200


# --- vouches ----------------------------------------------------------------------------------------------


async def test_a_vouch_is_signed_stored_and_returned_with_its_id(api, node):
    subject = new_did()
    response = await api.post(
        "/v1/vouches",
        json={"subject": subject, "weight": 1, "basis": "audit", "scope": ["tool:search"], "expires": 4102444800000},
        headers=AUTH,
    )
    assert response.status_code == 201
    record = response.json()
    assert response.headers["location"] == f"/v1/records/{record['id']}"
    stored = verify_record(node.replica.store.get(bytes.fromhex(record["id"])))
    assert record == {
        "index": 0,
        "id": stored.id.hex(),
        "kind": "vouch",
        "iss": node.did,
        "seq": 1,
        "prev": None,
        "ts": stored.ts,
        "body": {
            "subject": subject, "weight": 1.0, "basis": "audit", "scope": ["tool:search"], "expires": 4102444800000
        },
    }


async def test_successive_vouches_chain(api):
    first, second = await vouch(api), await vouch(api)
    assert (second["seq"], second["prev"], second["index"]) == (2, first["id"], 1)


@pytest.mark.parametrize(
    ("fields", "code", "detail"),
    [
        ({"weight": 1.5}, "invalid_record", "body.weight: must be a float in (0, 1]"),
        ({"weight": 0}, "invalid_record", "body.weight"),
        ({"subject": "did:web:example.com"}, "invalid_record", "body.subject: must be an Ed25519 did:key"),
        ({"basis": "hearsay"}, "invalid_record", "body.basis: must be one of"),
        ({"scope": []}, "invalid_record", "body.scope"),
        ({"expires": 1}, "invalid_record",  # a caller sends no ts: the detail says what it is, and the unit
         "body.expires: must be later than ts, the record's own time (both in ms since the Unix epoch)"),
        ({"weight": "0.5"}, "invalid_request", "body.weight: Input should be a valid number"),
        ({"weight": True}, "invalid_request", "body.weight"),
        ({"scope": "tool:search"}, "invalid_request", "body.scope"),
        ({"basis": "org-peer", "scope": ["search"]}, "invalid_request", "body.scope: an org-peer vouch covers an org"),
        ({"colour": "blue"}, "invalid_request", "body.colour: Extra inputs are not permitted"),
        ({"weight": None}, "invalid_request", "body.weight"),
    ],
)
async def test_a_bad_vouch_is_refused_naming_the_field(api, node, fields, code, detail):
    body = {"subject": new_did(), "weight": 0.5, "basis": "operator", **fields}
    assert_error(await api.post("/v1/vouches", json=body, headers=AUTH), 422, code, detail)
    assert node.replica.store.size == 0


async def test_a_vouch_for_ourselves_is_refused(api, node):
    body = {"subject": node.did, "weight": 0.5, "basis": "operator"}
    response = await api.post("/v1/vouches", json=body, headers=AUTH)
    assert_error(response, 422, "invalid_record", "body.subject: must not be the issuer")


async def test_a_missing_field_is_named(api):
    response = await api.post("/v1/vouches", json={"subject": new_did(), "basis": "operator"}, headers=AUTH)
    assert_error(response, 422, "invalid_request", "body.weight: Field required")


@pytest.mark.parametrize(("content", "content_type"), [(b"[1, 2]", "application/json"), (b"", "")])
async def test_a_body_that_is_not_a_json_object_is_refused(api, content, content_type):
    headers = {**AUTH, "content-type": content_type} if content_type else AUTH
    response = await api.post("/v1/vouches", content=content, headers=headers)
    assert_error(response, 422, "invalid_request", "body")


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x", "application/cbor", None])
async def test_a_vouch_sent_as_another_type_than_json_is_415_and_a_json_type_is_read(api, content_type):
    """RFC 9110 §15.5.16: the body's type is what is wrong (it was 422 `invalid_request` naming the body), with no
    type at all too (which FastAPI before 0.132 read as JSON); `+json` types are JSON."""
    body = json.dumps({"subject": new_did(), "weight": 0.5, "basis": "operator"}).encode()
    typed = {**AUTH, "content-type": content_type} if content_type else AUTH
    assert_error(await api.post("/v1/vouches", content=body, headers=typed), 415, "unsupported_media_type",
                 "Content-Type: must be application/json")
    for json_type in ("application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"):
        body = json.dumps({"subject": new_did(), "weight": 0.5, "basis": "operator"}).encode()
        response = await api.post("/v1/vouches", content=body, headers={**AUTH, "content-type": json_type})
        assert response.status_code == 201, (json_type, response.text)


async def test_a_json_body_that_is_not_json_is_refused_by_the_one_reader_saying_where(api):
    """Read once, by node.strict_json: malformed JSON is its 400, as a body that is not I-JSON is (FastAPI's own
    parse, before, made it 422 with no reason)."""
    headers = {**AUTH, "content-type": "application/json"}
    response = await api.post("/v1/vouches", content=b"{not json", headers=headers)
    assert_error(response, 400, "bad_request", "body: not JSON (Expecting property name enclosed in double quotes: "
                                               "line 1 column 2 (char 1))")


async def test_a_body_that_is_not_utf8_is_refused(api):
    headers = {**AUTH, "content-type": "application/json"}
    response = await api.post("/v1/vouches", content=b'{"subject": "\xff"}', headers=headers)
    assert_error(response, 400, "bad_request", "body: not JSON (not UTF-8 (byte 13))")


@pytest.mark.parametrize(("body", "encoding", "detail"), [
    ('{"subject": "%s", "weight": 0.9, "weight": 0.1, "basis": "operator"}', "utf-8", "member 'weight' given twice"),
    ('{"subject": "%s", "weight": 0.5, "basis": "operator", "scope": [{"tool": "a", "tool": "b"}]}', "utf-8",
     "member 'tool'"),
    ('{"subject": "%s", "weight": 0.5, "basis": "operator", "expires": NaN}', "utf-8", "NaN is not a JSON number"),
    ('{"subject": "%s", "weight": 0.5, "basis": "operator", "expires": 1e400}', "utf-8", "1e400 is beyond"),
    ('{"subject": "%s", "weight": 0.5, "basis": "operator"}', "utf-16", "not UTF-8"),
])
async def test_a_vouch_from_a_body_that_is_not_i_json_is_refused_and_nothing_signed(api, node, body, encoding, detail):
    """A body read one way by the node and another by the caller's own tools (RFC 7493 §2: a repeated member, a
    number JSON does not have, UTF-16) signs nothing: Python's parser kept the last weight and read NaN and UTF-16."""
    size = node.replica.store.size
    response = await api.post("/v1/vouches", content=(body % new_did()).encode(encoding),
                              headers={**AUTH, "content-type": "application/json"})
    assert_error(response, 400, "bad_request", "body: not JSON (" + detail)
    assert node.replica.store.size == size


class _Later(BaseModel):
    note: str


def test_a_route_with_a_body_model_that_would_skip_the_i_json_reader_fails_the_apps_making(node):
    """A route added later on a router made without StrictJsonRoute would have its body read by FastAPI's parser
    (UTF-16, the last of a repeated member, NaN): the app is not made."""
    router = APIRouter()

    @router.post("/v1/later")
    async def later(body: _Later) -> None:
        pass

    with pytest.raises(TypeError, match="^/v1/later: a route that can read its request's body .* must be a "
                                        "StrictJsonRoute"):
        create_app(node, routers=[router])
    strict = APIRouter(route_class=StrictJsonRoute)
    strict.post("/v1/later")(later)
    create_app(node, routers=[strict])


async def _read_itself(request: Request) -> dict:
    return await request.json()


async def _reading_dependency(body: dict = Depends(_read_itself)) -> dict:
    return body


@pytest.mark.parametrize("route", [_read_itself, _reading_dependency], ids=["handler", "dependency"])
async def test_a_route_that_reads_the_request_json_itself_reads_i_json_or_fails_the_apps_making(node, route):
    """A handler (or a dependency) taking the Request and calling `request.json()`, which is Starlette's json.loads:
    on an API router it kept the last of a repeated member, and on another router it was served as well."""
    plain = APIRouter()
    plain.post("/v1/later")(route)
    with pytest.raises(TypeError, match="^/v1/later: a route that can read its request's body"):
        create_app(node, routers=[plain])
    strict = APIRouter(route_class=StrictJsonRoute)
    strict.post("/v1/later")(route)
    app = create_app(node, routers=[strict], body_limits={"/v1/later": 1024})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as api:
        twice = await api.post("/v1/later", content=b'{"a": 1, "a": 2}', headers=AUTH)
        once = await api.post("/v1/later", content=b'{"a": 2}', headers=AUTH)
    assert_error(twice, 400, "bad_request", "body: not JSON (member 'a' given twice")
    assert once.json() == {"a": 2}


def test_a_route_fastapi_did_not_make_fails_the_apps_making(node):
    """A Starlette route or mount gets the request as Starlette makes it, whose json() is not the I-JSON reader."""
    router = APIRouter()
    router.add_route("/v1/later", _read_itself, methods=["POST"])
    with pytest.raises(TypeError, match="^/v1/later: not a route of the router's get, post, put"):
        create_app(node, routers=[router])


async def test_revocations_and_the_block_list_take_i_json_only_and_a_utf8_bom_is_skipped(api, node):
    twice = b'{"record": "%s", "record": "%s", "reason": "x"}' % (b"0" * 64, b"1" * 64)
    json_headers = {**AUTH, "content-type": "application/json"}
    assert_error(await api.post("/v1/revocations", content=twice, headers=json_headers), 400, "bad_request",
                 "body: not JSON (member 'record' given twice")
    blocked = (b'{"peers": [], "peers": ["%s"]}'
               % peer_id_from_public_key(bytes(SigningKey.generate().verify_key)).encode())
    assert_error(await api.put("/v1/peers/blocked", content=blocked, headers=json_headers), 400, "bad_request")
    assert (await api.get("/v1/peers/blocked")).json() == {"peers": []}
    bom = "\ufeff" + json.dumps({"subject": new_did(), "weight": 0.5, "basis": "operator"})
    assert (await api.post("/v1/vouches", content=bom.encode(), headers=json_headers)).status_code == 201


async def test_a_body_declared_too_large_is_refused_unread(api):
    response = await api.post("/v1/vouches", content=b" " * (64 * 1024 + 1), headers=AUTH)
    assert_error(response, 413, "too_large", "body: must be at most 65536 bytes")


async def test_a_streamed_body_is_cut_off_at_the_bound(api, node):
    async def chunks():
        for _ in range(100):
            yield b" " * 1024

    response = await api.post("/v1/vouches", content=chunks(), headers={**AUTH, "content-type": "application/json"})
    assert_error(response, 413, "too_large")
    assert node.replica.store.size == 0


# --- revocations ----------------------------------------------------------------------------------------


async def test_revoking_our_vouch_issues_a_revoke_record(api, node):
    vouched = await vouch(api)
    body = {"record": vouched["id"], "reason": "left the company"}
    response = await api.post("/v1/revocations", json=body, headers=AUTH)
    assert response.status_code == 201
    revoke = response.json()
    assert revoke["kind"] == "revoke"
    assert revoke["body"] == {"record": vouched["id"], "reason": "left the company"}
    assert node.replica.store.revoked(bytes.fromhex(vouched["id"]))


async def test_a_record_id_in_capitals_is_the_same_record(api):
    vouched = await vouch(api)
    response = await api.post("/v1/revocations", json={"record": vouched["id"].upper(), "reason": "x"}, headers=AUTH)
    assert response.json()["body"]["record"] == vouched["id"]


async def test_revoking_twice_is_a_conflict(api):
    vouched = await vouch(api)
    body = {"record": vouched["id"], "reason": "gone"}
    await api.post("/v1/revocations", json=body, headers=AUTH)
    again = await api.post("/v1/revocations", json=body, headers=AUTH)
    assert_error(again, 409, "conflict", "body.record: this vouch is already revoked")


async def test_revoking_an_unknown_record_is_not_found(api):
    response = await api.post("/v1/revocations", json={"record": "ab" * 32, "reason": "x"}, headers=AUTH)
    assert_error(response, 404, "not_found", "body.record: the node holds no record with this id")


async def test_revoking_another_orgs_vouch_is_a_conflict(api, node, partner):
    theirs = partner.vouch(new_did(), basis="operator")
    node.replica.accept([theirs])
    response = await api.post("/v1/revocations", json={"record": theirs.id.hex(), "reason": "x"}, headers=AUTH)
    assert_error(response, 409, "conflict", f"body.record: issued by {partner.did}")


async def test_after_a_rotation_a_vouch_made_under_the_earlier_key_is_revoked_by_the_current_one(tmp_path):
    """Before: refused as another org's ("issued by <old did>"), though the records rules let a later key revoke an
    earlier key's vouches (DESIGN §2), so an org that rotated could never withdraw a vouch it made before."""
    old, successor = Org(), Org()
    with RecordStore.open(tmp_path) as store, closing(IdempotencyStore.open(tmp_path, log_size=0)) as keys:
        before = Replica(old.key, store, roots=(), max_hops=2, held_limit=100)
        vouched = before.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        before.issue("org", org_body("org", "test", next=successor.did))  # as node.rotation does
        node = FakeNode(Replica(successor.key, store, roots=(), max_hops=2, held_limit=100), keys)
        node.replica.issue("org", org_body("org", "test", prior=old.did))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(node)), base_url="http://n") as api:
            response = await api.post("/v1/revocations", json={"record": vouched.id.hex(), "reason": "left"},
                                      headers=AUTH)
        assert response.status_code == 201 and response.json()["iss"] == successor.did
        assert store.revoked(vouched.id)


async def test_only_vouches_can_be_revoked(api):
    vouched = await vouch(api)
    revoke = (await api.post("/v1/revocations", json={"record": vouched["id"], "reason": "x"}, headers=AUTH)).json()
    response = await api.post("/v1/revocations", json={"record": revoke["id"], "reason": "x"}, headers=AUTH)
    assert_error(response, 409, "conflict", "body.record: a revoke record")


async def test_the_org_s_own_org_record_cannot_be_revoked_and_the_refusal_reads_as_english(api, node):
    org = node.replica.issue("org", org_body("us", "test"))
    response = await api.post("/v1/revocations", json={"record": org.id.hex(), "reason": "x"}, headers=AUTH)
    assert_error(response, 409, "conflict", "body.record: an org record; only vouches can be revoked")


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        ({"record": "xyz", "reason": "x"}, "invalid_request", "body.record: must be a record id, 64 hex digits"),
        ({"record": "ab" * 33, "reason": "x"}, "invalid_request", "body.record: must be a record id"),
        ({"reason": "x"}, "invalid_request", "body.record: Field required"),
        ({"record": None, "reason": "x"}, "invalid_request", "body.record"),
    ],
)
async def test_a_bad_revocation_is_refused_naming_the_field(api, body, code, detail):
    assert_error(await api.post("/v1/revocations", json=body, headers=AUTH), 422, code, detail)


async def test_a_revocation_without_a_reason_breaks_the_record_rules(api):
    vouched = await vouch(api)
    response = await api.post("/v1/revocations", json={"record": vouched["id"], "reason": ""}, headers=AUTH)
    assert_error(response, 422, "invalid_record", "body.reason")


# --- records --------------------------------------------------------------------------------------------


async def test_records_are_filtered_by_issuer_kind_and_subject(api, node, partner):
    agent = new_did()
    ours = await vouch(api, agent)
    theirs = partner.vouch(agent, basis="operator")
    node.replica.accept([theirs, partner.record("org")])
    revoke = (await api.post("/v1/revocations", json={"record": ours["id"], "reason": "x"}, headers=AUTH)).json()

    async def ids(**params):
        return [r["id"] for r in (await api.get("/v1/records", params=params)).json()["records"]]

    assert await ids(subject=agent) == [ours["id"], theirs.id.hex()]
    assert await ids(issuer=partner.did) == [theirs.id.hex(), partner.prev.hex()]
    assert await ids(kind="vouch", issuer=partner.did) == [theirs.id.hex()]
    assert await ids(kind="revoke") == [revoke["id"]]
    assert await ids(subject=ours["id"]) == [revoke["id"]]  # a revoke is about the vouch it names
    assert await ids(subject=ours["id"].upper()) == [revoke["id"]]  # as POST /v1/revocations takes the id
    assert await ids(issuer=new_did()) == []


async def test_records_come_in_pages_that_link_to_the_next(api):
    made = [(await vouch(api))["id"] for _ in range(5)]
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = (await api.get("/v1/records", params=params)).json()
        seen += [r["id"] for r in page["records"]]
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] == page["records"][-1]["index"]
        after = page["next"]
    assert (seen, pages) == (made, 3)


async def test_a_full_last_page_says_there_is_no_next(api):
    for _ in range(2):
        await vouch(api)
    assert (await api.get("/v1/records", params={"limit": 2})).json()["next"] is None


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"kind": "rumour"}, "query.kind: must be one of org, vouch, revoke, digest, equivocation"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"limit": "ten"}, "query.limit: must be a decimal integer"),
        ({"after": -1}, "query.after"),
        ({"after": 2**64}, "query.after"),
        ({"issuer": "x" * 513}, "query.issuer"),
        ({"issuer": "did:web:example.com"}, "query.issuer: not an Ed25519 did:key"),
        ({"subject": "agent-7"}, "query.subject: must be a did:key, or (for a revoke) a vouch's record id"),
        ({"subject": "ab" * 31}, "query.subject: must be a did:key, or (for a revoke) a vouch's record id"),
        ({"subject": "did:key:z6Mk"}, "query.subject: not an Ed25519 did:key"),
    ],
)
async def test_bad_record_queries_are_refused_naming_the_parameter(api, params, detail):
    assert_error(await api.get("/v1/records", params=params), 422, "invalid_request", detail)


async def test_a_record_is_served_as_its_cose_bytes(api, node):
    vouched = await vouch(api)
    response = await api.get(f"/v1/records/{vouched['id']}")
    assert response.headers["content-type"] == "application/cose"
    assert response.content == node.replica.store.get(bytes.fromhex(vouched["id"]))
    assert verify_record(response.content).id.hex() == vouched["id"]


async def test_a_record_is_served_as_json_on_request(api):
    vouched = await vouch(api)
    response = await api.get(f"/v1/records/{vouched['id']}", params={"format": "json"})
    assert response.json() == vouched


async def test_an_unknown_record_is_not_found(api):
    assert_error(await api.get(f"/v1/records/{'cd' * 32}"), 404, "not_found", "path.record_id")


@pytest.mark.parametrize(
    ("path", "detail"),
    [("/v1/records/nothex", "path.record_id"), (f"/v1/records/{'ab' * 32}?format=xml", "query.format")],
)
async def test_bad_record_fetches_are_refused_naming_the_parameter(api, path, detail):
    assert_error(await api.get(path), 422, "invalid_request", detail)


# --- the log --------------------------------------------------------------------------------------------


async def test_there_is_no_checkpoint_before_the_first(api):
    assert_error(await api.get("/v1/log/checkpoint"), 404, "no_checkpoint")


async def test_the_checkpoint_is_the_signed_note_with_its_cosignatures(api, node):
    await vouch(api)
    note = node.sign_checkpoint(cosigners=(SigningKey.generate(),))
    response = await api.get("/v1/log/checkpoint")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == note
    checkpoint, _ = open_checkpoint(response.content, [Ed25519Verifier(node.origin, public_key_from_did(node.did))])
    assert (checkpoint.size, checkpoint.root) == (1, node.replica.store.ledger.root())


@pytest.mark.slow
async def test_the_log_api_takes_the_public_size_from_the_published_checkpoint_without_parsing_its_note(
        tmp_path, monkeypatch):
    """Before: every request to the log API parsed the published note again to learn the log's public size; the
    node's witnessing now holds the checkpoint it published (saved first) as it signed it."""
    with trio.fail_after(30):
        async with running(tmp_path) as node:
            node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
            # (a checkpoint of the org's record alone may be published after this, before one of the vouch)
            published, size = trio.Event(), node.replica.store.size
            node.witnessing.listeners.append(
                lambda note: node.witnessing.published_checkpoint().size >= size and published.set())
            await published.wait()
            parsed, parse = [], Checkpoint.parse
            monkeypatch.setattr(Checkpoint, "parse", classmethod(lambda cls, text: parsed.append(text) or parse(text)))
            async with httpx.AsyncClient(base_url=node.api_url) as client:
                sizes = [(await client.get("/v1/log/entries", params={"start": 0})).json()["size"],
                         (await client.get("/v1/log/proof/inclusion", params={"index": 0})).json()["size"],
                         (await client.get("/v1/log/proof/consistency", params={"old": 0})).json()["new"]]
            note = node.witnessing.checkpoint_note()
    assert parsed == []
    monkeypatch.undo()
    assert sizes == [Checkpoint.parse(note[: note.index(b"\n\n") + 1].decode()).size] * 3
    assert sizes[0] >= 2  # the org's record and the vouch


async def test_log_entries_are_the_ledgers_bytes_in_base64(api, node):
    for _ in range(3):
        await vouch(api)
    node.sign_checkpoint()
    page = (await api.get("/v1/log/entries", params={"start": 1, "end": 3})).json()
    assert (page["start"], page["end"], page["size"]) == (1, 3, 3)
    assert [base64.b64decode(e) for e in page["entries"]] == node.replica.store.ledger.entries(1, 3)


async def test_log_entries_run_to_the_latest_checkpoint_when_no_end_is_given(api, node):
    for _ in range(3):
        await vouch(api)
    node.sign_checkpoint()
    await vouch(api)  # not in a checkpoint yet
    page = (await api.get("/v1/log/entries", params={"start": 0})).json()
    assert (page["end"], page["size"], len(page["entries"])) == (3, 3, 3)


async def test_a_page_of_log_entries_is_bounded(api, node, monkeypatch):
    monkeypatch.setattr("node.api.log.MAX_ENTRIES", 2)
    for _ in range(5):
        await vouch(api)
    node.sign_checkpoint()
    page = (await api.get("/v1/log/entries", params={"start": 1, "end": 5})).json()
    assert (page["start"], page["end"], len(page["entries"])) == (1, 3, 2)


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"start": 4}, 400, "query.start: must be at most the latest checkpoint's size, 3"),
        ({"start": 0, "end": 4}, 400, "query.end: must be at most the latest checkpoint's size, 3"),
        ({"start": 2, "end": 1}, 400, "query.end: must be at least query.start"),
        ({"start": -1}, 422, "query.start"),
        ({}, 422, "query.start: Field required"),
    ],
)
async def test_log_entries_outside_the_log_are_refused(api, node, params, status, detail):
    for _ in range(3):
        await vouch(api)
    node.sign_checkpoint()
    await vouch(api)
    response = await api.get("/v1/log/entries", params=params)
    assert_error(response, status, "out_of_range" if status == 400 else "invalid_request", detail)


async def test_log_entries_from_the_log_s_end_are_an_empty_page(api, node):
    """A client polling for new entries asks from the log's end, an empty log's too: an empty page, not an error,
    until a checkpoint covers an entry appended."""
    empty = {"start": 0, "end": 0, "size": 0, "entries": []}
    assert (await api.get("/v1/log/entries", params={"start": 0})).json() == empty
    assert (await api.get("/v1/log/entries", params={"start": 0, "end": 0})).json() == empty
    await vouch(api)
    assert (await api.get("/v1/log/entries", params={"start": 0})).json() == empty
    node.sign_checkpoint()
    assert (await api.get("/v1/log/entries", params={"start": 0})).json()["end"] == 1
    assert (await api.get("/v1/log/entries", params={"start": 1})).json() == {"start": 1, "end": 1, "size": 1,
                                                                               "entries": []}


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, 6), end=st.none() | st.integers(0, 6))
async def test_log_entries_are_served_for_every_range_within_the_log_and_refused_for_any_other(
        api, node, monkeypatch, start, end):
    """[start, end) (end: the latest checkpoint's size by default) within that checkpoint is a page, empty when
    start = end, of at most MAX_ENTRIES entries from start; a range beyond it (into the ledger's entries no
    checkpoint covers, or past the ledger), or ending before it starts, is 400 out_of_range."""
    monkeypatch.setattr("node.api.log.MAX_ENTRIES", 2)
    ledger = node.replica.store.ledger
    while ledger.size < 4:
        node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    node.sign_checkpoint(size=4)
    while ledger.size < 5:
        node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    stop = 4 if end is None else end
    params = {"start": start} if end is None else {"start": start, "end": end}
    response = await api.get("/v1/log/entries", params=params)
    if not start <= stop <= 4:
        assert_error(response, 400, "out_of_range")
        return
    served = min(stop, start + 2)
    assert (response.status_code, response.json()) == (200, {
        "start": start, "end": served, "size": 4,
        "entries": [base64.b64encode(e).decode() for e in ledger.entries(start, served)]})


async def test_inclusion_proofs_verify_against_the_root_of_their_size(api, node):
    for _ in range(5):
        await vouch(api)
    node.sign_checkpoint()
    ledger = node.replica.store.ledger
    for index, size in [(0, 5), (4, 5), (2, 3)]:
        proof = (await api.get("/v1/log/proof/inclusion", params={"index": index, "size": size})).json()
        assert (proof["index"], proof["size"]) == (index, size)
        hashes = [base64.b64decode(h) for h in proof["proof"]]
        verify_inclusion(ledger.entry(index), index, size, hashes, ledger.root(size))
    assert (await api.get("/v1/log/proof/inclusion", params={"index": 1})).json()["size"] == 5


async def test_consistency_proofs_verify_between_their_sizes(api, node):
    for _ in range(5):
        await vouch(api)
    node.sign_checkpoint()
    ledger = node.replica.store.ledger
    for old, new in [(1, 5), (3, 4), (0, 5), (5, 5)]:
        proof = (await api.get("/v1/log/proof/consistency", params={"old": old, "new": new})).json()
        hashes = [base64.b64decode(h) for h in proof["proof"]]
        verify_consistency(old, new, ledger.root(old), ledger.root(new), hashes)
    assert (await api.get("/v1/log/proof/consistency", params={"old": 2})).json()["new"] == 5


@pytest.mark.parametrize(
    ("path", "params", "detail"),
    [
        ("/v1/log/proof/inclusion", {"index": 2}, "query.index: must be less than the tree size, 2"),
        ("/v1/log/proof/inclusion", {"index": 0, "size": 3},
         "query.size: must be at most the latest checkpoint's size, 2"),
        ("/v1/log/proof/consistency", {"old": 3}, "query.old: must be at most the new tree size, 2"),
        ("/v1/log/proof/consistency", {"old": 0, "new": 3},
         "query.new: must be at most the latest checkpoint's size, 2"),
    ],
)
async def test_proofs_outside_the_log_are_refused(api, node, path, params, detail):
    for _ in range(2):
        await vouch(api)
    node.sign_checkpoint()
    await vouch(api)  # in the ledger, in no checkpoint
    assert_error(await api.get(path, params=params), 400, "out_of_range", detail)


@pytest.mark.parametrize(
    ("path", "params", "answer"),
    [
        ("/v1/log/entries", {"start": 0}, {"start": 0, "end": 0, "size": 0, "entries": []}),
        ("/v1/log/proof/consistency", {"old": 0}, {"old": 0, "new": 0, "proof": []}),
        ("/v1/log/entries", {"start": 1}, "query.start: must be at most 0: the node has published no checkpoint of "
                                          "its log yet"),
        ("/v1/log/entries", {"start": 0, "end": 1}, "query.end: must be at most 0: the node has published no "
                                                    "checkpoint of its log yet"),
        ("/v1/log/proof/inclusion", {"index": 0}, "query.index: must be less than the tree size, 0: the node has "
                                                  "published no checkpoint of its log yet"),
        ("/v1/log/proof/consistency", {"old": 1}, "query.old: must be at most the new tree size, 0: the node has "
                                                  "published no checkpoint of its log yet"),
    ],
)
async def test_before_its_first_checkpoint_a_node_serves_the_empty_tree_and_says_why(api, path, params, answer):
    """The public log is the tree its latest checkpoint signed; before the first, the empty tree, which needs no
    signature (its root is the hash of nothing): a polling client gets an empty page, a client from size 0 the
    empty proof, and anything more a refusal naming the missing checkpoint, however many entries the ledger holds."""
    for _ in range(2):
        await vouch(api)
    response = await api.get(path, params=params)
    if isinstance(answer, dict):
        assert (response.status_code, response.json()) == (200, answer)
    else:
        assert_error(response, 400, "out_of_range", answer)
        assert response.json()["detail"] == answer


async def test_a_pruned_entry_is_gone_but_its_proofs_remain(api, node):
    first, _ = await vouch(api), await vouch(api)
    node.sign_checkpoint()
    node.replica.store.ledger.prune(1)
    assert_error(await api.get("/v1/log/entries", params={"start": 0}), 410, "pruned")
    assert_error(await api.get(f"/v1/records/{first['id']}"), 410, "pruned")
    assert (await api.get("/v1/log/proof/inclusion", params={"index": 0})).status_code == 200


# --- the API as a whole ---------------------------------------------------------------------------------


async def test_openapi_describes_every_endpoint_and_the_token(api):
    spec = (await api.get("/openapi.json")).json()
    assert set(spec["paths"]) == {
        "/healthz",
        "/v1/node",
        "/v1/peers",
        "/v1/peers/blocked",
        "/v1/node/own-records",
        "/v1/node/own-records/acknowledge",
        "/v1/node/own-records/{number}/cose",
        "/v1/node/own-records/{number}/conflicts-with/cose",
        "/v1/vouches",
        "/v1/revocations",
        "/v1/records",
        "/v1/records/{record_id}",
        "/v1/log/checkpoint",
        "/v1/log/entries",
        "/v1/log/proof/inclusion",
        "/v1/log/proof/consistency",
    }
    assert spec["paths"]["/v1/vouches"]["post"]["security"] == [{"HTTPBearer": []}]
    assert spec["paths"]["/v1/peers/blocked"]["put"]["security"] == [{"HTTPBearer": []}]
    assert spec["paths"]["/v1/records"]["post"]["security"] == [{"HTTPBearer": []}]
    assert spec["paths"]["/v1/node/own-records/acknowledge"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/v1/records"]["get"]
    vouch_400 = spec["paths"]["/v1/vouches"]["post"]["responses"]["400"]["description"]  # its own, then the token's
    assert vouch_400.startswith("A body that is not JSON as I-JSON (RFC 7493) has it")
    assert vouch_400.endswith("; or an Idempotency-Key that is not 1 to 255 printable ASCII; or a malformed "
                              "Authorization header (`bad_request`, `WWW-Authenticate` saying `invalid_request`): sent "
                              "more than once, `Bearer` without its token, or not followed by a space (`Bearer%20`)")
    revocation_400 = spec["paths"]["/v1/revocations"]["post"]["responses"]["400"]["description"]
    assert revocation_400 == vouch_400
    assert "400" not in spec["paths"]["/v1/records"]["get"]["responses"]


async def test_openapi_declares_on_every_operation_the_503_busy_of_a_node_whose_connections_are_all_busy(api):
    """The HTTP server answers 503 `busy` on any path while every connection is busy (node.api.http_server): only
    the API's description said so, and an operation that declared no 503 of its own (every read but storage's)
    declared none, so a client made from the document knew of no 503 there."""
    spec = (await api.get("/openapi.json")).json()
    undeclared = [f"{method.upper()} {path}" for path, operations in spec["paths"].items()
                  for method, operation in operations.items()
                  if "`busy`" not in operation["responses"].get("503", {}).get("description", "")]
    assert undeclared == []
    assert "`no_token`" in spec["paths"]["/v1/vouches"]["post"]["responses"]["503"]["description"]  # its own kept
    assert "`storage`" in spec["paths"]["/v1/records"]["get"]["responses"]["503"]["description"]


async def test_the_node_s_openapi_describes_everything_and_declares_every_refusal(tmp_path):
    """DESIGN §8: each operation and parameter says what it is; each write names the token, 401 and 503 (no token file,
    or storage) unless the guard leaves it open, and 413; each read what it answers while the node's storage fails
    (before: no read declared the 503 that records, log and credential reads answer then); each operation the 403s
    of the guards in front of the app, forbidden_host and forbidden_origin (before: only the API's description named
    them); every refusal has the one error body."""
    with trio.fail_after(30):
        # No checkpoint is signed while the storage fails: the reads are the API's, not the checkpoint loop's.
        async with running(tmp_path, settings={"checkpoint_interval": 3600.0}) as node:
            async with httpx.AsyncClient() as client:
                spec = (await client.get(f"{node.api_url}/openapi.json")).json()
                answered = await _reads_while_storage_fails(client, node, spec)
    undeclared = [f"{name} {status}" for name, (status, declared) in answered.items() if str(status) not in declared]
    assert undeclared == []
    assert {"GET /v1/records", "GET /v1/log/entries", "GET /v1/credentials/status/{list_number}"} <= \
        {name for name, (status, _) in answered.items() if status == 503}
    undescribed, unguarded, unbounded, unforbidden, other_shape = [], [], [], [], []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            name, responses = f"{method.upper()} {path}", operation["responses"]
            forbidden = responses.get("403", {}).get("description", "")
            unforbidden += ([name] if "`forbidden_host`" not in forbidden or "`forbidden_origin`" not in forbidden
                            else [])
            undescribed += [name] if not operation.get("description") else []
            undescribed += [f"{name} {p['name']}" for p in operation.get("parameters", []) if not p.get("description")]
            if method != "get":
                unbounded += [name] if "413" not in responses else []
                guarded = {"401", "503"} <= set(responses) and operation.get("security") == [{"HTTPBearer": []}] \
                    and "malformed Authorization header" in responses.get("400", {}).get("description", "")
                unguarded += [name] if not guarded and path != CHECK_PATH else []
            other_shape += [f"{name} {status}" for status, response in responses.items() if status[0] in "45" and
                            response.get("content", {}).get("application/json", {}).get("schema")
                            != {"$ref": "#/components/schemas/ErrorBody"}]
    assert (undescribed, unguarded, unbounded, unforbidden, other_shape) == ([], [], [], [], [])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in spec["paths"][CHECK_PATH]["post"]
    assert spec["paths"]["/v1/orgs/{did}"]["get"]["parameters"][0]["description"] == "The org's did:key"
    # A read's 422 is a parameter's (before: "...or a record the rules reject"), and one without any declares only
    # that of a query parameter it does not take, as every operation does (node.api.parameters).
    unknown = ("a query parameter the operation does not take (`invalid_request`, the detail naming it and those it "
               "takes), or one given more than once")
    reads = {path: operations["get"] for path, operations in spec["paths"].items() if "get" in operations}
    assert {path: read["responses"].get("422", {}).get("description") for path, read in reads.items()} == \
        {path: f"A malformed parameter, or one out of range; the detail names it; or {unknown}"
         if read.get("parameters") else unknown.capitalize() for path, read in reads.items()}


async def _reads_while_storage_fails(client, node, spec):
    """Every read of `spec` asked of `node` while its records index, records ledger and credential registry fail (as
    after a failed write of the index, gossip.store): operation -> (its answer's status, the statuses it declares)."""
    def behind(**_):
        raise StoreError(f"{INDEX_FILE}: cannot be written (database or disk is full)")

    def unreadable(what):
        raise LedgerError(f"records.ledger: {what}: disk I/O error")

    class FailingDb:
        def execute(self, *_):
            raise sqlite3.OperationalError("disk I/O error")

    values = {"record_id": "00" * 32, "did": node.did, "list_number": "0", "number": "1"}
    answered = {}
    with pytest.MonkeyPatch.context() as disk:
        disk.setattr(node.replica.store, "_level", behind)
        disk.setattr(node.replica.store.ledger, "_using", unreadable)
        disk.setattr(node.telemetry.credentials, "_db", FailingDb())
        for path, operations in spec["paths"].items():
            if (operation := operations.get("get")) is None:
                continue
            query = {p["name"]: "0" for p in operation.get("parameters", []) if p["in"] == "query" and p["required"]}
            url = node.api_url + re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)
            async with client.stream("GET", url, params=query) as response:  # /v1/stream answers for ever
                answered[f"GET {path}"] = (response.status_code, set(operation["responses"]))
    return answered


async def test_unknown_endpoints_and_methods_get_the_error_shape(api):
    assert_error(await api.get("/v2/nothing"), 404, "not_found", "no such endpoint")
    assert_error(await api.delete("/v1/records", headers=AUTH), 405, "method_not_allowed")


async def test_a_method_a_path_does_not_take_is_405_naming_those_it_does_token_or_not(api, node):
    """Before the token: a write without one learns that the method is wrong (the paths and their methods are
    public, in /openapi.json), while a write method the path takes still needs the token."""
    spec = (await api.get("/openapi.json")).json()
    for template, operations in spec["paths"].items():
        path = re.sub(r"\{[^}]*\}", "00" * 32, template)  # a parameter matches by its shape alone
        takes = {method.upper() for method in operations}
        takes |= {"HEAD"} if "GET" in takes else set()  # RFC 9110 §9.1
        for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"):
            for headers in ({}, AUTH):
                response = await api.request(method, path, headers=headers)
                if method not in takes:
                    if method == "HEAD":  # an answer without a body
                        assert response.status_code == 405, path
                    else:
                        assert_error(response, 405, "method_not_allowed", "this endpoint does not take that method")
                    assert set(response.headers["allow"].split(", ")) == takes, (method, path)
                elif method not in ("GET", "HEAD") and not headers:
                    assert_error(response, 401, "unauthorized", "Authorization: a bearer token is required")
    assert node.replica.store.size == 0


async def test_every_path_that_takes_get_answers_head_as_its_get(node):
    """RFC 9110 §9.1 (a server MUST support GET and HEAD): `curl -I`, and an uptime monitor's default check of
    /healthz, were 405 with `Allow: GET`. Served for real, as the HTTP server drops the answer's body for a HEAD."""
    async with trio.open_nursery() as nursery:
        serving = functools.partial(serve, create_app(node), "127.0.0.1", 0, refused=lambda *_: None,
                                    dropped=lambda _: None)
        (url,) = await nursery.start(serving)
        async with httpx.AsyncClient(base_url=url) as client:
            for path in ("/healthz", "/v1/node", "/v1/records?kind=vouch", "/openapi.json"):
                got, head = await client.get(path), await client.head(path)
                assert (head.status_code, head.content) == (200, b""), path
                assert head.headers["content-type"] == got.headers["content-type"], path
            refused = await client.head("/v1/vouches")
            assert (refused.status_code, refused.headers["allow"]) == (405, "POST")
            assert (await client.head("/v1/records?limit=0")).status_code == 422  # checked as its GET is
            # the API's description says so, as its paths list GET alone (and a 405 sends callers there)
            assert "Every path listed with GET takes HEAD too" in (await client.get("/openapi.json")).json()["info"][
                "description"]
        nursery.cancel_scope.cancel()


async def test_a_failure_inside_the_node_is_a_json_500_and_is_logged(tmp_path, caplog):
    with fake_node(tmp_path) as node:
        node.peers = lambda: 1 / 0
        transport = httpx.ASGITransport(app=create_app(node), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as api:
            assert_error(await api.get("/v1/peers"), 500, "internal")
    assert "ZeroDivisionError" in caplog.text


async def test_a_write_the_disk_refuses_is_a_503_naming_the_file_and_the_node_takes_the_next(api, node, monkeypatch,
                                                                                              caplog):
    """A full disk: the vouch was a 500 "internal", with a traceback logged twice for each request."""
    def full(entries):
        raise LedgerError(f"{node.replica.store.ledger._path}: append: disk I/O error")

    with monkeypatch.context() as disk:
        disk.setattr(node.replica.store.ledger, "append", full)
        response = await api.post("/v1/vouches", json={"subject": new_did(), "weight": 0.5, "basis": "operator"},
                                  headers=AUTH)
    assert_error(response, 503, "storage", "the node cannot store this now: ")
    assert "records.ledger: append: disk I/O error" in response.json()["detail"]
    assert response.headers["retry-after"]
    assert [r.exc_info for r in caplog.records if r.levelname == "ERROR"] == [None]
    assert (await vouch(api))["index"] == 0  # nothing of the refused one was kept


async def test_a_read_the_storage_refuses_is_a_503_that_says_it_could_not_read(api, node, monkeypatch):
    """While a records index that lost rows to a full disk cannot be brought level, reads fail (gossip.store): the
    answer said "the node cannot store this now" to a GET."""
    def behind(*args, **kwargs):
        raise StoreError(f"{INDEX_FILE}: cannot be written (database or disk is full)")

    monkeypatch.setattr(node.replica.store, "query", behind)
    response = await api.get("/v1/records")
    assert_error(response, 503, "storage", "the node cannot read its storage now: records.index: cannot be written")
    assert response.headers["retry-after"]


async def test_each_answer_the_storage_refuses_is_counted_for_an_alert(app, api, node, tmp_path, monkeypatch):
    """Before: a node whose storage refused reads and writes said so only in its log. A read, a write whose ledger
    append fails and one whose index insert fails (SQLite's error) are each one 503 `storage`, counted once."""
    metrics = Registry()
    count_storage_refusals(app, metrics)
    body = {"subject": new_did(), "weight": 0.5, "basis": "operator"}
    with monkeypatch.context() as disk:
        disk.setattr(node.replica.store, "query", lambda *args, **kwargs: _raise(StoreError("records.index: full")))
        assert_error(await api.get("/v1/records"), 503, "storage")
        assert metrics.value("api_storage_refusals_total") == 1
        disk.setattr(node.replica.store.ledger, "append", lambda entries: _raise(LedgerError("records.ledger: full")))
        assert_error(await api.post("/v1/vouches", json=body, headers=AUTH), 503, "storage")
        assert metrics.value("api_storage_refusals_total") == 2
    index = sqlite3.connect(tmp_path / INDEX_FILE)
    index.execute("CREATE TRIGGER full BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    assert_error(await api.post("/v1/vouches", json=body, headers=AUTH), 503, "storage")
    index.execute("DROP TRIGGER full")
    index.close()
    await vouch(api)
    assert_error(await api.get("/v1/records/" + "00" * 32), 404, "not_found")  # other refusals are not counted
    assert metrics.value("api_storage_refusals_total") == 3


def _raise(error: Exception) -> NoReturn:
    raise error


async def test_a_record_refused_as_the_index_could_not_be_written_is_not_kept_and_the_node_takes_the_next(
        api, node, tmp_path):
    index = sqlite3.connect(tmp_path / INDEX_FILE)  # a write that fails as a full disk would, while it is there
    index.execute("CREATE TRIGGER full BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    response = await api.post("/v1/vouches", json={"subject": new_did(), "weight": 0.5, "basis": "operator"},
                              headers=AUTH)
    assert_error(response, 503, "storage")
    index.execute("DROP TRIGGER full")
    index.close()
    assert (await vouch(api))["index"] == 0


# --- hostile input --------------------------------------------------------------------------------------

# Each endpoint with the names its query or body takes: garbage mostly under the names the endpoint reads.
_ENDPOINTS = {
    ("GET", "/healthz"): (),
    ("GET", "/v1/node"): (),
    ("GET", "/v1/peers"): (),
    ("GET", "/v1/peers/blocked"): (),
    ("PUT", "/v1/peers/blocked"): ("peers",),
    ("POST", "/v1/vouches"): ("subject", "weight", "basis", "scope", "expires"),
    ("POST", "/v1/revocations"): ("record", "reason"),
    ("GET", "/v1/records"): ("issuer", "kind", "subject", "after", "limit"),
    ("POST", "/v1/records"): (),
    ("GET", "/v1/records/{id}"): ("format",),
    ("GET", "/v1/log/checkpoint"): (),
    ("GET", "/v1/log/entries"): ("start", "end"),
    ("GET", "/v1/log/proof/inclusion"): ("index", "size"),
    ("GET", "/v1/log/proof/consistency"): ("old", "new"),
}
_numbers = st.one_of(
    st.integers(-3, 6),
    st.integers(),
    st.sampled_from([2**53, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400]),
    st.floats(),
)
_texts = st.one_of(st.text(max_size=30), st.sampled_from(["", "json", "cose", "vouch", "NaN", "1e9", "0x10", " 1"]))


def _json(names):
    keys = st.sampled_from(names) | st.text(max_size=8) if names else st.text(max_size=8)
    return st.recursive(
        st.none() | st.booleans() | _numbers | _texts,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=12,
    )


def _params(names):
    keys = st.sampled_from(names) | st.text(max_size=6) if names else st.text(max_size=6)
    return st.dictionaries(keys, _numbers.map(str) | _texts, max_size=4)


def _bodies(names):
    return st.one_of(
        st.binary(max_size=200).map(lambda b: ("raw", b)),
        _json(names).map(lambda j: ("json", j)),
        st.dictionaries(st.sampled_from(names or ("x",)), _json(names), min_size=1).map(lambda j: ("json", j)),
    )


@pytest.fixture
def populated(node):
    for _ in range(3):
        node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    node.sign_checkpoint()


@pytest.mark.parametrize("endpoint", list(_ENDPOINTS), ids=[f"{m} {p}" for m, p in _ENDPOINTS])
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_garbage_gets_a_4xx_with_a_reason_never_a_5xx(api, populated, endpoint, data):
    method, path = endpoint
    names = _ENDPOINTS[endpoint]
    params = data.draw(_params(names), "params")
    path_id = data.draw(st.text(max_size=70) | st.binary(min_size=32, max_size=32).map(bytes.hex), "id")
    path = path.replace("{id}", quote(path_id, safe="") or "x")
    headers = AUTH.copy() if data.draw(st.booleans(), "token") else {}
    content = None
    if method in ("POST", "PUT"):
        kind, content = data.draw(_bodies(names), "body")
        if kind == "json":  # Python's json writes NaN and Infinity, as a careless or hostile client might
            content = json.dumps(content).encode()
            headers["content-type"] = "application/json"
        elif path == "/v1/records":
            headers["content-type"] = "application/cose"
    response = await api.request(method, path, params=params, headers=headers, content=content)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()
        assert set(error) == {"error", "detail"} and error["detail"]
