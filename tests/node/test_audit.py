"""The private audit log: exports an auditor can check against a signed checkpoint and the org's digests,
tampering that the checks catch, and retention that prunes whole epochs while every proof stays valid."""

import argparse
import base64
import copy
import itertools
import json
import re
import shutil
import signal
import sqlite3
import stat
import time
from types import SimpleNamespace

import cbor2
import httpx
import pytest
import trio
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import INDEX_FILE, LEDGER_FILE, RecordStore
from ledger import Checkpoint, EntryPruned, Ledger, LedgerError, tree_hash, verify_inclusion
from node import cli
from node.audit_export import ExportError, VerifyError, export_agent, rotation_chain, verify_export
from node.audit_log import AUDIT_FILE, AuditLog, audit_origin
from node.commands import audit
from node.commands.common import CommandFailed
from node.events import SALT_SIZE, Event, decode_salted_entry, encode_entry
from node.keys import load_org_key
from node.retention import DAY_MS, RetentionService
from node.setup import init_data_dir
from node.store_manifest import DIGESTS_FILE
from vouching import did_key, org_body, sign_record, verify_record, vouch_body

from ..factories import Org, new_did
from .in_process import running
from .telemetry_node import Clock, crash_image, telemetry_node

EPOCH = 60_000
T0 = 1_700_000_040_000
A, B = new_did(), new_did()


def submit(node, agent, outcome="ok", count=1):
    event = {"agent": agent, "ts": node.clock.now, "category": "tool", "name": "n", "outcome": outcome}
    node.ingestor.submit_json(json.dumps({"events": [event] * count}).encode())


def export(node, agent, start, end):
    return export_agent(node.audit, node.digester.state, key=node.key, org=node.replica.did,
                        network="testnet", agent=agent, start=start, end=end)


def digest_records(node, agent):
    return [raw for _, raw in node.store.query(issuer=node.replica.did, kind="digest", subject=agent)]


def three_epochs(node):
    """Entries 0-3 in the first epoch, 4-7 in the second, 8-11 in the third, each digested (A's and B's); 12 open."""
    for step in range(3):
        submit(node, A, count=2)
        submit(node, B, "error")
        node.clock.now += 20_000
        submit(node, A, "denied")
        node.clock.now = T0 + (step + 1) * EPOCH
        node.digester.close_due(node.clock.now)
    submit(node, A)


@pytest.fixture
def node(tmp_path):
    with telemetry_node(tmp_path, clock=Clock(T0), epoch_ms=EPOCH) as node:
        three_epochs(node)
        yield node


def test_an_export_verifies_against_the_checkpoint_and_the_digests(node):
    document = export(node, A, T0 + EPOCH + 30_000, T0 + EPOCH + 30_001)
    assert [e["epoch"] for e in document["epochs"]] == [T0 + EPOCH]  # widened to the whole epoch
    assert len(document["entries"]) == 3
    json.loads(json.dumps(document))  # plain JSON
    verified = verify_export(document, digests=digest_records(node, A)[1:2])
    assert [event.outcome for _, _, event in verified.events] == ["ok", "ok", "denied"]
    assert verified.size == node.audit.size
    # each entry shown with its salt, the one its bytes hold, fresh for each
    salts = [base64.b64decode(e["salt"]) for e in document["entries"]]
    assert salts == [decode_salted_entry(base64.b64decode(e["entry"]))[2] for e in document["entries"]]
    assert len(set(salts)) == 3 and {len(salt) for salt in salts} == {SALT_SIZE}


def test_an_export_covers_the_open_epoch_without_a_root(node):
    document = export(node, A, T0 + 3 * EPOCH, T0 + 4 * EPOCH)
    assert (len(document["entries"]), document["epochs"]) == (1, [])
    verify_export(document)


def test_the_auditor_s_steps_can_be_done_by_hand(node):
    """What the module docstring tells an auditor, spelled out with ledger primitives only."""
    document = export(node, B, T0, T0 + 3 * EPOCH)
    checkpoint = Checkpoint.parse(document["checkpoint"].split("\n\n")[0] + "\n")
    assert checkpoint.origin == audit_origin("testnet", node.replica.did)
    for item in document["entries"]:
        verify_inclusion(base64.b64decode(item["entry"]), item["index"], checkpoint.size,
                         [base64.b64decode(h) for h in item["proof"]], checkpoint.root)
    assert len(document["epochs"]) == 3


def tampered(document, change):
    document = copy.deepcopy(document)
    change(document)
    return document


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["entries"].pop(1), "do not hash to evidence_root"),
    (lambda d: d["entries"][0].update(entry=d["entries"][2]["entry"]), "not in the checkpointed log"),
    (lambda d: d["entries"][0]["proof"].pop(), "not in the checkpointed log"),
    (lambda d: d.update(org=new_did()), "checkpoint"),
    (lambda d: d.update(network="othernet"), "checkpoint"),
    (lambda d: d.update(agent=B), "not of the exported agent"),
    (lambda d: d["epochs"][0].update(evidence_root=base64.b64encode(bytes(32)).decode()), "evidence_root"),
    (lambda d: d.update(entries={"not": "a list"}), "entries"),
    (lambda d: d.update(org=None), "export: org did None"),
    (lambda d: d.update(network=["a"]), "export: network"),
    (lambda d: d.update(agent=7), "export: agent: must be an Ed25519 did:key"),
    (lambda d: d.update(checkpoint=None), "export: needs org, network, agent and checkpoint"),
    (lambda d: d.update(checkpoint="\udc80"), "checkpoint: not a signed note"),  # was a UnicodeEncodeError
    (lambda d: d.update({"from": None}), "from, to: must be integers"),
    (lambda d: d.update({"from": d["to"] + 1}), "from <= to"),
    # A range claimed narrower than the entries, whose epochs were dropped to hide them: not what was exported.
    (lambda d: d.update({"from": d["to"] - 1, "epochs": []}), "outside \\[from, to\\) and every epoch"),
    # The decoded copies an auditor reads must say what the proven entry bytes say.
    (lambda d: d["entries"][2]["event"].update(outcome="ok"), "entries\\[2\\].event: differs from the entry"),
    (lambda d: d["entries"][2]["event"].pop("high_risk"), "entries\\[2\\].event: differs from the entry"),
    (lambda d: d["entries"][0].update(at=d["entries"][0]["at"] + 1), "entries\\[0\\].at: differs from the entry"),
    (lambda d: d["entries"][1].update(salt=d["entries"][0]["salt"]), "entries\\[1\\].salt: differs from the entry"),
    (lambda d: d["entries"][1].pop("salt"), "entries\\[1\\].salt: differs from the entry"),
    # An entry salted anew (the same event, accepted at the same time) is another leaf: not the one the log holds.
    (lambda d: d["entries"][1].update(entry=_salted_anew(d["entries"][1]["entry"])), "entries\\[1\\]: not in the "
     "checkpointed log"),
    (lambda d: d["epochs"][0].update(events=2), "epochs\\[0\\].events: must be 3"),
    # Epochs claimed over each other, each holding every entry: checking them took epochs x entries (digest epochs
    # never overlap, so none overlaps in an honest export).
    (lambda d: d["epochs"].append(dict(d["epochs"][0], len=2 * EPOCH)), "epochs\\[1\\]: overlaps epochs\\[0\\]"),
])
def test_tampering_is_caught(node, change, message):
    document = export(node, A, T0, T0 + EPOCH)
    with pytest.raises(VerifyError, match=message):
        verify_export(tampered(document, change))


def _salted_anew(entry: str) -> str:
    at, event, _ = decode_salted_entry(base64.b64decode(entry))
    return base64.b64encode(encode_entry(event, at, bytes(SALT_SIZE))).decode()


def _unsalted(event: Event, at: int) -> bytes:
    """The entry vouchnet wrote before salts (version 1: node.events' tests pin one)."""
    entry = cbor2.loads(encode_entry(event, at, bytes(SALT_SIZE)))
    del entry["salt"]
    return cbor2.dumps({**entry, "v": 1}, canonical=True)


def test_an_audit_log_written_before_salts_is_digested_exported_and_verified(tmp_path):
    """Pre-salt entries stay as they are (the log is append-only: digests and checkpoints commit to their bytes);
    events accepted since get salts, in the same epoch too, and the export shows each entry's salt, or none."""
    with Ledger.open(tmp_path / AUDIT_FILE) as ledger:
        ledger.append([_unsalted(Event(A, T0, "tool", "n", outcome), T0) for outcome in ("ok", "denied")])
    with telemetry_node(tmp_path, clock=Clock(T0 + 1), epoch_ms=EPOCH) as node:
        submit(node, A, "error")
        node.digester.close_due(T0 + EPOCH)
        document = export(node, A, T0, T0 + EPOCH)
        digests = digest_records(node, A)
    assert ["salt" in e for e in document["entries"]] == [False, False, True]
    verified = verify_export(document, digests=digests)
    assert ([event.outcome for _, _, event in verified.events], verified.unmatched) == (["ok", "denied", "error"], 0)
    assert verify_export({**document, "format": "vouchnet-audit-export/1"}, digests=digests) == verified  # before salts


def test_an_event_left_out_of_an_epoch_is_shown_by_its_digest_alone(node):
    """An entry left out and its epoch's root and count recomputed: the export verifies but against the epoch's
    digest, so verify counts the events no digest given checks (`unmatched`, which the CLI says; it said nothing)."""
    def leave_out(document):
        document["entries"].pop(1)
        members = [base64.b64decode(e["entry"]) for e in document["entries"]]
        document["epochs"][0].update(evidence_root=base64.b64encode(tree_hash(members)).decode(), events=2)

    document = export(node, A, T0, T0 + EPOCH)
    forged = tampered(document, leave_out)
    assert verify_export(forged).unmatched == 2
    assert verify_export(document, digests=digest_records(node, A)[:1]).unmatched == 0
    with pytest.raises(VerifyError, match="evidence_root differs"):
        verify_export(forged, digests=digest_records(node, A)[:1])


def test_a_digest_of_another_epoch_or_agent_does_not_match(node):
    document = export(node, A, T0, T0 + EPOCH)
    with pytest.raises(VerifyError, match="not in the export"):
        verify_export(document, digests=digest_records(node, A)[1:2])
    with pytest.raises(VerifyError, match="not the org's digest of the exported agent"):
        verify_export(document, digests=digest_records(node, B)[:1])


def rotate(node):
    """Rotate `node`'s org key as node.rotation does: the old key's record naming the new key as `next`, then the new
    key's first record naming the old as `prior`; the new key."""
    successor = SigningKey.generate()
    node.replica.issue("org", org_body("org", "testnet", next=did_key(bytes(successor.verify_key))))
    Replica(successor, node.store, roots=(), max_hops=2, held_limit=10).issue(
        "org", org_body("org", "testnet", prior=node.replica.did))
    return successor


def test_an_export_made_after_a_rotation_matches_the_digests_of_the_org_s_earlier_key(node):
    """After `vouchnet key rotate` the export is signed by the new key and names it as the org, so every digest the
    org signed before its rotation, under its old key, was refused as "not the org's digest": the org could no longer
    prove its events of those epochs to an auditor against what it published, though the network counts both keys
    as one org (DESIGN §2). The export now carries the signed records linking the keys (its rotation chain)."""
    successor = rotate(node)
    new = did_key(bytes(successor.verify_key))
    document = export_agent(node.audit, node.digester.state, key=successor, org=new, network="testnet", agent=A,
                            start=T0, end=T0 + EPOCH, chain=rotation_chain(node.store, new))
    verified = verify_export(document, digests=digest_records(node, A)[:1])
    assert (verified.unmatched, verified.keys) == (0, (node.replica.did, new))


def test_an_org_that_never_rotated_exports_as_before(node):
    document = export(node, A, T0, T0 + EPOCH)
    assert rotation_chain(node.store, node.replica.did) == []
    assert "rotation_chain" not in document
    assert verify_export(document, digests=digest_records(node, A)[:1]).keys == (node.replica.did,)


@pytest.mark.parametrize("rotates_in_its_first_record", [False, True])
def test_a_chain_of_two_rotations_links_every_earlier_key(node, rotates_in_its_first_record):
    """K0 -> K1 -> K2, K1's rotation a record of its own or its first record, naming both its prior and its next
    (vouching.succession takes either)."""
    k0, k1, k2 = node.key, SigningKey.generate(), SigningKey.generate()
    dids = [did_key(bytes(k.verify_key)) for k in (k0, k1, k2)]
    node.replica.issue("org", org_body("org", "testnet", next=dids[1]))
    second = Replica(k1, node.store, roots=(), max_hops=2, held_limit=10)
    if rotates_in_its_first_record:
        second.issue("org", org_body("org", "testnet", prior=dids[0], next=dids[2]))
    else:
        second.issue("org", org_body("org", "testnet", prior=dids[0]))
        second.issue("org", org_body("org", "testnet", next=dids[2]))
    Replica(k2, node.store, roots=(), max_hops=2, held_limit=10).issue("org", org_body("org", "testnet",
                                                                                        prior=dids[1]))
    chain = rotation_chain(node.store, dids[2])
    assert [verify_record(raw).iss for raw in chain] == (
        [dids[0], dids[1], dids[2]] if rotates_in_its_first_record else [dids[0], dids[1], dids[1], dids[2]])
    assert chain[0] == node.store.at(dids[0], node.store.head(dids[0]).seq)  # K0's last record
    document = export_agent(node.audit, node.digester.state, key=k2, org=dids[2], network="testnet", agent=A,
                            start=T0, end=T0 + 3 * EPOCH, chain=chain)
    verified = verify_export(document, digests=digest_records(node, A))
    assert (verified.keys, verified.unmatched) == (tuple(dids), 0)


def test_the_chain_stops_at_a_prior_key_that_did_not_name_the_new_one(node):
    """A key's first record naming the org's key as its prior is a claim (anyone may make it) until the org's key names
    it back: no link, no chain."""
    claimant = Replica(SigningKey.generate(), node.store, roots=(), max_hops=2, held_limit=10)
    claimant.issue("org", org_body("org", "testnet", prior=node.replica.did))
    assert rotation_chain(node.store, claimant.did) == []


@pytest.fixture
def rotated(node):
    """An export after a rotation from the node's key (K0) to K1, with the digests K0 signed, and signers for each key
    that follow its chain (a forger holding the keys)."""
    successor = rotate(node)
    new = did_key(bytes(successor.verify_key))
    document = export_agent(node.audit, node.digester.state, key=successor, org=new, network="testnet", agent=A,
                            start=T0, end=T0 + EPOCH, chain=rotation_chain(node.store, new))
    heads = {did: verify_record(node.store.get(node.store.head(did).id)) for did in (node.replica.did, new)}
    old_org, new_org = (Org(key, seq=heads[did].seq, prev=heads[did].id, ts=heads[did].ts)
                        for key, did in ((node.key, node.replica.did), (successor, new)))
    return SimpleNamespace(document=document, digests=digest_records(node, A)[:1], old=node.replica.did, new=new,
                           old_org=old_org, new_org=new_org)


def _b64_record(record) -> str:
    return base64.b64encode(record.raw).decode()


def _flipped(item: str) -> str:
    raw = bytearray(base64.b64decode(item))
    raw[-1] ^= 1  # in the signature
    return base64.b64encode(bytes(raw)).decode()


def _other_orgs_link() -> list[str]:
    old, new = Org(), Org()
    return [_b64_record(old.record("org", org_body("o", "testnet", next=new.did))),
            _b64_record(new.record("org", org_body("o", "testnet", prior=old.did)))]


def _late_digest(r) -> bytes:
    """A digest K0 signs after its rotation record, as the holder of a retired key could: the network takes none."""
    honest = verify_record(r.digests[0])
    return r.old_org.record("digest", honest.body.to_wire()).raw


@pytest.mark.parametrize(("change", "message"), [
    (lambda r, d: d.pop("rotation_chain"), "digest [0-9a-f]+: signed by {old}, not by the org {new}: the export has "
     "no rotation_chain linking an earlier key to the org"),
    (lambda r, d: d.update(rotation_chain="x"), "rotation_chain: must be a list"),
    (lambda r, d: d["rotation_chain"].__setitem__(0, "%"), "rotation_chain\\[0\\]: not base64"),
    (lambda r, d: d["rotation_chain"].__setitem__(1, _flipped(d["rotation_chain"][1])),
     "rotation_chain\\[1\\]: not a valid record"),
    (lambda r, d: d["rotation_chain"].pop(1), "rotation_chain\\[0\\]: {old} names {new} as its next key, whose first "
     "record in the chain does not name it back"),
    (lambda r, d: d["rotation_chain"].pop(0), "rotation_chain\\[0\\]: {new} names {old} as its prior key, whose "
     "rotation record in the chain does not name it"),
    (lambda r, d: d["rotation_chain"].append(base64.b64encode(r.digests[0]).decode()),
     "rotation_chain\\[2\\]: a digest record, not an org record"),
    (lambda r, d: d["rotation_chain"].append(_b64_record(r.new_org.record("org", org_body("org", "testnet")))),
     "rotation_chain\\[2\\]: names neither a next nor a prior key"),
    (lambda r, d: d["rotation_chain"].append(_b64_record(r.old_org.record("org", org_body("org", "testnet",
                                                                                           next=new_did())))),
     "rotation_chain\\[2\\]: a second record of {old} naming a next key"),
    (lambda r, d: d.update(rotation_chain=d["rotation_chain"] + _other_orgs_link()),
     "rotation_chain: links did:key:\\w+, did:key:\\w+, not keys of the export's org {new}"),
    (lambda r, d: d.update(rotation_chain=_other_orgs_link()), "not keys of the export's org {new}"),
    (lambda r, d: d.update(rotation_chain=[_b64_record(r.old_org.record("org", org_body("o", "othernet", next=r.new))),
                                           _b64_record(Org(r.new_org.key).record("org", org_body(
                                               "o", "othernet", prior=r.old)))]),
     "rotation_chain\\[0\\]: an org record of network 'othernet', not of the export's 'testnet'"),
])
def test_a_rotation_chain_that_does_not_prove_the_org_s_keys_is_refused(rotated, change, message):
    document = copy.deepcopy(rotated.document)
    change(rotated, document)
    with pytest.raises(VerifyError, match=message.format(old=rotated.old, new=rotated.new)):
        verify_export(document, digests=rotated.digests)


def test_a_digest_an_earlier_key_signed_after_its_rotation_is_refused(rotated):
    """A retired key signs nothing the network takes after its rotation record (its last): one that did (its holder
    kept a copy) proves nothing of the org's."""
    rotation = rotated.old_org.seq
    with pytest.raises(VerifyError, match=f"signed by {rotated.old} at seq {rotation + 1}, after its rotation record "
                                          f"\\(seq {rotation}\\) ended its chain"):
        verify_export(rotated.document, digests=[_late_digest(rotated)])


def test_an_export_by_a_key_the_chain_retires_is_refused(node, rotated):
    """Signed by K0 after it rotated to K1 (its holder kept a copy): the export names a key the org no longer uses."""
    document = export_agent(node.audit, node.digester.state, key=node.key, org=rotated.old, network="testnet",
                            agent=A, start=T0, end=T0 + EPOCH, chain=[base64.b64decode(item) for item in
                                                                      rotated.document["rotation_chain"]])
    with pytest.raises(VerifyError, match=f"the export's org {rotated.old} rotated to {rotated.new}: an export is "
                                          "signed by the org's newest key"):
        verify_export(document)


def test_a_digest_misstating_high_risk_counts_does_not_match(node):
    """A digest of the org's that says other high-risk counts than its entries (same outcomes, categories and root)
    is caught: the high-risk subset is what scoring weighs most."""
    document = export(node, A, T0, T0 + EPOCH)
    honest = verify_record(digest_records(node, A)[0])
    body = honest.body.to_wire() | {"high_risk": {"ok": 1, "error": 0, "denied": 0, "timeout": 0}}
    forged = sign_record(node.key, "digest", body, seq=honest.seq, prev=honest.prev, ts=honest.ts)
    verify_export(document, digests=[honest.raw])
    with pytest.raises(VerifyError, match="its counts differ"):
        verify_export(document, digests=[forged])


def test_retention_prunes_whole_digested_epochs_and_proofs_stay_valid(node):
    entries = node.audit.ledger.entries(0, node.audit.size)
    before = node.audit.checkpoint(node.key, audit_origin("testnet", node.replica.did))
    retention_days = 2.5 * EPOCH / DAY_MS
    node.clock.now = T0 + 3 * EPOCH + 40_000
    service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics, retention_days=retention_days)
    pruned = service.prune()
    assert pruned == 4  # cutoff T0 + 70 s, back to its epoch's start T0 + 60 s: the first epoch's 4 entries
    with pytest.raises(EntryPruned):
        node.audit.ledger.entry(0)
    size, root = node.audit.size, node.audit.ledger.root()
    assert root == Checkpoint.parse(before.decode().split("\n\n")[0] + "\n").root
    for index, entry in enumerate(entries):
        verify_inclusion(entry, index, size, node.audit.ledger.inclusion_proof(index, size), root)
    with pytest.raises(ExportError, match="pruned"):
        export(node, A, T0, T0 + 2 * EPOCH)
    verify_export(export(node, A, T0 + EPOCH, T0 + 2 * EPOCH), digests=digest_records(node, A)[1:2])


def test_the_oldest_epoch_retention_kept_is_exported_whole(tmp_path):
    """Retention prunes whole digested epochs: the next one is all there, though its first event came after its start,
    and the time the refusal names for --from is one an export takes. The check compared the first kept entry's time
    with the epoch's start, so that epoch was refused as pruned, and so was --from at the time the message named."""
    with telemetry_node(tmp_path, clock=Clock(T0), epoch_ms=EPOCH) as node:
        for step in range(3):
            node.clock.now = T0 + step * EPOCH + 5_000
            submit(node, A)
            node.digester.close_due(T0 + (step + 1) * EPOCH)
        node.clock.now = T0 + 3 * EPOCH
        service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                                   retention_days=1.5 * EPOCH / DAY_MS)
        assert service.prune() == 1
        with pytest.raises(ExportError, match=f"the audit log keeps those from {T0 + EPOCH} ms on"):
            export(node, A, T0 + EPOCH - 1, T0 + 3 * EPOCH)
        document = export(node, A, T0 + EPOCH, T0 + 3 * EPOCH)
        assert [e["at"] for e in document["entries"]] == [T0 + EPOCH + 5_000, T0 + 2 * EPOCH + 5_000]
        verify_export(document, digests=digest_records(node, A)[1:])


def test_an_export_the_node_prunes_as_it_reads_is_refused_as_pruned(node):
    """`vouchnet audit export` reads the audit log beside the running node, whose retention may prune entries of the
    range as they are read (a large export takes minutes): that stopped it with a traceback of LedgerError, the log
    'corrupt: no row holds entry 4', or of InvalidEvent for the emptied bytes of the row across the cutoff."""
    reader = AuditLog.open(node.directory)  # the export's, opened before the node prunes
    try:
        RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                         retention_days=1.5 * EPOCH / DAY_MS).prune()  # at T0 + 3 * EPOCH: the first epoch
        with pytest.raises(ExportError, match=f"the audit log keeps those from {T0 + EPOCH} ms on"):
            export_agent(reader, node.digester.state, key=node.key, org=node.replica.did, network="testnet",
                         agent=A, start=T0, end=T0 + 3 * EPOCH)
    finally:
        reader.close()


def test_an_export_of_kept_entries_is_made_though_the_node_pruned_older_ones_as_it_read(node):
    """Retention beside the export pruned only entries before its range: the search for the range's first entry,
    starting from the prune mark the export read when it opened the log, read a pruned entry, and the export stopped
    with a traceback of EntryPruned though every entry it needed was there."""
    reader = AuditLog.open(node.directory)  # the export's, opened before the node prunes
    try:
        RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                         retention_days=1.5 * EPOCH / DAY_MS).prune()  # at T0 + 3 * EPOCH: the first epoch
        document = export_agent(reader, node.digester.state, key=node.key, org=node.replica.did, network="testnet",
                                agent=A, start=T0 + EPOCH, end=T0 + 3 * EPOCH)
    finally:
        reader.close()
    assert document == export(node, A, T0 + EPOCH, T0 + 3 * EPOCH) | {"checkpoint": document["checkpoint"]}
    verify_export(document, digests=digest_records(node, A)[1:])


def test_retention_prunes_no_part_of_an_epoch_digested_before_the_epoch_length_changed(tmp_path):
    """Epochs of two minutes, then of one: the cutoff, a whole minute, fell inside an epoch digested at two, whose
    first minute was pruned, so its second minute's events, within retention, could no longer be exported."""
    with telemetry_node(tmp_path, clock=Clock(T0), epoch_ms=2 * EPOCH) as node:
        key = node.key
        for minute in range(2):
            node.clock.now = T0 + minute * EPOCH + 5_000
            submit(node, A)
        node.digester.close_due(T0 + 2 * EPOCH)
    with telemetry_node(tmp_path, key=key, clock=Clock(T0 + 2 * EPOCH), epoch_ms=EPOCH) as node:
        service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                                   retention_days=EPOCH / DAY_MS)
        assert service.prune() == 0
        document = export(node, A, T0 + EPOCH, T0 + 2 * EPOCH)
        assert len(document["entries"]) == 2
        verify_export(document, digests=digest_records(node, A))


def test_retention_never_prunes_events_not_yet_digested(node):
    node.clock.now = T0 + 100 * EPOCH
    service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics, retention_days=1 / DAY_MS)
    assert service.prune() == node.digester.undigested_from == node.audit.size - 1


def test_retention_prunes_no_entry_of_an_epoch_a_restart_has_still_to_digest(tmp_path, monkeypatch):
    """A node stopped between two chunks of an epoch's digests, and started again after longer than its retention:
    retention, bounded by the end of that epoch (digests.db's last row), pruned the entries whose digests were still
    to be issued, and every later closing of epochs failed on them, that epoch first."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    with telemetry_node(tmp_path, clock=Clock(T0), epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, A)
        submit(node, B)
        closing = node.digester.closing(T0 + EPOCH)
        next(closing)  # the node stops here: A's digest issued, B's not
        closing.close()
    later = T0 + 10 * EPOCH
    with telemetry_node(tmp_path, key=key, clock=Clock(later), epoch_ms=EPOCH) as node:
        assert RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                                retention_days=EPOCH / DAY_MS).prune() == 0
        node.digester.close_due(later)
        assert sorted(verify_record(raw).body.agent for raw in digest_records(node, A) + digest_records(node, B)) \
            == sorted([A, B])


def test_a_clock_a_year_ahead_for_one_prune_deletes_no_event_within_retention(node, caplog):
    """Pruning is never undone: one hourly run while the clock was a year ahead (a bad NTP step, a VM resumed with a
    wrong time) pruned every digested event of the last 180 days, though none had aged."""
    node.clock.now = T0 + 365 * DAY_MS
    assert RetentionService(node.audit, node.idempotency, node.digester, node.metrics, retention_days=180).prune() == 0
    assert "clock over a day ahead of the time the node has seen" in caplog.text


def test_a_clock_step_ahead_is_taken_once_it_has_stayed_ahead_for_the_hold(node):
    """A real step (the node stopped for months, its clock right) delays the prune by a day, not for good."""
    service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics, retention_days=2)
    assert node.metrics.value("clock_held") == 0
    node.clock.now = T0 + 365 * DAY_MS
    for _ in range(23):
        assert service.prune() == 0  # the node's time, the log's latest plus under a day, is within retention
        assert node.metrics.value("clock_held") == 1  # for an operator to put the clock right
        node.clock.run(3_600_000)
    assert service.prune() == 0
    node.clock.run(3_600_000)
    assert service.prune() == node.audit.size - 1  # all but the open epoch's event, not yet digested
    assert node.metrics.value("clock_held") == 0


def test_a_clock_put_back_below_the_log_s_latest_time_prunes_no_event_within_retention(node):
    """A clock stepped 23 hours ahead (taken at once: under a day) for one batch, then put right before retention
    ran: the node's time stays at that batch's time, and retention pruned by it the digested events 23 hours before
    they expired by the clock."""
    service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics, retention_days=2)
    node.clock.run(2 * DAY_MS - 3_600_000)  # the digested epochs an hour within retention
    node.clock.now += 23 * 3_600_000
    submit(node, A)
    node.clock.now -= 23 * 3_600_000  # the operator put it right
    assert service.prune() == 0


def test_a_clock_that_runs_on_with_the_node_is_taken_however_long_no_event_comes(node):
    """The node's own passing of time counts: two days with no event, and the digested epochs are pruned the hour
    they expire, not a day late."""
    service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics, retention_days=2)
    for _ in range(48):
        assert service.prune() == 0
        node.clock.run(3_600_000)
    assert service.prune() == node.audit.size - 1


def test_a_clock_step_ahead_forgets_no_idempotency_key(node):
    """A retried batch after a wrong step must still be known: its key is not expired by the step."""
    batch = json.dumps({"events": [{"agent": A, "ts": node.clock.now, "category": "tool", "name": "n",
                                     "outcome": "ok"}]}).encode()
    node.ingestor.submit_json(batch, key="retried")
    size = node.audit.size
    right = node.clock.now
    node.clock.now = T0 + 365 * DAY_MS
    retention = RetentionService(node.audit, node.idempotency, node.digester, node.metrics, retention_days=180)
    retention.expire(retention.expiry_time())
    node.clock.now = right  # the operator put it right
    node.ingestor.submit_json(batch, key="retried")
    assert node.audit.size == size


async def test_a_clock_put_back_below_the_log_s_latest_time_forgets_no_idempotency_key(node):
    """A clock that ran two days ahead, was taken after the hold, then put right: the node's time stays at the log's
    latest acceptance time, two days ahead of the clock that dates keys, and retention forgot every key as it was
    used: a retried batch was appended twice."""
    service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics, retention_days=180)
    right = node.clock.now
    node.clock.now += 2 * DAY_MS
    node.audit.now()
    node.clock.run(DAY_MS)  # held a day, then taken
    submit(node, A)  # at the clock, three days after `right`
    node.clock.now = right + DAY_MS  # the operator put it right
    batch = json.dumps({"events": [{"agent": A, "ts": node.clock.now, "category": "tool", "name": "n",
                                     "outcome": "ok"}]}).encode()
    node.ingestor.submit_json(batch, key="retried")
    size = node.audit.size
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)  # its first prune and expiry
        nursery.cancel_scope.cancel()
    node.ingestor.submit_json(batch, key="retried")
    assert node.audit.size == size


def test_the_cli_exports_and_verifies(tmp_path, capsys):
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    key = load_org_key(made.data_dir / "org.key")
    with telemetry_node(made.data_dir, key=key, clock=Clock(T0), epoch_ms=EPOCH) as node:
        submit(node, A, count=3)
        node.digester.close_due(T0 + EPOCH)
        digest = digest_records(node, A)[0]
    (tmp_path / "digest.cose").write_bytes(digest)
    parser = argparse.ArgumentParser(prog="vouchnet")
    audit.register(parser.add_subparsers())
    out = tmp_path / "export.json"
    args = parser.parse_args(["audit", "export", "--dir", str(made.data_dir), "--agent", A,
                              "--from", "2023-11-14T22:14:00", "--to", str(T0 + 1), "--out", str(out)])
    assert args.func(args) == 0
    assert json.loads(out.read_text())["org"] == did_key(bytes(key.verify_key))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # raw telemetry: the user's alone whatever the umask
    org = did_key(bytes(key.verify_key))
    args = parser.parse_args(["audit", "verify", str(out), "--digest", str(tmp_path / "digest.cose"), "--org", org])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ok: 3 events") and "note:" not in captured.err
    bare = parser.parse_args(["audit", "verify", str(out)])  # no digest: nothing the org published checks its events
    assert bare.func(bare) == 0
    assert "note: 3 events in no epoch a --digest was given for" in capsys.readouterr().err
    # An export signed by any other key verifies as that org's: the output names it, and --org refuses it.
    other = parser.parse_args(["audit", "verify", str(out), "--org", new_did()])
    with pytest.raises(CommandFailed, match=f"an export of org {org}, not of"):
        other.func(other)
    args.org = None
    assert args.func(args) == 0 and capsys.readouterr().out.endswith(f"agent {A}, org {org}\n")
    out.write_text(out.read_text().replace('"len": 60000', '"len": 59999'))
    with pytest.raises(CommandFailed, match="does not verify"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["audit", "export", "--agent", A, "--from", "7d", "--to", "1"])


def test_the_cli_exports_after_a_key_rotation_and_verifies_the_digests_of_both_keys(tmp_path, capsys):
    """`vouchnet key rotate` with the node stopped, between two epochs: the export, signed by the new key, carries the
    records linking the keys, read from records.ledger, and the digest each key signed matches its epoch."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    digests = []
    for epoch in range(2):
        if epoch:
            assert cli.main(["key", "rotate", "--dir", str(made.data_dir)]) == 0
        key = load_org_key(made.data_dir / "org.key")
        with telemetry_node(made.data_dir, key=key, clock=Clock(T0 + epoch * EPOCH), epoch_ms=EPOCH) as node:
            submit(node, A, count=2)
            node.digester.close_due(T0 + (epoch + 1) * EPOCH)
            (digest,) = digest_records(node, A)
        digests.append(tmp_path / f"digest-{epoch}.cose")
        digests[-1].write_bytes(digest)
    old, new = (verify_record(path.read_bytes()).iss for path in digests)
    assert new == did_key(bytes(key.verify_key)) != old
    out = tmp_path / "export.json"
    assert cli.main(["audit", "export", "--dir", str(made.data_dir), "--agent", A, "--from", str(T0), "--to",
                     str(T0 + 2 * EPOCH), "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert (document["org"], len(document["rotation_chain"])) == (new, 2)
    capsys.readouterr()
    for org in (new, old):  # the org known by any of its keys
        argv = ["audit", "verify", str(out), "--org", org, *(f"--digest={path}" for path in digests)]
        assert cli.main(argv) == 0
        captured = capsys.readouterr()
        assert captured.out == (f"ok: 4 events in a log of 4 entries, 2 epoch roots recomputed, 2 digests matched; "
                                f"agent {A}, org {new}, rotated from {old}\n") and captured.err == ""
    del document["rotation_chain"]
    out.write_text(json.dumps(document))
    assert cli.main(["audit", "verify", str(out), f"--digest={digests[0]}"]) == 1
    assert f"signed by {old}, not by the org {new}" in capsys.readouterr().err


def test_an_export_killed_at_any_moment_of_its_write_leaves_the_one_before_whole(tmp_path, local_cli):
    """Before: --out was truncated, then written: killed between, the export left half a file where a whole one had
    been."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key"), clock=Clock(T0),
                        epoch_ms=EPOCH) as node:
        submit(node, A, count=3)
    out = tmp_path / "export.json"
    args = ["audit", "export", "--dir", str(made.data_dir), "--agent", A, "--from", str(T0 - 1), "--to",
            str(T0 + 1), "--out", str(out)]
    assert local_cli.run(args).returncode == 0
    whole = out.read_bytes()
    for point in itertools.count(1):
        killed = local_cli.run(args, kill_at=point)
        assert out.read_bytes() == whole, point
        if killed.returncode == 0:
            break
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert point > 1


@pytest.mark.parametrize(("content", "complaint"), [
    (None, "{path}: No such file or directory"),
    (b"\x97not text", "{path}: not a JSON export (not UTF-8 (byte 0))"),
    (b"{", "{path}: not a JSON export (Expecting property name"),
    # Read two ways by two JSON readers (Python's kept the last); nested beyond Python's parser (a traceback).
    (b'{"agent": "a", "agent": "b"}', "{path}: not a JSON export (member 'agent' given twice in one object"),
    (b"[" * 100_000 + b"]" * 100_000, "{path}: not a JSON export (arrays or objects nested too deep"),
])
def test_an_export_that_cannot_be_read_is_named(tmp_path, capsys, content, complaint):
    path = tmp_path / "export.json"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["audit", "verify", str(path)]) == 2
    assert capsys.readouterr().err.startswith("vouchnet audit verify: " + complaint.format(path=path))


@pytest.mark.parametrize("moment", ["7d", "tomorrow", "2026", "20260101", "1767225600", "17672256000000"])
def test_a_moment_export_cannot_read_says_what_it_takes(tmp_path, capsys, moment):
    """Never a duration: an export's bounds are moments, and the message offered `30d`, which is refused. Nor a bare
    number but 13 digits of ms: `--from 2026` was read as 2026 ms after 1970, not the year."""
    argv = ["audit", "export", "--dir", str(tmp_path), "--agent", A, "--from", moment, "--to", str(T0)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert (f"argument --from: expected a date (2026-12-31), a time (2026-12-31T12:00:00Z) or ms since the Unix "
            f"epoch, 13 digits (1767225600000), got '{moment}'") in err
    assert "duration" not in err


def test_an_export_bound_is_a_date_a_time_or_13_digits_of_ms():
    assert audit.instant("2026-01-01") == audit.instant("2026-01-01T00:00:00Z") == audit.instant("1767225600000")
    assert audit.instant("1767225600000") == 1767225600000


def test_a_records_ledger_copied_over_the_audit_log_is_refused_naming_it(tmp_path):
    """Both are ledgers, alike to the eye: the node's start ended in a traceback decoding a record as an event."""
    with RecordStore.open(tmp_path) as store:
        Replica(SigningKey.generate(), store, roots=(), max_hops=1, held_limit=10).issue(
            "vouch", vouch_body(new_did(), 0.5, "operator"))
    shutil.copyfile(tmp_path / LEDGER_FILE, tmp_path / AUDIT_FILE)
    before = (tmp_path / AUDIT_FILE).read_bytes()
    with pytest.raises(LedgerError, match=re.escape(f"{tmp_path / AUDIT_FILE}: not an audit log: its last entry is "
                                                    "not an event (entry: not deterministic CBOR")):
        AuditLog.open(tmp_path)
    assert (tmp_path / AUDIT_FILE).read_bytes() == before


@pytest.mark.parametrize(("damage", "complaint"), [
    (lambda d: _set_version(d / "digests.db", 2), "{d}/digests.db: a digest state file in format version 2, newer "
     "than this vouchnet reads (1)"),
    (lambda d: shutil.copyfile(d / LEDGER_FILE, d / AUDIT_FILE), "{d}/audit.ledger: not an audit log"),
    (lambda d: _append_entry_of_version(d / AUDIT_FILE, 3), "{d}/audit.ledger: an audit log in entry version 3, "
     "newer than this vouchnet reads (2): it was written by a later vouchnet; run that version"),
])
def test_an_export_refuses_a_data_file_of_a_later_format_or_another_kind_in_one_line(tmp_path, capsys, damage,
                                                                                     complaint):
    """The digest state of a later vouchnet was read as this one's; a records ledger as the audit log ended in a
    traceback."""
    made = init_data_dir(tmp_path, network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key"), clock=Clock(T0),
                        epoch_ms=EPOCH) as node:
        submit(node, A, count=1)
        node.digester.close_due(T0 + EPOCH)
    damage(tmp_path)
    argv = ["audit", "export", "--dir", str(tmp_path), "--agent", A, "--from", str(T0 - 1), "--to", str(T0 + 1)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("vouchnet audit export: " + complaint.format(d=tmp_path)) and "Traceback" not in err


def _append_entry_of_version(path, version: int) -> None:
    entry = cbor2.loads(encode_entry(Event(A, T0, "tool", "n", "ok"), T0 + EPOCH, bytes(SALT_SIZE)))
    with Ledger.open(path) as ledger:
        ledger.append([cbor2.dumps({**entry, "v": version}, canonical=True)])


def _set_version(path, version: int) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {version}")
    db.close()


def _files(data_dir, stores):
    """The bytes and modification time of each file of `stores` (their write-ahead logs too; not SQLite's -shm index
    of one, which readers mark)."""
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(data_dir.iterdir())
            if path.name.startswith(stores) and not path.name.endswith("-shm")}


def _crashed_after_three_epochs(tmp_path):
    """The image of a data directory (its API on a fixed port, as `agent new` needs) as a kill -9 of its node after
    three_epochs leaves it."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:8700")
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key"), clock=Clock(T0),
                        epoch_ms=EPOCH) as node:
        three_epochs(node)
        crash_image(made.data_dir, tmp_path / "image")
    return tmp_path / "image"


def test_an_export_after_a_crash_leaves_the_audit_log_as_the_crash_left_it(tmp_path, capsys):
    """An auditor's export of a data directory a kill -9 left, before the node starts again: it opened audit.ledger
    to be written, and closing it moved the write-ahead log the crash left into the file and deleted it."""
    image = _crashed_after_three_epochs(tmp_path)
    before = _files(image, (AUDIT_FILE, DIGESTS_FILE))
    assert before[AUDIT_FILE + "-wal"][0]  # the log's last commits are in it
    argv = ["audit", "export", "--dir", str(image), "--agent", A, "--from", str(T0), "--to", str(T0 + 3 * EPOCH),
            "--out", str(tmp_path / "export.json")]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert len(json.loads((tmp_path / "export.json").read_text())["entries"]) == 9
    assert _files(image, (AUDIT_FILE, DIGESTS_FILE)) == before


@pytest.mark.parametrize("command", [["audit", "export", "--agent", A, "--from", str(T0), "--to", str(T0 + 1)],
                                     ["agent", "new", "--name", "alice"]])
def test_a_signing_command_after_a_crash_leaves_the_records_as_the_crash_left_them(tmp_path, capsys, command):
    """`audit export` and `agent new` check that no rotation is unfinished (node.rotation.retired_to) before they
    sign: that check opened records.ledger to be written, and closing it rewrote the ledger, its index and their
    write-ahead logs, which the node's next start is to recover from as the crash left them."""
    image = _crashed_after_three_epochs(tmp_path)
    before = _files(image, (LEDGER_FILE, INDEX_FILE))
    assert before[LEDGER_FILE + "-wal"][0] and before[INDEX_FILE + "-wal"][0]  # its last commits are in them
    assert cli.main([*command, "--out", str(tmp_path / "out"), "--dir", str(image)]) == 0, capsys.readouterr().err
    assert _files(image, (LEDGER_FILE, INDEX_FILE)) == before


async def test_an_export_beside_the_running_node_changes_none_of_its_files(tmp_path, local_cli):
    agent, out = new_did(), tmp_path / "export.json"
    export = ["audit", "export", "--agent", agent, "--from", "2026-01-01", "--to", "2100-01-01", "--out", str(out),
              "--dir", str(tmp_path / "node")]
    async with running(tmp_path / "node") as node, httpx.AsyncClient(
        base_url=node.api_url, headers={"Authorization": f"Bearer {node.token}"}, timeout=30
    ) as api:
        event = {"agent": agent, "ts": int(time.time() * 1000), "category": "tool", "name": "x", "outcome": "ok"}
        assert (await api.post("/v1/events", json={"events": [event]})).json()["accepted"] == 1
        before = _files(node.config.data_dir, (AUDIT_FILE,))
        exported = await trio.to_thread.run_sync(local_cli.run, export)
        assert exported.returncode == 0, exported.stderr
        assert [entry["event"]["name"] for entry in json.loads(out.read_text())["entries"]] == ["x"]
        assert _files(node.config.data_dir, (AUDIT_FILE,)) == before
        assert (await api.post("/v1/events", json={"events": [event]})).json()["accepted"] == 1
    assert (await trio.to_thread.run_sync(local_cli.run, export)).returncode == 0
    assert len(json.loads(out.read_text())["entries"]) == 2


def test_an_export_of_a_node_never_started_is_refused_making_no_audit_log(tmp_path, capsys):
    """It made an empty audit.ledger in the data directory, and exported it, signed."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    argv = ["audit", "export", "--dir", str(made.data_dir), "--agent", A, "--from", str(T0), "--to", str(T0 + 1)]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err == (f"vouchnet audit export: {made.data_dir / AUDIT_FILE}: no such file: the node "
                                       f"has not started yet (or is {made.data_dir} not its data directory?)\n")
    assert not (made.data_dir / AUDIT_FILE).exists()
