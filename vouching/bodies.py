"""The body of each record kind (DESIGN §3): typed values, wire maps, strict parsing and constructors.

Per kind: a frozen dataclass (what verify_record returns; `to_wire()` gives back its exact wire map), a constructor
of the wire map sign_record takes, and a parser. Limits are the constants below.
"""

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from vouching.schema import ID_SIZE, MAX_UINT, InvalidRecord, byte_string, did, fields, text, uint

NAME_MAX = 128
NETWORK_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NETWORK_RULE = "1 to 64 characters of a-z 0-9 . _ -, starting with a-z or 0-9"  # NETWORK_PATTERN, as refusals say it
ADDRS_MAX = 16
ADDR_MAX = 256
SCOPE_MAX = 64
SCOPE_ITEM_MAX = 128
REASON_MAX = 256
BASES = ("operator", "audit", "developer", "interaction", "org-peer")
# Count names in wire order (RFC 8949 key order), which is also the order of Counts.
OUTCOMES = ("ok", "error", "denied", "timeout")
CATEGORIES = ("a2a", "mcp", "auth", "tool", "other", "resource")
EQUIVOCATION_TYPES = ("record", "checkpoint")
_ORG_FIELDS, _ORG_OPTIONAL = frozenset({"name", "network", "addrs"}), frozenset({"next", "prior"})
_VOUCH_FIELDS, _VOUCH_OPTIONAL = frozenset({"subject", "weight", "basis"}), frozenset({"scope", "expires"})
_REVOKE_FIELDS = frozenset({"record", "reason"})
_DIGEST_FIELDS = frozenset({"agent", "epoch", "len", "outcomes", "categories", "high_risk", "events", "evidence_root"})
_DIGEST_OPTIONAL, _DP_FIELDS = frozenset({"dp"}), frozenset({"eps"})
_EQUIVOCATION_FIELDS = frozenset({"type", "offender", "a", "b"})
_NAME_SETS = {names: frozenset(names) for names in (OUTCOMES, CATEGORIES)}


@dataclass(frozen=True, slots=True)
class Counts(Mapping[str, int]):
    """Event counts by name (outcomes or categories), in wire order."""

    pairs: tuple[tuple[str, int], ...]

    def __getitem__(self, key: str) -> int:
        for name, count in self.pairs:
            if name == key:
                return count
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass(frozen=True, slots=True)
class OrgBody:
    """An org's self-description. Key rotation (vouching.succession): `next` announces the did of the key that
    replaces this one, and ends this key's chain; `prior`, only on a key's first record, names the key it replaces."""

    name: str
    network: str
    addrs: tuple[str, ...]
    next: str | None
    prior: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return org_body(self.name, self.network, self.addrs, next=self.next, prior=self.prior)


@dataclass(frozen=True, slots=True)
class VouchBody:
    """The issuer vouches for an agent (or, with basis org-peer, an org); expires is in ms since the epoch.

    `weight` is always a float; `integer_weight` says the wire held the integer 1 instead (what JavaScript's CBOR
    libraries write for 1.0), which to_wire gives back."""

    subject: str
    weight: float
    basis: str
    scope: tuple[str, ...] | None
    expires: int | None
    integer_weight: bool = False

    def to_wire(self) -> dict[str, Any]:
        body = vouch_body(self.subject, self.weight, self.basis, scope=self.scope, expires=self.expires)
        if self.integer_weight:
            body["weight"] = int(self.weight)
        return body


@dataclass(frozen=True, slots=True)
class RevokeBody:
    """Withdraws an earlier vouch of the same issuer, named by its record id."""

    record: bytes
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return revoke_body(self.record, self.reason)


@dataclass(frozen=True, slots=True)
class DigestBody:
    """An agent's behaviour in the issuing org over one epoch [epoch, epoch + length) in ms.

    `dp_epsilon` is a float when present; `integer_eps` says the wire held it as an integer (as JavaScript's CBOR
    libraries write a whole number), which to_wire gives back."""

    agent: str
    epoch: int
    length: int
    outcomes: Counts
    categories: Counts
    high_risk: Counts
    events: int
    evidence_root: bytes
    dp_epsilon: float | None
    integer_eps: bool = False

    def to_wire(self) -> dict[str, Any]:
        return digest_body(
            self.agent,
            epoch=self.epoch,
            length=self.length,
            outcomes=self.outcomes,
            categories=self.categories,
            high_risk=self.high_risk,
            evidence_root=self.evidence_root,
            dp_epsilon=self.wire_eps,
        )

    @property
    def wire_eps(self) -> float | int | None:
        """dp.eps as the wire holds it: an integer if `integer_eps`, else `dp_epsilon`."""
        return int(self.dp_epsilon) if self.integer_eps and self.dp_epsilon is not None else self.dp_epsilon


@dataclass(frozen=True, slots=True)
class EquivocationBody:
    """Two conflicting records (or checkpoints) of offender; a sorts before b, so each pair has one body."""

    type: str
    offender: str
    a: bytes
    b: bytes

    def to_wire(self) -> dict[str, Any]:
        return equivocation_body(self.type, self.offender, self.a, self.b)


Body = OrgBody | VouchBody | RevokeBody | DigestBody | EquivocationBody


def org_body(name: str, network: str, addrs: Iterable[str] = (), *, next: str | None = None,
             prior: str | None = None) -> dict[str, Any]:
    """The wire body of an org record."""
    body: dict[str, Any] = {"name": name, "network": network, "addrs": list(addrs)}
    if next is not None:
        body["next"] = next
    if prior is not None:
        body["prior"] = prior
    return body


def vouch_body(
    subject: str, weight: float, basis: str, *, scope: Iterable[str] | None = None, expires: int | None = None
) -> dict[str, Any]:
    """The wire body of a vouch; an int weight (1) is sent as the float it stands for, so this node signs floats
    (it accepts the integer 1 from others: _vouch)."""
    body: dict[str, Any] = {"subject": subject, "weight": float(weight) if type(weight) is int else weight}
    body["basis"] = basis
    if scope is not None:
        body["scope"] = list(scope)
    if expires is not None:
        body["expires"] = expires
    return body


def revoke_body(record: bytes, reason: str) -> dict[str, Any]:
    """The wire body of a revocation of the vouch whose record id is record."""
    return {"record": record, "reason": reason}


def digest_body(
    agent: str,
    *,
    epoch: int,
    length: int,
    outcomes: Mapping[str, int],
    categories: Mapping[str, int],
    high_risk: Mapping[str, int],
    evidence_root: bytes,
    dp_epsilon: float | None = None,
) -> dict[str, Any]:
    """The wire body of a digest; events is the sum of the outcome counts. Keys in RFC 8949 order: a node signs
    one digest per active agent at each epoch's end, and such maps encode fastest (vouching.cbor.encode)."""
    body: dict[str, Any] = {} if dp_epsilon is None else {"dp": {"eps": dp_epsilon}}
    body.update({
        "len": length,
        "agent": agent,
        "epoch": epoch,
        "events": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "high_risk": dict(high_risk),
        "categories": dict(categories),
        "evidence_root": evidence_root,
    })
    return body


def equivocation_body(type: str, offender: str, a: bytes, b: bytes) -> dict[str, Any]:
    """The wire body of an equivocation record; the two pieces of evidence are put in bytewise order."""
    first, second = sorted((a, b))
    return {"type": type, "offender": offender, "a": first, "b": second}


def parse_body(kind: str, value: Any, *, iss: str, ts: int) -> Body:
    """The typed body of a record of kind, issued by iss at ts; raises InvalidRecord naming the field."""
    return _PARSERS[kind](value, iss, ts)


def _org(value: Any, iss: str, ts: int) -> OrgBody:
    body = fields(value, "body", _ORG_FIELDS, _ORG_OPTIONAL)
    network = body["network"]
    if type(network) is not str or not NETWORK_PATTERN.fullmatch(network):
        raise InvalidRecord(f"body.network: must be {NETWORK_RULE}")
    addrs = body["addrs"]
    if type(addrs) is not list or len(addrs) > ADDRS_MAX:
        raise InvalidRecord(f"body.addrs: must be a list of at most {ADDRS_MAX} addresses")
    for addr in addrs:
        if type(addr) is not str or not 0 < len(addr) <= ADDR_MAX or not addr.startswith("/"):
            raise InvalidRecord(f"body.addrs: each must be a multiaddr of 1 to {ADDR_MAX} characters starting '/'")
        if not (addr.isascii() and addr.isprintable()) or " " in addr:
            raise InvalidRecord("body.addrs: each must be printable ASCII without spaces")
    _unique(addrs, "body.addrs")
    next_key = prior = None
    if "next" in body and did(next_key := body["next"], "body.next") == iss:
        raise InvalidRecord("body.next: must differ from iss (it names the replacement key)")
    if "prior" in body and did(prior := body["prior"], "body.prior") == iss:
        raise InvalidRecord("body.prior: must differ from iss (it names the key this one replaces)")
    if prior is not None and prior == next_key:
        raise InvalidRecord("body.next: must differ from body.prior")
    return OrgBody(text(body["name"], "body.name", NAME_MAX), network, tuple(addrs), next_key, prior)


def _vouch(value: Any, iss: str, ts: int) -> VouchBody:
    body = fields(value, "body", _VOUCH_FIELDS, _VOUCH_OPTIONAL)
    if did(body["subject"], "body.subject") == iss:
        raise InvalidRecord("body.subject: must not be the issuer")
    weight = body["weight"]
    # RFC 8949 §4.2.1 leaves 1.0 and 1 distinct, and JavaScript's CBOR writes 1.0 as 1: the one integer in range.
    integer_weight = type(weight) is int
    if not (type(weight) is float and 0.0 < weight <= 1.0 or integer_weight and weight == 1):
        raise InvalidRecord("body.weight: must be a float in (0, 1] or the integer 1")
    basis = _choice(body["basis"], "body.basis", BASES)
    scope = None
    if "scope" in body:
        scope = body["scope"]
        if type(scope) is not list or not 0 < len(scope) <= SCOPE_MAX:
            raise InvalidRecord(f"body.scope: must be a list of 1 to {SCOPE_MAX} entries (omit it for no limit)")
        for entry in scope:
            text(entry, "body.scope", SCOPE_ITEM_MAX)
        _unique(scope, "body.scope")
        scope = tuple(scope)
    expires = None
    if "expires" in body and uint(expires := body["expires"], "body.expires") <= ts:
        raise InvalidRecord("body.expires: must be later than ts, the record's own time (both in ms since the Unix "
                            "epoch)")
    return VouchBody(body["subject"], float(weight), basis, scope, expires, integer_weight)


def _revoke(value: Any, iss: str, ts: int) -> RevokeBody:
    body = fields(value, "body", _REVOKE_FIELDS)
    record = byte_string(body["record"], "body.record", ID_SIZE)
    return RevokeBody(record, text(body["reason"], "body.reason", REASON_MAX))


def _digest(value: Any, iss: str, ts: int) -> DigestBody:
    body = fields(value, "body", _DIGEST_FIELDS, _DIGEST_OPTIONAL)
    if "dp" in body:
        fields(body["dp"], "body.dp", _DP_FIELDS)
    for name, names in (("outcomes", OUTCOMES), ("categories", CATEGORIES), ("high_risk", OUTCOMES)):
        fields(body[name], f"body.{name}", _NAME_SETS[names])
    return check_digest(digest_of(body), ts)


def digest_of(body: dict[str, Any]) -> DigestBody:
    """The typed body of a valid wire digest body, unchecked: `_digest` checks it first, and
    vouching.records.load_stored reads the bodies of digests this node accepted (checked then) with it alone."""
    dp = body.get("dp")
    eps = None if dp is None else dp["eps"]
    integer_eps = type(eps) is int  # not a bool: check_digest refuses one, as any other non-float
    return DigestBody(body["agent"], body["epoch"], body["len"], _counts(body["outcomes"], OUTCOMES),
                      _counts(body["categories"], CATEGORIES), _counts(body["high_risk"], OUTCOMES), body["events"],
                      body["evidence_root"], float(eps) if integer_eps else eps, integer_eps)


def check_digest(body: DigestBody, ts: int) -> DigestBody:
    """The digest rules (DESIGN §3), checked on a typed body of a record stamped `ts`; the body. Parsing a wire body
    ends here, and issuing typed ones (records.issue_digests) starts here; raises InvalidRecord naming the field."""
    epoch = uint(body.epoch, "body.epoch")
    length = uint(body.length, "body.len", 1)
    if epoch + length > ts:
        raise InvalidRecord("body.len: the epoch must end at or before ts")
    outcomes = _count_values(body.outcomes, "body.outcomes", OUTCOMES)
    categories = _count_values(body.categories, "body.categories", CATEGORIES)
    high_risk = _count_values(body.high_risk, "body.high_risk", OUTCOMES)
    events = uint(body.events, "body.events")
    if sum(outcomes) != events:
        raise InvalidRecord("body.events: must equal the sum of body.outcomes")
    if sum(categories) != events:
        raise InvalidRecord("body.categories: must sum to body.events")
    for name, risky, count in zip(OUTCOMES, high_risk, outcomes):
        if risky > count:
            raise InvalidRecord(f"body.high_risk.{name}: must not exceed body.outcomes.{name}")
    eps = body.dp_epsilon
    # An integer eps (as JavaScript's CBOR writes a whole number) is held as its float: exact up to MAX_UINT.
    if eps is not None and not (type(eps) is float and math.isfinite(eps) and eps > 0
                                and (not body.integer_eps or eps.is_integer() and eps <= MAX_UINT)):
        raise InvalidRecord(f"body.dp.eps: must be a finite float greater than 0 or an integer in [1, {MAX_UINT}]")
    did(body.agent, "body.agent")
    byte_string(body.evidence_root, "body.evidence_root", ID_SIZE)
    return body


def _equivocation(value: Any, iss: str, ts: int) -> EquivocationBody:
    body = fields(value, "body", _EQUIVOCATION_FIELDS)
    kind = _choice(body["type"], "body.type", EQUIVOCATION_TYPES)
    a, b = byte_string(body["a"], "body.a"), byte_string(body["b"], "body.b")
    if not a < b:
        raise InvalidRecord("body.b: must sort after body.a (bytewise), so each pair has one body")
    return EquivocationBody(kind, did(body["offender"], "body.offender"), a, b)


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if type(value) is not str or value not in choices:
        raise InvalidRecord(f"{name}: must be one of {', '.join(choices)}")
    return value


def _counts(counts: dict[str, int], names: tuple[str, ...]) -> Counts:
    """A wire count map of exactly `names` as Counts in wire order; check_digest checks the counts themselves."""
    # A decoded map is already in wire order; a map handed to sign_record may be in any order.
    return Counts(tuple(counts.items()) if tuple(counts) == names else tuple((key, counts[key]) for key in names))


def _count_values(counts: Any, name: str, names: tuple[str, ...]) -> tuple[int, ...]:
    """The counts of a Counts of exactly `names` in that order, each an integer in [0, MAX_UINT]."""
    keys, values = zip(*counts.pairs) if type(counts) is Counts and counts.pairs else ((), ())
    if keys != names:
        raise InvalidRecord(f"{name}: must count exactly {', '.join(names)}, in that order")
    for key, count in counts.pairs:
        if type(count) is not int or not 0 <= count <= MAX_UINT:
            raise InvalidRecord(f"{name}.{key}: must be an integer in [0, {MAX_UINT}]")
    return values


def _unique(values: list[str], name: str) -> None:
    if len(set(values)) != len(values):
        raise InvalidRecord(f"{name}: entries must not repeat")


_PARSERS = {"org": _org, "vouch": _vouch, "revoke": _revoke, "digest": _digest, "equivocation": _equivocation}
KINDS = tuple(_PARSERS)
