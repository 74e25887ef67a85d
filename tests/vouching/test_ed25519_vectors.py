"""Which edge-case Ed25519 signatures PyNaCl (libsodium) accepts, pinned: every node must agree on them.

libsodium's crypto_sign_verify_detached rejects a public key A or a commitment R of small order, any
non-canonical encoding of A or R, and S >= L, and checks [S]B = R + [k]A without the cofactor, so signatures
whose low-order components do not cancel (low_order_residue) fail too. In the C2SP/CCTV vectors that leaves
exactly the vectors flagged with nothing but low_order_component_A / low_order_component_R (43 of 914) —
the same set as ed25519-dalek's verify_strict, and stricter than ref10/Go/OpenSSL (which accept low-order A).
A dependency upgrade that changes this set changes which records the network accepts, so it must fail here.
"""

import json
from pathlib import Path

import nacl.exceptions
import nacl.signing

VECTORS = json.loads((Path(__file__).parents[1] / "vectors/ed25519/ed25519vectors.json").read_text())
ACCEPTED = {
    7, 29, 50, 117, 139, 161, 182, 249, 305, 411, 425, 438, 465, 473, 481, 489, 497, 511, 525, 538, 565, 573,
    581, 589, 597, 611, 625, 638, 665, 673, 681, 689, 697, 711, 725, 738, 765, 773, 781, 789, 797, 832, 899,
}  # fmt: skip
REJECTING_FLAGS = {"low_order_A", "low_order_R", "non_canonical_A", "non_canonical_R", "low_order_residue"}


def _accepts(vector: dict) -> bool:
    key = nacl.signing.VerifyKey(bytes.fromhex(vector["key"]))
    try:
        key.verify(vector["msg"].encode(), bytes.fromhex(vector["sig"]))
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def test_accepted_set_is_pinned() -> None:
    assert len(VECTORS) == 914
    assert {vector["number"] for vector in VECTORS if _accepts(vector)} == ACCEPTED


def test_accepted_set_is_the_documented_rule() -> None:
    by_rule = {vector["number"] for vector in VECTORS if not REJECTING_FLAGS & set(vector["flags"] or ())}
    assert by_rule == ACCEPTED

