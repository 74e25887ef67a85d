"""Vouchnet, what a service makes once (DESIGN §8): what it says about how it was made."""

import logging
import threading
import time
from types import MappingProxyType, SimpleNamespace

import httpx
import pytest
from nacl.signing import SigningKey

from node.client import TrustPolicy, Vouchnet
from node.client import _blocking
from node.client.guard import credential_in, refusal_text
from node.credential_status import LIST_ENTRIES
from node.credentials import agent_credential

from vouching import revoke_body, vouch_body

from ..factories import API_TOKEN, Org
from .running_node import GOOD_EVENTS
from .stub_org import StubOrg, did_of, serving

NODE = "http://127.0.0.1:9"


def _started(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("trust policy started")]


@pytest.mark.parametrize("observe, fail_open, level, said", [
    (True, False, logging.WARNING,
     "observe mode, no call is blocked; fails closed: a call the node cannot answer is logged as blocked"),
    (False, True, logging.WARNING, "enforcing; fails open: a call the node cannot answer goes ahead, audited (a "
     "high-risk one is blocked)"),
    (True, True, logging.WARNING, "observe mode, no call is blocked; fails open: a call the node cannot answer goes "
     "ahead, audited (a high-risk one is logged as blocked)"),
    (False, False, logging.INFO, "enforcing; fails closed: a call the node cannot answer is blocked"),
])
def test_a_policy_says_as_it_starts_whether_its_decisions_bind(observe, fail_open, level, said, caplog):
    """An operator reading the service's log could not tell that nothing was blocked (observe), or that calls went
    ahead without the node (fail_open), until a decision was logged: one line says so as the policy starts, at
    WARNING, naming the node but not a password of its URL. Observing, it said `no call is blocked; fails closed:
    a call the node cannot answer is blocked`: such a call is only logged as blocked."""
    with caplog.at_level(logging.INFO, logger="vouchnet.client"):
        TrustPolicy("http://ops:s3cret@127.0.0.1:9", listen=False, observe=observe, fail_open=fail_open)
    [record] = _started(caplog)
    line = logging.Formatter("%(message)s").format(record)
    assert (record.levelno, said in line) == (level, True), line
    assert f"node=http://ops@127.0.0.1:9 enforced={not observe} fail_open={fail_open}" in line
    assert "s3cret" not in line


def test_vouchnet_observing_says_so_once_as_it_starts_and_not_its_token(monkeypatch, caplog):
    monkeypatch.delenv("VOUCHNET_TOKEN", raising=False)
    with caplog.at_level(logging.INFO, logger="vouchnet.client"):
        vouchnet = Vouchnet(NODE, API_TOKEN, observe=True)
    vouchnet.telemetry.shutdown(timeout=0)
    vouchnet.policy.close()
    [record] = _started(caplog)
    assert record.levelno == logging.WARNING and record.fields["node"] == NODE
    assert "observe mode" in record.getMessage()
    assert API_TOKEN not in caplog.text


@pytest.mark.parametrize("token", [None, API_TOKEN], ids=["no token", "a token"])
def test_without_an_api_token_it_warns_that_nothing_it_runs_is_reported(token, monkeypatch, caplog):
    """Without $VOUCHNET_TOKEN it made no collector and said nothing: no call was reported, so the node built no
    first-hand score from them (the whole of week 1, observing). It names the node, without its URL's password."""
    monkeypatch.delenv("VOUCHNET_TOKEN", raising=False)
    node = NODE.replace("http://", "http://ops:s3cret@")
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        vouchnet = Vouchnet(node, token, policy=TrustPolicy(node, listen=False))
    warned = [r.getMessage() for r in caplog.records if "telemetry is off" in r.getMessage()]
    if token is None:
        assert vouchnet.telemetry is None and len(warned) == 1
        assert "$VOUCHNET_TOKEN" in warned[0] and "api.token" in warned[0]
        assert warned[0].endswith(" node=http://ops@127.0.0.1:9") and "s3cret" not in caplog.text
    else:
        assert vouchnet.telemetry is not None and warned == []
        vouchnet.telemetry.shutdown(timeout=0)


def _search() -> str:
    return "results"


def _refused(decision) -> str:
    return f"refused: {decision.reason}"


def test_a_sync_service_closes_it_sending_its_telemetry_and_ending_the_stream(running):
    """Synchronous code had only `await aclose()` to send what was left and stop following the stream."""
    known, credential = running.new_agent(trusted=True)
    before = set(threading.enumerate())
    with Vouchnet(running.url, running.token) as vouchnet:
        assert vouchnet.policy.stream_connected.wait(10)
        assert vouchnet.guard_sync(credential, _search, _refused, tool="search") == "results"
        started = set(threading.enumerate()) - before
    assert {thread.name for thread in started} == {"vouchnet-score-stream", "vouchnet-telemetry"}
    for thread in started:
        thread.join(10)
        assert not thread.is_alive()
    assert vouchnet.telemetry.stats.buffered == 0
    assert running.first_hand_events(known) == GOOD_EVENTS + 1


async def test_an_async_service_closes_it_on_leaving_its_block(running):
    known, credential = running.new_agent(trusted=True)
    async with Vouchnet(running.url, running.token) as vouchnet:
        assert await vouchnet.guard(credential, _asearch, _refused, tool="search") == "results"
    assert vouchnet.telemetry.stats.buffered == 0
    assert running.first_hand_events(known) == GOOD_EVENTS + 1


async def _asearch() -> str:
    return _search()


def _closing_with_a_failing_telemetry(monkeypatch) -> tuple[Vouchnet, list[str]]:
    """A Vouchnet whose telemetry's shutdown raises, and the list its policy's closes are noted in."""
    vouchnet, closed = Vouchnet(NODE, API_TOKEN, policy=TrustPolicy(NODE, listen=False)), []

    def fails(*args: object) -> None:
        raise OSError("the telemetry's shutdown failed")

    async def afails(*args: object) -> None:
        fails()

    async def aclose() -> None:
        closed.append("aclose")

    monkeypatch.setattr(vouchnet.telemetry, "shutdown", fails)
    monkeypatch.setattr(vouchnet.telemetry, "ashutdown", afails)
    monkeypatch.setattr(vouchnet.policy, "close", lambda: closed.append("close"))
    monkeypatch.setattr(vouchnet.policy, "aclose", aclose)
    return vouchnet, closed


def test_closing_closes_the_policy_though_the_telemetry_shutdown_raises_then_raises_its_error(monkeypatch):
    """The policy's close was skipped: its stream thread and connection (one of the node's stream slots) leaked."""
    vouchnet, closed = _closing_with_a_failing_telemetry(monkeypatch)
    with pytest.raises(OSError, match="the telemetry's shutdown failed"):
        vouchnet.close()
    assert closed == ["close"]


async def test_aclose_closes_the_policy_though_the_telemetry_shutdown_raises_then_raises_its_error(monkeypatch):
    vouchnet, closed = _closing_with_a_failing_telemetry(monkeypatch)
    with pytest.raises(OSError, match="the telemetry's shutdown failed"):
        await vouchnet.aclose()
    assert closed == ["aclose"]


def test_when_both_steps_of_closing_raise_the_first_is_raised_and_the_second_logged(monkeypatch, caplog):
    vouchnet, _ = _closing_with_a_failing_telemetry(monkeypatch)

    def fails() -> None:
        raise RuntimeError("the policy's close failed")

    monkeypatch.setattr(vouchnet.policy, "close", fails)
    with caplog.at_level(logging.ERROR, logger="vouchnet.client"), \
            pytest.raises(OSError, match="the telemetry's shutdown failed"):
        vouchnet.close()
    [logged] = caplog.records
    first_line, *traceback = logged.getMessage().splitlines()
    assert first_line == "closing Vouchnet: the policy's close failed too"
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "RuntimeError: the policy's close failed"


def test_a_later_step_of_closing_logs_its_error_without_the_password_of_a_url_it_names(monkeypatch, caplog):
    """An httpx error names the URL it failed at, userinfo and all: logged with exc_info, its password reached the
    service's log."""
    vouchnet, _ = _closing_with_a_failing_telemetry(monkeypatch)

    def fails() -> None:
        request = httpx.Request("GET", "http://operator:s3cret@node.example:8700/v1/policy")
        httpx.Response(502, request=request).raise_for_status()

    monkeypatch.setattr(vouchnet.policy, "close", fails)
    with caplog.at_level(logging.ERROR, logger="vouchnet.client"), pytest.raises(OSError):
        vouchnet.close()
    assert "s3cret" not in caplog.text
    assert "HTTPStatusError: Server error '502 Bad Gateway' for url 'http://operator@node.example:8700/v1/policy'" \
        in caplog.text


def test_a_policy_of_another_node_is_refused_naming_both(monkeypatch):
    """`Vouchnet(url, policy=TrustPolicy(min_score=100))` asked the local node for every decision (the policy's
    default) while it verified and reported at `url`."""
    monkeypatch.delenv("VOUCHNET_NODE", raising=False)
    with pytest.raises(ValueError, match=r"policy: decides with the node at http://127\.0\.0\.1:8700, not this "
                                         r"service's http://10\.0\.0\.5:8700; make it with TrustPolicy\("
                                         r"'http://10\.0\.0\.5:8700', \.\.\.\)"):
        Vouchnet("http://10.0.0.5:8700", policy=TrustPolicy(listen=False, min_score=100))


def test_a_policy_of_another_node_is_refused_without_either_url_s_password():
    """An exception's message goes to logs and tracebacks: a node URL's password is not shown (RFC 3986 §3.2.1)."""
    with pytest.raises(ValueError) as refused:
        Vouchnet("http://svc:s3cret@10.0.0.5:8700", API_TOKEN,
                 policy=TrustPolicy("http://ops:hunter2@127.0.0.1:8700", listen=False))
    assert "http://svc@10.0.0.5:8700" in str(refused.value) and "http://ops@127.0.0.1:8700" in str(refused.value)
    assert "s3cret" not in str(refused.value) and "hunter2" not in str(refused.value)


HOLDERS = {"a dict": {"vouchnet_credential": "token"},
           "another mapping": MappingProxyType({"vouchnet_credential": "token"}),
           "an object": SimpleNamespace(vouchnet_credential="token")}


@pytest.mark.parametrize("holder", HOLDERS.values(), ids=HOLDERS.keys())
def test_the_credential_is_found_in_any_mapping_or_object_a_run_carries(holder):
    """A mapping other than a dict (a frozen context, a MappingProxyType) was searched for an attribute, and its
    caller refused as presenting no credential."""
    assert credential_in(holder) == "token"


def test_a_call_of_a_tool_with_a_long_name_is_reported_too(running):
    """A check takes tool names of up to 256 characters, an event up to 128: the node refused the event of a call
    that ran under a longer name, and the call counted for nothing."""
    known, credential = running.new_agent(trusted=True)
    with Vouchnet(running.url, running.token, policy=TrustPolicy(running.url, listen=False)) as vouchnet:
        assert vouchnet.guard_sync(credential, _search, _refused, tool="search_" + "x" * 200) == "results"
    assert (vouchnet.telemetry.stats.sent, vouchnet.telemetry.stats.rejected) == (1, 0)
    assert running.first_hand_events(known) == GOOD_EVENTS + 1


def test_an_accepted_org_cannot_borrow_the_standing_of_another_org_s_agent(running):
    """A partner org accepted for its own agents mints a credential naming this org's trusted agent, a did it
    does not hold the key of (the credential is a bearer token: nothing asks the caller to prove the key), and its
    callers are decided, and reported, as that agent."""
    known, _ = running.new_agent(trusted=True)
    partner_key = SigningKey.generate()
    partner = StubOrg([partner_key])
    with serving(partner):
        borrowed = agent_credential(partner_key, known)
        with Vouchnet(running.url, running.token, policy=TrustPolicy(running.url, listen=False),
                      issuers=[running.url, partner.url]) as vouchnet:
            assert not vouchnet.authorize_sync(borrowed, "tool_call", "search").allowed


@pytest.mark.parametrize("failing", ["status list", "JWKS"])
def test_a_caller_is_not_told_how_a_fetch_of_the_service_s_went_and_its_log_is(failing, caplog):
    """A refusal told anyone presenting a token the status code, or timeout against refused connection, of a GET the
    service made inside its network: the caller learns the rule, the service's log the detail."""
    key = SigningKey.generate()
    org = StubOrg([key], jwks_down=failing == "JWKS")
    with serving(org):
        token = org.credential(key, 2 * LIST_ENTRIES)  # list 2: the org serves list 0 alone, so 404
        with Vouchnet(NODE, API_TOKEN, policy=TrustPolicy(NODE, listen=False), issuers=[org.url]) as vouchnet:
            vouchnet.telemetry.shutdown(timeout=0)
            with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
                told = refusal_text(vouchnet.authorize_sync(token, "tool_call", "search"))
    logged = [r.fields["detail"] for r in caplog.records if r.getMessage().startswith("trust decision")]
    detail = "404" if failing == "status list" else "503"
    assert told.endswith("the service's log says why)") and detail not in told and org.url not in told
    assert len(logged) == 1 and detail in logged[0]


def _partner(running) -> tuple[Org, StubOrg]:
    """An org the running org vouches for (org-peer), whose records the test gives the node as gossip would, and its
    credential endpoints."""
    key = SigningKey.generate()
    with running.client() as client:
        client.vouch(did_of(key), 0.5, "org-peer")
    return Org(key=key), StubOrg([key])


def _decide(running, credential: str, *partners: StubOrg):
    """The decision of a service of the running org accepting the partners' agents too, for a `search` call."""
    with Vouchnet(running.url, running.token, policy=TrustPolicy(running.url, listen=False),
                  issuers=[running.url, *(partner.url for partner in partners)]) as vouchnet:
        return vouchnet.authorize_sync(credential, "tool_call", "search")


def test_an_org_operating_the_agent_by_a_live_operator_vouch_lends_it_its_standing(running):
    known, _ = running.new_agent(trusted=True)
    first, first_stub = _partner(running)
    second, second_stub = _partner(running)
    running.accept([first.record("vouch", vouch_body(known, 0.5, "operator")),
                    second.record("vouch", vouch_body(known, 0.5, "operator"))])
    with serving(first_stub, second_stub):
        for partner in (first_stub, second_stub):  # a did with two operators: either's credential stands
            decision = _decide(running, agent_credential(partner.keys[0], known), first_stub, second_stub)
            assert decision.allowed and decision.operated and decision.tier == "trusted"


@pytest.mark.parametrize("ended", ["revoked", "expired"])
def test_an_org_whose_operator_vouch_ended_is_decided_on_the_cold_start_naming_it_and_the_agent(running, ended):
    known, _ = running.new_agent(trusted=True)
    partner, stub = _partner(running)
    expires = partner.ts + 2 if ended == "expired" else None  # ms since the epoch: in 2023
    vouch = partner.record("vouch", vouch_body(known, 0.5, "operator", expires=expires))
    running.accept([vouch] if ended == "expired" else [vouch, partner.record("revoke", revoke_body(vouch.id, "gone"))])
    with serving(stub):
        decision = _decide(running, agent_credential(stub.keys[0], known), stub)
    issuer = did_of(stub.keys[0])
    assert not decision.allowed and not decision.operated and decision.tier == "untrusted"
    assert decision.reason.startswith(f"{issuer} does not operate {known} (no live operator vouch")


def test_a_partner_past_the_64_operators_the_node_lists_lends_the_agent_its_standing(running):
    """Before: a credential whose issuer the check answer did not list was decided on the cold start, though the
    node said it listed only some (`issuers_complete` false): 64 operators this node weighs more than the partner
    (or, listed by did, any 64 keys sorting first) made the partner's every credential for its agent a stranger's.
    The SDK names the issuer in its check, and the node answers of all the operators."""
    known, _ = running.new_agent(trusted=True)
    heavier = [Org() for _ in range(64)]
    key = SigningKey.generate()
    with running.client() as client:
        for org in heavier:
            client.vouch(org.did, 0.5, "org-peer")
        client.vouch(did_of(key), 0.05, "org-peer")
    partner, stub = Org(key=key), StubOrg([key])
    running.accept([org.record("vouch", vouch_body(known, 0.5, "operator")) for org in (*heavier, partner)])
    with running.client() as client:
        listed = client.check(known, "tool_call")
    assert partner.did not in listed["issuers"] and listed["issuers_complete"] is False
    with serving(stub):
        decision = _decide(running, agent_credential(key, known), stub)
    assert decision.allowed and decision.operated and decision.tier == "trusted"


def test_a_fresh_agent_of_the_service_s_own_org_stands_and_one_of_a_partner_starts_cold(running):
    """`vouchnet agent new` without --vouch signs no operator vouch: the org's own agents still count as theirs,
    a partner's are decided on the cold-start score (and not reported as the agent) until it vouches as operator."""
    fresh, own_credential = running.new_agent(trusted=False)
    partner, stub = _partner(running)
    with serving(stub):
        own = _decide(running, own_credential, stub)
        theirs = _decide(running, agent_credential(stub.keys[0], fresh), stub)
    assert own.operated and not theirs.operated
    assert (own.score, own.tier) == (theirs.score, theirs.tier)  # a fresh agent's score is the cold start
    assert did_of(stub.keys[0]) in theirs.reason and fresh in theirs.reason


def test_a_call_run_under_a_credential_of_an_org_not_operating_the_agent_is_not_reported_as_it(running):
    """Another org's callers would build, or sink, the agent's first-hand score at this node."""
    known, _ = running.new_agent(trusted=True)
    partner, stub = _partner(running)
    with serving(stub):
        with Vouchnet(running.url, running.token, policy=TrustPolicy(running.url, listen=False, observe=True),
                      issuers=[running.url, stub.url], observe=True) as vouchnet:  # week 1: nothing blocked
            ran = vouchnet.guard_sync(agent_credential(stub.keys[0], known), _search, _refused, tool="search")
    assert ran == "results" and vouchnet.telemetry.stats.sent == 0
    assert running.first_hand_events(known) == GOOD_EVENTS


def test_a_partner_s_operator_vouch_revoked_though_no_score_moved_stops_its_credentials_once_announced(running):
    """An operator vouch too light to move the agent's score: its revocation moved none, the stream said nothing,
    and the policy kept the partner as the agent's operator, cached, until cache_ttl. The node announces who
    operates the agent now."""
    known, _ = running.new_agent(trusted=True)
    partner, stub = _partner(running)
    issuer = did_of(stub.keys[0])
    vouch = partner.record("vouch", vouch_body(known, 0.001, "operator"))
    running.accept([vouch])
    announced = threading.Event()
    policy = TrustPolicy(running.url, cache_ttl=600, on_change=lambda change: announced.set() if (
        change.agent == known and change.issuers is not None and issuer not in change.issuers) else None)
    with serving(stub), Vouchnet(running.url, running.token, policy=policy,
                                 issuers=[running.url, stub.url]) as vouchnet:
        assert policy.stream_connected.wait(10)
        credential = agent_credential(stub.keys[0], known)
        with running.client() as client:
            before = (vouchnet.authorize_sync(credential, "tool_call", "search"), client.score(known)["score"])
            running.accept([partner.record("revoke", revoke_body(vouch.id, "no longer ours"))])
            assert announced.wait(10)
            after = (vouchnet.authorize_sync(credential, "tool_call", "search"), client.score(known)["score"])
    assert before[0].operated and before[0].allowed and before[0].score == before[1] == after[1]
    assert not after[0].operated and not after[0].allowed
    assert after[0].reason.startswith(f"{issuer} does not operate {known} (no live operator vouch")


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_synchronous_call_from_a_running_event_loop_says_once_that_it_blocks_the_loop(running, loop, monkeypatch,
                                                                                      caplog):
    """authorize_sync (or guard_sync, check, verify) called from an async service's handler waited on the node on
    the loop's thread, holding every other request of the service for up to its timeouts, and nothing said so."""
    import asyncio

    import trio

    monkeypatch.setattr(_blocking, "_said", threading.Event())
    known, credential = running.new_agent(trusted=True)
    vouchnet = Vouchnet(running.url, running.token, policy=TrustPolicy(running.url, listen=False))

    async def handler() -> None:
        for _ in range(2):
            assert vouchnet.authorize_sync(credential, "tool_call", "search").allowed
            assert vouchnet.policy.check(known, "tool_call", "search").allowed

    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        assert vouchnet.authorize_sync(credential, "tool_call", "search").allowed  # no loop here: nothing to say
        assert not [r for r in caplog.records if "blocks the loop" in r.getMessage()]
        asyncio.run(handler()) if loop == "asyncio" else trio.run(handler)
    said = [r.getMessage() for r in caplog.records if "blocks the loop" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"Vouchnet.authorize_sync was called from a running {loop} event "
                                                 "loop: it blocks the loop")
    assert "await Vouchnet.authorize() instead" in said[0]
    vouchnet.close()
