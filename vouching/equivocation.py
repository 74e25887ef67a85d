"""Proofs of equivocation (DESIGN §3, §5): two valid records of one issuer with the same seq and different ids."""

from typing import Any

from vouching.bodies import equivocation_body
from vouching.records import equivocation_offender
from vouching.schema import InvalidRecord


def proves_equivocation(a: bytes, b: bytes) -> bool:
    """Whether two records, from anyone, prove that their issuer equivocated."""
    try:
        equivocation_offender(a, b)
    except InvalidRecord:
        return False
    return True


def record_equivocation_body(a: bytes, b: bytes) -> dict[str, Any]:
    """The wire body of an equivocation record proven by records a and b; raises InvalidRecord if they prove none."""
    first, second = sorted((a, b))  # checked in the order the body holds them, so errors name the right field
    return equivocation_body("record", equivocation_offender(first, second), first, second)

