"""A stored Ledger's roots and proofs, held byte for byte to an independent reference (tests/tlog_reference.py:
RFC 9162 §2.1's definitions, checked as Go's sumdb/tlog checks them), for every (index, size) and (m, n) pair of
ledgers of 0 to 300 entries grown in random batches and reopened: at the current size (the in-memory frontier)
and at every past size (the stored tiles)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Ledger

from ..tlog_reference import Reference, consistent, included
from .test_merkle_vectors import POLICY, RFC6962_LEAVES, _b64, _load


def _check_size(ledger: Ledger, ref: Reference, n: int, *, current: bool) -> None:
    """Every inclusion proof into the tree of size n and every consistency proof from a smaller (or equal) tree,
    byte for byte the reference's; at the current size also checked as a client checks them."""
    root = ref.root(n)
    assert ledger.root(None if current else n) == root
    for index in range(n):
        proof = ledger.inclusion_proof(index, None if current else n)
        assert proof == ref.path(index, 0, n), (index, n)
        assert not current or included(ref.leaves[index], index, n, proof, root)
    for m in range(n + 1):
        proof = ledger.consistency_proof(m, None if current else n)
        assert proof == ref.consistency(m, n), (m, n)
        assert not current or consistent(m, n, ref.root(m), root, proof)


def test_every_proof_at_every_past_size_of_a_300_entry_ledger_is_rfc9162s(tmp_path):
    """Every (index, size) and (m, n) pair up to 300 from the stored tiles: the proofs of every smaller ledger."""
    entries = [i.to_bytes(2, "big") * (i % 5) for i in range(300)]
    ref = Reference(entries)
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ledger.append(entries)
        for n in range(301):
            _check_size(ledger, ref, n, current=False)


@settings(max_examples=10)
@given(
    batches=st.lists(st.integers(1, 70), max_size=12).map(
        lambda b: [x for i, x in enumerate(b) if sum(b[: i + 1]) <= 300]),
    salt=st.binary(max_size=8),
    reopen_after=st.integers(0, 12),
)
def test_every_proof_at_the_current_size_is_rfc9162s_as_a_ledger_grows(batches, salt, reopen_after):
    """After each batch appended (and once after reopening the file), every proof at the ledger's size, asked for
    by default and by number: the root and the tree's edge come from the in-memory frontier, not the tiles."""
    entries = [salt + i.to_bytes(2, "big") * (i % 5) for i in range(sum(batches))]
    ref = Reference(entries)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.sqlite"
        ledger = Ledger.open(path)
        try:
            _check_size(ledger, ref, 0, current=True)
            size = 0
            for i, batch in enumerate(batches):
                ledger.append(entries[size : size + batch])
                size += batch
                if i == reopen_after:
                    ledger.close()
                    ledger = Ledger.open(path)
                _check_size(ledger, ref, size, current=True)
        finally:
            ledger.close()


@pytest.mark.parametrize(("name", "v"), [*_load("inclusion"), *_load("consistency")],
                         ids=lambda x: x if isinstance(x, str) else "")
def test_the_reference_agrees_with_every_published_vector(name, v):
    """The reference against the transparency-dev vectors (so a disagreement above is the ledger's): each happy path
    is the proof it makes of the RFC 6962 tree, and its checks accept exactly the vectors upstream accepts (those
    from size 0 and with 12-byte placeholder roots aside: test_merkle_vectors.POLICY)."""
    proof = [_b64(p) for p in v["proof"] or []]
    if "leafIdx" in v:
        if v["desc"] == "happy path":
            assert Reference(RFC6962_LEAVES).path(v["leafIdx"], 0, v["treeSize"]) == proof
        accepted = included(_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], proof, _b64(v["root"]))
    else:
        if v["desc"] == "happy path":
            assert Reference(RFC6962_LEAVES).consistency(v["size1"], v["size2"]) == proof
        if v["size1"] == 0 or name in POLICY:
            return
        accepted = consistent(v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), proof)
    assert accepted is not v["wantErr"]
