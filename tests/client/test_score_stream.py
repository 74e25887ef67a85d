"""The SSE parsing behind TrustPolicy's cache (WHATWG HTML §9.2): events as the node frames them, comments,
multi-line data, ids; what is not a well-formed score change is ignored, not trusted."""

import json

from node.client.score_stream import ScoreChange, SseEvent, SseParser, score_change


def _feed(text: str) -> tuple[list[SseEvent], SseParser]:
    parser = SseParser()
    events = [e for line in text.split("\n") if (e := parser.feed(line)) is not None]
    return events, parser


def test_events_are_parsed_as_the_node_frames_them():
    data = {"agent": "did:key:z6Mk", "score": 610, "tier": "trusted", "previous_score": 120,
            "previous_tier": "untrusted"}
    text = f"retry: 3000\n\n: keep-alive\n\nid: ab12-7\nevent: tier\ndata: {json.dumps(data)}\n\n"
    events, parser = _feed(text)
    assert events == [SseEvent("tier", json.dumps(data), "ab12-7")] and parser.last_id == "ab12-7"
    assert score_change(events[0]) == ScoreChange("did:key:z6Mk", 610, "trusted")


def test_data_lines_join_and_an_event_without_a_name_is_a_message():
    events, _ = _feed("data: a\ndata:b\n\nevent: reset\ndata: {}\n\n")
    assert events == [SseEvent("message", "a\nb", None), SseEvent("reset", "{}", None)]


def test_what_is_not_a_score_change_is_ignored():
    for data in ("not json", "[]", '{"agent": "a", "score": "600", "tier": "trusted"}',
                 '{"agent": 1, "score": 600, "tier": "trusted"}', '{"score": 600}'):
        assert score_change(SseEvent("score", data, None)) is None
    assert score_change(SseEvent("message", '{"agent": "a", "score": 1, "tier": "x"}', None)) is None
