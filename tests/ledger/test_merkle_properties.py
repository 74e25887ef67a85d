"""Property tests: generated proofs verify for every size and index, and any flipped bit is rejected."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle

from .flip import flip_bit
from .memory_tree import MemoryTree


def _entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


@st.composite
def _size_and_index(draw):
    size = draw(st.integers(1, 300))
    return size, draw(st.integers(0, size - 1))


@st.composite
def _two_sizes(draw):
    new = draw(st.integers(1, 300))
    return draw(st.integers(1, new)), new


@given(st.integers(0, 300))
def test_stored_root_equals_reference_tree_hash(n):
    tree = MemoryTree(_entries(n))
    assert merkle.root_hash(n, tree) == merkle.tree_hash(_entries(n))


@given(st.lists(st.integers(0, 40), max_size=8))
def test_batch_boundaries_do_not_change_stored_hashes(batches):
    whole = MemoryTree(_entries(sum(batches)))
    parts = MemoryTree()
    start = 0
    for b in batches:
        parts.append(_entries(start + b)[start:])
        start += b
    assert parts.hashes == whole.hashes


@given(st.integers(0, 300), st.integers(0, 300))
def test_appended_levels_are_the_new_complete_subtrees(old, added):
    entries = _entries(old + added)
    tree = MemoryTree(entries[:old])
    levels = merkle.appended_levels(old, [merkle.leaf_hash(e) for e in entries[old:]], tree)
    for level, row in enumerate(levels):
        first = old >> level
        assert len(row) == ((old + added) >> level) - first
        for i, h in enumerate(row):
            n = first + i
            assert h == merkle.tree_hash(entries[n << level : (n + 1) << level])
    assert ((old + added) >> len(levels)) == (old >> len(levels))  # no level above the last one completes


@given(_size_and_index(), st.integers(0, 300))
def test_inclusion_proof_verifies_at_every_past_size(size_index, extra):
    size, index = size_index
    tree = MemoryTree(_entries(size + extra))  # proofs for an old size come from a bigger tree
    proof = merkle.inclusion_proof(index, size, tree)
    merkle.verify_inclusion(_entries(size)[index], index, size, proof, merkle.root_hash(size, tree))


# Not "size": an inclusion proof binds the index and the root; the signed checkpoint binds the root to its size.
@given(_size_and_index(), st.integers(0, 10_000), st.sampled_from(["entry", "proof", "root", "index"]))
def test_inclusion_rejects_any_change(size_index, bit, what):
    size, index = size_index
    tree = MemoryTree(_entries(size))
    entry, proof, root = _entries(size)[index], merkle.inclusion_proof(index, size, tree), merkle.root_hash(size, tree)
    if what == "entry":
        entry = flip_bit(entry, bit)
    elif what == "proof":
        if not proof:
            return
        i = bit % len(proof)
        proof[i] = flip_bit(proof[i], bit // len(proof))
    elif what == "root":
        root = flip_bit(root, bit)
    else:
        index ^= 1 << (bit % 10)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(entry, index, size, proof, root)


@given(_two_sizes())
def test_consistency_proof_verifies(sizes):
    old, new = sizes
    tree = MemoryTree(_entries(new))
    proof = merkle.consistency_proof(old, new, tree)
    merkle.verify_consistency(old, new, merkle.root_hash(old, tree), merkle.root_hash(new, tree), proof)


@given(_two_sizes(), st.integers(0, 10_000), st.sampled_from(["proof", "old_root", "new_root", "extra", "drop"]))
def test_consistency_rejects_any_change(sizes, bit, what):
    old, new = sizes
    tree = MemoryTree(_entries(new))
    proof = merkle.consistency_proof(old, new, tree)
    old_root, new_root = merkle.root_hash(old, tree), merkle.root_hash(new, tree)
    if what == "proof":
        if not proof:
            return
        i = bit % len(proof)
        proof[i] = flip_bit(proof[i], bit // len(proof))
    elif what == "old_root":
        old_root = flip_bit(old_root, bit)
    elif what == "new_root":
        new_root = flip_bit(new_root, bit)
    elif what == "extra":
        proof.append(old_root)
    elif not proof:
        return
    else:
        proof.pop()
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(old, new, old_root, new_root, proof)


@settings(max_examples=50)
@given(_two_sizes())
def test_a_rewritten_history_is_not_consistent(sizes):
    old, new = sizes
    honest = MemoryTree(_entries(new))
    forked = _entries(new)
    forked[old - 1] = b"rewritten"
    fork = MemoryTree(forked)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(
            old, new, merkle.root_hash(old, honest), merkle.root_hash(new, fork),
            merkle.consistency_proof(old, new, fork),
        )


def test_bad_arguments_to_proof_generation_are_value_errors():
    tree = MemoryTree(_entries(4))
    with pytest.raises(ValueError, match="index"):
        merkle.inclusion_proof(4, 4, tree)
    with pytest.raises(ValueError, match="old"):
        merkle.consistency_proof(5, 4, tree)


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_a_frontier_grown_leaf_by_leaf_has_the_whole_lists_root(entries):
    frontier = merkle.Frontier()
    for entry in entries:
        frontier.add(merkle.leaf_hash(entry))
    assert frontier.root() == merkle.tree_hash(entries)


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_a_frontier_names_every_subtree_each_leaf_completes_as_the_tree_stores_it(entries):
    """The n-th leaf added completes nodes (level, n >> level) for level 0, 1, ...: exactly every stored hash, once."""
    frontier, completed = merkle.Frontier(), {}
    for n, entry in enumerate(entries):
        for level, digest in enumerate(frontier.add(merkle.leaf_hash(entry))):
            assert (level, n >> level) not in completed
            completed[(level, n >> level)] = digest
    assert completed == MemoryTree(entries).hashes
