"""Integer query parameters read exactly, on every route of the API (DESIGN §8): each given at most once and in
plain decimal, else a 422 naming it.

FastAPI's lax parser reads "01", "+1", " 1", "1.0" or "1_0" as a number, and of a parameter given twice it takes
the last, so the answer would be for a number the client did not write (a page after another cursor, a proof for
another tree size).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from .errors import ApiError

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def integer_parameters(dependant: Dependant) -> Iterator[str]:
    """The names (as the query spells them) of the query parameters `dependant` and its dependencies read as
    integers, optional or not."""
    for field in dependant.query_params:
        if _is_integer(field.field_info.annotation):
            yield field.alias
    for dependency in dependant.dependencies:
        yield from integer_parameters(dependency)


def _is_integer(annotation: object) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_integer(member) for member in typing.get_args(annotation))
    return annotation is int


async def exact_integers(request: Request) -> None:
    """The app's dependency, run before FastAPI parses the query: a 422 for an integer parameter of the matched
    route given twice or not in plain decimal. (`async`, so it runs on the node's thread, not a worker's.)"""
    route: APIRoute = request.scope["route"]
    for name in integer_parameters(route.dependant):
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise ApiError(422, "invalid_request", f"query.{name}: given {len(values)} times; give it once")
        if values and not _DECIMAL.fullmatch(values[0]):
            raise ApiError(422, "invalid_request", f"query.{name}: must be a decimal integer: digits only, without "
                           "sign, spaces or leading zeros")
