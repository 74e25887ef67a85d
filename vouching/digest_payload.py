"""The payload of a digest record (DESIGN §3 `digest`) in deterministic CBOR, assembled directly from a typed body:
byte for byte vouching.cbor.encode of the payload map sign_record builds, at a fraction of the cost, for the node
that signs one digest per active agent at every epoch's end.
"""

from vouching.bodies import CATEGORIES, OUTCOMES, Counts, DigestBody
from vouching.cbor import encode, encode_head

_UINT, _BYTES, _TEXT, _MAP = 0, 2, 3, 5


def _text(value: str) -> bytes:
    data = value.encode()
    return encode_head(_TEXT, len(data)) + data


def _map(*keys: str) -> bytes:
    """The head of a map of these keys and the first key; the caller checked they are in RFC 8949 order."""
    return encode_head(_MAP, len(keys)) + _text(keys[0])


# Every map is written in RFC 8949 key order (shorter keys first, then bytewise), as vouching.cbor.encode writes
# it: each constant below is the bytes from one value to the next key.
_WITH_PREV = _map("v", "ts", "iss", "seq", "body", "kind", "prev") + b"\x01" + _text("ts")
_WITHOUT_PREV = _map("v", "ts", "iss", "seq", "body", "kind") + b"\x01" + _text("ts")
_ISS, _SEQ, _BODY = _text("iss"), _text("seq"), _text("body")
_KIND = _text("kind") + _text("digest")
_PREV = _text("prev") + encode_head(_BYTES, 32)
_BODY_KEYS = ("len", "agent", "epoch", "events", "outcomes", "high_risk", "categories", "evidence_root")
_PLAIN_BODY = _map(*_BODY_KEYS)
_DP_BODY = _map("dp", *_BODY_KEYS) + _map("eps")
_LEN = _text("len")
_AGENT, _EPOCH, _EVENTS = _text("agent"), _text("epoch"), _text("events")
_OUTCOMES = _text("outcomes") + encode_head(_MAP, len(OUTCOMES))
_HIGH_RISK = _text("high_risk") + encode_head(_MAP, len(OUTCOMES))
_CATEGORIES = _text("categories") + encode_head(_MAP, len(CATEGORIES))
_EVIDENCE_ROOT = _text("evidence_root") + encode_head(_BYTES, 32)
_SMALL_UINTS = [encode_head(_UINT, n) for n in range(256)]
_COUNT_KEYS = {name: _text(name) for name in (*OUTCOMES, *CATEGORIES)}
# A count's key and value, looked up rather than built for the small counts most are (a third of the encoding time)
_SMALL_COUNTS = {name: [key + value for value in _SMALL_UINTS] for name, key in _COUNT_KEYS.items()}


def _uint(value: int) -> bytes:
    return _SMALL_UINTS[value] if value < 256 else encode_head(_UINT, value)


def _counts(counts: Counts) -> bytes:
    return b"".join([_SMALL_COUNTS[name][count] if count < 256 else _COUNT_KEYS[name] + encode_head(_UINT, count)
                     for name, count in counts.pairs])


def encode_digest_payload(iss: str, seq: int, prev: bytes | None, ts: int, body: DigestBody) -> bytes:
    """vouching.cbor.encode({v: 1, kind: "digest", iss, seq, prev (unless None), ts, body: body.to_wire()}), for a
    body that bodies.check_digest accepted at ts and a 32-byte prev: only then is every value what this assumes (counts
    named in wire order, integers in range, a 32-byte evidence root and prev)."""
    eps = body.wire_eps
    return b"".join((
        _WITHOUT_PREV if prev is None else _WITH_PREV, _uint(ts), _ISS, _text(iss), _SEQ, _uint(seq), _BODY,
        _PLAIN_BODY if eps is None else _DP_BODY + encode(eps) + _LEN,  # a float in its shortest form, or an int
        _uint(body.length), _AGENT, _text(body.agent), _EPOCH, _uint(body.epoch), _EVENTS, _uint(body.events),
        _OUTCOMES, _counts(body.outcomes), _HIGH_RISK, _counts(body.high_risk), _CATEGORIES, _counts(body.categories),
        _EVIDENCE_ROOT, body.evidence_root,
        _KIND, b"" if prev is None else _PREV + prev,
    ))
