"""An independent client of a transparency log, written from the specs and sharing no code with ledger/: RFC 9162
§2.1's recursive definitions (MTH, PATH, PROOF), proof checks in the recursive style of Go's
golang.org/x/mod/sumdb/tlog (runRecordProof, runTreeProof), and the C2SP signed-note, tlog-checkpoint and
tlog-cosignature formats. The tests hold vouchnet's answers to it byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from functools import cache

import nacl.exceptions
import nacl.signing


class Reference:
    """RFC 9162 §2.1 over a list of entries: the tree head and the exact proofs a log must serve for them."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.leaves = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
        self.mth = cache(self._mth)

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) (§2.1.1)."""
        if hi == lo:
            return hashlib.sha256(b"").digest()
        if hi - lo == 1:
            return self.leaves[lo]
        k = split(hi - lo)
        return hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]) (§2.1.3.1), m relative to lo."""
        if hi - lo == 1:
            return []
        k = split(hi - lo)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b) (§2.1.4.1), m relative to lo."""
        if m == hi - lo:
            return [] if b else [self.mth(lo, hi)]
        k = split(hi - lo)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def consistency(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[n]); from size 0, the empty proof (vouchnet's policy, DESIGN §4, as tlog-witness expects)."""
        return [] if m == 0 else self.subproof(m, 0, n, True)


def split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def included(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether `proof` shows `leaf` (a leaf hash) at `index` of the tree of `size` with `root` (tlog.CheckRecord)."""
    if not 0 <= index < size or any(len(h) != 32 for h in (leaf, root, *proof)):
        return False

    def run(p: Sequence[bytes], lo: int, hi: int) -> bytes | None:
        if hi - lo == 1:
            return leaf if not p else None
        if not p:
            return None
        k = split(hi - lo)
        if index < lo + k:
            th = run(p[:-1], lo, lo + k)
            return None if th is None else _node(th, p[-1])
        th = run(p[:-1], lo + k, hi)
        return None if th is None else _node(p[-1], th)

    return run(proof, 0, size) == root


def consistent(m: int, n: int, old: bytes, new: bytes, proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows the tree of size m with root `old` a prefix of the tree of size n with root `new`
    (tlog.CheckTree, with size 0 a prefix of any tree by the empty proof)."""
    if not 0 <= m <= n or any(len(h) != 32 for h in (old, new, *proof)):
        return False
    if m == 0:
        return not proof and old == hashlib.sha256(b"").digest() and (n > 0 or new == old)
    if m == n:
        return not proof and old == new

    def run(p: Sequence[bytes], lo: int, hi: int) -> tuple[bytes, bytes] | None:
        if m == hi:
            if lo == 0:
                return (old, old) if not p else None
            return (p[0], p[0]) if len(p) == 1 else None
        if not p:
            return None
        k = split(hi - lo)
        if m <= lo + k:
            got = run(p[:-1], lo, lo + k)
            return None if got is None else (got[0], _node(got[1], p[-1]))
        got = run(p[:-1], lo + k, hi)
        return None if got is None else (_node(p[-1], got[0]), _node(p[-1], got[1]))

    return run(proof, 0, n) == (old, new)


# --- C2SP signed notes -----------------------------------------------------------------------------------


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """signed-note: the first 4 bytes of SHA-256(key name || U+000A || signature type || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def checkpoint_text(origin: str, size: int, root: bytes) -> bytes:
    """tlog-checkpoint: the origin line, the decimal size, the base64 root hash, each ending in a newline."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()


def signature_line(name: str, raw: bytes) -> bytes:
    """signed-note: an em dash, a space, the key name, a space, base64(key ID || signature), a newline."""
    return f"\u2014 {name} {base64.b64encode(raw).decode()}\n".encode()


def log_signature(text: bytes, origin: str, key: nacl.signing.SigningKey) -> bytes:
    """The log's signature line over `text` (Ed25519, type 0x01, key name = origin); Ed25519 is deterministic."""
    return signature_line(origin, key_id(origin, 0x01, bytes(key.verify_key)) + key.sign(text).signature)


def cosignature(line: bytes, name: str, public_key: bytes, text: bytes) -> int | None:
    """The timestamp of a tlog-cosignature/v1 line by `name` over the checkpoint `text`, if it verifies: type 0x04,
    key ID, then a big-endian uint64 timestamp and an Ed25519 signature of "cosignature/v1\\ntime <t>\\n" || text."""
    prefix = f"\u2014 {name} ".encode()
    if not (line.startswith(prefix) and line.endswith(b"\n")):
        return None
    raw = base64.b64decode(line[len(prefix) : -1], validate=True)
    if len(raw) != 4 + 8 + 64 or raw[:4] != key_id(name, 0x04, public_key):
        return None
    timestamp = int.from_bytes(raw[4:12], "big")
    message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text
    try:
        nacl.signing.VerifyKey(public_key).verify(message, raw[12:])
    except nacl.exceptions.BadSignatureError:
        return None
    return timestamp if timestamp < 2**63 else None
