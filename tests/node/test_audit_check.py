"""`vouchnet audit check`: the whole audit log re-checked after a crash or a disk incident, each kind of damage named
where it is, and an intact log (pruned by retention, or beside the running node) passing; a torn last write, which
the next start mends; and an entry that no longer decodes, named where the node and `audit export` read it."""

import dataclasses
import json
import re
import shutil
import sqlite3
import weakref

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st

import node.trust as node_trust
from gossip.store import RecordReader
from ledger import Ledger
from node import cli
from node.audit_check import check_audit_log
from node.audit_log import AUDIT_FILE, AuditLog, DamagedEntry
from node.config import load_config
from node.daemon import StartupError, serve_node
from node.digests import DigestService, DigestState, Tally
from node.events import SALT_SIZE, Event, InvalidEvent, decode_salted_entry, encode_entry
from node.keys import load_org_key
from node.retention import DAY_MS, RetentionService
from node.setup import init_data_dir
from vouching import Counts, did_key, verify_record

from ..factories import new_did
from .telemetry_node import Clock, crash_image, telemetry_node
from .test_audit import A, B, EPOCH, T0, digest_records, submit, three_epochs
from .test_digests import first_hand, replayed, restored_mid_issue, running


@pytest.fixture
def data_dir(tmp_path):
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key"), clock=Clock(T0),
                        epoch_ms=EPOCH) as node:
        three_epochs(node)
    return made.data_dir


def check(data_dir, capsys):
    """The exit code of `vouchnet audit check`, and what it printed on stdout and stderr."""
    code = cli.main(["audit", "check", "--dir", str(data_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def entries_of(data_dir):
    with Ledger.open(data_dir / AUDIT_FILE, read_only=True) as ledger:
        return ledger.entries(0, ledger.size)


def rebuilt(data_dir, entries):
    """The audit log written anew holding `entries`: its stored hashes are theirs (a log that lost or gained entries
    whole, not one whose bytes were damaged under its hashes)."""
    for suffix in ("", "-wal", "-shm"):
        (data_dir / (AUDIT_FILE + suffix)).unlink(missing_ok=True)
    with Ledger.open(data_dir / AUDIT_FILE) as ledger:
        ledger.append(entries)


def test_an_intact_log_passes_saying_what_was_checked(data_dir, capsys):
    code, out, err = check(data_dir, capsys)
    assert code == 0, err
    assert out.startswith("ok: 13 entries re-hashed and decoded, in time order; the 23 hashes the log stores match "
                          "its tree; 3 digested epochs and 6 digests of the org match their entries\n")
    assert "checked 13/13 entries" in err  # progress


def damage(data_dir, index, offset):
    """Flip the lowest bit of byte `offset` of entry `index` where audit.ledger stores it, under its stored hash."""
    entry = entries_of(data_dir)[index]
    overwrite(data_dir, index, entry[:offset] + bytes([entry[offset] ^ 1]) + entry[offset + 1:])


def overwrite(data_dir, index, changed):
    """Write `changed`, as long as entry `index`, over it where audit.ledger stores it, under its stored hash."""
    entry = entries_of(data_dir)[index]
    assert len(changed) == len(entry)
    db = sqlite3.connect(data_dir / AUDIT_FILE)
    (first, data), = db.execute("SELECT first, data FROM entries WHERE first <= ? ORDER BY first DESC LIMIT 1",
                                (index,))
    at = data.index(entry)
    with db:
        db.execute("UPDATE entries SET data = ? WHERE first = ?", (data[:at] + changed + data[at + len(entry):], first))
    db.close()


def test_a_flipped_byte_in_an_entry_is_named_with_the_digest_it_breaks(data_dir, capsys):
    entry = entries_of(data_dir)[5]  # A's `denied` of the second epoch
    damage(data_dir, 5, entry.index(decode_salted_entry(entry)[2]))  # in its salt: it still decodes
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert "entry 5: its bytes do not hash to the leaf hash the ledger stores for it" in err
    assert f"of {A} for the epoch [{T0 + EPOCH}, {T0 + 2 * EPOCH}): its evidence_root is not the hash of the log's 3 " \
           "entries of the agent in that epoch (4, 5, 7)" in err
    assert "restore audit.ledger and digests.db from one copy" in err


def test_a_lost_tail_is_named_by_digests_db_and_the_digests_of_its_epochs(data_dir, capsys):
    """The log as it stood after the first epoch (a write-ahead log lost with what it held, say): sound in itself."""
    rebuilt(data_dir, entries_of(data_dir)[:4])
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert f"digests.db: the epoch [{T0 + EPOCH}, {T0 + 2 * EPOCH}) digested entries 4 to 7, but the log ends at " \
           "entry 3: it lost entries it held" in err
    assert f"of {B} for the epoch [{T0 + 2 * EPOCH}, {T0 + 3 * EPOCH}): the log holds none of the agent's entries " \
           "in that epoch: they were lost" in err
    assert ": 6 problems:" in err  # two epochs' rows and four digests


def test_a_truncated_file_is_named(data_dir, capsys):
    path = data_dir / AUDIT_FILE
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert err.startswith(f"vouchnet audit check: {path}: ") and "restore audit.ledger" in err
    assert "Traceback" not in err


def test_a_missing_entry_is_named_by_the_epoch_and_the_digest_it_belonged_to(data_dir, capsys):
    entries = entries_of(data_dir)
    rebuilt(data_dir, entries[:7] + entries[8:])  # A's `denied` of the second epoch left out
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert f"of {A} for the epoch [{T0 + EPOCH}, {T0 + 2 * EPOCH}): its evidence_root is not the hash of the log's 2 " \
           "entries of the agent in that epoch (4, 5)" in err
    assert f"entry 7: accepted at {T0 + 2 * EPOCH}, in the epoch [{T0 + 2 * EPOCH}, {T0 + 3 * EPOCH}), which " \
           f"digests.db digested as entries 8 to 11, without it; and outside the epoch [{T0 + EPOCH}, " \
           f"{T0 + 2 * EPOCH}) digests.db digested it in (entries 4 to 7)" in err


def test_an_entry_changed_under_rebuilt_hashes_is_named_by_the_org_s_signed_digest(data_dir, capsys):
    """The log's own hashes agree with its entries: only what the org signed shows one was changed."""
    entries = entries_of(data_dir)
    at, event, salt = decode_salted_entry(entries[2])  # B's `error` of the first epoch, said to be ok
    entries[2] = encode_entry(dataclasses.replace(event, outcome="ok"), at, salt)
    rebuilt(data_dir, entries)
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert f"of {B} for the epoch [{T0}, {T0 + EPOCH}): its evidence_root is not the hash of the log's 1 entry of " \
           "the agent in that epoch (2)" in err
    assert ": 1 problem:" in err


def test_a_damaged_stored_hash_is_named_by_its_level_and_index(data_dir, capsys):
    with Ledger.open(data_dir / AUDIT_FILE, to_repair=True) as ledger, ledger.rewriting():
        ledger.replace_stored_hashes(1, {2: bytes(32)})
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert "the stored hash at level 1 index 2 (over entries 4 to 5) is not the hash of the entries below it" in err
    assert ": 1 problem:" in err


def test_damaged_stored_hashes_past_the_first_20_are_counted(data_dir, capsys):
    """The check names the first 20 problems and counts the rest: 22 stored hashes of 23 damaged (every complete
    subtree's but the one over entries 0 to 7) are 22 problems, 2 of them unnamed."""
    with Ledger.open(data_dir / AUDIT_FILE, to_repair=True) as ledger, ledger.rewriting():
        for level, count in ((0, 13), (1, 6), (2, 3)):
            ledger.replace_stored_hashes(level, dict.fromkeys(range(count), bytes(32)))
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert ": 22 problems:" in err and "  and 2 more\n" in err
    assert err.count("is not the hash of the entries below it") + err.count("do not hash to the leaf hash") == 20


def test_a_log_pruned_by_retention_passes_beside_its_running_node(tmp_path, capsys):
    """Pruned entries keep only their hashes, checked against the tree; their epoch's digests are counted unchecked.
    The node holds the log open and appends to it meanwhile: the check only reads."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key"), clock=Clock(T0),
                        epoch_ms=EPOCH) as node:
        three_epochs(node)
        node.clock.now = T0 + 3 * EPOCH + 40_000
        RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                         retention_days=2.5 * EPOCH / DAY_MS).prune()
        assert node.audit.ledger.pruned == 4
        code, out, err = check(made.data_dir, capsys)
        assert code == 0, err
        assert out == ("ok: 9 entries re-hashed and decoded, in time order; the 23 hashes the log stores match its "
                       "tree; 3 digested epochs and 4 digests of the org match their entries\n"
                       "4 entries pruned by retention keep only their hashes, checked against the tree; 2 digests of "
                       "their epochs not checked\n")


def test_an_entry_added_to_a_digested_epoch_is_named(data_dir, capsys):
    """An event of an agent the org never digested, slipped into the first epoch with the log's hashes rebuilt."""
    entries = entries_of(data_dir)
    at, event, salt = decode_salted_entry(entries[3])
    intruder = new_did()
    rebuilt(data_dir, [*entries[:4], encode_entry(dataclasses.replace(event, agent=intruder), at, salt), *entries[4:]])
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert f"entries 4 of {intruder}, in the epoch [{T0}, {T0 + EPOCH}): the org signed no digest of them, though " \
           "digests.db says all its digests were issued" in err
    assert f"entry 4: accepted at {at}, in the epoch [{T0}, {T0 + EPOCH}), which digests.db digested as entries 0 " \
           f"to 3, without it; and outside the epoch [{T0 + EPOCH}, {T0 + 2 * EPOCH}) digests.db digested it in " \
           "(entries 4 to 7)" in err


@pytest.mark.parametrize("tear", ["cut", "garbled"])
def test_a_torn_last_write_loses_only_the_batch_it_never_answered(data_dir, tmp_path, capsys, tear):
    """A kill -9 or a power cut as the audit log's last batch reaches the disk, its write-ahead log's last frames
    cut short or garbled: the next start has every batch answered before it, the torn one is gone whole, and its
    idempotency key, reserved before the append, does not answer its retry as stored: the retry is appended once."""
    batch = json.dumps({"events": [{"agent": A, "ts": T0 + 3 * EPOCH, "category": "tool", "name": "n",
                                     "outcome": "error"}] * 3}).encode()
    with telemetry_node(data_dir, key=load_org_key(data_dir / "org.key"), clock=Clock(T0 + 3 * EPOCH),
                        epoch_ms=EPOCH) as node:
        size = node.audit.size
        wal = data_dir / (AUDIT_FILE + "-wal")
        before = wal.stat().st_size
        assert node.ingestor.submit_json(batch, key="torn").status == 200
        crash_image(data_dir, tmp_path / "image")
    image = tmp_path / "image"
    torn = bytearray((image / wal.name).read_bytes())
    assert len(torn) > before  # the batch's frames are in the log, not yet checkpointed into the file
    if tear == "cut":
        del torn[(before + len(torn)) // 2:]
    else:
        torn[-100:] = bytes(b ^ 0xFF for b in torn[-100:])
    (image / wal.name).write_bytes(torn)
    reserved = sqlite3.connect(image / "idempotency.db")
    assert reserved.execute("SELECT first, count FROM keys WHERE key = 'torn'").fetchall() == [(size, 3)]
    reserved.close()
    with telemetry_node(image, key=load_org_key(image / "org.key"), clock=Clock(T0 + 3 * EPOCH + 1),
                        epoch_ms=EPOCH) as node:
        assert node.audit.size == size
        reply = node.ingestor.submit_json(batch, key="torn")
        assert (reply.status, reply.replayed, node.audit.size) == (200, False, size + 3)
        assert node.ingestor.submit_json(batch, key="torn").replayed
        assert node.audit.size == size + 3
    code, out, err = check(image, capsys)
    assert code == 0, err


def test_an_entry_that_no_longer_decodes_is_named_by_an_export_reading_it(data_dir, capsys):
    """It ended the export in a traceback out of the CBOR decoder."""
    damage(data_dir, 1, 0)  # its first byte: no longer a CBOR map
    argv = ["audit", "export", "--dir", str(data_dir), "--agent", A, "--from", str(T0), "--to", str(T0 + EPOCH)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("vouchnet audit export: audit.ledger: entry 1: not an audit entry (entry: not deterministic "
                          "CBOR") and "`vouchnet audit check` names every damaged entry" in err
    assert "Traceback" not in err
    code, _, err = check(data_dir, capsys)
    assert code == 1 and "entry 1: not an audit entry" in err


def test_an_entry_damaged_at_the_end_of_an_export_s_range_is_read_and_named(data_dir, capsys):
    """The last entry of the range's epoch, whose time cannot be read: the range's search reads on past it to the
    next intact entry, so it is read as the range's, and refused, not left out of the export without a word (its
    epoch's digest would then fail at the auditor's)."""
    damage(data_dir, 3, 0)  # the first epoch's last entry
    argv = ["audit", "export", "--dir", str(data_dir), "--agent", A, "--from", str(T0), "--to", str(T0 + EPOCH)]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.startswith("vouchnet audit export: audit.ledger: entry 3: not an audit entry")


async def test_an_entry_that_no_longer_decodes_stops_the_start_naming_it(tmp_path):
    """An entry of the epoch still open, which the start reads to rebuild its tallies: the start ended in a
    traceback out of the CBOR decoder."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key"), clock=Clock(T0),
                        epoch_ms=EPOCH) as node:
        submit(node, A, count=2)
        submit(node, B)
    damage(made.data_dir, 0, 0)
    with pytest.raises(StartupError, match=re.escape("telemetry: audit.ledger: entry 0: not an audit entry (entry: "
                                                     "not deterministic CBOR")):
        await serve_node(load_config(made.data_dir))


async def test_a_damaged_entry_retention_reads_is_named_counted_and_not_pruned_past(data_dir, caplog):
    """Retention searches the log by acceptance time for what has expired: meeting an entry that no longer decodes,
    its service ended, and the node with it, with a traceback (then, refusing the prune, it left the log unpruned).
    The search goes on below it: what expired before it is pruned, it stays, and it is counted, as an ERROR line an
    hour is easily missed. Only the entry it stops at is: 6, read first, is not expired, and was counted too."""
    damage(data_dir, 6, 0)  # the first entry the search reads, in the log of 13
    damage(data_dir, 4, 0)  # the second epoch's first, after the expired: whether it expired cannot be told
    with telemetry_node(data_dir, key=load_org_key(data_dir / "org.key"), clock=Clock(T0 + 3 * EPOCH + 40_000),
                        epoch_ms=EPOCH) as node:
        service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                                   retention_days=2.5 * EPOCH / DAY_MS)  # the first epoch, entries 0 to 3, expired
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            nursery.cancel_scope.cancel()
        assert node.audit.ledger.pruned == 4
        assert node.metrics.value("audit_damaged_reads_total") == 1  # for an operator's alert, not only a log
        submit(node, A)
        assert node.audit.size == 14  # events are still taken
    (record,) = [r for r in caplog.records if r.name == "node.retention"]
    assert record.levelname == "ERROR" and record.getMessage().startswith(
        "audit log pruned no further than a damaged entry: audit.ledger: entry 4: not an audit entry")


async def test_damaged_entries_between_expired_ones_are_pruned_past_without_a_word(data_dir, caplog):
    """The search read damaged entries 5 to 9 between expired ones and pruned past them, yet logged each as the
    entry the prune went no further than, and counted it (vouchnet_audit_damaged_reads_total), each hour."""
    for index in range(5, 10):
        damage(data_dir, index, 0)
    with telemetry_node(data_dir, key=load_org_key(data_dir / "org.key"), clock=Clock(T0 + 3 * EPOCH + 40_000),
                        epoch_ms=EPOCH) as node:
        service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                                   retention_days=1 / DAY_MS)  # all three epochs expired; entry 12 not digested
        assert service.prune() == 12
        assert node.metrics.value("audit_damaged_reads_total") == 0
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


def test_a_damaged_entry_past_the_first_not_yet_digested_is_not_said_to_stop_the_prune(tmp_path, caplog):
    """The prune stops at the first entry not yet digested, before the damaged one: saying the damaged entry stopped it
    would send the operator to the wrong cause."""
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=Clock(T0), epoch_ms=EPOCH) as node:
        submit(node, A, count=2)  # entries 0 and 1, expired, none digested
        node.clock.now = T0 + EPOCH
        submit(node, A, count=2)  # 2 and 3
        damage(tmp_path / "node", 1, 0)  # where the expired ones end
        node.clock.now = T0 + EPOCH + 1_000
        service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                                   retention_days=1 / DAY_MS)
        assert service.prune() == 0
        assert node.metrics.value("audit_damaged_reads_total") == 0
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


def test_an_entry_whose_time_changed_but_still_decodes_does_not_move_retention_s_prune(tmp_path, caplog):
    """The search by acceptance time read each entry's time unchecked: the last entry of the second epoch, its time
    changed on disk to the first epoch's (a flipped bit: it still decodes), made the whole second epoch look expired,
    and retention pruned it, raw events kept for less than `retention_days`, for good."""
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=Clock(T0), epoch_ms=EPOCH) as node:
        for step, count in enumerate((3, 4, 6)):  # entries 0-2, 3-6 and 7-12: the search reads 6 first
            submit(node, A, count=count)
            node.clock.now = T0 + (step + 1) * EPOCH
            node.digester.close_due(node.clock.now)
        _, event, salt = decode_salted_entry(entries_of(tmp_path / "node")[6])
        overwrite(tmp_path / "node", 6, encode_entry(event, T0, salt))
        node.clock.now = T0 + 3 * EPOCH + 40_000
        service = RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                                   retention_days=2.5 * EPOCH / DAY_MS)  # the first epoch expired, not the second
        assert service.prune() == 3


def test_entries_whose_row_is_lost_are_named_and_the_rest_is_checked(data_dir, capsys):
    """Their stored leaf hashes stand in for them, so the tree and every other entry are still checked: the first
    unreadable page ended the check, and the digests after it were all said to have lost their entries. The stored
    hash of the last entry, damaged too, is named: the tree is checked to its end."""
    with Ledger.open(data_dir / AUDIT_FILE, to_repair=True) as ledger, ledger.rewriting():
        ledger.replace_stored_hashes(0, {12: bytes(32)})
    db = sqlite3.connect(data_dir / AUDIT_FILE)
    (first, ends), = db.execute("SELECT first, ends FROM entries WHERE first <= 5 ORDER BY first DESC LIMIT 1")
    with db:
        db.execute("DELETE FROM entries WHERE first = ?", (first,))
    db.close()
    lost = list(range(first, first + len(ends) // 4))
    assert 5 in lost and 12 not in lost
    with Ledger.open(data_dir / AUDIT_FILE, to_repair=True) as ledger, ledger.rewriting():
        ledger.replace_stored_hashes(0, {12: bytes(32)})  # past them: found all the same
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert all(f"  entry {index}: cannot be read (" in err for index in lost)
    assert "  entry 12: its bytes do not hash to the leaf hash the ledger stores for it" in err
    assert f": {len(lost) + 2} problems:" in err  # and A's digest of the second epoch, whose entry 5 is unread
    assert f"of {A} for the epoch [{T0 + EPOCH}, {T0 + 2 * EPOCH}): its evidence_root is not the hash" in err


async def test_a_damaged_last_entry_stops_the_start_naming_audit_check(data_dir):
    """The start checks the last entry against its stored hash: it said the entry was corrupt, and nothing of what
    to do."""
    damage(data_dir, 12, entries_of(data_dir)[12].index(decode_salted_entry(entries_of(data_dir)[12])[2]))
    with pytest.raises(StartupError, match=re.escape(
            f"telemetry: {data_dir / AUDIT_FILE}: corrupt: entry 12 does not match its stored leaf hash: `vouchnet "
            f"audit check --dir {data_dir}` names every damaged entry and stored hash")):
        await serve_node(load_config(data_dir))


@pytest.mark.parametrize("where", ["its first byte", "its salt"])
async def test_a_damaged_entry_in_an_interrupted_epoch_abandons_it_as_the_node_starts(data_dir, caplog, where):
    """An epoch whose digests a stop cut short is read back by the start, for the trust replay and to finish it: an
    entry of it damaged on disk stopped the start (StartupError naming it), every start, where a running node meeting
    it abandons the epoch and runs on. The start does the same now: one ERROR line naming the entry, counted once,
    digests.db marking the epoch abandoned; the next start does not try it again."""
    db = sqlite3.connect(data_dir / "digests.db")
    with db:
        db.execute("UPDATE epochs SET done = 0 WHERE start = ?", (T0 + 2 * EPOCH,))  # entries 8 to 11
    db.close()
    entry = entries_of(data_dir)[9]
    damage(data_dir, 9, 0 if where == "its first byte" else entry.index(decode_salted_entry(entry)[2]))
    for damaged_reads in (1, 0):  # the start that meets it, and the next
        async with trio.open_nursery() as nursery:
            node = await nursery.start(serve_node, load_config(data_dir))
            state = node.telemetry.digester.state
            assert state.unfinished() is None and [done for *_, done in state.epochs()] == [True, True, False]
            assert node.metrics.value("audit_damaged_reads_total") == damaged_reads
            nursery.cancel_scope.cancel()
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.exc_info is None and record.getMessage().startswith(
        "the digests an interrupted epoch lacked are not issued, and never will be: audit.ledger: entry 9: " +
        ("not an audit entry" if where == "its first byte" else "its bytes do not hash to the leaf hash"))


def test_a_digested_epoch_with_none_of_its_digests_signed_is_named(data_dir):
    """digests.db says all the third epoch's digests were issued, and the org's records hold none of them (restored
    from a copy older than digests.db, say): an epoch that lacked one agent's digest was named, but not one that
    lacked them all."""
    state = DigestState.open_readonly(data_dir)
    epochs = state.epochs()
    state.close()
    org = did_key(bytes(load_org_key(data_dir / "org.key").verify_key))
    with RecordReader.open(data_dir) as records:
        digests = [r for r in records.scan(issuer=org, kind="digest") if r.body.epoch != T0 + 2 * EPOCH]
    with Ledger.open(data_dir / AUDIT_FILE, read_only=True) as ledger:
        checked = check_audit_log(ledger, epochs, digests)
    epoch = f"in the epoch [{T0 + 2 * EPOCH}, {T0 + 3 * EPOCH}): the org signed no digest of them, though digests.db " \
            "says all its digests were issued"
    assert sorted(checked.problems.named) == sorted([f"entries 8, 9, 11 of {A}, {epoch}",
                                                     f"entries 10 of {B}, {epoch}"])
    assert (checked.problems.count, checked.digests) == (2, 4)


def test_a_digest_whose_counts_differ_from_its_entries_is_named_though_its_evidence_root_matches(data_dir, capsys):
    """A digest of the org's saying A's `denied` of the second epoch was ok, over the entries as they are: only the
    counts show it (without DP noise, which would hide them)."""
    key = load_org_key(data_dir / "org.key")
    with telemetry_node(data_dir, key=key, clock=Clock(T0 + 3 * EPOCH), epoch_ms=EPOCH) as node:
        (honest,) = [body for raw in digest_records(node, A) if (body := verify_record(raw).body).epoch == T0 + EPOCH]
        assert dict(honest.outcomes) == {"ok": 2, "error": 0, "denied": 1, "timeout": 0}
        (forged,) = node.replica.issue_digests([dataclasses.replace(
            honest, outcomes=Counts((("ok", 3), ("error", 0), ("denied", 0), ("timeout", 0))))], ts=T0 + 3 * EPOCH)
    code, _, err = check(data_dir, capsys)
    assert code == 1
    assert f"{data_dir / AUDIT_FILE}: 1 problem:\n  digest {forged.id.hex()} of {A} for the epoch [{T0 + EPOCH}, " \
           f"{T0 + 2 * EPOCH}): its counts differ from those of the log's entries (4, 5, 7)\n" in err


def test_an_epoch_whose_digests_a_stop_cut_short_passes(tmp_path, capsys, monkeypatch):
    """A node stopped between two chunks of an epoch's digests, one agent's issued and not the other's, which its
    next start issues: the check, run before that start, names no agent as lacking a digest."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key"), clock=Clock(T0),
                        epoch_ms=EPOCH) as node:
        submit(node, A, count=2)
        submit(node, B)
        closing = node.digester.closing(T0 + EPOCH)
        assert len(next(closing)) == 1
        closing.close()  # the stop
        assert node.digester.state.unfinished() is not None
    code, out, err = check(made.data_dir, capsys)
    assert code == 0, err
    assert out == ("ok: 3 entries re-hashed and decoded, in time order; the 4 hashes the log stores match its tree; "
                   "1 digested epoch and 1 digest of the org match their entries\n")


def test_a_prune_by_the_node_as_the_check_reads_asks_for_the_check_again(tmp_path, capsys, monkeypatch):
    """Retention beside the check prunes entries it has yet to read: not damage, nor a traceback."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    with telemetry_node(made.data_dir, key=load_org_key(made.data_dir / "org.key"), clock=Clock(T0),
                        epoch_ms=EPOCH) as node:
        three_epochs(node)
        node.clock.now = T0 + 3 * EPOCH + 40_000
        retention = RetentionService(node.audit, node.idempotency, node.digester, node.metrics,
                                     retention_days=1.5 * EPOCH / DAY_MS)
        monkeypatch.setattr("node.audit_check.PAGE", 4)
        monkeypatch.setattr("node.commands.audit.StderrProgress", lambda: lambda done, size: retention.prune())
        code, _, err = check(made.data_dir, capsys)
        assert node.audit.ledger.pruned == 8  # the first two epochs, pruned as the first page was read
    assert code == 1
    assert err == (f"vouchnet audit check: {made.data_dir / AUDIT_FILE}: the node pruned entries by retention as they "
                   "were read: run it again\n")


@pytest.mark.parametrize("where", ["its first byte", "its salt"])
async def test_an_entry_damaged_as_the_node_runs_leaves_its_interrupted_epoch_unsigned_and_the_next_digested(
        tmp_path, monkeypatch, caplog, where):
    """The node's epoch whose digests a failed write cut short (one agent's issued, not the other's) is read back from
    audit.ledger to finish it, after the other's entry was damaged on disk (the node holding the file open). Its
    first byte: the closing raised, and each minute again, so that no later epoch was ever digested. Its salt: the
    entry still decoded, and the other's digest was signed over bytes that were not the event's. No digest of that
    epoch is signed now, the next epoch's are, and the node says so, counts it, and a restart does not try again."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    issued, cut = sorted([A, B])  # (the order digests are issued in)
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    data_dir, key = made.data_dir, load_org_key(made.data_dir / "org.key")
    with telemetry_node(data_dir, key=key, clock=Clock(T0), epoch_ms=EPOCH) as node:
        submit(node, issued, count=2)
        submit(node, cut)  # entry 2
        closing = node.digester.closing(T0 + EPOCH)
        assert len(next(closing)) == 1
        closing.close()  # the second chunk cut short (as by a write the disk refused)
        entry = entries_of(data_dir)[2]
        damage(data_dir, 2, 0 if where == "its first byte" else entry.index(decode_salted_entry(entry)[2]))
        node.clock.now = T0 + EPOCH + 1
        submit(node, issued, "denied")
        node.clock.now = T0 + 2 * EPOCH
        async with trio.open_nursery() as nursery:
            await nursery.start(DigestService(node.digester, trio.Lock(), clock=node.clock).run)
            nursery.cancel_scope.cancel()
        assert sorted(verify_record(raw).body.epoch for raw in digest_records(node, issued)) == [T0, T0 + EPOCH]
        assert digest_records(node, cut) == []
        assert (node.metrics.value("audit_damaged_reads_total"), node.metrics.value("digest_failures_total")) == (1, 0)
        assert node.digester.state.unfinished() is None
        assert [done for *_, done in node.digester.state.epochs()] == [False, True]  # (not: all its digests issued)
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage().startswith("the digests an interrupted epoch lacked are not issued, and never will be: "
                                          "audit.ledger: entry 2: ")
    with telemetry_node(data_dir, key=key, clock=Clock(T0 + 2 * EPOCH + 1), epoch_ms=EPOCH) as node:
        assert node.digester.close_due(T0 + 3 * EPOCH) == [] and digest_records(node, cut) == []


TIMES = (0, 0, 1, 1, 1, 2, 3, 3, 5, 8, 8, 8, 8, 9, 13, 13, 20, 21, 21, 34)  # acceptance times along a log


@pytest.fixture(scope="module")
def times_log(tmp_path_factory):
    """An audit log whose entries were accepted at TIMES."""
    with Ledger.open(tmp_path_factory.mktemp("times") / AUDIT_FILE) as ledger:
        ledger.append([encode_entry(Event(A, 1, "tool", "n", "ok"), at, bytes(SALT_SIZE)) for at in TIMES])
        yield ledger


class _DamagedAt(AuditLog):
    """An audit log whose entries `damaged` read as damaged (AuditLog.at), as bytes changed on disk do."""

    def __init__(self, ledger, damaged):
        super().__init__(ledger)
        self.damaged = damaged

    def at(self, index):
        if index in self.damaged:
            raise DamagedEntry(f"entry {index}", index=index)
        return super().at(index)


@given(damaged=st.frozensets(st.integers(0, len(TIMES) - 1)), at=st.integers(-1, 35))
@example(damaged=frozenset(range(10, 19)), at=35)  # a run the search meets twice unless it reads on past it once
def test_the_search_by_time_reads_past_damaged_entries_to_the_intact_ones_about_the_time(times_log, damaged, at):
    """Retention's prune boundary and an export's range: the search read each entry's time unchecked (one changed on
    disk moved the boundary), or, checked, failed at the first damaged entry it met. Now it answers from the intact
    entries: those before its first bound were accepted before `at`, those from its second on at or after it, and
    those between are damaged; each damaged entry it read is given once."""
    met = []
    first, last = _DamagedAt(times_log, damaged).boundary(at, lambda error: met.append(str(error)))
    intact = [index for index in range(len(TIMES)) if index not in damaged]
    assert first == 1 + max((i for i in intact if TIMES[i] < at), default=-1)
    assert last == min((i for i in intact if TIMES[i] >= at), default=len(TIMES))
    assert len(met) == len(set(met)) and set(met) <= {f"entry {index}" for index in damaged}
    assert set(range(first, last)) <= damaged


def damage_salt(data_dir, index):
    entry = entries_of(data_dir)[index]
    damage(data_dir, index, entry.index(decode_salted_entry(entry)[2]))


def test_an_interrupted_epoch_s_entry_damaged_as_its_digests_come_back_abandons_it_once(tmp_path, monkeypatch, caplog):
    """A node restored from a copy taken mid-issue takes back, in its start-up sync, the digests it signed after the
    copy; whether each counts asks which agents the interrupted epoch holds, as the start read them, before an entry
    was damaged: each batch read them back from audit.ledger, raising out of the listener, logged with a traceback
    and counted in listener_errors, until the first closing. The closing abandons the epoch (one ERROR line, counted
    once, digests.db says so) and no digest of it coming back counts: the trust engine holds its entries, as the
    start's replay read them; the next start's replay reads the digests instead."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    agents = sorted([A, B, new_did()])  # (the order digests are issued in)
    backup, key, issued, original = restored_mid_issue(tmp_path, agents)
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH) as node:
        live = running(node)
        damage_salt(backup, 1)
        for record in issued[1:]:  # the start-up sync, in two batches
            node.replica.accept([record])
        assert (node.replica.listener_errors, node.metrics.value("audit_damaged_reads_total")) == (0, 0)
        assert node.digester.close_due(T0 + EPOCH) == []
        assert node.metrics.value("audit_damaged_reads_total") == 1
        assert first_hand(live, agents, T0 + EPOCH) == first_hand(original, agents, T0 + EPOCH)
        assert node.digester.state.unfinished() is None and node.digester.state.epochs()[0][-1] is False
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.exc_info is None and record.getMessage().startswith(
        "the digests an interrupted epoch lacked are not issued, and never will be: audit.ledger: entry 1: its bytes "
        "do not hash to the leaf hash the ledger stores for it")


def test_an_interrupted_epoch_s_entry_damaged_before_the_start_counts_as_at_every_later_start(tmp_path, monkeypatch):
    """The same copy, damaged on disk before its start: the start's trust replay stopped at the entry. Now the start
    abandons the epoch before its replay counts any of its entries, so that the node's first-hand evidence is, from
    the start on, what every later start's is: our digests of the epoch, and none of its entries; those coming back
    from peers count as they come, as they do at every later start."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    agents = sorted([A, B, new_did()])
    backup, key, issued, original = restored_mid_issue(tmp_path, agents)
    damage_salt(backup, 1)
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH) as node:
        live = running(node)
        assert node.metrics.value("audit_damaged_reads_total") == 1 and node.digester.state.unfinished() is None
        assert first_hand(live, agents[1:], T0 + EPOCH) == []  # none of their entries: as every later start
        for record in issued[1:]:  # the start-up sync, in two batches
            node.replica.accept([record])
        assert node.digester.close_due(T0 + EPOCH) == []
        assert first_hand(live, agents, T0 + EPOCH) == first_hand(original, agents, T0 + EPOCH)
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH) as node:
        assert first_hand(replayed(node), agents, T0 + EPOCH) == first_hand(live, agents, T0 + EPOCH)
        assert node.metrics.value("audit_damaged_reads_total") == 0


def test_the_raw_counts_of_dp_digests_taken_back_after_their_epoch_was_abandoned_are_kept(tmp_path, monkeypatch):
    """The copy's interrupted epoch abandoned by the closing (an entry damaged since the start), a DP digest of it
    taken back from peers after that does not count while the node runs, as its entries do; a restart counts the
    digest, by the raw counts kept as it came back, from the entries as the start read them (not by its noise)."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    agents = sorted([A, B, new_did()])
    backup, key, issued, original = restored_mid_issue(tmp_path, agents, dp_epsilon=0.1)
    expected = first_hand(original, agents, T0 + EPOCH)
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        live = running(node)
        damage_salt(backup, 1)
        node.replica.accept([issued[1]])  # the start-up sync
        assert node.digester.close_due(T0 + EPOCH) == [] and node.metrics.value("audit_damaged_reads_total") == 1
        node.replica.accept([issued[2]])  # a peer reached later
        assert first_hand(live, agents, T0 + EPOCH) == expected
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        assert first_hand(replayed(node), agents, T0 + EPOCH) == expected


@pytest.mark.parametrize("back", ["after", "during"])
async def test_after_an_abandon_a_trust_rebuild_counts_the_epoch_s_digests_coming_back_as_a_restart_does(
        tmp_path, monkeypatch, back):
    """The copy's interrupted epoch abandoned by the closing (an entry damaged since the start), its entries count
    while the node runs and its digests coming back do not. A rebuild of the trust engine while the node runs (after
    `vouchnet key adopt`) reads none of its entries, as a restart reads none: a digest of it coming back after that
    read did not count either, so that the agent's first-hand evidence was missing until a restart. It counts now in
    the rebuilt engine, coming back `after` the rebuild or `during` it (read, not yet swapped in: the engine serving
    meanwhile, which holds the entries, does not count it)."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    agents = sorted([A, B, new_did()])
    backup, key, issued, original = restored_mid_issue(tmp_path, agents)
    expected = first_hand(original, agents, T0 + EPOCH)
    recomputing, go_on = trio.Event(), trio.Event()
    recompute = node_trust.recompute_in_worker

    async def held_recompute(*args):
        recomputing.set()
        await go_on.wait()
        return await recompute(*args)

    monkeypatch.setattr(node_trust, "recompute_in_worker", held_recompute)
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH) as node:
        live = running(node)
        damage_salt(backup, 1)
        node.replica.accept([issued[1]])  # the start-up sync
        assert node.digester.close_due(T0 + EPOCH) == [] and node.metrics.value("audit_damaged_reads_total") == 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(live._rebuild)  # (what the node's own org moving starts)
            await recomputing.wait()  # the rebuilt engine read the stored records and the undigested events
            if back == "during":
                node.replica.accept([issued[2]])  # a peer reached later
                assert first_hand(live, agents, T0 + EPOCH) == expected  # (the engine not yet swapped out)
            go_on.set()
        if back == "after":
            node.replica.accept([issued[2]])
        assert first_hand(live, agents, T0 + EPOCH) == expected
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH) as node:
        assert first_hand(replayed(node), agents, T0 + EPOCH) == expected


async def test_an_epoch_abandoned_after_a_trust_rebuild_read_it_counts_its_entries_there_not_its_digests(
        tmp_path, monkeypatch):
    """A rebuild of the trust engine while the node runs reads the copy's interrupted epoch's entries, intact still;
    an entry damaged after that, the closing abandons the epoch: the rebuilt engine holds its entries, as the start's
    did, and the digests of it coming back then do not count there too (Digester.reread counts the rebuild's read,
    which the abandon notes)."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    agents = sorted([A, B, new_did()])
    backup, key, issued, original = restored_mid_issue(tmp_path, agents)
    expected = first_hand(original, agents, T0 + EPOCH)
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH) as node:
        live = running(node)
        await live._rebuild()  # (what the node's own org moving starts)
        damage_salt(backup, 1)
        node.replica.accept([issued[1]])  # the start-up sync
        assert node.digester.close_due(T0 + EPOCH) == [] and node.metrics.value("audit_damaged_reads_total") == 1
        node.replica.accept([issued[2]])  # a peer reached later
        assert first_hand(live, agents, T0 + EPOCH) == expected


async def test_an_undigested_entry_damaged_as_the_node_runs_is_left_out_of_a_trust_rebuild(data_dir, caplog):
    """The undigested events are read again from audit.ledger by the trust engine's rebuild while the node runs
    (after `vouchnet key adopt`: node.daemon gives it `undigested(skip_damaged=True)`): an entry damaged since the
    start ended the trust service, and the node with it. The start's read still stops at it, naming it."""
    with telemetry_node(data_dir, key=load_org_key(data_dir / "org.key"), clock=Clock(T0 + 3 * EPOCH - 1),
                        epoch_ms=EPOCH) as node:
        submit(node, B, "denied")  # entry 13, with 12 in the open epoch
        assert [event.agent for _, event in node.digester.undigested()] == [A, B]  # the start's replay
        damage(data_dir, 12, 0)
        assert [(event.agent, event.outcome) for _, event in node.digester.undigested(skip_damaged=True)] == [
            (B, "denied")]
        assert node.metrics.value("audit_damaged_reads_total") == 1
        with pytest.raises(DamagedEntry, match="entry 12: not an audit entry"):
            list(node.digester.undigested())
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage().startswith("an undigested event left out of the trust engine's rebuild: audit.ledger: "
                                          "entry 12: not an audit entry")


def _org_digests_and_epochs(data_dir):
    state = DigestState.open_readonly(data_dir)
    epochs = state.epochs()
    state.close()
    org = did_key(bytes(load_org_key(data_dir / "org.key").verify_key))
    with RecordReader.open(data_dir) as records:
        return list(records.scan(issuer=org, kind="digest")), epochs


def test_the_check_reads_each_digest_as_its_walk_reaches_the_digest_s_epoch(data_dir, monkeypatch):
    """Bounded memory: the org's digests were all read, and held (3.2 KB each), before the first entry was; a year of
    hourly epochs of 1,000 agents is 28 GB of them. Now each is read as the walk of the entries reaches its epoch."""
    monkeypatch.setattr("node.audit_check.PAGE", 1)
    digests, epochs = _org_digests_and_epochs(data_dir)
    walked, read_at = [0], []

    def reading():
        for record in digests:
            read_at.append((record.body.epoch, walked[0]))
            yield record

    with Ledger.open(data_dir / AUDIT_FILE, read_only=True) as ledger:
        checked = check_audit_log(ledger, epochs, reading(), progress=lambda done, size: walked.__setitem__(0, done))
    assert (checked.problems.count, checked.digests) == (0, 6)
    assert [first for _, _, first, _, _ in epochs] == [0, 4, 8]
    # (epoch, entries walked) as each was read: as the walk reached its epoch's first entry, the next read ahead
    assert read_at == [(T0, 0), (T0, 0), (T0 + EPOCH, 0), (T0 + EPOCH, 4), (T0 + 2 * EPOCH, 4), (T0 + 2 * EPOCH, 8)]


@pytest.mark.parametrize("damaged", [False, True])
def test_digests_stored_out_of_epoch_order_are_all_checked(data_dir, damaged):
    """Digests taken back from peers after a restore are stored after later epochs': read after the walk passed
    their epoch, they are compared in a second read of the entries, and none is said missing."""
    if damaged:
        entries = entries_of(data_dir)
        at, event, salt = decode_salted_entry(entries[2])  # B's `error` of the first epoch, said to be ok
        rebuilt(data_dir, [*entries[:2], encode_entry(dataclasses.replace(event, outcome="ok"), at, salt),
                           *entries[3:]])
    digests, epochs = _org_digests_and_epochs(data_dir)
    with Ledger.open(data_dir / AUDIT_FILE, read_only=True) as ledger:
        checked = check_audit_log(ledger, epochs, reversed(digests))
    assert checked.digests == 6
    if damaged:
        (problem,) = checked.problems.named
        assert problem.endswith(f"of {B} for the epoch [{T0}, {T0 + EPOCH}): its evidence_root is not the hash of the "
                                "log's 1 entry of the agent in that epoch (2): an entry of that epoch was lost, added "
                                "or changed")
    else:
        assert checked.problems.count == 0


def test_an_entry_changed_but_still_decoding_is_named_by_an_export_of_its_agent(data_dir, capsys):
    """A flipped bit in A's entry's salt: its export went out with the changed bytes, whose proof then failed at the
    auditor's with no word of why. B's export, whose proofs that entry's stored leaf hash serves, is unaffected."""
    entry = entries_of(data_dir)[5]  # A's `denied` of the second epoch
    damage(data_dir, 5, entry.index(decode_salted_entry(entry)[2]))
    for agent, code in ((A, 1), (B, 0)):
        argv = ["audit", "export", "--dir", str(data_dir), "--agent", agent, "--from", str(T0 + EPOCH), "--to",
                str(T0 + 2 * EPOCH)]
        assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("vouchnet audit export: audit.ledger: entry 5: its bytes do not hash to the leaf hash the "
                          "ledger stores for it: one of them changed on disk; `vouchnet audit check` names every "
                          "damaged entry") and "Traceback" not in err


def test_an_entry_whose_agent_changed_but_still_decodes_is_named_by_the_export_it_may_belong_to(data_dir, tmp_path,
                                                                                              capsys):
    """A flipped bit in the agent of A's entry, which still decodes as another agent's: A's export went out without
    the event, saying nothing (the auditor's check of its epoch's digest then failed with no word of why). It goes
    out naming the entry in a warning now: whose it was cannot be told from its bytes."""
    entry = entries_of(data_dir)[5]  # A's second `ok` of the second epoch
    start = entry.index(A.encode())
    offset = next(offset for offset in range(start + len("did:key:z6Mk"), start + len(A))
                  if _decodes_as_another(entry[:offset] + bytes([entry[offset] ^ 1]) + entry[offset + 1:]))
    damage(data_dir, 5, offset)
    argv = ["audit", "export", "--dir", str(data_dir), "--agent", A, "--from", str(T0 + EPOCH), "--to",
            str(T0 + 2 * EPOCH), "--out", str(tmp_path / "a.json")]
    assert cli.main(argv) == 0
    assert [item["index"] for item in json.loads((tmp_path / "a.json").read_text())["entries"]] == [4, 7]
    err = capsys.readouterr().err
    assert err.startswith("warning: audit.ledger: entry 5: its bytes do not hash to the leaf hash the ledger stores "
                          "for it") and f"the export lacks an event of {A}" in err


def _decodes_as_another(entry):
    try:
        return decode_salted_entry(entry)[1].agent != A
    except InvalidEvent:
        return False


def test_the_walk_holds_the_tallies_of_the_epoch_it_is_in_only(data_dir, monkeypatch):
    """Bounded memory: each epoch's tallies are compared with its digests and let go as the walk passes into the
    next epoch, not all held to the walk's end (a tally of each agent of each epoch of 180 days)."""
    monkeypatch.setattr("node.audit_check.PAGE", 1)
    live: weakref.WeakSet[Tally] = weakref.WeakSet()

    class Watched(Tally):
        __hash__ = object.__hash__  # (for the WeakSet: a dataclass is unhashable)

        def __init__(self) -> None:
            super().__init__()
            live.add(self)

    monkeypatch.setattr("node.audit_check.Tally", Watched)
    digests, epochs = _org_digests_and_epochs(data_dir)
    held = []
    with Ledger.open(data_dir / AUDIT_FILE, read_only=True) as ledger:
        checked = check_audit_log(ledger, epochs, digests, progress=lambda done, size: held.append(len(live)))
    assert (checked.problems.count, checked.digests) == (0, 6)
    assert max(held) == 2  # A's and B's, of one epoch (of three)


def test_a_digest_of_an_epoch_cut_short_stored_after_the_walk_passed_it_is_checked_in_the_second_read(data_dir):
    """digests.db says the first epoch's digests were not all issued (a stop cut it short), and its digests, taken
    back from peers, are stored after the later epochs': read as the walk is past that epoch's entries, compared in
    the first read they would find none of them, and be said to have lost them."""
    digests, epochs = _org_digests_and_epochs(data_dir)
    first, *rest = epochs
    cut_short = (*first[:4], False)
    with Ledger.open(data_dir / AUDIT_FILE, read_only=True) as ledger:
        checked = check_audit_log(ledger, [cut_short, *rest], reversed(digests))
    assert (checked.problems.count, checked.digests) == (0, 6)
