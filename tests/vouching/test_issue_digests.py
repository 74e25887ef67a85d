"""Digest records issued in bulk from typed bodies: the records issue_record gives for their wire maps, and never
one that verify_record would reject."""

import dataclasses
import hashlib
from typing import Any

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vouching import (
    Counts,
    DigestBody,
    InvalidRecord,
    did_key,
    issue_digests,
    issue_record,
    verify_record,
)
from vouching.bodies import CATEGORIES, OUTCOMES, parse_body
from vouching.schema import MAX_UINT

from .record_strategies import RecordArgs, digest_bodies, record_args

KEY = nacl.signing.SigningKey(bytes(range(32)))
AGENT = did_key(bytes(nacl.signing.SigningKey(bytes(range(2, 34))).verify_key))
TS = 1_764_000_000_000
HOUR = 3_600_000
PREV = hashlib.sha256(b"previous").digest()
BODY = DigestBody(
    AGENT, TS - HOUR, HOUR,
    Counts((("ok", 7), ("error", 1), ("denied", 1), ("timeout", 1))),
    Counts((("a2a", 1), ("mcp", 2), ("auth", 1), ("tool", 4), ("other", 1), ("resource", 1))),
    Counts((("ok", 1), ("error", 0), ("denied", 1), ("timeout", 0))),
    10, bytes(32), 1.0,
)


@given(record_args(kinds=("digest",)), st.data())
def test_a_run_of_digests_is_what_issue_record_gives_for_each_wire_body(args: RecordArgs, data: st.DataObject):
    wire = [args.body, *data.draw(st.lists(digest_bodies(args.iss, args.ts), max_size=3))]
    seq = min(args.seq, MAX_UINT - len(wire))
    typed = [parse_body("digest", body, iss=args.iss, ts=args.ts) for body in wire]
    issued = issue_digests(args.key, typed, seq=seq, prev=args.prev, ts=args.ts)
    expected, prev = [], args.prev
    for n, body in enumerate(wire):
        expected.append(issue_record(args.key, "digest", body, seq=seq + n, prev=prev, ts=args.ts))
        prev = expected[-1].id
    assert issued == expected
    assert [verify_record(record.raw) for record in issued] == issued


def test_ts_defaults_to_now_at_each_record():
    (record,) = issue_digests(KEY, [BODY], seq=1, prev=None)
    assert record == verify_record(record.raw) and record.ts >= BODY.epoch + BODY.length


def _counts(counts: Counts, **changes: Any) -> Counts:
    return Counts(tuple((name, changes.get(name, count)) for name, count in counts.pairs))


# Every rule of a digest body (tests/vouching/test_records.py BODY_CASES holds their wire forms), and what only a
# typed body can get wrong.
TYPED_CASES = [
    ({"agent": "did:key:z6Mk"}, "body.agent: must be an Ed25519 did:key"),
    ({"agent": None}, "body.agent: must be an Ed25519 did:key"),
    ({"epoch": -1}, r"body.epoch: must be an integer in \[0,"),
    ({"epoch": float(TS - HOUR)}, r"body.epoch: must be an integer in \[0,"),
    ({"length": 0}, r"body.len: must be an integer in \[1,"),
    ({"epoch": TS - HOUR + 1}, "body.len: the epoch must end at or before ts"),
    ({"outcomes": _counts(BODY.outcomes, ok=-7)}, r"body.outcomes.ok: must be an integer in \[0,"),
    ({"outcomes": _counts(BODY.outcomes, ok=True)}, r"body.outcomes.ok: must be an integer"),
    ({"outcomes": _counts(BODY.outcomes, ok=MAX_UINT + 1)}, r"body.outcomes.ok: must be an integer in \[0,"),
    ({"categories": _counts(BODY.categories, tool=4.0)}, "body.categories.tool: must be an integer"),
    ({"events": 11}, "body.events: must equal the sum of body.outcomes"),
    ({"events": -10}, r"body.events: must be an integer in \[0,"),
    ({"categories": _counts(BODY.categories, tool=5)}, "body.categories: must sum to body.events"),
    ({"high_risk": _counts(BODY.high_risk, error=2)}, "body.high_risk.error: must not exceed body.outcomes.error"),
    ({"evidence_root": bytes(31)}, "body.evidence_root: must be a byte string of 32 bytes"),
    ({"evidence_root": bytearray(32)}, "body.evidence_root: must be a byte string of 32 bytes"),
    ({"dp_epsilon": 0.0}, "body.dp.eps: must be a finite float greater than 0"),
    ({"dp_epsilon": float("inf")}, "body.dp.eps: must be a finite float greater than 0"),
    ({"dp_epsilon": float("nan")}, "body.dp.eps: must be a finite float greater than 0"),
    ({"dp_epsilon": 1}, "body.dp.eps: must be a finite float greater than 0"),
    # typed only: counts named otherwise, or in another order, or not Counts at all
    ({"outcomes": Counts(BODY.outcomes.pairs[::-1])}, "body.outcomes: must count exactly ok, error, denied, timeout"),
    ({"outcomes": Counts(BODY.outcomes.pairs[:3])}, "body.outcomes: must count exactly"),
    ({"outcomes": Counts(())}, "body.outcomes: must count exactly"),
    ({"categories": dict(BODY.categories)}, f"body.categories: must count exactly {', '.join(CATEGORIES)}"),
    ({"high_risk": Counts(tuple(zip(CATEGORIES, (0,) * 6)))},
     f"body.high_risk: must count exactly {', '.join(OUTCOMES)}"),
]


@pytest.mark.parametrize(("changes", "reason"), TYPED_CASES)
def test_a_body_verify_would_reject_is_never_signed(changes: dict[str, Any], reason: str):
    bad = dataclasses.replace(BODY, **changes)
    with pytest.raises(InvalidRecord, match=reason):
        issue_digests(KEY, [BODY, bad], seq=2, prev=PREV, ts=TS)


@pytest.mark.parametrize(
    ("seq", "prev", "ts", "reason"),
    [
        (0, None, TS, r"seq: must be an integer in \[1,"),
        (True, None, TS, r"seq: must be an integer in \[1,"),
        (MAX_UINT + 1, PREV, TS, r"seq: must be an integer in \[1,"),
        (1, PREV, TS, "prev: must be absent when seq is 1"),
        (2, None, TS, "prev: must be present when seq is greater than 1"),
        (2, PREV[:31], TS, "prev: must be a byte string of 32 bytes"),
        (2, PREV, -1, r"ts: must be an integer in \[0,"),
        (2, PREV, float(TS), r"ts: must be an integer in \[0,"),
    ],
)
def test_the_chain_position_and_time_follow_the_payload_rules(seq: Any, prev: Any, ts: Any, reason: str):
    with pytest.raises(InvalidRecord, match=reason):
        issue_digests(KEY, [BODY], seq=seq, prev=prev, ts=ts)


def test_the_seq_after_the_last_valid_one_is_refused():
    with pytest.raises(InvalidRecord, match=r"seq: must be an integer in \[1,"):
        issue_digests(KEY, [BODY, BODY], seq=MAX_UINT, prev=PREV, ts=TS)
