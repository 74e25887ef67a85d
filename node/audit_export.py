"""Audit exports: one agent's raw events from the private audit log, with RFC 9162 inclusion proofs against a
checkpoint signed by the org, for an auditor (DESIGN §4, §7); `vouchnet audit export|verify` (node.commands.audit).

An export (JSON, FORMAT) holds `org` (the org's key now), `network`, `agent`, the requested `from`/`to` (ms),
`checkpoint` (a C2SP signed note of the audit log, origin `vouchnet/<network>/<org>/audit`), `entries` (each:
`index`, `entry` = base64 of the exact log entry, `proof` = base64 hashes, and the decoded `at`, `event` and `salt`
(base64; absent for an entry written before salts) for reading), `epochs` (each digested interval the entries fall
in: `epoch`, `len`, `evidence_root` in base64, `events`), and, for an org that rotated its key (`vouchnet key
rotate`, DESIGN §2), `rotation_chain`: base64 of the COSE bytes of the signed `org` records that link its earlier
keys to `org`, oldest first, as a certificate chain links a key to the one that certified it. The range is widened
to whole digested intervals, so that every epoch's evidence root can be recomputed.

An auditor checks it without trusting the node, with any RFC 9162 / C2SP implementation:
1. Take the org's Ed25519 key from the did:key `org`; verify `checkpoint` as a signed note by that key under the
   key name = origin; read size N and root R from it.
2. For each entry: base64-decode it and verify its inclusion proof at `index` in the tree of size N with root R.
3. Decode each entry (deterministic CBOR, node.events.encode_entry) and check its `agent` is the exported agent,
   and that the entry's decoded `at`, `event` and `salt` say exactly what the entry bytes say. The salt is random:
   it is in the entry so that no one without the entry can compute its hash from a guess of the event (the org's
   digests and these proofs publish such hashes); it says nothing about the event.
4. The org's keys: `org`, and those `rotation_chain` links to it. Verify each of its records as any record
   (COSE_Sign1 by the did:key `iss`, DESIGN §3), each an `org` record of `network`. A link is two of them: an earlier
   key's rotation record naming the next key as `next` (the last record that key may sign), and the next key's
   first record (seq 1) naming it back as `prior` (vouching.succession). Every record must be half of a link, the
   links one line of keys ending at `org`, and `org` must name no next key. No chain: `org` is the only key.
5. For each epoch (no two overlap, as digest epochs never do): the RFC 9162 Merkle tree hash of the entries with
   epoch <= at < epoch + len, in index order, must equal `evidence_root` (and their number `events`); and must
   equal the `evidence_root` of the org's signed `digest` record for that agent and epoch, signed by one of its
   keys (step 4), an earlier key's at a seq below its rotation record's (fetched from any node:
   `GET /v1/records?issuer=<key>&kind=digest&subject=<agent>`, for each key).
   The digest commits to every event of the agent in that epoch, so a missing or altered event shows up here;
   without differential privacy its counts (outcomes, categories, high_risk) also equal the entries' counts.
6. Each entry's `at` lies in [from, to) or in one of the exported epochs (the range is widened to whole epochs,
   and no further).
`verify_export` does steps 1-6 (the digest records optional); it reads exports of FORMAT and of the one before
salts.
"""

from __future__ import annotations

import base64
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nacl.signing import SigningKey

from ledger import Ed25519Verifier, EntryPruned, NoteError, ProofError, open_checkpoint, tree_hash, verify_inclusion
from vouching import DigestBody, InvalidDid, InvalidRecord, OrgBody, Record, public_key_from_did, verify_record
from vouching.bodies import CATEGORIES, OUTCOMES
from vouching.succession import Succession

from .audit_log import AuditLog, DamagedEntry, audit_origin
from .digests import DigestState
from .events import Event, InvalidEvent, check_agent, decode_salted_entry

# rotation_chain came after /2 and is no /3: a /2 reader without it passes it over and refuses the digests of the
# org's earlier keys, as it did; it misreads nothing.
FORMAT = "vouchnet-audit-export/2"
_READ_FORMATS = (FORMAT, "vouchnet-audit-export/1")  # 1: before entries held salts, shown as `salt`
_PAGE = 1000


class ExportError(Exception):
    """The export cannot be made as asked; the message says why and what to do."""


class VerifyError(ValueError):
    """An export (or a digest against it) does not verify; the message names the entry or epoch and the rule."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise VerifyError(f"{where}: not base64") from None


def export_agent(
    audit: AuditLog,
    state: DigestState,
    *,
    key: SigningKey,
    org: str,
    network: str,
    agent: str,
    start: int,
    end: int,
    chain: Sequence[bytes] = (),
    damaged: Callable[[DamagedEntry], None] | None = None,
) -> dict[str, Any]:
    """The export of `agent`'s entries accepted in [start, end), widened to the intervals digested (`state`)
    overlapping it, with proofs against a fresh checkpoint, and the org's rotation `chain` (`rotation_chain`) if it
    has one; raises ExportError if any of the entries may have been pruned, DamagedEntry at a damaged entry that may
    be the agent's by what it decodes as (or that decodes as none). One that decodes as another agent's is given to
    `damaged` instead: the export goes on without it, which lacks it if the change was to its agent."""
    check_agent(agent)
    intervals = state.intervals(start, end)
    low = min([start, *(a for a, _ in intervals)])
    high = max([end, *(b for _, b in intervals)])
    _check_kept(audit, state, low)
    size = audit.size
    checkpoint = audit.checkpoint(key, audit_origin(network, org), size)
    while True:
        try:
            entries, raw, ats = _entries_of(audit, agent, low, high, size, damaged)
            break
        except EntryPruned:  # as they were read, by the retention of the node beside which the export reads
            # The prune mark was read again, and has moved: refused if it passed `low`, else read again from it
            # (the search for the range's first entry may have met one pruned before the range).
            _check_kept(audit, state, low)
    epochs = []
    for a, b in intervals:  # each epoch's entries found by bisection: scanned, 8760 hourly epochs took hours
        members = raw[bisect_left(ats, a):bisect_left(ats, b)]
        if members:
            epochs.append({"epoch": a, "len": b - a, "evidence_root": _b64(tree_hash(members)),
                           "events": len(members)})
    document = {"format": FORMAT, "org": org, "network": network, "agent": agent, "from": start, "to": end,
                "checkpoint": checkpoint.decode(), "entries": entries, "epochs": epochs}
    if chain:
        document["rotation_chain"] = [_b64(raw) for raw in chain]
    return document


class OrgRecords(Protocol):
    """Where `rotation_chain` reads an org's records: gossip.store.RecordStore, or RecordReader beside a running
    node."""

    def scan(self, *, issuer: str, kind: str) -> Iterator[Record]: ...


def rotation_chain(records: OrgRecords, org: str) -> list[bytes]:
    """The signed `org` records that link the earlier keys of `org` (its current key) to it (DESIGN §2,
    vouching.succession), oldest first: each earlier key's rotation record naming the next key, then that key's first
    record naming it back (one record, where a first record names both). [] if `org` replaced no key; the walk back
    stops at a key whose prior did not name it back."""
    chain: list[Record] = []
    key, seen = org, {org}
    while True:
        first = next(iter(records.scan(issuer=key, kind="org")), None)
        prior = first.body.prior if first is not None and first.seq == 1 and isinstance(first.body, OrgBody) else None
        if first is None or prior is None or prior in seen:
            return [record.raw for record in chain]
        rotation = next((r for r in records.scan(issuer=prior, kind="org")
                         if isinstance(r.body, OrgBody) and r.body.next == key), None)
        if rotation is None:
            return [record.raw for record in chain]
        chain[:0] = [rotation] if chain and chain[0].id == first.id else [rotation, first]
        key = prior
        seen.add(key)


def _entries_of(audit: AuditLog, agent: str, low: int, high: int, size: int,
                damaged: Callable[[DamagedEntry], None] | None) -> tuple[list[dict[str, Any]], list[bytes], list[int]]:
    """The export's entries of `agent` accepted in [low, high), with proofs at `size`; and the bytes and time of each,
    in log order (times never decrease). Each entry is checked against its stored leaf hash: another agent's that
    fails is given to `damaged` (export_agent)."""
    ledger = audit.ledger
    first, stop = audit.boundary(low)[0], audit.boundary(high)[1]  # damaged entries at either end read: refused below
    entries, raw, ats = [], [], []
    for index, entry, leaf in audit.read(first, stop, _PAGE):
        at, event, salt = audit.decoded(index, entry)
        if event.agent == agent:  # (the proofs, from stored hashes, stand however another's entry changed)
            audit.check_leaf(index, entry, leaf)
            proof = [_b64(h) for h in ledger.inclusion_proof(index, size)]
            item = {"index": index, "at": at, "entry": _b64(entry), "proof": proof, "event": event.to_json()}
            if salt is not None:
                item["salt"] = _b64(salt)
            entries.append(item)
            raw.append(entry)
            ats.append(at)
        elif damaged is not None:
            try:
                audit.check_leaf(index, entry, leaf)
            except DamagedEntry as error:
                damaged(error)
    return entries, raw, ats


def _check_kept(audit: AuditLog, state: DigestState, low: int) -> None:
    """Raise ExportError if entries accepted at `low` or later may have been pruned. Retention prunes digested entries
    only (node.retention), so every pruned entry was accepted before the end of the digested interval holding the
    last of them; if digests.db has no row for it, before the first kept entry's time."""
    pruned = audit.ledger.pruned
    if not pruned:
        return
    holding = state.holding(pruned - 1)
    if holding is not None:
        kept_from = holding[1]
    elif pruned == audit.size:
        raise ExportError("--from: earlier entries were pruned by retention; the audit log keeps none")
    else:
        kept_from = audit.at(pruned)
    if low < kept_from:
        raise ExportError(f"--from: earlier entries were pruned by retention; the audit log keeps those from "
                          f"{kept_from} ms on")


@dataclass(frozen=True)
class Verified:
    """What a verified export proves: the log size and root it was checked against, the org's keys (its earlier ones
    from the rotation chain, oldest first, then the export's org), and the agent's events, of which `unmatched` lie
    in no epoch a digest was given for (the export could leave out such events unseen)."""

    size: int
    root: bytes
    events: tuple[tuple[int, int, Event], ...]  # (index, at, event)
    epochs: tuple[tuple[int, int, bytes], ...]  # (epoch, len, evidence_root)
    unmatched: int
    keys: tuple[str, ...]


def verify_export(document: Any, *, digests: Iterable[bytes] = ()) -> Verified:
    """The auditor's steps 1-6 (module docstring), with the org's digest records (COSE bytes) if given."""
    if not isinstance(document, dict) or document.get("format") not in _READ_FORMATS:
        raise VerifyError(f"format: must be {' or '.join(_READ_FORMATS)}")
    try:
        org, agent, note = document["org"], check_agent(document["agent"]), document["checkpoint"].encode()
        origin = audit_origin(document["network"], org)
        signer = Ed25519Verifier(origin, public_key_from_did(org))
    except (KeyError, AttributeError, TypeError):
        raise VerifyError("export: needs org, network, agent and checkpoint") from None
    except (InvalidDid, InvalidEvent, NoteError) as error:  # the origin is not made yet: no checkpoint to blame
        raise VerifyError(f"export: {error}") from None
    except UnicodeEncodeError:  # JSON's \udc80 escapes decode to lone surrogates, which no UTF-8 text holds
        raise VerifyError("checkpoint: not a signed note (it holds a lone surrogate, which UTF-8 cannot)") from None
    try:
        checkpoint, _ = open_checkpoint(note, [signer])
    except NoteError as error:
        raise VerifyError(f"checkpoint: not signed by the org's key for {origin!r:.120} ({error})") from None
    if checkpoint.origin != origin:
        raise VerifyError(f"checkpoint: origin is {checkpoint.origin!r}, expected {origin!r}")
    start, end = document.get("from"), document.get("to")
    if type(start) is not int or type(end) is not int or not 0 <= start <= end:
        raise VerifyError("from, to: must be integers (ms), from <= to")
    events, seen = [], set()
    for i, item in enumerate(_list(document, "entries")):
        where = f"entries[{i}]"
        if not isinstance(item, dict):
            raise VerifyError(f"{where}: must be an object")
        entry = _unb64(item.get("entry"), f"{where}.entry")
        index = item.get("index")
        proof = [_unb64(h, f"{where}.proof") for h in _list(item, "proof")]
        if type(index) is not int or index in seen:
            raise VerifyError(f"{where}.index: must be an integer, once")
        seen.add(index)
        try:
            verify_inclusion(entry, index, checkpoint.size, proof, checkpoint.root)
            at, event, salt = decode_salted_entry(entry)
        except ProofError as error:
            raise VerifyError(f"{where}: not in the checkpointed log ({error})") from None
        except InvalidEvent as error:
            raise VerifyError(f"{where}: not an audit entry ({error})") from None
        if event.agent != agent:
            raise VerifyError(f"{where}: an event of {event.agent}, not of the exported agent")
        # The decoded copies are what a reader sees: they must say what the proven bytes say.
        if item.get("at") != at:
            raise VerifyError(f"{where}.at: differs from the entry's ({at})")
        if item.get("event") != event.to_json():
            raise VerifyError(f"{where}.event: differs from the entry's")
        if item.get("salt") != (None if salt is None else _b64(salt)):
            raise VerifyError(f"{where}.salt: differs from the entry's")
        events.append((index, at, event, entry))
    events.sort(key=lambda e: e[0])
    by_time = sorted(events, key=lambda e: (e[1], e[0]))
    times = [e[1] for e in by_time]
    epochs: dict[tuple[int, int], tuple[bytes, list[Event]]] = {}  # (epoch, len) -> root, events
    for j, epoch_start, length, epoch in _epochs(_list(document, "epochs")):
        # Found by bisection, in index order: scanning every entry for each of 8760 hourly epochs took hours.
        inside = sorted(by_time[bisect_left(times, epoch_start):bisect_left(times, epoch_start + length)],
                        key=lambda e: e[0])
        root = tree_hash([e[3] for e in inside])
        if root != _unb64(epoch.get("evidence_root"), f"epochs[{j}].evidence_root"):
            raise VerifyError(f"epochs[{j}]: the entries of [{epoch_start}, {epoch_start + length}) do not hash to "
                              "evidence_root")
        if epoch.get("events") != len(inside):
            raise VerifyError(f"epochs[{j}].events: must be {len(inside)}, the entries in the epoch")
        epochs[(epoch_start, length)] = (root, [e[2] for e in inside])
    spans = sorted(epochs)  # (epoch, len), disjoint
    firsts = [a for a, _ in spans]
    for index, at, _, _ in events:  # the range was widened to whole epochs, and no further
        i = bisect_right(firsts, at) - 1
        if not (start <= at < end or (i >= 0 and at < firsts[i] + spans[i][1])):
            raise VerifyError(f"entries (index {index}): accepted at {at}, outside [from, to) and every epoch")
    keys = _chain_keys(_list(document, "rotation_chain"), org, document["network"])
    matched = {_check_digest(raw, org, keys, agent, epochs) for raw in digests}
    return Verified(checkpoint.size, checkpoint.root, tuple(e[:3] for e in events),
                    tuple((a, n, root) for (a, n), (root, _) in epochs.items()),
                    len(events) - sum(len(epochs[span][1]) for span in matched), tuple(keys))


def _chain_keys(items: list[Any], org: str, network: str) -> dict[str, int | None]:
    """The org's keys its rotation chain proves, oldest first, each with the seq of its rotation record (None for
    `org`, which signed none): step 4. VerifyError unless each item is a valid `org` record of `network`, each is
    half of a link vouching.succession makes, and the links lead to `org`, which no link retires."""
    succession = Succession()
    records, named = [], set()
    for i, item in enumerate(items):
        where = f"rotation_chain[{i}]"
        try:
            record = verify_record(_unb64(item, where))
        except InvalidRecord as error:
            raise VerifyError(f"{where}: not a valid record ({error})") from None
        body = record.body
        if not isinstance(body, OrgBody):
            raise VerifyError(f"{where}: a {record.kind} record, not an org record")
        if body.network != network:
            raise VerifyError(f"{where}: an org record of network {body.network!r}, not of the export's {network!r}")
        if body.next is None and body.prior is None:
            raise VerifyError(f"{where}: names neither a next nor a prior key, so links none")
        for field, other in (("next", body.next), ("prior", body.prior)):
            if other is not None:
                if (record.iss, field) in named:
                    raise VerifyError(f"{where}: a second record of {record.iss} naming a {field} key")
                named.add((record.iss, field))
        succession.note(record)
        records.append((where, record))
    links = {(link.prior, link.successor) for link in succession.links()}
    for where, record in records:
        body = record.body
        if body.next is not None and (record.iss, body.next) not in links:
            raise VerifyError(f"{where}: {record.iss} names {body.next} as its next key, whose first record in the "
                              "chain does not name it back")
        if body.prior is not None and (body.prior, record.iss) not in links:
            raise VerifyError(f"{where}: {record.iss} names {body.prior} as its prior key, whose rotation record in "
                              "the chain does not name it")
    if succession.retired(org):
        raise VerifyError(f"rotation_chain: the export's org {org} rotated to {succession.named_next(org)}: an export "
                          "is signed by the org's newest key")
    keys = succession.keys(org)
    stray = {key for link in links for key in link} - set(keys)
    if stray:
        raise VerifyError(f"rotation_chain: links {', '.join(sorted(stray))}, not keys of the export's org {org}")
    rotations = {record.iss: record.seq for _, record in records if record.body.next is not None}
    return {key: rotations.get(key) for key in keys}


def _epochs(items: list[Any]) -> list[tuple[int, int, int, dict[str, Any]]]:
    """(position, epoch, len, object) of the export's epochs, in its order; VerifyError unless each has an integer
    epoch and a positive len, and no two overlap (digest intervals never do)."""
    parsed = []
    for j, epoch in enumerate(items):
        if not isinstance(epoch, dict):
            raise VerifyError(f"epochs[{j}]: must be an object")
        epoch_start, length = epoch.get("epoch"), epoch.get("len")
        if type(epoch_start) is not int or type(length) is not int or length < 1:
            raise VerifyError(f"epochs[{j}]: needs integer epoch and len")
        parsed.append((j, epoch_start, length, epoch))
    ordered = sorted(parsed, key=lambda p: p[1])
    for (i, a, n, _), (j, b, _, _) in zip(ordered, ordered[1:]):
        if b < a + n:
            raise VerifyError(f"epochs[{j}]: overlaps epochs[{i}] (digest epochs never overlap)")
    return parsed


def _list(parent: dict[str, Any], key: str) -> list[Any]:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise VerifyError(f"{key}: must be a list")
    return value


def _check_digest(raw: bytes, org: str, keys: dict[str, int | None], agent: str,
                  epochs: dict[tuple[int, int], tuple[bytes, list[Event]]]) -> tuple[int, int]:
    """The (epoch, len) of the export that the digest record `raw` matches; VerifyError unless it matches one, and
    is signed by a key of the org (`keys`, from _chain_keys) before that key's rotation record ended its chain."""
    try:
        record = verify_record(raw)
    except InvalidRecord as error:
        raise VerifyError(f"digest: not a valid record ({error})") from None
    body = record.body
    if record.iss not in keys:
        known = ("the export's rotation_chain does not link it to the org" if len(keys) > 1
                 else "the export has no rotation_chain linking an earlier key to the org")
        raise VerifyError(f"digest {record.id.hex()}: signed by {record.iss}, not by the org {org}: {known}")
    retired_at = keys[record.iss]
    if retired_at is not None and record.seq >= retired_at:
        raise VerifyError(f"digest {record.id.hex()}: signed by {record.iss} at seq {record.seq}, after its rotation "
                          f"record (seq {retired_at}) ended its chain")
    if not isinstance(body, DigestBody) or body.agent != agent:
        raise VerifyError(f"digest {record.id.hex()}: not the org's digest of the exported agent")
    match = epochs.get((body.epoch, body.length))
    if match is None:
        raise VerifyError(f"digest {record.id.hex()}: its epoch {body.epoch} is not in the export")
    root, members = match
    if root != body.evidence_root:
        raise VerifyError(f"digest {record.id.hex()}: evidence_root differs from the exported entries'")
    if body.dp_epsilon is None:
        counted = ({o: sum(e.outcome == o for e in members) for o in OUTCOMES},
                   {c: sum(e.category == c for e in members) for c in CATEGORIES},
                   {o: sum(e.outcome == o and e.high_risk for e in members) for o in OUTCOMES})
        if counted != (dict(body.outcomes), dict(body.categories), dict(body.high_risk)):
            raise VerifyError(f"digest {record.id.hex()}: its counts differ from the exported entries'")
    return body.epoch, body.length
