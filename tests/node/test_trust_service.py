"""The node's trust service tells /v1/stream about score changes as records arrive: at once when a record touches
one agent (a vouch, its revocation, a digest), and within a second when it changes an org's standing (an org
vouch or its revocation, an equivocator), which may move every agent's score; that recompute announces the records
about agents that arrive until it runs, and a read given a score the stream did not say announces it. Its full
recompute runs off the trio loop, and what arrives meanwhile counts as if it came right after the recompute's
snapshot."""

import json
import random
import threading
from collections.abc import Callable

import numpy as np
import pytest
import trio

from node.metrics import Registry
from node.stream import Broadcaster
from node.audit_log import wall_clock_ms
import node.trust as node_trust
from node.trust import PROMPT_RECOMPUTE_S, TrustService, recompute_in_worker
from vouching import batch, digest_body, scoring, equivocation_body, revoke_body, vouch_body
from vouching.evidence import Outcomes
from vouching.feed import feed_record
from vouching.params import DAY_MS, HOUR_MS
from vouching.policy import Policy
from vouching.recompute import Recompute
from vouching.scoring import TrustEngine

from ..factories import Org, new_did

RECOMPUTE_S = 60.0
NOW = Org.ts + 2 * HOUR_MS  # records signed by the test's orgs are a few ms past Org.ts


@pytest.fixture
def broadcaster():
    return Broadcaster(Registry())


@pytest.fixture
def trust(node, broadcaster):
    return TrustService(node.replica, roots=(), policy=Policy(), broadcaster=broadcaster, metrics=Registry(),
                        recompute_interval=RECOMPUTE_S, epoch_ms=HOUR_MS)


def event_data(frame):
    """The data of an SSE frame as the broadcaster writes it, with its type."""
    fields = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n"))
    return {"type": fields["event"], **json.loads(fields["data"])}


def event(frame):
    """(type, agent, tier) of an SSE frame as the broadcaster writes it."""
    data = event_data(frame)
    return data["type"], data["agent"], data["tier"]


def published_data(subscription):
    """The data of the events published to a subscription and not yet taken, with their type."""
    out = []
    while True:
        try:
            out.append(event_data(subscription.receive.receive_nowait()))
        except trio.WouldBlock:
            return out


def published(subscription):
    """(type, agent, tier) of the events published to a subscription and not yet taken."""
    return [(e["type"], e["agent"], e["tier"]) for e in published_data(subscription)]


def test_revoking_an_agent_vouch_is_announced_at_once(node, trust, broadcaster):
    agent = new_did()
    vouch = node.replica.issue("vouch", vouch_body(agent, 1.0, "operator"))
    trust.on_records([vouch])
    assert trust.score(agent)[0].tier == "provisional"
    with broadcaster.subscribe() as subscription:
        trust.on_records([node.replica.issue("revoke", revoke_body(vouch.id, "key leaked"))])
        assert published(subscription) == [("score", agent, "untrusted"), ("tier", agent, "untrusted")]


def test_the_stream_announces_the_general_score_and_the_scoped_tools_never_a_tools_score(node, trust, broadcaster):
    """A scoped vouch (DESIGN.md §3 scope) leaves the general score as it is; its arrival and its revocation are
    announced as changes of the agent's `scopes` (a cache of general scores asks the node for checks of these),
    with the general score, however a check of its tool was answered in between."""
    agent = new_did()
    trust.engine.add_first_hand(agent, ts=wall_clock_ms(), outcomes=Outcomes(ok=3))  # provisional
    general = trust.score(agent)[0]
    with broadcaster.subscribe() as subscription:
        vouch = node.replica.issue("vouch", vouch_body(agent, 1.0, "audit", scope=["search"]))
        trust.on_records([vouch])
        decision, score, scopes, _ = trust.check(agent, "tool_call", "search")
        assert (decision.decision, score.tier, scopes) == ("allow", "trusted", ("search",))
        trust.on_records([node.replica.issue("revoke", revoke_body(vouch.id, "scope withdrawn"))])
        events = published_data(subscription)
    assert [(e["type"], e["score"], e["previous_score"], e["tier"], e["scopes"]) for e in events] == [
        ("score", general.score, general.score, "provisional", ["search"]),
        ("score", general.score, general.score, "provisional", [])]


def test_the_stream_lists_at_most_64_scoped_tools_and_says_when_there_are_more(node, trust, broadcaster):
    """Any org with voucher weight can scope each basis's vouch to 64 tools of 128 characters: listed in full, two
    such orgs' vouches for one agent passed the SDK's 64 KiB stream line, and every SDK reconnected and emptied its
    cache at each such event. Past 64 tools the event lists the first and says the list is incomplete."""
    agent = new_did()
    tools = sorted(f"{i:03}" + "t" * 125 for i in range(65))
    trust.score(agent)[0]  # (a change is announced of agents read before)
    with broadcaster.subscribe() as subscription:
        trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "audit", scope=tools[:64]))])
        trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "developer", scope=tools[64:]))])
        events = published_data(subscription)
    assert [(e["scopes"], e["scopes_complete"]) for e in events if e["type"] == "score"] == [
        (tools[:64], True), (tools[:64], False)]


def test_a_check_of_a_scoped_tool_is_not_remembered_as_the_agents_score(node, trust, broadcaster):
    """The first read of an agent (here after a restart fed its scoped vouch unannounced) is a check of the scoped
    tool: what the stream compares later changes with is the general score, not that check's."""
    agent = new_did()
    trust.engine.add_first_hand(agent, ts=wall_clock_ms(), outcomes=Outcomes(ok=3))  # provisional
    vouch = node.replica.issue("vouch", vouch_body(agent, 1.0, "audit", scope=["search"]))
    feed_record(trust.engine, vouch, node.replica.succession.identity)  # as at a restart: not announced
    assert trust.check(agent, "tool_call", "search")[1].tier == "trusted"
    with broadcaster.subscribe() as subscription:
        trust.on_records([node.replica.issue("revoke", revoke_body(vouch.id, "scope withdrawn"))])
        events = published_data(subscription)
    assert [(e["type"], e["score"], e["previous_score"], e["scopes"]) for e in events] == [
        ("score", trust.score(agent)[0].score, trust.score(agent)[0].score, [])]


def test_agents_asked_about_but_unknown_are_remembered_up_to_a_bound_and_known_ones_always(node, trust, broadcaster,
                                                                                           monkeypatch):
    """Reads need no token: whoever reaches the API asks about fresh dids to grow what the node remembers."""
    monkeypatch.setattr("node.trust.MAX_ASKED_UNKNOWN", 3)
    known, oldest, *rest = new_did(), new_did(), new_did(), new_did(), new_did()
    trust.on_records([node.replica.issue("vouch", vouch_body(known, 0.5, "developer"))])
    trust.score(known)[0]
    for agent in (oldest, *rest):
        trust.check(agent, "tool_call", None)  # a flood of strangers: `oldest` is forgotten
    with broadcaster.subscribe() as subscription:
        trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "operator"))
                          for agent in (known, oldest, rest[-1])])
        changed = {agent for kind, agent, _ in published(subscription) if kind == "score"}
    assert changed == {known, rest[-1]}  # the first change of one forgotten is not announced: it was not kept


def _operator_events(events):
    """What the test reads of published events: type, previous and new score, and who operates the agent."""
    return [(e["type"], e["previous_score"], e["score"], e["issuers"], e["issuers_complete"], e["cold_start"])
            for e in events]


def test_an_operator_vouch_that_moves_no_score_is_announced_with_whose_credentials_stand_for_the_agent(
        node, trust, broadcaster):
    """A partner whose vouches weigh nothing here (no org vouches for it) vouches as the agent's operator, then
    revokes that: its credentials stand for the agent, then not, and the score never moves. The stream said nothing
    of either, so an SDK kept the partner as the agent's operator, as its last check answer said, until cache_ttl."""
    partner, agent = Org(), new_did()
    score = trust.score(agent)[0].score  # (a change is announced of agents read before)
    own, cold = list(node.replica.succession.keys(node.replica.did)), trust.engine.cold_score
    with broadcaster.subscribe() as subscription:
        vouch = partner.vouch(agent, 1.0, "operator")
        trust.on_records([vouch])
        trust.on_records([partner.revoke(vouch, "no longer ours")])
        events = published_data(subscription)
    assert trust.score(agent)[0].score == score
    assert _operator_events(events) == [("score", score, score, [*own, partner.did], True, cold),
                                        ("score", score, score, own, True, cold)]


async def test_an_operator_vouch_that_expired_is_announced_by_the_next_periodic_recompute(node, broadcaster,
                                                                                          thread_aware_clock):
    clock = [NOW]
    trust = TrustService(node.replica, roots=(), policy=Policy(), broadcaster=broadcaster, metrics=Registry(),
                         recompute_interval=RECOMPUTE_S, epoch_ms=HOUR_MS, clock=lambda: clock[0])
    partner, agent = Org(), new_did()
    trust.on_records([partner.record("vouch", vouch_body(agent, 1.0, "operator", expires=NOW + HOUR_MS))])
    score = trust.score(agent)[0].score
    clock[0] = NOW + 2 * HOUR_MS
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        with broadcaster.subscribe() as subscription:
            with trio.fail_after(2 * RECOMPUTE_S):  # mock time: no announcement at all fails the test
                seen = [event_data(await subscription.receive.receive())]
            seen += published_data(subscription)
        nursery.cancel_scope.cancel()
    own = list(node.replica.succession.keys(node.replica.did))
    assert _operator_events(seen) == [("score", score, score, own, True, trust.engine.cold_score)]


def test_an_event_lists_the_first_64_keys_whose_credentials_stand_for_the_agent_and_says_when_there_are_more(
        node, trust, broadcaster):
    """As a check answer does (node.trust.listed_issuers): any key may sign an operator vouch."""
    agent, partners = new_did(), sorted((Org() for _ in range(64)), key=lambda org: org.did)
    trust.score(agent)[0]  # (a change is announced of agents read before)
    with broadcaster.subscribe() as subscription:
        trust.on_records([partner.vouch(agent, 1.0, "operator") for partner in partners[:63]])
        trust.on_records([partners[63].vouch(agent, 1.0, "operator")])
        events = published_data(subscription)
    own = list(node.replica.succession.keys(node.replica.did))
    assert [(e["issuers"], e["issuers_complete"]) for e in events if e["type"] == "score"] == [
        ([*own, *(p.did for p in partners[:63])], True), ([*own, *(p.did for p in partners[:63])], False)]


async def test_an_event_lists_a_weighted_operator_before_any_number_of_keys_no_one_vouches_for(
        node, trust, broadcaster, thread_aware_clock):
    """As a check answer does: before, listed by did, 64 fresh keys sorting before the partner's pushed it off the
    list an SDK caches from the stream, and its credentials for the agent were decided on the cold start."""
    agent, (*keys, partner) = new_did(), sorted((Org() for _ in range(65)), key=lambda org: org.did)
    trust.score(agent)[0]  # (a change is announced of agents read before)
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        with broadcaster.subscribe() as subscription:
            trust.on_records([node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer")),
                              *(key.vouch(agent, 1.0, "operator") for key in (partner, *keys))])
            with trio.fail_after(2 * RECOMPUTE_S):  # mock time: announced by the org vouch's prompt recompute
                seen = event_data(await subscription.receive.receive())
        nursery.cancel_scope.cancel()
    own = list(node.replica.succession.keys(node.replica.did))
    assert (seen["issuers"], seen["issuers_complete"]) == (
        [*own, partner.did, *(key.did for key in keys[:63 - len(own)])], False)


def _vouched_by_partner(node, trust):
    """An agent vouched for by a partner org that this node vouches for: provisional while the partner stands."""
    partner, agent = Org(), new_did()
    our_vouch = node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))
    trust.on_records([our_vouch, partner.vouch(agent, 1.0, "operator")])
    assert trust.score(agent)[0].tier == "provisional"
    return partner, agent, our_vouch


@pytest.mark.parametrize("change", ["revoke the org vouch", "the partner equivocates"])
async def test_an_org_level_change_is_announced_within_a_second(node, trust, broadcaster, change, thread_aware_clock):
    partner, agent, our_vouch = _vouched_by_partner(node, trust)
    if change == "revoke the org vouch":
        record = node.replica.issue("revoke", revoke_body(our_vouch.id, "partnership ended"))
    else:
        first = partner.record()
        fork = partner.fork(first.seq, first.prev)
        record = Org().record("equivocation", equivocation_body("record", partner.did, first.raw, fork.raw))
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        with broadcaster.subscribe() as subscription:
            start = trio.current_time()
            trust.on_records([record])
            with trio.fail_after(2 * RECOMPUTE_S):  # mock time: no announcement at all fails the test
                first = event(await subscription.receive.receive())
            elapsed = trio.current_time() - start
            seen = [first, *published(subscription)]
        nursery.cancel_scope.cancel()
    assert elapsed <= PROMPT_RECOMPUTE_S < RECOMPUTE_S
    assert [e for e in seen if e[1] == agent] == [("score", agent, "untrusted"), ("tier", agent, "untrusted")]


async def test_records_while_an_org_level_change_awaits_its_recompute_are_announced_by_it(
        node, trust, broadcaster, monkeypatch, thread_aware_clock):
    """An org inside the horizon vouching for fresh keys, each of which vouches for an agent (benchmarks/
    score_attacks.py's fresh keys): read at once, each record reran PageRank over every org vouch, so that the node's
    work per record grew with the keys. Until the prompt recompute, no record refreshes reputation; the recompute
    announces the agent's change, at the score a read gives."""
    partner, victim = Org(), new_did()
    trust.on_records([node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))])
    before = trust.score(victim)[0]  # (a change is announced of agents read before)
    standing, refreshes = scoring.org_standing, []

    def counted(*args):
        refreshes.append(args)
        return standing(*args)

    monkeypatch.setattr(scoring, "org_standing", counted)  # a read's refresh of reputation (not the recompute's)
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        with broadcaster.subscribe() as subscription:
            for _ in range(20):
                key = Org()
                trust.on_records([partner.vouch(key.did, 1.0, "org-peer"), key.vouch(victim, 1.0, "audit")])
            assert (refreshes, published(subscription)) == ([], [])
            with trio.fail_after(2 * RECOMPUTE_S):  # mock time: no announcement at all fails the test
                seen = [event_data(await subscription.receive.receive())]
            seen += published_data(subscription)
        nursery.cancel_scope.cancel()
    after = trust.score(victim)[0]
    assert (before.tier, after.tier) == ("untrusted", "provisional")
    assert [(e["type"], e["agent"], e["previous_score"], e["score"]) for e in seen] == [
        ("score", victim, before.score, after.score), ("tier", victim, before.score, after.score)]


async def test_a_score_read_while_an_org_level_change_awaits_its_recompute_is_announced_when_undone(
        node, trust, broadcaster, thread_aware_clock):
    """A partner's operator vouch and its revocation within the second an org vouch's recompute is awaited: a check
    in between was answered with the vouch's lift, and the recompute, finding the score the stream last said, said
    nothing, so that readers held the lifted score (and SDKs the partner as operator) until their caches expired.
    What a reader is given counts as said: its undoing is announced."""
    partner, agent = Org(), new_did()
    before = trust.score(agent)[0]  # (a change is announced of agents read before)
    trust.on_records([node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))])
    vouch = partner.vouch(agent, 1.0, "operator")
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        with broadcaster.subscribe() as subscription:
            trust.on_records([vouch])
            lifted = trust.check(agent, "tool_call", "search")[1]
            trust.on_records([partner.revoke(vouch, "no longer ours")])
            seen = published_data(subscription)
            with trio.fail_after(2 * RECOMPUTE_S):  # mock time: no announcement at all fails the test
                while not seen or seen[-1]["score"] != before.score:
                    seen.append(event_data(await subscription.receive.receive()))
            seen += published_data(subscription)
        nursery.cancel_scope.cancel()
    assert (before.tier, lifted.tier, trust.score(agent)[0].score) == ("untrusted", "provisional", before.score)
    assert [(e["type"], e["previous_score"], e["score"]) for e in seen] == [
        ("score", before.score, lifted.score), ("tier", before.score, lifted.score),
        ("score", lifted.score, before.score), ("tier", lifted.score, before.score)]


async def test_requests_are_answered_while_a_recompute_looks_up_the_agents_it_announces(node, trust, broadcaster,
                                                                                       monkeypatch):
    """A recompute looks every agent the stream told of up in its table (those it scored are announced) a chunk at
    a time, answering requests in between: looking all of them up at once held the loop 60-90 ms at 2*10^5 agents
    (benchmarks/adopt_rebuild.py --flood, README). Each changed agent is still announced once, in the order the
    stream first told of it, and one only read, which the table does not hold, not at all."""
    monkeypatch.setattr(node_trust, "ANNOUNCE_CHUNK", 4)
    monkeypatch.setattr(node_trust, "PROMPT_RECOMPUTE_S", 0.0)  # (the recompute runs in a thread: no mock clock)
    partner, agents, reader = Org(), [new_did() for _ in range(40)], new_did()
    our_vouch = node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))
    trust.on_records([our_vouch, *(partner.vouch(agent, 1.0, "operator") for agent in agents)])
    assert {trust.score(agent)[0].tier for agent in agents} == {"provisional"}  # (told of: announced if changed)
    trust.on_records([node.replica.issue("revoke", revoke_body(our_vouch.id, "partnership ended"))])
    looked_up, lookup = [], batch.ScoreTable.score

    def counted(table: batch.ScoreTable, agent: str) -> int | None:
        looked_up.append(agent)
        return lookup(table, agent)

    monkeypatch.setattr(batch.ScoreTable, "score", counted)
    answered, seen = [], []  # agents looked up as each request was answered; the events published
    async with trio.open_nursery() as nursery:
        with broadcaster.subscribe() as subscription:
            await nursery.start(trust.run)  # the prompt recompute the revocation brought forward runs
            with trio.fail_after(10):
                while len(seen) < 2 * len(agents):
                    answered.append(len(looked_up))
                    assert trust.score(reader)[0].tier == "untrusted"
                    seen += published_data(subscription)
                    await trio.sleep(0)
        nursery.cancel_scope.cancel()
    assert [(e["type"], e["agent"], e["tier"]) for e in seen] == [
        (kind, agent, "untrusted") for agent in agents for kind in ("score", "tier")]
    assert any(0 < count < len(agents) for count in answered)


class Gate:
    """Wraps a function: its first call, on whatever thread, waits inside until the test opens the gate."""

    def __init__(self, function: Callable) -> None:
        self._function = function
        self.entered, self.opened, self.passed = threading.Event(), threading.Event(), threading.Event()
        self.held: list[bool] = []  # whether the gate was opened in time (not if the trio loop was stuck)

    def __call__(self, *args):
        if not self.entered.is_set():
            self.entered.set()
            self.held.append(self.opened.wait(timeout=10))
            self.passed.set()
        return self._function(*args)


async def test_the_periodic_recompute_leaves_the_loop_free(node, trust, monkeypatch, autojump_clock):
    partner = Org()
    trust.on_records([node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer")),
                      *(partner.vouch(new_did(), 1.0, "operator") for _ in range(20))])
    gate = Gate(batch.scores_of)  # the recompute scores every agent with it
    monkeypatch.setattr(batch, "scores_of", gate)
    agent = new_did()
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        assert await trio.to_thread.run_sync(gate.entered.wait, 10)  # the periodic recompute is computing ...
        trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "operator"))])  # ... and the loop
        assert trust.score(agent)[0].tier == "provisional"  # takes records and answers meanwhile
        gate.opened.set()
        nursery.cancel_scope.cancel()  # which leaves the compute to its thread (recompute_in_worker)
    assert await trio.to_thread.run_sync(gate.passed.wait, 10) and gate.held == [True]


async def test_a_stop_during_the_periodic_recompute_waits_for_no_compute_and_installs_nothing(
        node, broadcaster, monkeypatch, autojump_clock):
    """The periodic recompute waited for its worker thread when cancelled: a stop waited as long as the compute,
    1.4 s at 10^6 records. Cancelled now, it returns while the compute is held in its thread; the engine serves its
    old scores and standings, then too once the abandoned compute ends, until a complete recompute is installed."""
    trust = TrustService(node.replica, roots=(), policy=Policy(), broadcaster=broadcaster, metrics=Registry(),
                         recompute_interval=RECOMPUTE_S, epoch_ms=HOUR_MS, clock=lambda: NOW)
    agents, reference = [new_did() for _ in range(300)], TrustEngine(node.replica.did)  # recomputed whole
    for name, args, kwargs in _network(node.replica.did, [Org() for _ in range(6)], agents, seed=3):
        for engine in (trust.engine, reference):
            getattr(engine, name)(*args, **kwargs)

    def served() -> tuple[list, list]:
        return [trust.engine.score(a, now=NOW) for a in agents], trust.engine.orgs(now=NOW)

    before, finished = served(), threading.Event()
    gate, compute = Gate(batch.scores_of), Recompute.compute

    def computing(recompute: Recompute):
        try:
            return compute(recompute)
        finally:
            finished.set()

    monkeypatch.setattr(batch, "scores_of", gate)
    monkeypatch.setattr(Recompute, "compute", computing)
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        assert await trio.to_thread.run_sync(gate.entered.wait, 10)  # the periodic recompute is computing
        nursery.cancel_scope.cancel()  # as a signal does
    assert gate.held == [] and served() == before  # the stop returned while the compute is held, installing nothing
    gate.opened.set()
    assert await trio.to_thread.run_sync(finished.wait, 10)
    assert served() == before  # the abandoned compute ended, installed nowhere
    await recompute_in_worker(trust.engine, lambda: NOW)  # the next one, complete, lands
    reference.recompute(now=NOW)
    assert served() == ([reference.score(a, now=NOW) for a in agents], reference.orgs(now=NOW)) != before


def _network(own: str, partners: list[Org], agents: list[str], seed: int) -> list[tuple[str, tuple, dict]]:
    """A node's view of a network, as trust engine calls: its org vouches for the first partners, which vouch on
    down a chain and each operate some of the agents; a few digests of each agent from random partners (some
    reporting violations), and first-hand observations of one agent in ten."""
    rng = random.Random(seed)
    ids = iter(range(1, 10**9))
    calls: list[tuple[str, tuple, dict]] = []

    def call(name: str, *args, **kwargs) -> None:
        if name != "add_first_hand":
            kwargs["record_id"] = next(ids).to_bytes(32, "big")
        calls.append((name, args, kwargs))

    for p in partners[:2]:
        call("add_org_vouch", own, p.did, 0.9, ts=0)
    for a, b in zip(partners, partners[1:]):
        call("add_org_vouch", a.did, b.did, rng.uniform(0.3, 1.0), ts=0)
    for agent in agents:
        call("add_agent_vouch", rng.choice(partners).did, agent, 1.0, "operator", ts=0)
        for _ in range(rng.randint(1, 6)):
            epoch = NOW - rng.randint(2, 48) * HOUR_MS
            outcomes = Outcomes(ok=rng.randint(0, 20), error=rng.randint(0, 2), denied=rng.choice((0, 0, 0, 2)))
            call("add_digest", rng.choice(partners).did, agent, epoch=epoch, length=HOUR_MS, outcomes=outcomes,
                 ts=epoch + HOUR_MS)
        if rng.random() < 0.1:
            call("add_first_hand", agent, ts=NOW - rng.randint(2, 48) * HOUR_MS,
                 outcomes=Outcomes(ok=rng.randint(0, 10), denied=rng.choice((0, 1))))
    return calls


def _digest(org: Org, agent: str, **outcomes: int):
    counts = {"ok": 0, "error": 0, "denied": 0, "timeout": 0, **outcomes}
    return org.record("digest", digest_body(
        agent, epoch=org.ts - HOUR_MS, length=HOUR_MS, outcomes=counts,
        categories={"tool": sum(counts.values()), "mcp": 0, "a2a": 0, "auth": 0, "resource": 0, "other": 0},
        high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32,
    ))


async def test_what_arrives_while_the_worker_computes_counts_as_after_the_snapshot(node, broadcaster, monkeypatch):
    partners, agents = [Org() for _ in range(6)], [new_did() for _ in range(3000)]
    trust = TrustService(node.replica, roots=(), policy=Policy(), broadcaster=broadcaster, metrics=Registry(),
                         recompute_interval=RECOMPUTE_S, epoch_ms=HOUR_MS, clock=lambda: NOW)
    after, meanwhile = TrustEngine(node.replica.did), TrustEngine(node.replica.did)  # recomputed at the snapshot, not
    network = _network(node.replica.did, partners, agents, seed=7)
    for name, args, kwargs in network:
        for engine in (trust.engine, after, meanwhile):
            getattr(engine, name)(*args, **kwargs)
    # What arrives during the compute: a digest, an agent vouch, a revocation, an org vouch, an observation.
    operator, vouch = next((args[0], kwargs["record_id"]) for name, args, kwargs in network
                           if name == "add_agent_vouch" and args[1] == agents[1])
    records = [_digest(partners[3], agents[0], denied=4), partners[2].vouch(new_did(), 1.0, "operator"),
               next(p for p in partners if p.did == operator).record("revoke", revoke_body(vouch, "sold")),
               partners[5].vouch(partners[0].did, 0.8)]
    observed = dict(agent=agents[2], ts=NOW - HOUR_MS, outcomes=Outcomes(denied=2))
    touched = [agents[0], agents[1], agents[2], records[1].body.subject]

    gate = Gate(batch.scores_of)
    monkeypatch.setattr(batch, "scores_of", gate)
    tables = []

    async def recompute() -> None:
        tables.append(await recompute_in_worker(trust.engine, lambda: NOW))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(recompute)
        assert await trio.to_thread.run_sync(gate.entered.wait, 10)
        trust.on_records(records)
        trust.engine.add_first_hand(**observed)  # as on_events does
        for record in records:
            feed_record(meanwhile, record, node.replica.succession.identity)
        meanwhile.add_first_hand(**observed)
        for agent in [*touched, *agents[3:50]]:  # until the install, the old state answers, with the new evidence
            assert trust.score(agent)[0] == meanwhile.score(agent, now=NOW)
        gate.opened.set()

    reference = after.recompute(now=NOW)
    for record in records:
        feed_record(after, record, node.replica.succession.identity)
    after.add_first_hand(**observed)
    (table,) = tables
    assert table.agents == reference.agents
    assert np.array_equal(table.scores, reference.scores) and np.array_equal(table.confidence, reference.confidence)
    for now in (NOW, NOW + DAY_MS):
        assert [trust.engine.score(a, now=now) for a in trust.engine.agents()] == [
            after.score(a, now=now) for a in after.agents()]
        assert trust.engine.orgs(now=now) == after.orgs(now=now)
    assert trust.engine.orgs(now=NOW) != meanwhile.orgs(now=NOW)  # what the recompute found counts
    assert gate.held == [True]


def test_reads_within_one_second_are_scored_at_its_start_and_served_from_the_engine_s_cache(node, broadcaster,
                                                                                              monkeypatch):
    """A score is exact, so the engine's cache serves reads at the `now` it was filled at only; the node reads at
    the clock's whole second, or every read at a new millisecond would be computed afresh (6x the cost)."""
    clock = [NOW + 1]
    trust = TrustService(node.replica, roots=(), policy=Policy(), broadcaster=broadcaster, metrics=Registry(),
                         recompute_interval=RECOMPUTE_S, epoch_ms=HOUR_MS, clock=lambda: clock[0])
    agent = new_did()
    node.replica.issue("vouch", vouch_body(agent, 0.9, "operator"))
    asked = []
    score = trust.engine.score
    monkeypatch.setattr(trust.engine, "score", lambda a, *, now: asked.append(now) or score(a, now=now))
    for clock[0] in (NOW + 1, NOW + 999, NOW + 1000):
        trust.score(agent)[0]
    assert asked == [NOW, NOW, NOW + 1000]
