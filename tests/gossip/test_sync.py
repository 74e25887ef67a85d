"""Catch-up sync without a network: random record sets on two replicas converge, forks become evidence, gaps are
filled, every page keeps both sides' limits, and hostile frames give RemoteProtocolError and nothing else."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import RecordStore
from gossip.sync import (
    Deliver,
    Finished,
    IssuerIndex,
    ReadNext,
    Send,
    SyncClient,
    SyncLimits,
    SyncServer,
    check_page,
)
from gossip.sync_messages import (
    ID_SIZE,
    MAX_ISSUER,
    MAX_RANGES,
    MAX_RETRY,
    MAX_SEQ,
    Busy,
    CheckpointRequest,
    ErrorReply,
    HeldCheckpoint,
    HeadEntry,
    HeadsPage,
    HeadsRequest,
    LocalProtocolError,
    OtherNetwork,
    OtherNetworkPeer,
    PeerBusy,
    Range,
    RecordsPage,
    RecordsRequest,
    RemoteProtocolError,
    decode_reply,
    decode_request,
    encode_held_heads,
    encode_message,
)
from vouching import Record, did_key, vouch_body
from vouching.bodies import NETWORK_PATTERN
from vouching.cbor import encode

from ..factories import Org

CHAIN = 12
ORGS = [Org() for _ in range(4)]
CHAINS = {org.did: [org.record() for _ in range(CHAIN)] for org in ORGS}
FORKED = ORGS[0]  # a second chain of ORGS[0], branching after FORK_AT records
FORK_AT = 4
FORK = [*CHAINS[FORKED.did][:FORK_AT]]
_fork_signer = Org(key=FORKED.key, seq=FORK_AT, prev=FORK[-1].id, ts=FORKED.ts + 10_000)
FORK += [_fork_signer.record() for _ in range(CHAIN - FORK_AT)]
SMALL = SyncLimits(page_records=3, page_bytes=64 * 1024, heads_page=2, max_ranges=2)

limits = st.builds(
    SyncLimits,
    page_records=st.integers(1, 6),
    page_bytes=st.just(64 * 1024),
    heads_page=st.integers(1, 4),
    max_ranges=st.integers(1, 4),
)
prefixes = st.lists(st.integers(0, CHAIN), min_size=len(ORGS), max_size=len(ORGS))
owns = st.frozensets(st.sampled_from([org.did for org in ORGS]))  # the keys of the pulling node's org


@dataclass
class Side:
    replica: Replica
    index: IssuerIndex

    @property
    def store(self) -> RecordStore:
        return self.replica.store

    def records(self) -> set[bytes]:
        return {raw for _, raw in self.store.query(limit=self.store.size)}


@contextmanager
def sides(count: int, *, roots: tuple[str, ...] = tuple(o.did for o in ORGS),
          mutual: bool = True) -> Iterator[list[Side]]:
    """Replicas in a temporary directory; `mutual`: each trusts the others (their evidence records flow)."""
    keys = [SigningKey.generate() for _ in range(count)]
    if mutual:
        roots = (*roots, *(did_key(bytes(k.verify_key)) for k in keys))
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        made = []
        for i, key in enumerate(keys):
            (Path(tmp) / str(i)).mkdir()
            store = stack.enter_context(RecordStore.open(Path(tmp) / str(i)))
            replica = Replica(key, store, roots=roots, max_hops=3, held_limit=1000)
            index = IssuerIndex(store)
            replica.listeners.append(index.add)
            made.append(Side(replica, index))
        yield made


def give(side: Side, records: list[Record]) -> None:
    side.replica.accept(records)


def session(client_side: Side, server_side: Side, client_limits: SyncLimits, server_limits: SyncLimits | None = None,
            *, gaps: dict[str, tuple[int, int]] | None = None, own: frozenset[str] = frozenset(),
            asked: list[tuple[tuple[Range, ...], bool]] | None = None) -> int:
    """One session, client pulling from server, frames checked against both sides' limits; records accepted. `asked`
    gets each records request's ranges, and whether the client held its org's records (`own`) as it sent it."""
    server_limits = server_limits or client_limits
    client = SyncClient(client_side.store, client_side.replica.horizon, client_limits, gaps=gaps, own=own)
    server = SyncServer(server_side.store, server_side.index, server_limits)
    accepted = 0
    replies: Iterator[bytes] = iter(())
    event = client.start()
    while not isinstance(event, Finished):
        if isinstance(event, Send):
            assert len(event.payload) <= server_limits.max_frame
            if asked is not None and isinstance(request := decode_request(event.payload), RecordsRequest):
                asked.append((request.ranges, client.holds_own()))
            replies = server.receive(event.payload)
            event = client.receive(_checked_reply(next(replies), client_limits, server_limits))
        elif isinstance(event, ReadNext):
            event = client.receive(_checked_reply(next(replies), client_limits, server_limits))
        else:
            assert isinstance(event, Deliver)
            offered, event = client.deliver(check_page(event.records))
            accepted += len(client_side.replica.accept(offered).accepted)
    assert next(replies, None) is None  # the server said all it had to say
    return accepted


def _checked_reply(payload: bytes, client_limits: SyncLimits, server_limits: SyncLimits) -> bytes:
    assert len(payload) <= client_limits.max_frame
    reply = decode_reply(payload)
    if isinstance(reply, RecordsPage):
        assert len(reply.records) <= min(client_limits.page_records, server_limits.page_records)
        assert sum(map(len, reply.records)) <= min(client_limits.page_bytes, server_limits.page_bytes)
    if isinstance(reply, HeadsPage):
        assert len(reply.heads) <= min(client_limits.heads_page, server_limits.heads_page)
    return payload


def converge(a: Side, b: Side, client_limits: SyncLimits, server_limits: SyncLimits | None = None, *,
             own: frozenset[str] = frozenset()) -> None:
    """Pull both ways until neither side changes (the service repeats rounds, and reacts to a growing horizon); `own`,
    the keys of either side's org, asked for first."""
    for _ in range(10):
        before = (a.store.size, b.store.size)
        session(a, b, client_limits, server_limits, own=own)
        session(b, a, client_limits, server_limits, own=own)
        if (a.store.size, b.store.size) == before:
            return
    raise AssertionError("sync did not reach a fixed point in 10 rounds")


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(prefixes, prefixes, limits, limits, owns)
def test_random_record_sets_converge_to_their_union(ours, theirs, client_limits, server_limits, own):
    with sides(2) as (a, b):
        for org, n, m in zip(ORGS, ours, theirs):
            give(a, CHAINS[org.did][:n])
            give(b, CHAINS[org.did][:m])
        converge(a, b, client_limits, server_limits, own=own)
        expected = {r.raw for org, n, m in zip(ORGS, ours, theirs) for r in CHAINS[org.did][: max(n, m)]}
        assert a.records() == b.records() == expected
        assert a.store.heads() == b.store.heads()
        assert not a.replica.flagged and not b.replica.flagged


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(FORK_AT + 1, CHAIN), st.integers(FORK_AT + 1, CHAIN), limits, owns)
def test_two_branches_of_one_chain_flag_the_issuer_on_both_sides(ours, theirs, client_limits, own):
    with sides(2) as (a, b):
        give(a, CHAINS[FORKED.did][:ours])
        give(b, FORK[:theirs])
        converge(a, b, client_limits, own=own)
        assert FORKED.did in a.replica.flagged and FORKED.did in b.replica.flagged
        assert a.replica.held_count == b.replica.held_count == 0  # the other branch was never taken on


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(FORK_AT + 1, CHAIN), st.integers(FORK_AT + 1, CHAIN), limits)
def test_a_peer_behind_on_another_branch_is_evidence_without_its_equivocation_record(ours, theirs, client_limits):
    """The side ahead learns of the fork from the peer's head: the peer's pull shows the peer the fork, but its
    equivocation record is a record of an org outside the side's horizon (not `mutual`), which the side never
    stores; and a peer holding the other branch may sign no evidence at all."""
    with sides(2, mutual=False) as (a, b):
        give(a, CHAINS[FORKED.did][:ours])
        give(b, FORK[:theirs])
        session(b, a, client_limits)
        session(a, b, client_limits)
        assert FORKED.did in a.replica.flagged and FORKED.did in b.replica.flagged


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(prefixes, prefixes, limits, owns)
def test_a_round_asks_for_the_org_s_records_before_any_other_issuer_s(ours, theirs, client_limits, own):
    """What a node may sign next depends only on its org's records: a node restored from an older copy, far behind,
    holds them again (and its catch-up ends) before the rest of the round. Before: ranges came in issuer order, and
    the org's could be the last of 10^5 records."""
    with sides(2) as (a, b):
        for org, n, m in zip(ORGS, ours, theirs):
            give(a, CHAINS[org.did][:n])
            give(b, CHAINS[org.did][:m])
        asked: list[tuple[tuple[Range, ...], bool]] = []
        session(a, b, client_limits, own=own, asked=asked)
        of_own = [{r.iss in own for r in ranges} for ranges, _ in asked]
        assert all(len(kinds) == 1 for kinds in of_own)  # never the org's ranges and another issuer's in one request
        org_s = [kinds == {True} for kinds in of_own]  # (as booleans: sets, ordered by inclusion, never sort)
        assert org_s == sorted(org_s, reverse=True)  # the org's first
        named = any(m for org, m in zip(ORGS, theirs) if org.did in own)  # the peer's heads named one of its keys
        held_after = [held for (_, held), kinds in zip(asked, of_own) if kinds == {False}]
        assert all(held == named for held in held_after)  # its records held before any other issuer's is asked for


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, CHAIN), st.integers(0, CHAIN), st.integers(1, CHAIN), st.integers(0, CHAIN), limits)
def test_a_targeted_fetch_fills_the_gap_and_nothing_else(ours, theirs, first, span, client_limits):
    org = ORGS[1]
    with sides(2) as (a, b):
        give(a, CHAINS[org.did][:ours])
        give(b, CHAINS[org.did][:theirs])
        give(b, CHAINS[ORGS[2].did])
        last = min(first + span, MAX_SEQ)
        session(a, b, client_limits, gaps={org.did: (first, last)})
        expected = max(ours, min(theirs, last)) if first <= ours + 1 else ours
        assert a.store.heads().get(org.did, 0) == expected
        assert ORGS[2].did not in a.store.heads()


def test_a_gap_fetch_releases_records_held_for_their_predecessors():
    org = ORGS[1]
    chain = CHAINS[org.did]
    with sides(2) as (a, b):
        give(b, chain)
        outcome = a.replica.accept(chain[10:12])  # gossip brought 11 and 12 first
        assert outcome.gaps[org.did][0] == 1 and a.replica.held_count == 2
        assert session(a, b, SMALL, gaps=outcome.gaps) == 12
        assert a.replica.held_count == 0


def test_whole_histories_of_orgs_that_enter_the_horizon_are_fetched():
    near, far, stranger = Org(), Org(), Org()
    near_chain = [near.record() for _ in range(3)] + [near.vouch(far.did)]
    far_chain = [far.record() for _ in range(5)]
    with sides(2, roots=(), mutual=False) as (a, b):
        b.replica.issue("vouch", vouch_body(near.did, 0.9, "org-peer"))
        b.replica.issue("vouch", vouch_body(stranger.did, 0.9, "org-peer"))
        give(b, near_chain + [stranger.record()])
        give(b, far_chain)  # far is inside b's horizon once near's vouch for it is accepted
        a.replica.issue("vouch", vouch_body(near.did, 0.9, "org-peer"))  # near, and through it far, enter
        converge(a, b, SMALL)
        assert {r.raw for r in near_chain + far_chain} <= a.records()
        assert stranger.did not in a.store.heads() and b.replica.did not in a.store.heads()


# --- Limits --------------------------------------------------------------------------------------------------


def test_a_server_keeps_its_own_limits_below_what_the_client_asks():
    org = ORGS[1]
    generous = SyncLimits(page_records=1000, heads_page=1000)
    with sides(2) as (a, b):
        give(b, CHAINS[org.did])
        assert session(a, b, generous, SMALL) == CHAIN  # _checked_reply asserts every page kept SMALL's bounds


def test_pages_stop_at_the_byte_budget_and_the_last_says_so():
    org = Org()
    chain = [org.record() for _ in range(300)]  # ~80 KB: more than the smallest byte budget, one record's worth
    budget = 64 * 1024
    with sides(1, roots=(org.did,)) as (b,):
        give(b, chain)
        server = SyncServer(b.store, b.index, SyncLimits(page_records=1000, page_bytes=budget))
        request = RecordsRequest((Range(org.did, 1, MAX_SEQ),), limit=1000, max_bytes=10 * budget)
        pages = [decode_reply(p) for p in server.receive(encode_message(request))]
        assert [p.more for p in pages] == [True] * (len(pages) - 1) + [False] and len(pages) == 2
        assert all(sum(map(len, p.records)) <= budget for p in pages)
        assert [r for p in pages for r in p.records] == [r.raw for r in chain]
        assert server.records_served == len(chain)


# --- Hostile peers ----------------------------------------------------------------------------------------


def _client_in(state: str, side: Side) -> SyncClient:
    """A client waiting for a heads page, or for a records page of ORGS[1] seq 1..CHAIN."""
    if state == "heads":
        client = SyncClient(side.store, side.replica.horizon, SMALL)
    else:
        client = SyncClient(side.store, side.replica.horizon, SMALL, gaps={ORGS[1].did: (1, CHAIN)})
    assert isinstance(client.start(), Send)
    return client


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.text(max_size=30) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["t", "heads", "records", "more",
                                                                                  "after", "ranges", "limit", "bytes",
                                                                                  "sig", "status", "reason", "size",
                                                                                  "req", "retry", "x"]), inner,
                                                              max_size=5),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {"t": st.sampled_from(["heads", "records", "get", "cosign", "cosigned", "refused", "error", "busy", "other"])},
    optional={k: cbor_values for k in ["heads", "records", "more", "after", "ranges", "limit", "bytes", "req", "sig",
                                       "status", "reason", "size", "retry"]},
)
ALL_RAWS = [r.raw for chain in (*CHAINS.values(), FORK) for r in chain]
CORRUPT = ALL_RAWS[0][:-1] + bytes([ALL_RAWS[0][-1] ^ 1])  # its signature no longer verifies
dids = st.sampled_from([*CHAINS, "did:key:zUnknown", ""])
networks = st.from_regex(NETWORK_PATTERN, fullmatch=True)
well_formed_replies = st.one_of(
    st.builds(RecordsPage, st.lists(st.sampled_from(ALL_RAWS) | st.just(CORRUPT), max_size=5).map(tuple),
              st.booleans()),
    st.builds(HeadsPage, st.lists(st.builds(HeadEntry, dids.filter(bool), st.integers(1, MAX_SEQ),
                                            st.binary(min_size=32, max_size=32)), max_size=4).map(tuple),
              st.booleans()),
    st.builds(ErrorReply, st.text(max_size=20)),
    st.builds(Busy, st.integers(1, MAX_RETRY), st.text(max_size=20)),
    st.builds(OtherNetwork, networks),
).map(encode_message)
well_formed_requests = st.one_of(
    st.builds(HeadsRequest, dids, st.integers(1, 2**32 - 1), st.none() | networks),
    st.builds(CheckpointRequest, st.none() | networks),
    st.builds(RecordsRequest, st.lists(st.builds(lambda iss, first, span: Range(iss, first, min(first + span, MAX_SEQ)),
                                                 dids.filter(bool), st.integers(1, MAX_SEQ), st.integers(0, 40)),
                                       min_size=1, max_size=4).map(tuple),
              st.integers(1, 2**32 - 1), st.integers(64 * 1024, 2**32 - 1)),
).map(encode_message)
hostile_frames = st.one_of(st.binary(max_size=200), message_like.map(encode), cbor_values.map(encode))


@pytest.fixture(scope="module")
def lone_side() -> Iterator[Side]:
    """One replica holding three records of ORGS[1], shared by examples that never change it."""
    with sides(1) as (side,):
        give(side, CHAINS[ORGS[1].did][:3])
        yield side


@settings(max_examples=250)
@given(st.sampled_from(["heads", "records"]), st.lists(hostile_frames | well_formed_replies, min_size=1, max_size=4))
def test_any_frames_a_server_sends_a_client_are_handled_or_its_fault(lone_side, state, frames):
    client = _client_in(state, lone_side)
    try:
        for frame in frames:
            event = client.receive(frame)
            while isinstance(event, Deliver):
                _, event = client.deliver(check_page(event.records))  # offered records are not accepted here
            if isinstance(event, Finished):
                break
    except RemoteProtocolError as e:
        note_event(e.reason)
        assert e.reason in {"malformed", "unexpected", "limit", "out_of_range", "invalid_record", "refused"}
    except PeerBusy as e:  # no offence: the peer asks us to come back later
        note_event(e.reason)
        assert 1 <= e.retry_after <= MAX_RETRY
    except OtherNetworkPeer as e:  # no offence: the peer is on another network
        note_event(e.reason)
        assert state == "heads" and NETWORK_PATTERN.fullmatch(e.network)


@settings(max_examples=250)
@given(hostile_frames | well_formed_requests)
def test_any_frame_a_client_sends_a_server_is_answered_or_its_fault(lone_side, frame):
    server = SyncServer(lone_side.store, lone_side.index, SMALL)
    try:
        replies = [decode_reply(r) for r in server.receive(frame)]
    except RemoteProtocolError as e:
        note_event(e.reason)
        assert isinstance(decode_reply(SyncServer.refusal(e)), ErrorReply)
    else:
        note_event("answered")
        assert replies and all(len(encode_message(r)) <= SMALL.max_frame for r in replies)
        assert all(len(r.records) <= SMALL.page_records for r in replies if isinstance(r, RecordsPage))
        assert all(len(r.heads) <= SMALL.heads_page for r in replies if isinstance(r, HeadsPage))


@pytest.mark.parametrize(
    ("reply", "reason", "rule"),
    [
        (RecordsPage((), more=True), "malformed", "empty page must be the last"),
        (HeadsPage((), more=False), "unexpected", "HeadsPage reply while waiting for RecordsPage"),
        (ErrorReply("you asked for too much"), "refused", "you asked for too much"),
        (RecordsPage(tuple(r.raw for r in CHAINS[ORGS[1].did][:4]), more=False), "limit", "4 in a page, more than 3"),
    ],
)
def test_replies_that_break_the_protocol_are_the_servers_fault(reply, reason, rule):
    with sides(1) as (side,):
        client = _client_in("records", side)
        with pytest.raises(RemoteProtocolError, match=rule) as caught:
            client.receive(encode_message(reply))
        assert caught.value.reason == reason


@pytest.mark.parametrize("state", ["heads", "records"])
def test_a_busy_reply_ends_the_session_with_when_to_come_back_and_no_offence(state):
    with sides(1) as (side,):
        client = _client_in(state, side)
        with pytest.raises(PeerBusy, match="serves us again in 30 s: serving budget spent") as caught:
            client.receive(encode_message(Busy(30, "serving budget spent")))
        assert caught.value.retry_after == 30 and not isinstance(caught.value, RemoteProtocolError)


@pytest.mark.parametrize(("wire", "rule"), [
    ({"t": "busy", "retry": 0, "reason": ""}, "retry: must be an integer from 1 to 3600"),
    ({"t": "busy", "retry": MAX_RETRY + 1, "reason": ""}, "retry: must be an integer from 1 to 3600"),
    ({"t": "busy", "retry": 1.5, "reason": ""}, "retry: must be an integer"),
    ({"t": "busy", "reason": ""}, "missing 'retry'"),
])
def test_busy_replies_are_decoded_strictly(wire, rule):
    with pytest.raises(RemoteProtocolError, match=rule):
        decode_reply(encode(wire))


def test_a_heads_request_states_the_clients_network_and_an_other_network_answer_ends_the_session():
    with sides(1) as (side,):
        client = SyncClient(side.store, side.replica.horizon, SMALL, network="vouchnet")
        start = client.start()
        assert isinstance(start, Send) and decode_request(start.payload).network == "vouchnet"
        with pytest.raises(OtherNetworkPeer, match="the peer is on network 'othernet'") as caught:
            client.receive(encode_message(OtherNetwork("othernet")))
        assert caught.value.reason == "network" and not isinstance(caught.value, RemoteProtocolError)
        # To a records request, which names no network, it is no answer
        with pytest.raises(RemoteProtocolError, match="OtherNetwork reply while waiting for RecordsPage"):
            _client_in("records", side).receive(encode_message(OtherNetwork("othernet")))


def test_records_nobody_asked_for_are_out_of_range():
    with sides(1) as (side,):
        for unasked in (CHAINS[ORGS[2].did][0], CHAINS[ORGS[1].did][1]):  # another issuer; skipping seq 1
            client = _client_in("records", side)
            event = client.receive(encode_message(RecordsPage((unasked.raw,), more=False)))
            with pytest.raises(RemoteProtocolError, match="not the next record of a requested range") as caught:
                client.deliver(check_page(event.records))
            assert caught.value.reason == "out_of_range"


def test_an_invalid_record_in_a_page_is_the_servers_offence():
    raw = bytearray(CHAINS[ORGS[1].did][0].raw)
    raw[-1] ^= 1  # the signature no longer verifies
    with pytest.raises(RemoteProtocolError, match=r"records\[1\]: ") as caught:
        check_page([CHAINS[ORGS[1].did][0].raw, bytes(raw)])
    assert caught.value.reason == "invalid_record"


def test_heads_must_come_in_issuer_order_and_within_the_page_asked_for():
    dids = sorted(org.did for org in ORGS)
    entry = [HeadEntry(did, 1, bytes(32)) for did in dids]
    with sides(1) as (side,):
        for page, rule in [
            (HeadsPage((entry[1], entry[0]), more=False), "is not after"),
            (HeadsPage(tuple(entry[:3]), more=False), "3 entries, more than the 2 asked for"),
            (HeadsPage((), more=True), "empty page must be the last"),
        ]:
            client = _client_in("heads", side)
            with pytest.raises(RemoteProtocolError, match=rule):
                client.receive(encode_message(page))


def test_a_client_counts_as_used_only_the_heads_it_acts_on_and_as_held_those_of_what_it_holds():
    """Heads that keep a peer's pace (gossip.peer_pace) are those the client asks records for (a range it lacks, a
    fork's evidence) or that name one of its org's keys; not heads of issuers outside its horizon, which cost nothing
    to make up, nor heads of what it holds already, which it counts apart (their KiB keep the pace of a peer in step
    with it, bounded by what it holds)."""
    held = {ORGS[0].did, ORGS[1].did, ORGS[3].did}
    with sides(1) as (side,):
        give(side, [record for did in held for record in CHAINS[did]])
        client = SyncClient(side.store, side.replica.horizon, SyncLimits(), own={ORGS[1].did})
        client.start()
        heads = [HeadEntry(ORGS[0].did, CHAIN, FORK[-1].id),  # a fork: its evidence is asked for
                 HeadEntry(ORGS[1].did, CHAIN, CHAINS[ORGS[1].did][-1].id),  # the org's own key, held
                 HeadEntry(ORGS[2].did, CHAIN, CHAINS[ORGS[2].did][-1].id),  # ahead
                 HeadEntry(ORGS[3].did, CHAIN, CHAINS[ORGS[3].did][-1].id),  # held
                 HeadEntry(Org().did, 1, bytes(32))]  # outside the horizon
        client.receive(encode_message(HeadsPage(tuple(sorted(heads, key=lambda entry: entry.iss)), more=False)))
        assert (client.heads_used, client.heads_held) == (3, 1)


def test_a_server_that_never_stops_sending_heads_is_cut_off():
    with sides(1) as (side,):
        client = SyncClient(side.store, side.replica.horizon, SyncLimits(heads_page=1, max_heads=3))
        client.start()
        with pytest.raises(RemoteProtocolError, match="more than 3 issuers in one session"):
            for i in range(4):
                client.receive(encode_message(HeadsPage((HeadEntry(f"did:key:z{i}", 1, bytes(32)),), more=True)))


def test_misuse_by_the_shell_is_a_local_error():
    with sides(1) as (side,):
        client = SyncClient(side.store, side.replica.horizon, SMALL)
        with pytest.raises(LocalProtocolError):
            client.receive(encode_message(HeadsPage((), more=False)))
        client.start()
        with pytest.raises(LocalProtocolError):
            client.start()
        with pytest.raises(LocalProtocolError):
            client.deliver([])


def test_a_server_refuses_more_ranges_than_the_protocol_allows():
    with sides(1) as (side,):
        server = SyncServer(side.store, side.index, SMALL)
        wire = {"t": "get", "ranges": [[ORGS[1].did, 1, 1]] * (MAX_RANGES + 1), "limit": 10, "bytes": 64 * 1024}
        with pytest.raises(RemoteProtocolError, match=f"ranges: must be 1 to {MAX_RANGES}, not {MAX_RANGES + 1}"):
            server.receive(encode(wire))


@given(st.lists(st.tuples(st.text(min_size=1, max_size=MAX_ISSUER), st.integers(1, MAX_SEQ),
                          st.binary(min_size=ID_SIZE, max_size=ID_SIZE)), max_size=6), st.booleans())
def test_heads_a_server_encodes_from_its_store_are_the_heads_page_its_peer_decodes(heads, more):
    page = HeadsPage(tuple(HeadEntry(*head) for head in heads), more)
    frame = encode_held_heads(heads, more=more)
    assert frame == encode_message(page) and decode_reply(frame) == page


@pytest.mark.parametrize(("head", "rule"), [
    (["", 1, bytes(ID_SIZE)], "iss: must be a text of 1 to 256 characters"),
    (["d" * (MAX_ISSUER + 1), 1, bytes(ID_SIZE)], "iss: must be a text of 1 to 256 characters"),
    ([b"did:key:zA", 1, bytes(ID_SIZE)], "iss: must be a text of 1 to 256 characters"),
    (["did:key:zA", 0, bytes(ID_SIZE)], r"seq: must be an integer from 1 to 2\^63 - 1"),
    (["did:key:zA", MAX_SEQ + 1, bytes(ID_SIZE)], r"seq: must be an integer from 1 to 2\^63 - 1"),
    (["did:key:zA", True, bytes(ID_SIZE)], r"seq: must be an integer from 1 to 2\^63 - 1"),
    (["did:key:zA", 1, bytes(ID_SIZE - 1)], "head of did:key:zA: id must be 32 bytes"),
    (["did:key:zA", 1, "x" * ID_SIZE], "head of did:key:zA: id must be 32 bytes"),
    (["did:key:zA", 1], r"heads\[0\]: must be an array of 3 items"),
])
def test_a_malformed_head_from_a_peer_is_its_offence(lone_side, head, rule):
    client = _client_in("heads", lone_side)
    with pytest.raises(RemoteProtocolError, match=rule) as caught:
        client.receive(encode({"t": "heads", "heads": [head], "more": False}))
    assert caught.value.reason == "malformed"


def test_request_round_trip():
    request = HeadsRequest("did:key:zA", 7)
    assert decode_request(encode_message(request)) == request
    assert encode_message(request) == encode({"t": "heads", "after": "did:key:zA", "limit": 7})  # as before networks


@given(networks)
def test_networks_round_trip_in_requests_and_the_other_network_reply(network):
    for message in (HeadsRequest("", 1, network), CheckpointRequest(network)):
        assert decode_request(encode_message(message)) == message
    assert decode_reply(encode_message(OtherNetwork(network))) == OtherNetwork(network)


@pytest.mark.parametrize(("wire", "decoder", "message"), [
    ({"t": "heads", "after": "", "limit": 1, "net": ""}, decode_request, "net: must be 1 to 64 characters"),
    ({"t": "heads", "after": "", "limit": 1, "net": "Vouchnet"}, decode_request, "net: must be 1 to 64 characters"),
    ({"t": "heads", "after": "", "limit": 1, "net": "n" * 65}, decode_request, "net: must be 1 to 64 characters"),
    ({"t": "checkpoint", "net": b"vouchnet"}, decode_request, "net: must be a text"),
    ({"t": "network"}, decode_reply, "missing 'net'"),
    ({"t": "network", "net": "othernet", "more": False}, decode_reply, "unknown field 'more'"),
])
def test_networks_are_decoded_strictly(wire, decoder, message):
    with pytest.raises(RemoteProtocolError, match=message) as caught:
        decoder(encode(wire))
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize("reply", [HeldCheckpoint(None), HeldCheckpoint("a note\n\n\u2014 x y\n".encode())])
def test_checkpoint_request_and_reply_round_trip(reply):
    assert decode_request(encode_message(CheckpointRequest())) == CheckpointRequest()
    assert decode_reply(encode_message(reply)) == reply


@pytest.mark.parametrize(("wire", "decoder", "message"), [
    ({"t": "checkpoint", "origin": "x"}, decode_request, "unknown field 'origin'"),
    ({"t": "checkpoint", "note": "text"}, decode_reply, "note: must be a byte string"),
    ({"t": "checkpoint", "note": b""}, decode_reply, "note: must be 1 to 65536 bytes"),
    ({"t": "checkpoint", "note": b"n" * (64 * 1024 + 1)}, decode_reply, "note: must be 1 to 65536 bytes"),
])
def test_checkpoint_messages_are_decoded_strictly(wire, decoder, message):
    with pytest.raises(RemoteProtocolError, match=message):
        decoder(encode(wire))
