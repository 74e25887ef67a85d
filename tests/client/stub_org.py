"""An org's credential endpoints without a node, for the verifier's key-rotation tests (DESIGN §2): its JWKS and its
status list 0, made by the node's own functions, with what the test changes (keys, revocations, forged parts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.client.identity import JWKS_PATH
from node.credential_status import list_url, status_entry
from node.credentials import VC_TYP, agent_credential, did_url, jwks, public_key_from_kid, status_list_credential
from node.jwt import decode_jwt, encode_jwt
from vouching import did_key

from ..factories import new_did
from .loopback import serving_in_thread


def did_of(key: SigningKey) -> str:
    return did_key(bytes(key.verify_key))


def resigned(token: str, key: SigningKey, *, kid: str | None = None, **changes: Any) -> str:
    """`token` with its claims changed by `changes`, signed again with `key`, under `kid` (default: key's own)."""
    claims = {**decode_jwt(token, public_key_from_kid, typ=VC_TYP)[1], **changes}
    return encode_jwt(claims, key, kid=kid or did_url(did_of(key)), typ=VC_TYP)


@dataclass
class StubOrg:
    """What an org serves after rotating its key: every key in its JWKS, the current (`keys[0]`) first, plus any
    `extra_jwks`; status list 0 with the `revoked` positions, signed with the current key, its claims changed by
    `list_claims` (or `list_token` as it is). `url` is set once it is served."""

    keys: list[SigningKey]
    revoked: set[int] = field(default_factory=set)
    extra_jwks: list[dict[str, str]] = field(default_factory=list)
    list_claims: dict[str, Any] = field(default_factory=dict)
    list_token: str | None = None  # served as status list 0 instead, when set
    jwks_down: bool = False  # its JWKS answers 503 while set
    url: str = ""

    def app(self, url: str) -> Starlette:
        self.url = url

        async def key_set(_: Request) -> JSONResponse:
            if self.jwks_down:
                return JSONResponse({"error": "unavailable", "detail": "down for maintenance"}, status_code=503)
            document = jwks([key.verify_key for key in self.keys])
            return JSONResponse({"keys": document["keys"] + self.extra_jwks})

        async def status_list(_: Request) -> Response:
            if self.list_token is not None:
                return Response(self.list_token, media_type="application/vc+jwt")
            token = status_list_credential(self.keys[0], list_url(url, 0), self.revoked)
            if self.list_claims:
                token = resigned(token, self.keys[0], **self.list_claims)
            return Response(token, media_type="application/vc+jwt")

        return Starlette(routes=[Route(JWKS_PATH, key_set), Route(list_url("", 0), status_list)])

    def credential(self, key: SigningKey, position: int, *, status_of: StubOrg | None = None) -> str:
        """An agent credential signed with `key`, revocable at `position` of list 0 of this org (or `status_of`)."""
        return agent_credential(key, new_did(), status=status_entry((status_of or self).url, position))


@contextmanager
def serving(*orgs: StubOrg) -> Iterator[None]:
    """Serve `orgs` on loopback until the block ends (each one's `url` says where)."""
    with ExitStack() as stack:
        for org in orgs:
            stack.enter_context(serving_in_thread(org.app))
        yield
