"""Hypothesis strategies for valid records of every kind, as the arguments sign_record takes."""

from dataclasses import dataclass
from typing import Any

import nacl.signing
from hypothesis import strategies as st

import vouching
from vouching import bodies
from vouching.schema import MAX_UINT

signing_keys = st.binary(min_size=32, max_size=32).map(nacl.signing.SigningKey)
dids = st.binary(min_size=32, max_size=32).map(vouching.did_key)
ids = st.binary(min_size=32, max_size=32)
# str.isprintable() admits the ASCII space and no other separator, control, format or surrogate character.
printable = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")) | st.just(" ")
counts = st.integers(0, 10**6)
unit_floats = st.floats(0.0, 1.0, exclude_min=True)


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(printable, min_size=1, max_size=max_size)


@dataclass(frozen=True)
class RecordArgs:
    """The arguments of one sign_record call."""

    key: nacl.signing.SigningKey
    kind: str
    body: dict[str, Any]
    seq: int
    prev: bytes | None
    ts: int

    @property
    def iss(self) -> str:
        return vouching.did_key(bytes(self.key.verify_key))

    def sign(self) -> bytes:
        return vouching.sign_record(self.key, self.kind, self.body, seq=self.seq, prev=self.prev, ts=self.ts)


addrs = st.lists(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60).map(lambda tail: "/" + tail),
    max_size=bodies.ADDRS_MAX,
    unique=True,
)


@st.composite
def org_bodies(draw: st.DrawFn, iss: str, ts: int) -> dict[str, Any]:
    name = draw(texts(bodies.NAME_MAX))
    network = draw(st.from_regex(bodies.NETWORK_PATTERN, fullmatch=True))
    next_key = draw(st.none() | dids.filter(lambda did: did != iss))
    return bodies.org_body(name, network, draw(addrs), next=next_key)


@st.composite
def vouch_bodies(draw: st.DrawFn, iss: str, ts: int) -> dict[str, Any]:
    scope = draw(st.none() | st.lists(texts(bodies.SCOPE_ITEM_MAX), min_size=1, max_size=8, unique=True))
    expires = draw(st.none() | st.integers(ts + 1, MAX_UINT))
    subject = draw(dids.filter(lambda did: did != iss))
    basis = draw(st.sampled_from(bodies.BASES))
    weight = draw(unit_floats | st.just(1))  # the integer 1: 1.0 as a node in another language (JavaScript) writes it
    body = bodies.vouch_body(subject, weight, basis, scope=scope, expires=expires)
    body["weight"] = weight  # vouch_body would send the integer as a float
    return body


@st.composite
def revoke_bodies(draw: st.DrawFn, iss: str, ts: int) -> dict[str, Any]:
    return bodies.revoke_body(draw(ids), draw(texts(bodies.REASON_MAX)))


@st.composite
def digest_bodies(draw: st.DrawFn, iss: str, ts: int) -> dict[str, Any]:
    outcomes = {name: draw(counts) for name in bodies.OUTCOMES}
    high_risk = {name: draw(st.integers(0, count)) for name, count in outcomes.items()}
    events = sum(outcomes.values())
    # Split the events over the categories at random cut points, so that they sum to events.
    cuts = sorted(draw(st.lists(st.integers(0, events), min_size=5, max_size=5)))
    bounds = [0, *cuts, events]
    categories = {name: bounds[i + 1] - bounds[i] for i, name in enumerate(bodies.CATEGORIES)}
    length = draw(st.integers(1, max(1, min(ts, 10**9))))
    epoch = draw(st.integers(0, ts - length))
    # An integer as a node in another language (JavaScript) writes a whole number.
    dp_epsilon = draw(st.none() | st.floats(min_value=1e-6, max_value=100.0) | st.integers(1, MAX_UINT))
    return bodies.digest_body(
        draw(dids),
        epoch=epoch,
        length=length,
        outcomes=outcomes,
        categories=categories,
        high_risk=high_risk,
        evidence_root=draw(ids),
        dp_epsilon=dp_epsilon,
    )


@st.composite
def equivocation_bodies(draw: st.DrawFn, iss: str, ts: int) -> dict[str, Any]:
    if draw(st.booleans()):
        a, b = draw(st.lists(st.binary(min_size=1, max_size=200), min_size=2, max_size=2, unique=True))
        return bodies.equivocation_body("checkpoint", draw(dids), a, b)
    offender = draw(signing_keys)
    seq = draw(st.integers(1, 1000))
    prev = None if seq == 1 else draw(ids)
    first = RecordArgs(offender, "revoke", bodies.revoke_body(draw(ids), "a"), seq, prev, ts)
    second = RecordArgs(offender, "revoke", bodies.revoke_body(draw(ids), "b"), seq, prev, ts)
    return vouching.record_equivocation_body(first.sign(), second.sign())


BODIES = {
    "org": org_bodies,
    "vouch": vouch_bodies,
    "revoke": revoke_bodies,
    "digest": digest_bodies,
    "equivocation": equivocation_bodies,
}


@st.composite
def record_args(draw: st.DrawFn, kinds: tuple[str, ...] = tuple(BODIES)) -> RecordArgs:
    """Arguments of a valid record of one of kinds, with a random issuer, chain position and time."""
    key = draw(signing_keys)
    kind = draw(st.sampled_from(kinds))
    seq = draw(st.integers(1, MAX_UINT))
    prev = None if seq == 1 else draw(ids)
    ts = draw(st.integers(2, MAX_UINT - 1))
    body = draw(BODIES[kind](vouching.did_key(bytes(key.verify_key)), ts))
    return RecordArgs(key, kind, body, seq, prev, ts)
