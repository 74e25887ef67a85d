"""Path and query parameters read exactly, on every route of the API (DESIGN §8): an integer, in the path or the
query, in plain decimal; a boolean in the query `true` or `false`; every query parameter a route reads given at most
once (the API takes no list in the query), and none it does not read. Else a 422 naming it.

FastAPI's lax parsers read "01", "+1", " 1" or "1_0" as a number and "yes", "on", "t" or "1" as true, and of a
query parameter given twice they take the last, so the answer would be for a value the client did not write (a page
after another cursor, a proof for another tree size, another status list, a signed statement not asked for, the
records of another issuer, a check of another credential's issuer); and a parameter a route does not read they
ignore, so a misspelt filter (`/v1/records?subjet=...`) was answered as if none was given: every record.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from .errors import ApiError, declare_response

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # a parameter name shown as it is; any other, quoted and cut
BOOLEANS = {"true": True, "false": False}  # a boolean parameter's only spellings (ScoreFastPath reads them too)

_RULES: dict[type, tuple[Callable[[str], object], str]] = {
    int: (_DECIMAL.fullmatch, "must be a decimal integer: digits only, without sign, spaces or leading zeros"),
    bool: (BOOLEANS.__contains__, "must be true or false"),
}


def exact_parameters(dependant: Dependant) -> Iterator[tuple[str, str, type]]:
    """(where, name, type) of each integer or boolean parameter, optional or not, that `dependant` and its
    dependencies read from the path or the query: "path" or "query", the name as the request spells it, and int or
    bool."""
    for where, name, annotation in _parameters(dependant):
        if (kind := _exact_type(annotation)) is not None:
            yield where, name, kind


def _parameters(dependant: Dependant) -> Iterator[tuple[str, str, object]]:
    """(where, name, type annotation) of each parameter `dependant` and its dependencies read from the path or the
    query, as exact_parameters names them."""
    for where, fields in (("path", dependant.path_params), ("query", dependant.query_params)):
        for field in fields:
            yield where, field.alias, field.field_info.annotation
    for dependency in dependant.dependencies:
        yield from _parameters(dependency)


def _exact_type(annotation: object) -> type | None:
    """int or bool if `annotation` is one of them, or a union holding one; else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(filter(None, map(_exact_type, typing.get_args(annotation))), None)
    return next((kind for kind in _RULES if annotation is kind), None)


_RouteParameters = tuple[dict[str, None], tuple[tuple[str, str, type], ...]]
_WALKED = "vouchnet_parameters"  # the attribute of a route that keeps them


def _route_parameters(route: APIRoute) -> _RouteParameters:
    """The query parameters `route` reads (in the order it declares them) and its exact_parameters, walked once per
    route, not on each request, and kept on it (a route's dependencies do not change once made)."""
    walked: _RouteParameters | None = getattr(route, _WALKED, None)
    if walked is None:
        reads = dict.fromkeys(name for where, name, _ in _parameters(route.dependant) if where == "query")
        walked = (reads, tuple(exact_parameters(route.dependant)))
        setattr(route, _WALKED, walked)
    return walked


async def exact_values(request: Request) -> None:
    """The app's dependency, run before FastAPI parses the path and the query: a 422 for a query parameter the matched
    route does not read, one of its own given more than once, or an integer or boolean parameter of it not written as
    above. (`async`, so it runs on the node's thread, not a worker's.)"""
    reads, exact = _route_parameters(request.scope["route"])
    for name in request.query_params:
        if name not in reads:
            raise ApiError(422, "invalid_request", f"query.{_shown(name)}: not a parameter of this route; it takes "
                                                   f"{', '.join(reads) or 'none'}")
    for name in reads:
        if (given := len(request.query_params.getlist(name))) > 1:
            raise ApiError(422, "invalid_request", f"query.{name}: given {given} times; give it once")
    for where, name, kind in exact:
        values = [request.path_params[name]] if where == "path" else request.query_params.getlist(name)
        accepts, rule = _RULES[kind]
        if values and not accepts(values[0]):
            raise ApiError(422, "invalid_request", f"{where}.{name}: {rule}")


def declare_query_refusals(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec`, the app's OpenAPI document, with the 422 of exact_values declared on every operation (after the
    operation's own 422, if it has one): any route may be sent a query parameter it does not read. Changed in
    place."""
    for operations in spec["paths"].values():
        for operation in operations.values():
            declare_response(operation.setdefault("responses", {}), "422", _QUERY_REFUSAL)
    return spec


_QUERY_REFUSAL = ("A query parameter the operation does not take (`invalid_request`, the detail naming it and those it "
                  "takes), or one given more than once")


def _shown(name: str) -> str:
    """A query parameter's name as a refusal names it: as given if plain, else quoted, escaped and cut to 64
    characters (it is the caller's text, and may hold anything)."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    return repr(name[:64]) + ("..." if len(name) > 64 else "")
