"""The node's trust service tells /v1/stream about score changes as records arrive: at once when a record touches
one agent (a vouch, its revocation, a digest), and within a second when it changes an org's standing (an org
vouch or its revocation, an equivocator), which may move every agent's score."""

import json

import pytest
import trio

from node.metrics import Registry
from node.stream import Broadcaster
from node.trust import PROMPT_RECOMPUTE_S, TrustService
from vouching import equivocation_body, revoke_body, vouch_body
from vouching.policy import Policy

from ..factories import Org, new_did

RECOMPUTE_S = 60.0


@pytest.fixture
def broadcaster():
    return Broadcaster(Registry())


@pytest.fixture
def trust(node, broadcaster):
    return TrustService(node.replica, roots=(), policy=Policy(), broadcaster=broadcaster, metrics=Registry(),
                        recompute_interval=RECOMPUTE_S)


def event(frame):
    """(type, agent, tier) of an SSE frame as the broadcaster writes it."""
    fields = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n"))
    data = json.loads(fields["data"])
    return fields["event"], data["agent"], data["tier"]


def published(subscription):
    """The events published to a subscription and not yet taken."""
    out = []
    while True:
        try:
            out.append(event(subscription.receive.receive_nowait()))
        except trio.WouldBlock:
            return out


def test_revoking_an_agent_vouch_is_announced_at_once(node, trust, broadcaster):
    agent = new_did()
    vouch = node.replica.issue("vouch", vouch_body(agent, 1.0, "operator"))
    trust.on_records([vouch])
    assert trust.score(agent).tier == "provisional"
    with broadcaster.subscribe() as subscription:
        trust.on_records([node.replica.issue("revoke", revoke_body(vouch.id, "key leaked"))])
        assert published(subscription) == [("score", agent, "untrusted"), ("tier", agent, "untrusted")]


def _vouched_by_partner(node, trust):
    """An agent vouched for by a partner org that this node vouches for: provisional while the partner stands."""
    partner, agent = Org(), new_did()
    our_vouch = node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))
    trust.on_records([our_vouch, partner.vouch(agent, 1.0, "operator")])
    assert trust.score(agent).tier == "provisional"
    return partner, agent, our_vouch


@pytest.mark.parametrize("change", ["revoke the org vouch", "the partner equivocates"])
async def test_an_org_level_change_is_announced_within_a_second(node, trust, broadcaster, change, autojump_clock):
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
