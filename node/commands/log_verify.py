"""The checks of `vouchnet log verify` (DESIGN §4): fetch the node's whole records ledger and re-check it against
the node's signed checkpoint, and that checkpoint against the one verified before (RFC 9162, C2SP checkpoints);
given the node's data directory, also every hash its ledger file stores, from which the node computes its proofs.
Which of the checkpoint's cosigners the checker knows as witnesses is its own call (`known_witnesses`): anyone can
make a key and cosign, and an org can vouch for as many keys as it makes, so witnesses count once per independence
group (DESIGN §6).
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossip.checkpoints import cosigner_verifiers
from gossip.validation import check_record
from ledger import (
    Checkpoint,
    Ed25519Verifier,
    Frontier,
    Ledger,
    LedgerError,
    NoteError,
    ProofError,
    StoredHashCheck,
    leaf_hash,
    log_origin,
    open_checkpoint,
    parse_log_origin,
    verify_consistency,
)
from ledger.files import replace_file
from node.client import NodeApiError, NodeClient
from vouching import InvalidDid, InvalidRecord, Record, check_follows, public_key_from_did
from vouching.counts import counted

from .common import CommandFailed, UsageError, os_error_text

Progress = Callable[[int, int], None]
Dids = tuple[str, ...]
GroupOf = Callable[[str], str | None]  # a cosigner's independence group if the checker knows it as a witness, or None


@dataclass(frozen=True)
class Verified:
    """What `verify_log` established."""

    did: str
    size: int
    root: bytes
    cosigners: tuple[str, ...]  # dids of the keys whose cosignatures verified, witnesses known or not
    log_keys: frozenset[str]  # the log's org's keys among the signers: `did`, and earlier keys the ledger rotated to it
    consistent_from: int | None  # the size of the checkpoint verified before, if one was cached
    stored_hashes: int | None  # how many hashes of the ledger file were checked; None without the data directory


def verify_log(
    client: NodeClient,
    *,
    did: str | None = None,
    cache: Path | None = None,
    progress: Progress | None = None,
    ledger_file: Path | None = None,
) -> Verified:
    """Check the node's latest checkpoint (signed by `did`, default the did the node reports), every entry below its
    size (a valid record, following its issuer's chain), that the entries hash to its root, that every hash of their
    tree stored in the node's `ledger_file` (records.ledger in its data directory) is the hash they give
    (ledger.tree_check), and that it extends the checkpoint cached at `cache`, which it then replaces. Raises
    CommandFailed naming the first thing that fails."""
    info = client.node()  # NodeApiError("bad_answer") unless the node says its did and network
    did = did or info["did"]
    network = info["network"]
    try:
        origin = log_origin(network, did, "records")
        signer = Ed25519Verifier(origin, public_key_from_did(did))
    except (NoteError, InvalidDid) as e:
        raise CommandFailed(f"the node's network and did do not name a log: {e}") from None
    note = client.checkpoint()
    if note is None:
        raise CommandFailed("the node has not signed a checkpoint of its ledger yet: nothing to verify against")
    checkpoint, cosigners = _open(note, signer, "the node's checkpoint")
    previous, previous_did = _cached(cache, signer, network, did)
    if previous is not None and previous.size > checkpoint.size:
        raise CommandFailed(
            f"the log shrank: {cache} holds a checkpoint of size {previous.size}; now {checkpoint.size}")

    with _stored_tree(ledger_file, checkpoint.size) as tree:  # opened after the checkpoint: the ledger held all of it
        root, heads = _check_entries(client, checkpoint.size, progress or (lambda done, total: None), tree)
    if root != checkpoint.root:
        raise CommandFailed(
            f"the hash of the {counted(checkpoint.size, 'entry', 'entries')} is not the checkpoint's root")
    if ledger_file is not None and isinstance(tree, StoredHashCheck) and tree.mismatches:
        raise CommandFailed(_wrong_hashes(ledger_file, checkpoint.size, tree))
    if previous_did != did and not _rotated(heads, previous_did, did):
        raise CommandFailed(f"{cache} holds a checkpoint of {previous_did}'s log, and the ledger holds no key rotation "
                            f"from that key to {did}")
    if previous is not None:
        proof = client.consistency_proof(previous.size, checkpoint.size)
        try:
            verify_consistency(previous.size, checkpoint.size, previous.root, checkpoint.root, proof)
        except ProofError as e:
            raise CommandFailed(f"not consistent with the checkpoint of size {previous.size} in {cache}: {e}") from None
    if cache is not None:
        try:
            replace_file(cache, note)  # a crash leaves the old checkpoint or the new, and a power cut keeps it
        except OSError as e:  # (a full disk): the log verified all the same, which the operator must not miss
            hash_ = "hashes" if checkpoint.size == 1 else "hash"
            way = ("free space, or give --cache FILE elsewhere" if e.errno in (errno.ENOSPC, errno.EDQUOT) else
                   "give --cache a FILE in a directory that exists and that you may write")
            raise CommandFailed(
                f"the log verifies: {counted(checkpoint.size, 'record')} {hash_} to the root of the checkpoint signed "
                f"by {did}; but keeping it failed ({os_error_text(e)}), so the next run checks consistency with the "
                f"checkpoint kept before, if any: {way}") from None
    log_keys = frozenset({did, *(key for key in cosigners if _rotated(heads, key, did))})
    return Verified(did, checkpoint.size, checkpoint.root, cosigners, log_keys,
                    None if previous is None else previous.size,
                    tree.checked if isinstance(tree, StoredHashCheck) else None)


def _open(note: bytes, signer: Ed25519Verifier, what: str) -> tuple[Checkpoint, tuple[str, ...]]:
    """The checkpoint in `note`, which `signer` must have signed, and the dids whose cosignatures verify."""
    cosigners = cosigner_verifiers(note)
    try:
        checkpoint, signatures = open_checkpoint(note, [signer, *cosigners.values()])
    except NoteError as e:
        raise CommandFailed(f"{what}: {e}") from None
    if checkpoint.origin != signer.name:
        raise CommandFailed(f"{what}: a checkpoint of {checkpoint.origin}, not of {signer.name}")
    names = {(s.name, s.key_id) for s in signatures}
    if (signer.name, signer.key_id) not in names:
        raise CommandFailed(f"{what}: not signed by the org's key ({signer.name})")
    return checkpoint, tuple(did for did, v in cosigners.items() if (v.name, v.key_id) in names)


def known_witnesses(cosigners: Dids, group_of: GroupOf, log_keys: Collection[str]) -> tuple[dict[str, Dids], Dids]:
    """`cosigners` split into the witnesses the checker knows, by their independence group (`group_of`), and the other
    keys, which do not count: a hostile node can make up keys and cosign its own checkpoint with them, and the log's
    own org (`log_keys`, its earlier keys too) witnesses nothing of it. A group counts once, as the scoring counts
    an agent's witnesses (vouching.reputation.independence_groups): an org can vouch for keys it made up."""
    groups: dict[str, list[str]] = {}
    unknown = []
    for did in cosigners:
        group = None if did in log_keys else group_of(did)
        if group is None:
            unknown.append(did)
        else:
            groups.setdefault(group, []).append(did)
    return {group: tuple(dids) for group, dids in groups.items()}, tuple(unknown)


def named_witnesses(named: Collection[str]) -> GroupOf:
    """The orgs the checker names as witnesses (--witness), each its own group: their independence is its call."""
    return lambda did: did if did in named else None


def weighed_by_node(client: NodeClient, log_org: str) -> GroupOf:
    """The independence group, as the node of `client` sees it (GET /v1/orgs/{did}), of an org it knows as a witness
    of `log_org`'s log: one whose standing there reaches the weight an independent witness needs (`_at_witness_bar`),
    as its own org's does and those of the orgs its trust roots vouch for, unless it flagged them for equivocation
    (vouching.reputation), and not in `log_org`'s independence group, as the orgs that `log_org` vouched into being
    are (vouching.reputation.independence_groups): they speak for it."""
    @functools.cache
    def log_org_group() -> str | None:  # (asked once, when the first cosigner at the bar needs it)
        return client.org(log_org).get("group")

    def group_of(did: str) -> str | None:
        org = client.org(did)
        group = org.get("group")
        known = _at_witness_bar(org) and group is not None
        return group if known and group != log_org_group() else None
    return group_of


def _at_witness_bar(org: dict[str, Any]) -> bool:
    """Whether a node's answer on an org (GET /v1/orgs/{did}) gives it a standing (`voucher_weight`: its reputation
    beside the full-weight reference, times its accountability) of at least `witness_min_weight`, the weight the
    scoring's independent witnesses need (vouching.params independent_min_weight): an org that a chain of light
    vouches reaches holds a sliver of reputation, which made it a whole independence group of witnesses. Its standing,
    not its digests' `weight`: the credibility that adds is about its digests of agents, and starts just below the bar
    until they agree with what the node saw, which would leave every new peer no witness."""
    standing, bar = org.get("voucher_weight"), org.get("witness_min_weight")
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (standing, bar)):
        return False  # (a node older than these fields says nothing of its bar: no witness is known by it)
    return standing >= bar


def _cached(cache: Path | None, signer: Ed25519Verifier, network: str, did: str) -> tuple[Checkpoint | None, str]:
    """The checkpoint verified before, and the did whose key signed it: `did`'s, or, after a key rotation, the
    org's key before (the caller checks that the ledger holds the rotation)."""
    if cache is None:
        return None, did
    try:
        note = cache.read_bytes()
    except FileNotFoundError:
        return None, did
    except OSError as error:  # (a directory, a file this user may not read): named as the option's, a usage error
        raise UsageError(f"--cache {os_error_text(error)}") from None
    what = f"{cache} (remove it if the node's key or network changed)"
    try:
        cached_network, cached_did, log = parse_log_origin(note.split(b"\n", 1)[0].decode("utf-8", "replace"))
        if (cached_network, log) == (network, "records") and cached_did != did:
            signer = Ed25519Verifier(log_origin(network, cached_did, log), public_key_from_did(cached_did))
    except (NoteError, InvalidDid):
        cached_did = did  # not a vouchnet origin: _open names what is wrong with it
    checkpoint, _ = _open(note, signer, what)
    return checkpoint, cached_did


def _rotated(heads: dict[str, Record], old: str, new: str) -> bool:
    """Whether the `org` records that end keys' chains (`next`) lead from `old` to `new` (vouching.succession)."""
    seen = {old}
    while old != new:
        last = heads.get(old)
        successor = getattr(last.body, "next", None) if last is not None and last.kind == "org" else None
        if successor is None or successor in seen:
            return False
        old = successor
        seen.add(old)
    return True


@contextmanager
def _stored_tree(path: Path | None, size: int) -> Iterator[Frontier | StoredHashCheck]:
    """What grows the tree of the first `size` entries: given the node's ledger file, a StoredHashCheck of it, opened
    read-only (beside the running node, it reads one state of the file while the node appends)."""
    if path is None:
        yield Frontier()
        return
    try:
        ledger = Ledger.open(path, read_only=True)
    except FileNotFoundError:
        raise CommandFailed(f"{path}: no such file, so the hashes the node stores cannot be checked: is {path.parent} "
                            "the node's data directory? (--api URL checks the entries alone)") from None
    except OSError as e:
        raise CommandFailed(f"{os_error_text(e)}, so the hashes the node stores cannot be checked (run as "
                            "the node's user, or give --api URL to check the entries alone)") from None
    except LedgerError as e:
        raise CommandFailed(str(e)) from None
    try:
        if ledger.size < size:
            raise CommandFailed(f"{path} holds {counted(ledger.size, 'entry', 'entries')}, fewer than the node's "
                                f"checkpoint: it is not the ledger of the node answering")
        yield StoredHashCheck(ledger, size)
    except LedgerError as e:
        raise CommandFailed(str(e)) from None
    finally:
        ledger.close()


RESTORE = ("restore the data directory from a copy taken before the fault and after the last checkpoint the node "
           "published (an older one forks its log)")


def _wrong_hashes(path: Path, size: int, tree: StoredHashCheck) -> str:
    """The failure of a ledger file storing hashes other than its entries give: which, and what to do."""
    differ, it = ("differs", "it") if tree.mismatches == 1 else ("differ", "them")
    return (f"{path}: {counted(tree.mismatches, 'stored hash', 'stored hashes')} of the tree of its "
            f"{counted(size, 'entry', 'entries')} {differ} from what the entries hash to: {named_wrong(tree)}. The "
            f"entries and the checkpoint are sound, but the node's proofs through {it} fail for its clients. Stop the "
            f"node and run `vouchnet log repair --dir {path.parent}`, which rebuilds the stored hashes from the "
            f"entries; should it find the entries damaged, {RESTORE}, start it and run log verify again")


def named_wrong(tree: StoredHashCheck) -> str:
    """The wrong stored hashes `tree` names, (level, index) with the entries below each, and how many more."""
    names = [f"level {level} index {index} " + (f"(the hash of entry {index})" if level == 0 else
             f"(over entries {index << level} to {((index + 1) << level) - 1})") for level, index in tree.wrong]
    more = tree.mismatches - len(names)
    return ", ".join(names) + (f" and {more} more" if more else "")


def _check_entries(
    client: NodeClient, size: int, progress: Progress, tree: Frontier | StoredHashCheck
) -> tuple[bytes, dict[str, Record]]:
    """Fetch entries [0, size) page by page, check each, add its hash to `tree`, and return their RFC 9162 root and
    each issuer's last record."""
    heads: dict[str, Record] = {}
    index = 0
    while index < size:
        try:
            page = client.log_entries(index, size)[: size - index]
        except NodeApiError as e:
            if e.code != "out_of_range":
                raise
            raise CommandFailed(f"the node's checkpoint is of {counted(size, 'entry', 'entries')}, but the node "
                                f"refuses to serve them all ({e.detail}): it serves an earlier checkpoint now (its "
                                "data directory was restored from an older copy); run log verify again") from None
        if not page:
            raise CommandFailed(f"entry {index}: the node returned no entries from here")
        for raw in page:
            try:
                record = check_record(raw)
                check_follows(record, heads.get(record.iss))
            except InvalidRecord as e:
                raise CommandFailed(f"entry {index}: {e}") from None
            heads[record.iss] = record
            tree.add(leaf_hash(raw))
            index += 1
        progress(index, size)
    return tree.root(), heads
