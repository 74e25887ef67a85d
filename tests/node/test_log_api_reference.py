"""The log API (DESIGN §8: /v1/log/checkpoint, entries, proof/inclusion, proof/consistency) as an independent client
following the specs sees it (tests/tlog_reference.py): every answer exact, every bad parameter a 4xx naming it."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from node.api import create_app
from vouching import did_key

from ..tlog_reference import Reference, checkpoint_text, consistent, cosignature, included, key_id, log_signature
from .fake_node import FakeNode, fake_node


@asynccontextmanager
async def served(directory: Path) -> AsyncIterator[tuple[FakeNode, httpx.AsyncClient]]:
    with fake_node(directory) as node:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as api:
            yield node, api


@pytest.fixture
async def served_node(tmp_path) -> AsyncIterator[tuple[FakeNode, httpx.AsyncClient]]:
    async with served(tmp_path) as pair:
        yield pair


def _entries(n: int, salt: bytes = b"") -> list[bytes]:
    return [salt + i.to_bytes(2, "big") * (i % 4) for i in range(n)]


def _hashes(answer: httpx.Response) -> list[bytes]:
    assert answer.status_code == 200, answer.text
    return [base64.b64decode(h, validate=True) for h in answer.json()["proof"]]


async def _inclusion(api: httpx.AsyncClient, ref: Reference, index: int, size: int, *, ask_size: bool = True) -> None:
    params = {"index": index, "size": size} if ask_size else {"index": index}
    answer = await api.get("/v1/log/proof/inclusion", params=params)
    proof = _hashes(answer)
    assert (answer.json()["index"], answer.json()["size"]) == (index, size)
    assert proof == ref.path(index, 0, size)
    assert included(ref.leaves[index], index, size, proof, ref.root(size))


async def _consistency(api: httpx.AsyncClient, ref: Reference, m: int, n: int, *, ask_new: bool = True) -> None:
    params = {"old": m, "new": n} if ask_new else {"old": m}
    answer = await api.get("/v1/log/proof/consistency", params=params)
    proof = _hashes(answer)
    assert (answer.json()["old"], answer.json()["new"]) == (m, n)
    assert proof == ref.consistency(m, n)
    assert consistent(m, n, ref.root(m), ref.root(n), proof)


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(0, 300), salt=st.binary(max_size=4), data=st.data())
async def test_proofs_at_the_log_s_edges_and_drawn_ones_are_exact(size, salt, data):
    """At the log's size, asked by default and by number: the first and last entries' inclusion, consistency from
    0, 1, the size before and the size itself; then pairs drawn at random below it (tests/ledger/
    test_proofs_reference.py has every pair from the ledger itself)."""
    entries = _entries(size, salt)
    ref = Reference(entries)
    with tempfile.TemporaryDirectory() as directory:
        async with served(Path(directory)) as (node, api):
            node.replica.store.ledger.append(entries)
            node.sign_checkpoint()
            for ask in (True, False):
                for index in sorted({0, size // 2, size - 1} & set(range(size))):
                    await _inclusion(api, ref, index, size, ask_size=ask)
                for m in sorted({0, 1, size - 1, size} & set(range(size + 1))):
                    await _consistency(api, ref, m, size, ask_new=ask)
            for _ in range(20 if size else 0):
                n = data.draw(st.integers(1, size))
                await _inclusion(api, ref, data.draw(st.integers(0, n - 1)), n)
                await _consistency(api, ref, data.draw(st.integers(0, n)), n)


async def test_an_empty_log_has_only_the_empty_consistency_proof(served_node):
    _, api = served_node
    assert (await api.get("/v1/log/proof/consistency", params={"old": 0})).json() == {"old": 0, "new": 0, "proof": []}


@pytest.mark.parametrize("limit", [1, 3, 256])
async def test_entries_paged_through_a_growing_log_neither_skip_nor_repeat(served_node, monkeypatch, limit):
    """Pages from where the last ended, each to the log's end as it then is, while entries are appended and
    checkpoints signed between them: together, exactly the log's entries in order; each page's `size` the latest
    checkpoint's when it was served."""
    monkeypatch.setattr("node.api.log.MAX_ENTRIES", limit)
    node, api = served_node
    entries = _entries(40)
    ledger = node.replica.store.ledger
    ledger.append(entries[:1])
    node.sign_checkpoint()
    seen: list[bytes] = []
    turn = 0
    while len(seen) < len(entries):
        turn += 1
        page = (await api.get("/v1/log/entries", params={"start": len(seen)})).json()
        assert page["start"] == len(seen) and page["end"] <= page["size"] == int(node.note.split(b"\n")[1])
        seen += [base64.b64decode(e) for e in page["entries"]]
        assert len(seen) == page["end"]
        ledger.append(entries[ledger.size : ledger.size + 3])
        if turn % 2:  # a checkpoint every other page: some pages are asked from the public log's end
            node.sign_checkpoint()
    assert seen == entries


async def test_proofs_asked_while_the_log_grows_are_for_the_size_asked_and_fit_checkpoints_before_and_after(
        served_node):
    """A client holding a checkpoint asks proofs at its size while the log grows; they verify against it, and a
    later checkpoint is consistent with it."""
    node, api = served_node
    entries = _entries(60)
    ref = Reference(entries)
    ledger = node.replica.store.ledger

    async def grow() -> None:
        for i in range(1, len(entries)):
            ledger.append(entries[i : i + 1])
            await trio.sleep(0)

    ledger.append(entries[:1])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(grow)
        while ledger.size < len(entries):
            before = node.sign_checkpoint()
            size = int(before.split(b"\n")[1])
            await _inclusion(api, ref, size - 1, size)
            await _inclusion(api, ref, 0, size)
            after = node.sign_checkpoint()
            await _consistency(api, ref, size, int(after.split(b"\n")[1]))
            await trio.sleep(0)


async def test_the_checkpoint_is_the_c2sp_note_byte_for_byte_and_its_cosignatures_verify(served_node):
    """tlog-checkpoint's text, a blank line, the log's signature line (key name = origin, key ID over type 0x01),
    then each witness's tlog-cosignature line (key ID over type 0x04, a timestamp, the signed message)."""
    node, api = served_node
    node.replica.store.ledger.append(_entries(5))
    witnesses = [SigningKey.generate() for _ in range(2)]
    node.sign_checkpoint(cosigners=tuple(witnesses))
    note = (await api.get("/v1/log/checkpoint")).content
    text = checkpoint_text(node.origin, 5, Reference(_entries(5)).root(5))
    head = text + b"\n" + log_signature(text, node.origin, node.replica.key)
    assert note.startswith(head)
    lines = note[len(head) :].splitlines(keepends=True)
    assert len(lines) == 2
    for line, witness in zip(lines, witnesses):
        name = f"vouchnet/{did_key(bytes(witness.verify_key))}"
        assert cosignature(line, name, bytes(witness.verify_key), text) is not None


_NOT_DECIMAL = ["1.0", "+1", " 1", "1 ", "01", "1_0", "-0", "", "\uff11"]  # the last a fullwidth digit one


@pytest.mark.parametrize("value", _NOT_DECIMAL)
@pytest.mark.parametrize(
    ("path", "name", "others"),
    [
        ("/v1/log/entries", "start", {}),
        ("/v1/log/entries", "end", {"start": "0"}),
        ("/v1/log/proof/inclusion", "index", {}),
        ("/v1/log/proof/inclusion", "size", {"index": "0"}),
        ("/v1/log/proof/consistency", "old", {}),
        ("/v1/log/proof/consistency", "new", {"old": "0"}),
    ],
)
async def test_a_position_or_size_not_in_plain_decimal_is_refused_naming_it(served_node, path, name, others, value):
    """A lax parser reads "01", "+1", " 1", "1.0" or "1_0" as 1 (or 10) and answers for it: an exact API says the
    parameter is malformed, as it does for "1e0" or "x"."""
    node, api = served_node
    node.replica.store.ledger.append(_entries(12))
    node.sign_checkpoint()
    answer = await api.get(path, params={**others, name: value})
    assert answer.status_code == 422, answer.text
    assert answer.json() == {
        "error": "invalid_request",
        "detail": f"query.{name}: must be a decimal integer: digits only, without sign, spaces or leading zeros",
    }


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/v1/log/entries", "start=1&start=2", "start"),
        ("/v1/log/entries", "start=0&end=1&end=2", "end"),
        ("/v1/log/proof/inclusion", "index=1&index=2", "index"),
        ("/v1/log/proof/inclusion", "index=1&size=3&size=4", "size"),
        ("/v1/log/proof/consistency", "old=1&old=2", "old"),
        ("/v1/log/proof/consistency", "old=1&new=3&new=4", "new"),
    ],
)
async def test_a_parameter_given_twice_is_refused_not_taken_once(served_node, path, query, name):
    """Which of two values a server takes is its own choice: a proof for one when the client meant the other would
    not verify, and the client would blame the log."""
    node, api = served_node
    node.replica.store.ledger.append(_entries(12))
    node.sign_checkpoint()
    answer = await api.get(f"{path}?{query}")
    assert answer.status_code == 422, answer.text
    assert answer.json() == {"error": "invalid_request", "detail": f"query.{name}: given 2 times; give it once"}


def test_the_reference_reproduces_a_published_witness_key_id():
    """The reference's key IDs against transparency-dev/formats' deployed type-0x04 vkey (tests/ledger/
    test_cosignature.REMORA_VKEY), so a disagreement above is vouchnet's, not the reference's."""
    name, hex_id, typed_key = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2".split("+")
    raw = base64.b64decode(typed_key)
    assert key_id(name, raw[0], raw[1:]).hex() == hex_id


async def test_proofs_default_to_the_latest_checkpoint_and_stop_there(served_node):
    """A client following the specs verifies a proof against a signed tree head: a proof to a size no checkpoint
    covers cannot be checked, and by default the API answers at the ledger's size, ahead of its checkpoint for up to
    an interval. Were the log's public size its latest checkpoint's (as a CT log's is its latest STH's), the default
    proof would always verify against GET /v1/log/checkpoint, and a size beyond it would be refused naming it."""
    node, api = served_node
    node.replica.store.ledger.append(_entries(5))
    node.sign_checkpoint(size=3)
    assert (await api.get("/v1/log/proof/inclusion", params={"index": 0})).json()["size"] == 3
    beyond = await api.get("/v1/log/proof/consistency", params={"old": 3, "new": 5})
    assert beyond.status_code == 400
    assert beyond.json()["detail"] == "query.new: must be at most the latest checkpoint's size, 3"
