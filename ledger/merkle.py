"""Merkle tree hashing and proofs exactly as RFC 9162 §2.1, as pure functions over stored subtree hashes.

Storage is behind `HashReader`: a tree stores the hash of every complete, aligned subtree, addressed as
(level, index) — level L, index n covers leaves [n * 2**L, (n + 1) * 2**L). Those hashes never change once
the subtree is full, so proofs and roots for any past size are computed from them without replaying entries.

Policy where RFC 9162 is silent (pinned by tests against the transparency-dev vectors): every hash is exactly
32 bytes; the tree of size 0 has the root SHA-256(""), and a consistency proof from size 0 is the empty proof
(as a C2SP tlog-witness expects).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]  # (level, index) of a complete, aligned subtree


class ProofError(ValueError):
    """A proof, root or size does not verify; the message says which rule failed."""


class HashReader(Protocol):
    """Reads stored subtree hashes; the one thing proofs need from storage."""

    def read_hashes(self, nodes: Sequence[Node]) -> list[bytes]: ...


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of one leaf, SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of an interior node, SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_hash(entries: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1: MTH(D[n]) of a whole list of entries (a reference; `Ledger.root` uses stored hashes)."""
    level = [leaf_hash(e) for e in entries]
    if not level:
        return EMPTY_ROOT
    # Folding pairs level by level and carrying an odd last node up unchanged gives exactly MTH's
    # "largest power of two smaller than n" split.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class Frontier:
    """RFC 9162 §2.1.1 MTH of a growing list of leaves in O(log n) memory: the roots of its perfect subtrees."""

    __slots__ = ("_subtrees",)

    def __init__(self) -> None:
        self._subtrees: list[tuple[int, bytes]] = []  # (height, hash), tallest first

    def add(self, leaf: bytes) -> list[bytes]:
        """Append a leaf by its hash (`leaf_hash(entry)`); the hashes of the subtrees it completes, by level: the
        leaf's, then each parent's up (for the n-th leaf from 0, the nodes (level, n >> level))."""
        height, digest = 0, leaf
        completed = [leaf]
        subtrees = self._subtrees
        while subtrees and subtrees[-1][0] == height:
            digest = node_hash(subtrees.pop()[1], digest)
            height += 1
            completed.append(digest)
        subtrees.append((height, digest))
        return completed

    def root(self) -> bytes:
        return _fold([digest for _, digest in self._subtrees]) if self._subtrees else EMPTY_ROOT


# --- Which stored hashes a computation needs -----------------------------------------------------------


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _cover(lo: int, hi: int) -> list[Node]:
    """The complete aligned subtrees covering leaves [lo, hi), left to right, largest first.

    Every range RFC 9162's recursion produces starts at a multiple of a power of two at least as large as its
    own largest subtree, so a greedy split is aligned.
    """
    nodes = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo % (1 << level):
            raise AssertionError(f"bad math in _cover: [{lo}, {hi}) is not aligned")
        nodes.append((level, lo >> level))
        lo += 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The MTH of a range from its cover's hashes: a right fold, as the RFC's recursion nests them."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def _range_hashes(ranges: Sequence[tuple[int, int]], reader: HashReader) -> list[bytes]:
    """MTH of each leaf range, reading every needed stored hash in one call."""
    covers = [_cover(lo, hi) for lo, hi in ranges]
    flat = [node for cover in covers for node in cover]
    hashes = reader.read_hashes(flat)
    if len(hashes) != len(flat) or any(len(h) != HASH_SIZE for h in hashes):
        raise AssertionError("HashReader returned the wrong number or size of hashes")
    out, pos = [], 0
    for cover in covers:
        out.append(_fold(hashes[pos : pos + len(cover)]))
        pos += len(cover)
    return out


# --- Proof generation -----------------------------------------------------------------------------------


def root_hash(size: int, reader: HashReader) -> bytes:
    """RFC 9162 §2.1.1: MTH of the first `size` leaves."""
    if size == 0:
        return EMPTY_ROOT
    return _range_hashes([(0, size)], reader)[0]


def _inclusion_ranges(index: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.3.1 PATH(m, D[lo:hi]) as leaf ranges, deepest sibling first."""
    ranges: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def inclusion_proof(index: int, size: int, reader: HashReader) -> list[bytes]:
    """RFC 9162 §2.1.3.1: the audit path of leaf `index` in the tree of `size` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"index: must be in [0, {size}), got {index}")
    return _range_hashes(_inclusion_ranges(index, 0, size), reader)


def _consistency_ranges(old: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[lo:hi], true) as leaf ranges, in proof order."""
    ranges: list[tuple[int, int]] = []
    complete = True  # the RFC's flag b: is D[lo:lo+m] a subtree the verifier already knows?
    m = old - lo
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def consistency_proof(old_size: int, new_size: int, reader: HashReader) -> list[bytes]:
    """RFC 9162 §2.1.4.1: proof that the tree of `old_size` is a prefix of the tree of `new_size`."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old: must be in [0, {new_size}], got {old_size}")
    if old_size in (0, new_size):
        return []
    return _range_hashes(_consistency_ranges(old_size, 0, new_size), reader)


# --- Proof verification ---------------------------------------------------------------------------------


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{name}: must be a {HASH_SIZE}-byte hash")


def _check_proof(proof: Iterable[bytes]) -> list[bytes]:
    proof = list(proof)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    return proof


def verify_inclusion(entry: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: check that `entry` is leaf `index` of the tree of `size` with `root`; raise ProofError."""
    verify_inclusion_hash(leaf_hash(entry), index, size, proof, root)


def verify_inclusion_hash(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2 given the leaf hash rather than the entry."""
    _check_hash("leaf", leaf)
    _check_hash("root", root)
    proof = _check_proof(proof)
    if not 0 <= index < size:
        raise ProofError(f"index: must be in [0, size={size}), got {index}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("proof: longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof: shorter than the tree is deep")
    if r != root:
        raise ProofError("root: the proof does not lead to this root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: check the tree of `old_size` is a prefix of the tree of `new_size`; raise ProofError."""
    _check_hash("old_root", old_root)
    _check_hash("new_root", new_root)
    proof = _check_proof(proof)
    if not 0 <= old_size <= new_size:
        raise ProofError(f"old_size: must be in [0, new_size={new_size}], got {old_size}")
    if old_size == 0:
        if proof:
            raise ProofError("proof: must be empty from size 0")
        if old_root != EMPTY_ROOT:
            raise ProofError("old_root: the tree of size 0 has the empty root SHA-256('')")
        if new_size == 0 and new_root != EMPTY_ROOT:
            raise ProofError("new_root: the tree of size 0 has the empty root SHA-256('')")
        return
    if old_size == new_size:
        if proof:
            raise ProofError("proof: must be empty when the sizes are equal")
        if old_root != new_root:
            raise ProofError("new_root: differs from old_root at the same size")
        return
    if not proof:
        raise ProofError("proof: must not be empty when the sizes differ")
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        proof = [old_root, *proof]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofError("proof: longer than the trees are deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof: shorter than the trees are deep")
    if fr != old_root:
        raise ProofError("old_root: the proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("new_root: the proof does not lead to the new root")


# --- Appending ------------------------------------------------------------------------------------------


def appended_levels(old_size: int, leaf_hashes: Sequence[bytes], reader: HashReader) -> list[list[bytes]]:
    """The subtree hashes that become complete when `leaf_hashes` are appended to a tree of `old_size`, by level.

    levels[L] holds the new nodes of level L in order, from index old_size >> L on. The few left siblings older
    than the batch are read from `reader` in one call; the rest is hashed a level at a time, pairwise.
    """
    new_size = old_size + len(leaf_hashes)

    def completes_above(level: int) -> bool:
        return new_size >> (level + 1) > old_size >> (level + 1)

    # A level whose first new node has an odd index pairs it with the last old node of that level.
    needed = [
        (level, (old_size >> level) - 1)
        for level in range(new_size.bit_length())
        if (old_size >> level) & 1 and completes_above(level)
    ]
    old = iter(reader.read_hashes(needed) if needed else ())
    levels = [list(leaf_hashes)]
    while completes_above(len(levels) - 1):
        row = levels[-1]
        if (old_size >> (len(levels) - 1)) & 1:
            row = [next(old), *row]
        levels.append(list(map(node_hash, row[0::2], row[1::2])))
    return levels


def hashes_to_store(old_size: int, leaf_hashes: Sequence[bytes], reader: HashReader) -> list[tuple[Node, bytes]]:
    """The subtree hashes that become complete when `leaf_hashes` are appended to a tree of `old_size`.

    Left siblings older than the batch are read from `reader` in one call; those inside it are computed here.
    """
    return [
        ((level, (old_size >> level) + i), h)
        for level, row in enumerate(appended_levels(old_size, leaf_hashes, reader))
        for i, h in enumerate(row)
    ]
