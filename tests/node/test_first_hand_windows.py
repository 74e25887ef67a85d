"""The node's own evidence counts at most C/2 good a window of the node's clock (README "How scores are computed",
4): the times an agent or its exporter reports choose no window, and the node's digests coming back from peers after
a restore count under their window's cap, as a restart replaying them counts them."""

import json
import shutil

import pytest
import trio

from node.ingest import Pending
from node.otlp import decode_json, sort_spans
from vouching.params import HOUR_MS

from ..factories import new_did
from .telemetry_node import Clock, telemetry_node
from .test_digests import first_hand, replayed, running, submit, trust_service
from .test_otlp import json_request, json_span

HOUR0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS + HOUR_MS  # a window's start
MINUTE = 60_000  # the digests' epoch


def _post_json(node, agent: str, ts: int, count: int) -> None:
    body = {"events": [{"agent": agent, "ts": ts, "category": "tool", "name": "n", "outcome": "ok",
                        "high_risk": False}] * count}
    assert node.ingestor.submit_json(json.dumps(body).encode()).body["accepted"] == count


def _post_spans(node, agent: str, ts: int, count: int) -> None:
    spans = [{**json_span(agent), "startTimeUnixNano": str(ts * 1_000_000),
              "endTimeUnixNano": str((ts + 5) * 1_000_000)} for _ in range(count)]
    prepared = node.ingestor.prepare_spans(sort_spans(decode_json(json.dumps(json_request(*spans)).encode()),
                                                      now_ms=node.clock()))
    assert isinstance(prepared, Pending)
    trio.run(node.ingestor.commit_async, prepared)


@pytest.mark.parametrize("post", [_post_json, _post_spans])
def test_events_dated_in_many_past_hours_count_in_the_window_the_node_accepts_them_in(tmp_path, post):
    """An agent reporting ten clean events dated in each of the last 23 hours (the oldest the node takes), within a
    minute of the node's clock, gets the C/2 of that one window: a window is chosen by the node's acceptance time,
    never by a reported time, so backdating buys nothing."""
    clock, agent = Clock(HOUR0 + 5), new_did()
    with telemetry_node(tmp_path, clock=clock, epoch_ms=HOUR_MS) as node:
        trust = trust_service(node)
        node.ingestor.listeners.append(trust.on_events)
        for hours in range(1, 24):
            post(node, agent, clock.now - hours * HOUR_MS + 1000, 10)
            clock.run(1000)
        explanation = trust.engine.explain(agent, now=clock.now)
        (own,) = explanation.orgs
        assert (own.events, own.capped, own.counted_good) == (230, 1, pytest.approx(1.66, abs=0.01))
        assert explanation.score.tier == "provisional"


def test_digests_of_a_past_hour_coming_back_late_count_under_its_window_s_cap(tmp_path):
    """Restored from a copy taken before an hour of one clean event a minute, the node sees the agent again in the
    next hour before its start-up sync brings back that hour's 60 one-minute digests: they count the C/2 of their
    window, as a restart replaying them counts them. Each under a cap of its own, they counted 61 good, and the agent
    went from 441 to 799 until the node restarted."""
    clock, agent = Clock(HOUR0 + 5), new_did()
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=MINUTE) as node:
        key = node.key
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, before the agent's events
        issued = []
        for minute in range(60):
            clock.now = HOUR0 + minute * MINUTE + 5
            submit(node, (agent, "ok", "tool", False))
            issued += node.digester.close_due(HOUR0 + (minute + 1) * MINUTE)
    clock.now = HOUR0 + HOUR_MS + 5
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=MINUTE) as node:
        live = running(node)
        node.ingestor.listeners.append(live.on_events)
        submit(node, (agent, "ok", "tool", False))
        node.replica.accept(issued)  # the start-up sync
        restarted = replayed(node)
        assert first_hand(live, [agent], clock.now) == pytest.approx(first_hand(restarted, [agent], clock.now),
                                                                     abs=1e-5)
        (own,) = live.engine.explain(agent, now=clock.now).orgs
        assert (own.events, own.counted_good) == (61, pytest.approx(1.66 + 1, abs=0.01))
        (score, _), (restarted_score, _) = live.score(agent), restarted.score(agent)
        assert (score.score, score.tier) == (restarted_score.score, "provisional")
