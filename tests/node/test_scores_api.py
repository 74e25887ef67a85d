"""Scores over the API: every agent gets an answer, checks follow the policy, statements verify, orgs explain."""

import hashlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from urllib.parse import quote

import httpx
import jwt
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from node import cli
from node.api import create_app, scores
from node.api.http_server import serve
from node.api.http_server import READ_TIMEOUT_S
from node.api.scores import CHECK_PATH, ScoreFastPath, score_answer, scores_router
from node.client import NodeClient
from node.credentials import agent_credential, jwks
from node.metrics import Registry
from node.stream import Broadcaster
from node.trust import TrustService
from vouching import did_key, org_body, revoke_body, vouch_body
from vouching.evidence import Outcomes
from vouching.explanation import MAX_LISTED_PARTS
from vouching.params import HOUR_MS
from vouching.policy import Policy

from ..factories import Org, new_did
from .telemetry_node import Clock
from .test_http_server import connect, trickle


@pytest.fixture
def clock():
    """The trust service's clock, standing still: answers compared byte for byte are computed at one instant."""
    return Clock(int(time.time() * 1000))


def _trust(node, clock, roots: tuple[str, ...] = ()) -> TrustService:
    metrics = Registry()
    return TrustService(node.replica, roots=roots, policy=Policy(min_score=0), broadcaster=Broadcaster(metrics),
                        metrics=metrics, recompute_interval=60, epoch_ms=HOUR_MS, clock=clock)


@asynccontextmanager
async def _api(node, trust, *, fast: bool = False) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the scores API over `trust`; `fast`: behind ScoreFastPath, as the daemon serves it."""
    app = create_app(node, routers=[scores_router(trust, node.replica.key)], open_paths=[CHECK_PATH])
    if fast:
        app = ScoreFastPath(app, trust, node.replica.key)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
        yield client


@pytest.fixture
def trust(node, clock):
    return _trust(node, clock)


@pytest.fixture
async def api(node, trust):
    async with _api(node, trust) as client:
        yield client


async def test_an_unknown_agent_gets_the_cold_start_score(api):
    answer = (await api.get(f"/v1/agents/{new_did()}/score")).json()
    assert answer["tier"] == "untrusted" and 0 <= answer["score"] < 200
    assert answer["explanation"]["text"]


async def test_known_tells_an_agent_the_node_holds_anything_on_from_a_did_it_knows_nothing_of(node, trust, api, clock):
    """Before: nothing in the answer told a did the node knows nothing of (the cold start) from a known agent whose
    score is as low: here, one only a voucher this node gives no weight vouches for, and one observed failing."""
    stranger, vouched, failing = new_did(), new_did(), new_did()
    trust.on_records([Org().record("vouch", vouch_body(vouched, 1.0, "operator"))])
    trust.engine.add_first_hand(failing, ts=clock(), outcomes=Outcomes(error=5))
    for explain in ("true", "false"):
        answers = [(await api.get(f"/v1/agents/{did}/score", params={"explain": explain})).json()
                   for did in (stranger, vouched, failing)]
        assert [answer["known"] for answer in answers] == [False, True, True]
        assert answers[0]["score"] == answers[1]["score"] == trust.engine.cold_score > answers[2]["score"]


async def test_vouchnet_score_says_when_the_node_holds_nothing_on_the_agent(node, trust, capsys):
    stranger, vouched = new_did(), new_did()
    trust.on_records([Org().record("vouch", vouch_body(vouched, 1.0, "operator"))])  # a voucher of no weight here
    async with _served(node, trust) as url:
        for did in (stranger, vouched):
            assert await trio.to_thread.run_sync(cli.main, ["score", did, "--api", url]) == 0
            said = capsys.readouterr().out.splitlines()[0]
            assert said.startswith(f"{did}: {trust.engine.cold_score} (untrusted), confidence ")
            assert said.endswith("; the node holds nothing on it: the cold-start score") == (did == stranger)


async def test_a_vouch_lifts_the_score_but_not_above_provisional(node, trust, api):
    agent = new_did()
    trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "operator"))])
    answer = (await api.get(f"/v1/agents/{agent}/score")).json()
    assert answer["tier"] == "provisional"


async def test_the_explanation_can_be_left_out(node, trust, api):
    agent = new_did()
    trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "operator"))])
    full = (await api.get(f"/v1/agents/{agent}/score")).json()
    short = (await api.get(f"/v1/agents/{agent}/score", params={"explain": "false"})).json()
    assert "explanation" in full and set(short) == set(full) - {"explanation"}
    assert (short["score"], short["tier"], short["confidence"]) == (full["score"], full["tier"], full["confidence"])


async def test_score_and_check_answers_list_at_most_64_scoped_tools_and_say_when_there_are_more(node, trust, api,
                                                                                                 clock):
    """Listed in full, the scoped tools of weighted orgs' vouches (64 of 128 characters per vouch, one vouch per org
    and basis) grew every answer about the agent past what the SDK reads, so its checks of the agent failed."""
    agent = new_did()
    trust.engine.add_first_hand(agent, ts=clock(), outcomes=Outcomes(ok=3))  # provisional on its own
    tools = sorted(f"{i:03}" + "t" * 125 for i in range(65))
    trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "developer", scope=tools[:64])),
                      node.replica.issue("vouch", vouch_body(agent, 1.0, "audit", scope=tools[64:]))])
    score = (await api.get(f"/v1/agents/{agent}/score")).json()
    check = (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call", "tool": tools[64]})).json()
    for answer in (score, check):
        assert (answer["scopes"], answer["scopes_complete"]) == (tools[:64], False)
    assert check["tier"] == "trusted"  # the unlisted tool is still decided with the vouch scoped to it


async def test_a_score_answer_and_its_explanation_are_of_one_instant(node, clock):
    """The score, the scoped tools and the explanation of one answer each read the clock: a second that turned
    between them, as vouches expired, answered provisional, listed no scoped tool, and explained an untrusted
    score computed a second later than the answer said."""
    metrics = Registry()
    ticking = False

    def read() -> int:  # once ticking, a second passes at each read
        clock.now += 1000 * ticking
        return clock.now

    trust = TrustService(node.replica, roots=(), policy=Policy(), broadcaster=Broadcaster(metrics), metrics=metrics,
                         recompute_interval=60, epoch_ms=HOUR_MS, clock=read)
    agent = new_did()
    expires = (clock.now // 1000 + 2) * 1000  # the second after the one the answer is given at
    trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "operator", expires=expires)),
                      node.replica.issue("vouch", vouch_body(agent, 1.0, "audit", scope=["search"],
                                                             expires=expires))])
    ticking = True
    answer = score_answer(trust, node.replica.key, agent, explain=True, statement=False)
    explained = answer["explanation"]["score"]
    assert (answer["tier"], answer["scopes"]) == ("provisional", ["search"])
    assert (explained["score"], explained["tier"], explained["computed_at"]) == (
        answer["score"], answer["tier"], answer["computed_at"])
    assert {v["status"] for v in answer["explanation"]["vouches"]} == {"counted", "out of scope"}


async def test_the_parts_of_an_answer_s_explanation_add_up_to_its_score(node, trust, api, clock):
    """Each org part says what it counts (the grid's rounding of weight x capped good, bad and reports): a reader of
    the JSON summed weight x min(good, good_cap), whose cap is null for this node's own observations, and missed the
    grid by a rounding."""
    agent = new_did()
    trust.on_records([node.replica.issue("vouch", vouch_body(agent, 0.7, "audit"))])
    trust.engine.add_first_hand(agent, ts=clock() - HOUR_MS, outcomes=Outcomes(ok=33, error=3, denied=2))
    trust.engine.add_first_hand(agent, ts=clock(), outcomes=Outcomes(ok=7, denied=1))
    answer = (await api.get(f"/v1/agents/{agent}/score")).json()
    e = answer["explanation"]
    assert e["vouch_lift"] == min(sum(v["lift"] for v in e["vouches"]), e["vouch_lift_cap"]) > 0
    assert e["alpha"] == e["prior_good"] + e["vouch_lift"] + sum(o["counted_good"] for o in e["orgs"])
    assert e["beta"] == e["prior_bad"] + sum(o["counted_bad"] for o in e["orgs"])
    assert e["recent_bad_reports"] == sum(o["counted_reports"] for o in e["orgs"]) > 0
    assert answer["score"] == e["score"]["score"] <= e["uncapped_score"]


async def test_check_follows_the_policy_and_needs_no_token(node, trust, api):
    agent = new_did()
    blocked = (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call", "tool": "search"})).json()
    assert blocked["decision"] == "block" and "untrusted" in blocked["reason"]
    trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "operator"))])
    audited = (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call", "tool": "search"})).json()
    assert audited["decision"] == "audit"
    for tool in ("shell", "run_shell", "sendEmail"):  # matched by words (vouching.policy.Policy)
        risky = (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call", "tool": tool})).json()
        assert risky["decision"] == "block" and f"{tool} is high-risk" in risky["reason"]


async def test_a_scoped_vouch_opens_the_tools_it_names_and_not_the_general_score(node, trust, api, clock):
    """DESIGN.md §3 scope: the check of a tool the scope names counts the vouch; the score and other tools do not."""
    agent = new_did()
    trust.engine.add_first_hand(agent, ts=clock(), outcomes=Outcomes(ok=3))  # provisional on its own
    vouch = node.replica.issue("vouch", vouch_body(agent, 1.0, "audit", scope=["search"]))
    trust.on_records([vouch])
    score = (await api.get(f"/v1/agents/{agent}/score")).json()
    assert (score["tier"], score["scopes"], score["scopes_complete"]) == ("provisional", ["search"], True)
    assert {v["status"] for v in score["explanation"]["vouches"]} == {"out of scope"}

    async def check(tool: str) -> dict:
        return (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call", "tool": tool})).json()

    search, shell = await check("search"), await check("run_shell")
    assert (search["decision"], search["tier"], search["scopes"]) == ("allow", "trusted", ["search"])
    assert (shell["decision"], shell["tier"], shell["scopes"]) == ("block", "provisional", ["search"])
    trust.on_records([node.replica.issue("revoke", revoke_body(vouch.id, "scope withdrawn"))])
    search = await check("search")
    assert (search["decision"], search["tier"], search["scopes"]) == ("audit", "provisional", [])


async def test_the_policy_checks_apply_is_served_without_a_token(trust, api):
    response = await api.get("/v1/policy")
    assert response.status_code == 200 and Policy.from_dict(response.json()) == trust.policy


async def test_the_score_statement_verifies_against_the_org_key(node, api):
    agent = new_did()
    answer = (await api.get(f"/v1/agents/{agent}/score", params={"statement": "true"})).json()
    key = jwt.PyJWK(jwks([node.replica.key.verify_key])["keys"][0])
    claims = jwt.decode(answer["statement"], key.key, algorithms=["EdDSA"])
    assert (claims["agent"], claims["score"], claims["iss"]) == (agent, answer["score"], node.did)


async def test_orgs_list_this_node_and_explain_each(node, trust, api):
    partner = Org()
    trust.on_records([node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))])
    orgs = {o["org"]: o for o in (await api.get("/v1/orgs")).json()["orgs"]}
    assert orgs[node.did]["own"] and partner.did in orgs
    one = (await api.get(f"/v1/orgs/{partner.did}")).json()
    assert one["text"] and one["reputation"] > 0


async def test_answers_list_the_heaviest_vouches_and_vouchers_and_count_them_all(node, trust, api):
    """Keys an org mints, each vouching for one agent and one org, grow no answer about either past
    MAX_LISTED_PARTS parts (the score, the org, and the org in a page of orgs), and the counts are exact."""
    agent, target = new_did(), Org().did
    keys = [_add_org(node, trust, bytes([i]) * 32) for i in range(MAX_LISTED_PARTS + 6)]
    for i, key in enumerate(keys):
        trust.engine.add_agent_vouch(key, agent, 0.5, "developer", record_id=bytes([i, 1]) * 16, ts=0)
        trust.engine.add_org_vouch(key, target, 0.5, record_id=bytes([i, 2]) * 16, ts=0)
    score = (await api.get(f"/v1/agents/{agent}/score")).json()
    explanation = score["explanation"]
    assert len(explanation["vouches"]) == MAX_LISTED_PARTS and not explanation["vouches_complete"]
    assert explanation["vouches_total"] == len(keys) and (explanation["orgs_total"], explanation["orgs"]) == (0, [])
    assert [v["issuer"] for v in explanation["vouches"]] == sorted(keys)[:MAX_LISTED_PARTS]  # alike: in did order
    page = (await api.get("/v1/orgs", params={"limit": 500})).json()["orgs"]
    for org in (await api.get(f"/v1/orgs/{target}")).json(), next(o for o in page if o["org"] == target):
        assert (len(org["vouched_by"]), org["vouched_by_complete"], org["vouched_by_total"]) == \
            (MAX_LISTED_PARTS, False, len(keys))


def _add_org(node, trust, seed: bytes) -> str:
    """An org this node has heard of (its org-peer vouch, fed to the engine alone): its did, from a key of `seed`."""
    did = did_key(bytes(SigningKey(seed).verify_key))
    trust.engine.add_org_vouch(node.did, did, 0.5, record_id=hashlib.sha256(seed).digest(), ts=0)
    return did


seeds = st.binary(min_size=32, max_size=32)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 5), before=st.lists(seeds, max_size=8, unique=True),
       during=st.lists(st.lists(seeds, max_size=3), max_size=5))
async def test_paging_through_orgs_lists_each_org_known_throughout_once_in_did_order(node, clock, limit, before,
                                                                                     during):
    """GET /v1/orgs pages by did (DESIGN.md §8): orgs heard of between pages do not move the cursor, so every org
    known from the first page to the last comes exactly once, whatever the page size."""
    trust = _trust(node, clock)  # of this example alone
    async with _api(node, trust) as api:
        await _page_through_orgs(node, trust, api, limit, before, during)


async def _page_through_orgs(node, trust, api, limit, before, during):
    for seed in before:
        _add_org(node, trust, seed)
    throughout = {o["org"] for o in trust.orgs()}
    listed, after, pages = [], None, 0
    while True:
        answer = (await api.get("/v1/orgs", params={"limit": limit, **({"after": after} if after else {})})).json()
        assert len(answer["orgs"]) <= limit and set(answer) == {"orgs", "next"}
        listed += [o["org"] for o in answer["orgs"]]
        for seed in during[pages] if pages < len(during) else ():
            _add_org(node, trust, seed)
        pages += 1
        if (after := answer["next"]) is None:
            break
        assert after == listed[-1]
    assert listed == sorted(set(listed))  # in did order, none twice
    assert throughout <= set(listed) <= {o["org"] for o in trust.orgs()}


async def test_a_page_of_orgs_says_where_the_next_begins_and_the_last_says_none(node, trust, api):
    dids = sorted([node.did, *(_add_org(node, trust, bytes([i]) * 32) for i in range(4))])
    first = (await api.get("/v1/orgs", params={"limit": 3})).json()
    assert [o["org"] for o in first["orgs"]] == dids[:3] and first["next"] == dids[2]
    last = (await api.get("/v1/orgs", params={"after": first["next"], "limit": 3})).json()
    assert [o["org"] for o in last["orgs"]] == dids[3:] and last["next"] is None
    assert len((await api.get("/v1/orgs")).json()["orgs"]) == 5  # the default page holds them all


@asynccontextmanager
async def _served(node, trust) -> AsyncIterator[str]:
    """The scores API served as the node serves it, on a free port of 127.0.0.1: its base URL."""
    app = create_app(node, routers=[scores_router(trust, node.replica.key)], open_paths=[CHECK_PATH])
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(partial(serve, app, "127.0.0.1", 0, refused=lambda status, code: None,
                                             dropped=lambda reason: None))
        yield url
        nursery.cancel_scope.cancel()


async def test_a_check_whose_body_is_trickled_gets_a_408_and_nothing_of_the_app(node, trust, autojump_clock, caplog):
    """A route needing no token, its body sent a byte per few seconds: the server answers 408 at the request's
    deadline (the app's answer to the read it was failed in goes nowhere) and closes the connection."""
    async with _served(node, trust) as url:
        client = await connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        body = json.dumps({"action": "tool_call"}).encode()
        async with trio.open_nursery() as nursery:
            await client.send(f"POST /v1/agents/{new_did()}/check HTTP/1.1\r\nHost: node\r\nContent-Type: "
                              f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            nursery.start_soon(trickle, client, body)
            status, _, answer = await client.response()
            assert (status, json.loads(answer)["error"]) == (408, "request_timeout")
            assert "failed" not in caplog.text  # the app's answer to the body it never got is no failure
            assert await client.closed()
            nursery.cancel_scope.cancel()


async def test_a_check_whose_body_stops_midway_gets_a_408_and_no_failure_is_logged(node, trust, autojump_clock,
                                                                                     caplog):
    """A client that sends half its body and then nothing: each read of a body must come within READ_TIMEOUT_S, and
    the one that did not was raised into the app, which logged it as a failure with a traceback and answered 500."""
    async with _served(node, trust) as url:
        client = await connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        body = json.dumps({"action": "tool_call"}).encode()
        await client.send(f"POST /v1/agents/{new_did()}/check HTTP/1.1\r\nHost: node\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:5])
        status, _, answer = await client.response()
        assert (status, json.loads(answer)) == (408, {
            "error": "request_timeout", "detail": f"no byte of the request came for {READ_TIMEOUT_S:g} s"})
        assert await client.closed()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_the_client_follows_the_org_cursors_to_the_last_page(node, trust):
    dids = sorted([node.did, *(_add_org(node, trust, bytes([i]) * 32) for i in range(4))])
    async with _served(node, trust) as url:
        with NodeClient(url) as client:
            listed = await trio.to_thread.run_sync(lambda: [o["org"] for o in client.iter_orgs(page=2)])
    assert listed == dids


async def test_vouchnet_orgs_lists_every_page_highest_reputation_first(node, trust, monkeypatch, capsys):
    monkeypatch.setattr(scores, "DEFAULT_PAGE", 2)  # the route's default, read as the app is made: 3 pages
    dids = [node.did, *(_add_org(node, trust, bytes([i]) * 32) for i in range(4))]
    async with _served(node, trust) as url:
        code = await trio.to_thread.run_sync(cli.main, ["orgs", "--api", url, "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0 and sorted(o["org"] for o in listed) == sorted(dids)
    assert [o["reputation"] for o in listed] == sorted((o["reputation"] for o in listed), reverse=True)


async def test_vouchnet_orgs_did_shows_that_org_explained(node, trust, capsys):
    """What GET /v1/orgs/{did} answers: the org's line as `vouchnet orgs` lists it, then its explanation."""
    org, other = _add_org(node, trust, b"o" * 32), _add_org(node, trust, b"p" * 32)
    async with _served(node, trust) as url:
        code = await trio.to_thread.run_sync(cli.main, ["orgs", "--api", url, "--explain"])
        listed = capsys.readouterr().out
        with NodeClient(url) as client:
            answer = await trio.to_thread.run_sync(client.org, org)
        shown = []
        for argv in (["orgs", org], ["orgs", org, "--json"]):
            shown.append((await trio.to_thread.run_sync(cli.main, [*argv, "--api", url]), capsys.readouterr().out))
    lines = listed.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(f"{org}  reputation "))
    block = [lines[first], *itertools.takewhile(lambda line: line.startswith("    "), lines[first + 1:])]
    assert code == 0 and other in listed and block[1:] == [f"    {line}" for line in answer["text"]]
    assert shown == [(0, "\n".join(block) + "\n"), (0, json.dumps(answer, indent=2) + "\n")]


async def test_score_refuses_an_org_s_did_and_orgs_an_agent_s_naming_the_command_that_takes_it(node, trust, capsys):
    """Before: `score ORG_DID` gave an org's did the cold start of an agent nobody knows, and `orgs AGENT_DID` an
    agent's the reputation 0 of an org nobody knows, neither saying the did was of the other kind; an org only an
    org-peer vouch named, its own records yet to come, was scored still."""
    org, named = Org(), Org()
    agent, both = new_did(), Org()
    trust.on_records([node.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer")),
                      node.replica.issue("vouch", vouch_body(named.did, 0.9, "org-peer")),
                      node.replica.issue("vouch", vouch_body(both.did, 0.9, "org-peer")),
                      node.replica.issue("vouch", vouch_body(agent, 0.8, "operator")),
                      node.replica.issue("vouch", vouch_body(both.did, 0.8, "operator"))])  # (both: also an agent)
    assert len(node.replica.accept([org.record("org", org_body("Acme", "testnet")),
                                    both.record("org", org_body("Both", "testnet"))]).accepted) == 2
    async with _served(node, trust) as url:
        async def run(*argv: str) -> tuple[int, str, str]:
            code = await trio.to_thread.run_sync(cli.main, [*argv, "--api", url])
            return (code, *capsys.readouterr())

        assert await run("score", org.did) == (2, "", f"vouchnet score: {org.did} is an org (it signed records this "
                                                      "node holds), not an agent; score takes an agent's did: see "
                                                      f"`vouchnet orgs {org.did}`\n")
        assert (await run("score", org.did, "--json"))[:2] == (2, "")
        assert await run("score", named.did) == (2, "", f"vouchnet score: {named.did} is an org (a record this node "
                                                        "holds names it as an org: an org-peer vouch for it, say), not "
                                                        "an agent; score takes an agent's did: see `vouchnet orgs "
                                                        f"{named.did}`\n")
        assert await run("orgs", agent) == (2, "", f"vouchnet orgs: {agent} is an agent (the node holds vouches or "
                                                   "digests about it, and no record it issued); orgs takes an org's "
                                                   f"did: see `vouchnet score {agent}`\n")
        assert (await run("orgs", agent, "--json"))[:2] == (2, "")
        for argv in (["score", agent], ["orgs", org.did], ["orgs", named.did], ["score", both.did], ["orgs", both.did],
                     ["score", new_did()], ["orgs", new_did()]):  # each did as what it is, and one nobody names
            assert (await run(*argv))[0] == 0, argv


async def test_orgs_refuses_an_agent_s_did_from_a_node_older_than_the_score_answer_s_known(node, trust, capsys,
                                                                                         monkeypatch):
    """As before `known` existed, on what the score's explanation lists: since `orgs AGENT_DID` decided on `known`
    alone, a node without the field had every agent's did shown as an org's, reputation 0, exit 0."""
    agent = new_did()
    trust.on_records([node.replica.issue("vouch", vouch_body(agent, 0.8, "operator"))])

    def without_known(*args, **options) -> dict:
        answer = score_answer(*args, **options)
        del answer["known"]
        return answer

    monkeypatch.setattr(scores, "score_answer", without_known)
    async with _served(node, trust) as url:
        async def run(*argv: str) -> tuple[int, str, str]:
            code = await trio.to_thread.run_sync(cli.main, [*argv, "--api", url])
            return (code, *capsys.readouterr())

        assert await run("orgs", agent) == (2, "", f"vouchnet orgs: {agent} is an agent (the node holds vouches or "
                                                   "digests about it, and no record it issued); orgs takes an org's "
                                                   f"did: see `vouchnet score {agent}`\n")
        assert (await run("orgs", new_did()))[0] == 0  # a did nobody names: an org nobody knows, as before


async def test_an_org_s_did_is_refused_a_score_and_a_check_saying_why_it_is_taken_for_an_org(node, clock):
    """Before: an org only an org-peer vouch named (its own records not arrived yet), a trust root, this node's own
    org, any org that signed records, was given the cold start of an agent nobody knows, as if the node knew
    nothing of it, and a check decided on that. An org an agent's vouch also names, and a did nothing names, are
    scored."""
    named, signer, root, both = Org(), Org(), Org(), Org()
    trust = _trust(node, clock, roots=(root.did,))
    node.replica.listeners.append(trust.on_records)
    async with _api(node, trust) as api, _api(node, trust, fast=True) as fast:
        async def refused(did: str, why: str) -> None:
            refusal = {"error": "not_an_agent", "detail": f"path.did: {did} is an org ({why}), not an agent; "
                                                          f"GET /v1/orgs/{did} shows it"}
            for answer in (await api.get(f"/v1/agents/{did}/score"), await fast.get(f"/v1/agents/{did}/score"),
                           await api.post(f"/v1/agents/{did}/check", json={"action": "tool_call"})):
                assert (answer.status_code, answer.json()) == (409, refusal), did
            assert (await api.get(f"/v1/orgs/{did}")).status_code == 200

        await refused(node.replica.did, "this node's own org")  # before it signed anything
        for subject in (named, signer, both):
            node.replica.issue("vouch", vouch_body(subject.did, 0.9, "org-peer"))
        node.replica.issue("vouch", vouch_body(both.did, 0.8, "operator"))
        assert len(node.replica.accept([signer.record("org", org_body("Acme", "testnet"))]).accepted) == 1
        await refused(named.did, "a record this node holds names it as an org: an org-peer vouch for it, say")
        for did in (signer.did, node.replica.did):
            await refused(did, "it signed records this node holds")
        await refused(root.did, "a trust root of this node")
        for did in (both.did, new_did()):
            assert (await api.get(f"/v1/agents/{did}/score")).status_code == 200
            assert (await api.post(f"/v1/agents/{did}/check", json={"action": "tool_call"})).status_code == 200


@pytest.mark.parametrize(("query", "detail"), [
    ({"limit": 501}, "query.limit: Input should be less than or equal to 500"),
    ({"limit": 0}, "query.limit: Input should be greater than or equal to 1"),
    ({"after": "did:key:zzz"}, "query.after: not an Ed25519 did:key"),
    ({"after": "x" * 65}, "query.after: String should have at most 64 characters"),
])
async def test_a_bad_org_page_is_a_422_naming_the_parameter(api, query, detail):
    response = await api.get("/v1/orgs", params=query)
    assert response.status_code == 422 and response.json()["detail"].startswith(detail)


async def test_openapi_shows_the_org_page_parameters(api):
    spec = (await api.get("/openapi.json")).json()
    assert {p["name"] for p in spec["paths"]["/v1/orgs"]["get"]["parameters"]} == {"after", "limit"}


@pytest.mark.parametrize("path", ["/v1/agents/nope/score", "/v1/orgs/did:key:zzz"])
async def test_a_bad_did_is_a_specific_422(api, path):
    response = await api.get(path)
    assert response.status_code == 422 and response.json()["detail"].startswith("path.did: not an Ed25519 did:key")


async def test_an_agents_credential_passed_as_its_did_is_a_422_saying_so_and_where_its_did_is(api):
    """A client that passed the credential it was shown (a JWT) where a did goes was told only that the path was
    longer than 64 characters."""
    credential = agent_credential(SigningKey.generate(), new_did())
    for response in (await api.get(f"/v1/agents/{credential}/score"), await api.get(f"/v1/orgs/{credential}"),
                     await api.post(f"/v1/agents/{credential}/check", json={"action": "tool_call"})):
        assert response.status_code == 422
        assert response.json()["detail"] == ("path.did: a credential (a JWT), not a did: verify it against its "
                                             "issuer's /.well-known/jwks.json and use its subject, "
                                             "credentialSubject.id")
    response = await api.get(f"/v1/agents/did:key:z{'1' * 4000}/score")
    assert (response.status_code, response.json()["detail"]) == (
        422, "path.did: not an Ed25519 did:key (did: longer than 64 characters)")


async def test_a_bad_check_body_is_a_422_naming_the_field(api):
    response = await api.post(f"/v1/agents/{new_did()}/check", json={"tool": "search"})
    assert response.status_code == 422 and "action" in response.json()["detail"]


@pytest.mark.parametrize(("tool", "detail"), [
    ("", "body.tool: String should have at least 1 character"),
    ("x" * 257, "body.tool: String should have at most 256 characters"),
    ("run_shell\n", "body.tool: must be printable text"),
    ("se\x00arch", "body.tool: must be printable text"),
    ("search\u200b", "body.tool: must be printable text"),  # a format character: no scope names it
])
async def test_a_tool_no_scope_could_name_is_a_422_naming_the_field(api, tool, detail):
    response = await api.post(f"/v1/agents/{new_did()}/check", json={"action": "tool_call", "tool": tool})
    assert response.status_code == 422 and response.json()["detail"].startswith(detail)


@pytest.fixture
async def fast(node, trust):
    """The API behind ScoreFastPath, as the daemon serves it; `fast.routed` lists the paths FastAPI answered."""
    app = create_app(node, routers=[scores_router(trust, node.replica.key)], open_paths=[CHECK_PATH])
    routed = []

    async def spied(scope, receive, send):
        routed.append(f"{scope['path']}?{scope['query_string'].decode()}")
        await app(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ScoreFastPath(spied, trust, node.replica.key)),
                                 base_url="http://node") as client:
        client.routed = routed
        yield client


def _agents(node, trust, clock):
    """Agents of every kind of standing: unknown, vouched for, and observed (good and bad, with the rules that
    bite and the non-finite values the explanation holds)."""
    unknown, vouched, observed = new_did(), new_did(), new_did()
    trust.on_records([node.replica.issue("vouch", vouch_body(vouched, 1.0, "operator"))])
    trust.engine.add_first_hand(observed, ts=clock(), outcomes=Outcomes(ok=40, error=2, denied=1))
    return [unknown, vouched, observed]


@pytest.mark.parametrize("query", ["", "?explain=false", "?explain=true", "?statement=false&explain=false"])
async def test_the_fast_path_answers_plain_score_requests_byte_for_byte_as_the_route(node, trust, api, fast, clock,
                                                                                      query):
    for agent in _agents(node, trust, clock):
        path = f"/v1/agents/{agent}/score{query}"
        routed, quick = await api.get(path), await fast.get(path)
        assert (quick.status_code, quick.headers["content-type"], quick.content) == (
            routed.status_code, routed.headers["content-type"], routed.content)
        assert int(quick.headers["content-length"]) == len(quick.content)
    assert fast.routed == []  # all answered by the fast path


async def test_the_fast_path_signs_statements_as_the_route(node, trust, api, fast, clock):
    agent = _agents(node, trust, clock)[2]
    quick = (await fast.get(f"/v1/agents/{agent}/score?statement=true")).json()
    routed = (await api.get(f"/v1/agents/{agent}/score?statement=true")).json()
    key = jwt.PyJWK(jwks([node.replica.key.verify_key])["keys"][0])
    claims = jwt.decode(quick.pop("statement"), key.key, algorithms=["EdDSA"])
    assert (claims["agent"], claims["score"], claims["tier"]) == (agent, quick["score"], quick["tier"])
    routed.pop("statement")
    assert quick == routed and fast.routed == []


@pytest.mark.parametrize("path", [
    "/v1/agents/nope/score",  # not a did: the route's 422
    "/v1/agents/{agent}/score?explain=yes",  # a value FastAPI reads its own way
    "/v1/agents/{agent}/score?explain=false&explain=true",  # repeated
    "/v1/agents/{agent}/score?colour=blue",  # unknown
    "/v1/agents/{agent}/score/",
    "/v1/agents/{agent}/check",
])
async def test_anything_but_a_plain_score_request_goes_to_the_route(node, trust, api, fast, clock, path):
    path = path.format(agent=_agents(node, trust, clock)[1])
    routed, quick = await api.get(path), await fast.get(path)
    assert (quick.status_code, quick.content) == (routed.status_code, routed.content)
    assert fast.routed == [path.partition("?")[0] + "?" + path.partition("?")[2]]


@pytest.fixture
def observed(node, trust, clock):
    """An agent with first-hand evidence."""
    return _agents(node, trust, clock)[2]


_NAMES = ["explain", "statement", "Explain", "colour", "", "explain[]"]
_VALUES = ["true", "false", "True", "1", "0", "yes", "", "%74rue", "fal se"]
queries = st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=4).map(
    lambda pairs: "&".join(f"{n}={v}" for n, v in pairs))
dids = st.sampled_from(["agent", "agent-quoted", "did:key:z6Mk", "did%3Akey", "x" * 65, ""])


# pytest-trio sets the async fixtures up again for each example, and each new app builds its routes on its first
# request (most of an example's time): an example asks a list of requests, about as many in all as 60 of one each.
@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.tuples(queries, dids), min_size=1, max_size=9))
async def test_behind_the_fast_path_every_score_request_gets_the_route_s_answer(api, fast, observed, requests):
    for query, did in requests:
        did = {"agent": observed, "agent-quoted": quote(observed, safe="")}.get(did, did)
        path = f"/v1/agents/{did}/score" + (f"?{query}" if query else "")
        routed, quick = await api.get(path), await fast.get(path)
        assert quick.status_code == routed.status_code
        if b'"statement":' in routed.content:  # signed with the wall clock's second: compare the rest exactly
            answers = [response.json() for response in (routed, quick)]
            assert answers[0].pop("statement").count(".") == answers[1].pop("statement").count(".") == 2
            assert answers[0] == answers[1]
        else:
            assert quick.content == routed.content


async def test_a_check_lists_whose_credentials_stand_for_the_agent_and_the_cold_start(node, trust, api):
    """The SDK decides a credential whose issuer is not listed on `cold_start`: this node's org's keys come first,
    then each org with a live operator vouch for the agent; other bases, and revoked vouches, list no one."""
    agent, operator, auditor = new_did(), Org(), Org()
    vouch = operator.record("vouch", vouch_body(agent, 0.5, "operator"))
    trust.on_records([vouch, auditor.record("vouch", vouch_body(agent, 0.5, "audit"))])
    check = partial(api.post, f"/v1/agents/{agent}/check", json={"action": "tool_call"})
    answer = (await check()).json()
    assert (answer["issuers"], answer["issuers_complete"]) == ([node.replica.did, operator.did], True)
    assert answer["cold_start"] == (await api.get(f"/v1/agents/{new_did()}/score")).json()["score"]
    trust.on_records([operator.record("revoke", revoke_body(vouch.id, "no longer ours"))])
    assert (await check()).json()["issuers"] == [node.replica.did]


async def test_a_check_lists_no_key_of_an_org_proven_to_equivocate(node, trust, api):
    """Before: an equivocator's live operator vouch listed its keys, so that the SDK took a credential it issued for
    any agent it vouched for so as the agent's own, and decided on the agent's standing, not on the cold start."""
    agent, operator = new_did(), Org()
    trust.on_records([operator.record("vouch", vouch_body(agent, 0.5, "operator"))])
    trust.engine.flag_equivocator(operator.did)  # (as an equivocation record about it does: vouching.feed)
    answer = (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call"})).json()
    assert answer["issuers"] == [node.replica.did]


async def test_a_check_lists_at_most_64_org_keys_and_says_when_there_are_more(node, trust, api):
    """Any key may sign an operator vouch for any agent: listed in full, they would grow the answer without bound."""
    agent, orgs = new_did(), [Org() for _ in range(64)]
    trust.on_records([org.record("vouch", vouch_body(agent, 0.5, "operator")) for org in orgs])
    answer = (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call"})).json()
    assert len(answer["issuers"]) == 64 and answer["issuers"][0] == node.replica.did
    assert answer["issuers_complete"] is False


def _partner_behind_weightless_operators(node, trust):
    """An agent operated by a partner this node vouches for and by 64 keys no one vouches for, all of whose dids
    sort before the partner's: (the agent, the partner, those keys)."""
    agent, (*keys, partner) = new_did(), sorted((Org() for _ in range(65)), key=lambda org: org.did)
    trust.on_records([node.replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer")),
                      *(org.record("vouch", vouch_body(agent, 0.5, "operator")) for org in (*keys, partner))])
    return agent, partner, keys


async def test_keys_no_one_vouches_for_do_not_push_a_weighted_operator_off_the_list(node, trust, api):
    """Before: the operators were listed by did, so that 64 fresh keys sorting before a partner's, each signing an
    operator vouch for its agent, left the partner unlisted and every credential of its for the agent decided on
    the cold start. Heaviest first, the partner comes right after this node's own org; the keys, after it."""
    agent, partner, keys = _partner_behind_weightless_operators(node, trust)
    answer = (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call"})).json()
    assert answer["issuers"] == [node.replica.did, partner.did, *(key.did for key in keys[:62])]
    assert answer["issuers_complete"] is False


async def test_a_check_naming_the_credential_s_issuer_says_whether_it_operates_the_agent_listed_or_not(node, trust,
                                                                                                      api):
    """The SDK names the issuer: of one past the 64 listed, only the node's full list can say."""
    agent, partner, keys = _partner_behind_weightless_operators(node, trust)

    async def operates(issuer: str) -> bool:
        answer = await api.post(f"/v1/agents/{agent}/check", params={"issuer": issuer}, json={"action": "tool_call"})
        assert answer.status_code == 200, answer.text
        return answer.json()["issuer_operates"]

    assert keys[-1].did not in (await api.post(f"/v1/agents/{agent}/check", json={"action": "tool_call"})).json()[
        "issuers"]
    assert [await operates(did) for did in (keys[-1].did, partner.did, node.replica.did, new_did())] == [
        True, True, True, False]
    refused = await api.post(f"/v1/agents/{agent}/check", params={"issuer": "did:web:example"},
                             json={"action": "tool_call"})
    assert refused.status_code == 422 and refused.json()["detail"].startswith("query.issuer: not an Ed25519 did:key")


async def test_a_credential_of_an_org_that_does_not_operate_the_agent_is_decided_on_the_cold_start(node, trust, api,
                                                                                                    clock):
    """Before: the node answered `allow` on the agent's own score with `issuer_operates` false, and only the Python
    SDK applied the cold start, so that a client in another language let a stranger's credential naming a trusted
    agent through. The score and tier stay the agent's (an SDK caches them); the decision is the cold start's."""
    agent, stranger = new_did(), Org()
    trust.engine.add_first_hand(agent, ts=clock(), outcomes=Outcomes(ok=3))
    trust.on_records([node.replica.issue("vouch", vouch_body(agent, 1.0, "operator", scope=["search"]))])

    async def check(issuer: str) -> dict:
        answer = await api.post(f"/v1/agents/{agent}/check", params={"issuer": issuer},
                                json={"action": "tool_call", "tool": "search"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    own, foreign = await check(node.replica.did), await check(stranger.did)
    assert (own["decision"], own["tier"], own["issuer_operates"]) == ("allow", "trusted", True)
    assert (foreign["decision"], foreign["score"], foreign["tier"], foreign["issuer_operates"]) == (
        "block", own["score"], "trusted", False)
    assert foreign["reason"].startswith(f"{stranger.did} does not operate {agent} ")
    assert f"decided on the cold-start score; tier untrusted (score {foreign['cold_start']})" in foreign["reason"]
