"""Idempotency-Key on POST /v1/vouches and /v1/revocations (DESIGN §8, node/api/idempotent.py): a retry gets the first
record and signs nothing, across a restart too; another body is refused; keys are per route and expire."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import RecordStore
from node.api import create_app
from node.idempotency import WINDOW_MS, IdempotencyStore, IdempotencyStoreError, RecordKey
from vouching import load_stored

from ..factories import new_did
from .fake_node import TOKEN, FakeNode

AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = SigningKey.generate()


@contextmanager
def opened(directory: Path) -> Iterator[FakeNode]:
    """A node of one org (KEY) over `directory`: opened again, it is that node restarted."""
    with RecordStore.open(directory) as store:
        idempotency = IdempotencyStore.open(directory, log_size=0)
        try:
            yield FakeNode(Replica(KEY, store, roots=(), max_hops=2, held_limit=100), idempotency)
        finally:
            idempotency.close()


@asynccontextmanager
async def api_of(node: FakeNode) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(node), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://node", headers=AUTH) as api:
        yield api


def vouch_body() -> dict[str, object]:
    return {"subject": new_did(), "weight": 0.5, "basis": "operator"}


def own(node: FakeNode, kind: str) -> list[bytes]:
    return [raw for _, raw in node.replica.store.query(issuer=node.did, kind=kind, after=-1, limit=100)]


async def test_a_retried_vouch_gets_the_first_record_and_signs_nothing(tmp_path):
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            body = vouch_body()
            first, retry = [await api.post("/v1/vouches", json=body, headers={"Idempotency-Key": "k"})
                            for _ in range(2)]
        assert (first.status_code, retry.status_code) == (201, 201)
        assert retry.json() == first.json() and retry.headers["location"] == first.headers["location"]
        assert (first.headers.get("idempotent-replayed"), retry.headers["idempotent-replayed"]) == (None, "true")
        assert len(own(node, "vouch")) == 1


async def test_a_key_used_for_another_body_is_refused_and_signs_nothing(tmp_path):
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            first = await api.post("/v1/vouches", json=vouch_body(), headers={"Idempotency-Key": "k"})
            other = await api.post("/v1/vouches", json=vouch_body(), headers={"Idempotency-Key": "k"})
        assert (first.status_code, other.status_code, other.json()["error"]) == (201, 422, "idempotency_key_reused")
        assert len(own(node, "vouch")) == 1


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.permutations(["subject", "weight", "basis", "expires"]), st.sampled_from(["", " ", "\n  "]))
async def test_the_same_vouch_spelt_otherwise_is_a_retry(tmp_path_factory, order, space):
    """The body is compared as parsed: field order and whitespace do not make it another vouch."""
    body = {**vouch_body(), "expires": 2**53 - 1}
    spelt = "{" + ",".join(f'{space}"{name}":{space}{_json(body[name])}' for name in order) + "}"
    with opened(tmp_path_factory.mktemp("node")) as node:
        async with api_of(node) as api:
            first = await api.post("/v1/vouches", json=body, headers={"Idempotency-Key": "k"})
            retry = await api.post("/v1/vouches", content=spelt, headers={"Idempotency-Key": "k",
                                                                         "Content-Type": "application/json"})
    assert (retry.status_code, retry.json()["id"]) == (201, first.json()["id"])


def _json(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


async def test_a_retry_sent_with_the_first_at_once_is_stored_once(tmp_path):
    answers: list[httpx.Response] = []
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            body = vouch_body()

            async def post() -> None:
                answers.append(await api.post("/v1/vouches", json=body, headers={"Idempotency-Key": "k"}))

            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(post)
        assert {(a.status_code, a.json()["id"]) for a in answers} == {(201, answers[0].json()["id"])}
        assert sorted(a.headers.get("idempotent-replayed", "") for a in answers) == [""] + ["true"] * 7
        assert len(own(node, "vouch")) == 1


async def test_a_vouch_stored_before_a_crash_is_the_retry_answer_after_the_restart(tmp_path, monkeypatch):
    """The node dies between storing the record and answering (here: the answer fails); restarted, the retry gets
    the record stored, and nothing more is signed."""
    body = vouch_body()
    with opened(tmp_path) as node:
        with monkeypatch.context() as patch:
            patch.setattr("node.api.records._created", _crash)
            async with api_of(node) as api:
                lost = await api.post("/v1/vouches", json=body, headers={"Idempotency-Key": "k"})
        assert lost.status_code == 500
        (stored,) = own(node, "vouch")
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            retry = await api.post("/v1/vouches", json=body, headers={"Idempotency-Key": "k"})
        assert (retry.status_code, retry.headers["idempotent-replayed"]) == (201, "true")
        assert own(node, "vouch") == [stored] and retry.json()["id"] == load_stored(stored).id.hex()


def _crash(*args: object) -> None:
    raise RuntimeError("the node died before answering")


async def test_a_vouch_whose_key_was_kept_but_not_the_record_is_signed_once_by_the_retry(tmp_path, monkeypatch):
    """The node dies after making the key durable and before storing the record: restarted, the retry signs it,
    once, and is answered 201 as a first request; a retry after that gets that record."""
    body = vouch_body()
    with opened(tmp_path) as node:
        with monkeypatch.context() as patch:
            patch.setattr(Replica, "_accept_own", _crash)
            async with api_of(node) as api:
                assert (await api.post("/v1/vouches", json=body, headers={"Idempotency-Key": "k"})).status_code == 500
        assert node.idempotency.lookup_record("vouches", "k") is not None and own(node, "vouch") == []
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            signed, again = [await api.post("/v1/vouches", json=body, headers={"Idempotency-Key": "k"})
                             for _ in range(2)]
        assert (signed.status_code, signed.headers.get("idempotent-replayed")) == (201, None)
        assert (again.status_code, again.json()["id"]) == (201, signed.json()["id"])
        assert len(own(node, "vouch")) == 1


async def test_a_retried_revocation_gets_the_first_revoke_not_a_conflict(tmp_path):
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            vouch = (await api.post("/v1/vouches", json=vouch_body())).json()
            body = {"record": vouch["id"], "reason": "retired"}
            first, retry = [await api.post("/v1/revocations", json=body, headers={"Idempotency-Key": "r"})
                            for _ in range(2)]
            other = await api.post("/v1/revocations", json={**body, "reason": "left"}, headers={"Idempotency-Key": "r"})
            unkeyed = await api.post("/v1/revocations", json=body)
        assert (first.status_code, retry.status_code, retry.headers["idempotent-replayed"]) == (201, 201, "true")
        assert retry.json() == first.json()
        assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
        assert unkeyed.status_code == 409  # without a key, as before: already revoked
        assert len(own(node, "revoke")) == 1


async def test_keys_are_per_route(tmp_path):
    """A vouch's key sent with a revocation names no revocation: the revocation is signed."""
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            vouch = await api.post("/v1/vouches", json=vouch_body(), headers={"Idempotency-Key": "k"})
            revoke = await api.post("/v1/revocations", json={"record": vouch.json()["id"], "reason": "retired"},
                                    headers={"Idempotency-Key": "k"})
    assert (revoke.status_code, revoke.json()["kind"]) == (201, "revoke")
    assert "idempotent-replayed" not in revoke.headers


async def test_a_key_that_cannot_be_kept_signs_nothing(tmp_path, monkeypatch):
    """idempotency.db refuses the key (a full disk): 503, and the vouch is not stored, so a retry signs it once."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise IdempotencyStoreError("idempotency.db: reserve: database or disk is full")

    with opened(tmp_path) as node:
        monkeypatch.setattr(IdempotencyStore, "reserve_record", refuse)
        async with api_of(node) as api:
            answer = await api.post("/v1/vouches", json=vouch_body(), headers={"Idempotency-Key": "k"})
        assert (answer.status_code, answer.json()["error"]) == (503, "storage")
        assert own(node, "vouch") == []


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_an_unusable_key_is_refused_and_signs_nothing(tmp_path, key):
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            answer = await api.post("/v1/vouches", json=vouch_body(), headers={"Idempotency-Key": key.encode()})
        assert (answer.status_code, answer.json()["error"]) == (400, "bad_request")
        assert answer.json()["detail"].startswith("Idempotency-Key: ")
        assert own(node, "vouch") == []


def test_record_keys_expire_with_the_event_keys(tmp_path):
    store = IdempotencyStore.open(tmp_path, log_size=0)
    try:
        store.reserve_record("vouches", "old", RecordKey(b"f", b"1" * 32), at=1_000)
        store.reserve_record("vouches", "new", RecordKey(b"f", b"2" * 32), at=1_000 + WINDOW_MS)
        assert store.expire(1_001) == 1
        assert store.lookup_record("vouches", "old") is None
        assert store.lookup_record("vouches", "new") == RecordKey(b"f", b"2" * 32)
    finally:
        store.close()


async def test_openapi_describes_the_header_and_its_refusals(tmp_path):
    with opened(tmp_path) as node:
        async with api_of(node) as api:
            spec = (await api.get("/openapi.json")).json()
    for path in ("/v1/vouches", "/v1/revocations"):
        post = spec["paths"][path]["post"]
        (header,) = [p for p in post["parameters"] if p["in"] == "header"]
        assert (header["name"], header["required"]) == ("Idempotency-Key", False)
        assert "sent again on its retries" in header["description"]
        assert "Idempotency-Key used before" in post["responses"]["422"]["description"]
        assert "Idempotent-Replayed: true" in post["description"]
