"""The per-issuer chain: each record names its predecessor by id and counts up by one."""

import nacl.signing
import pytest

from vouching import InvalidRecord, Record, check_follows, revoke_body, sign_record, verify_record

KEY = nacl.signing.SigningKey(bytes(range(32)))
OTHER_KEY = nacl.signing.SigningKey(bytes(range(1, 33)))
TS = 1_764_000_000_000


def _record(seq: int, prev: bytes | None, key: nacl.signing.SigningKey = KEY, reason: str = "r") -> Record:
    return verify_record(sign_record(key, "revoke", revoke_body(bytes(32), reason), seq=seq, prev=prev, ts=TS))


def test_a_chain_of_records() -> None:
    first = _record(1, None)
    second = _record(2, first.id)
    third = _record(3, second.id)
    check_follows(first, None)
    check_follows(second, first)
    check_follows(third, second)


def test_the_first_record_must_have_seq_1() -> None:
    with pytest.raises(InvalidRecord, match="seq: must be 1 for an issuer's first record, not 2"):
        check_follows(_record(2, bytes(32)), None)


def test_prev_must_be_the_predecessors_id() -> None:
    first = _record(1, None)
    with pytest.raises(InvalidRecord, match="prev: must be the id of the issuer's record seq 1"):
        check_follows(_record(2, bytes(32)), first)


def test_prev_of_a_conflicting_sibling_does_not_fit() -> None:
    first, sibling = _record(1, None, reason="a"), _record(1, None, reason="b")
    with pytest.raises(InvalidRecord, match="prev: must be the id of the issuer's record seq 1"):
        check_follows(_record(2, sibling.id), first)


def test_a_gap_is_a_seq_error() -> None:
    first = _record(1, None)
    with pytest.raises(InvalidRecord, match="seq: must be 2, the seq after the previous record's, not 3"):
        check_follows(_record(3, first.id), first)


def test_a_repeated_seq_is_a_seq_error() -> None:
    second = _record(2, bytes(32))
    with pytest.raises(InvalidRecord, match="seq: must be 3, the seq after the previous record's, not 2"):
        check_follows(_record(2, second.id, reason="again"), second)


def test_another_issuers_record_is_not_a_predecessor() -> None:
    first = _record(1, None)
    with pytest.raises(InvalidRecord, match="iss: must be the issuer of the previous record"):
        check_follows(_record(2, first.id, key=OTHER_KEY), first)
