"""The API's defence against cross-site requests: a browser's request sent for a page of another origin is refused.

A page on any origin can make its visitor's browser send the API a request without asking it first (a CORS
"simple" request: no preflight): a GET (an `<img>`, a `<script>`, a fetch with mode `no-cors`), or a
POST from a form or a `no-cors` fetch, its body `text/plain`, form data or of no type (a Blob of none). The page
reads no answer, and can set no `Authorization`, so every write that needs the token is 401 whatever it sends. What
is left: a read runs, and whether it succeeded shows (a script's `onload` or `onerror`: whether the node knows an
agent); and a POST reaches the open writes (a policy check; a trace export where `[api] traces_need_token =
false`), which read nothing from it (`text/plain`, form data and an untyped body are 415, node.api.json_body,
under any FastAPI: 0.110-0.131, which pyproject.toml allows, read an untyped one as JSON), but any route added later
that reads a body whatever its type would.
Browsers say where such a request comes from: `Origin` (RFC 6454 §7; sent on every cross-origin request but
a GET without CORS) and `Sec-Fetch-Site` (W3C Fetch Metadata §2.1). So, as Go's net/http CrossOriginProtection and
web.dev's resource isolation policy do, a request is refused 403 `forbidden_origin` when its `Origin` is not the
API's own (`http://` and the Host it names, or `[api] public_url`'s origin), or its `Sec-Fetch-Site` is
`cross-site` or `same-site` (another port on localhost is the same site), on every method: reads too, since the API
sends no CORS header, so no page of another origin could read an answer anyway, and refusing them leaves it no
probe. A GET that opens a page in the browser's tab (`Sec-Fetch-Mode: navigate`: a link an operator follows to
/metrics) is answered to that tab, not to the linking page, and is let through. A request with neither header
(curl, SDKs, exporters, servers) is not a browser's and is answered as before.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError

_OTHER_SITES = frozenset({b"cross-site", b"same-site"})
_EMBEDDED = frozenset({b"object", b"embed"})  # destinations a page reads a navigation into (web.dev's policy)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What OriginGuard's 403 means, for the OpenAPI entry of every route it stands before (node.api.app.create_app).
FORBIDDEN_ORIGIN = ("`forbidden_origin`: a browser's request for a page of another origin (an `Origin` not the "
                    "API's own, or `Sec-Fetch-Site` `cross-site` or `same-site` but for a link followed)")


class OriginGuard:
    """ASGI middleware: 403 `forbidden_origin` for a browser's request sent for a page of another origin (see the
    module's docstring); `origins` are further origins that are the API's own (public_url's); `refused(status,
    code)` is told of each refusal (node.api.refusals counts them)."""

    def __init__(self, app: ASGIApp, origins: Collection[str] = (), *, refused: Callable[[int, str], None]) -> None:
        self.app = app
        self.origins = frozenset(filter(None, (_origin(url) for url in origins)))
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (reason := self._refusal(scope)) is not None:
            self.refused(403, "forbidden_origin")
            await ApiError(403, "forbidden_origin", reason).response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        """Why the request is refused, or None; the headers are read in one pass (the score read's path too)."""
        origin = host = site = mode = dest = None
        for key, value in scope["headers"]:
            if key == b"origin":
                origin = value
            elif key == b"host":
                host = value
            elif key == b"sec-fetch-site":
                site = value.lower()
            elif key == b"sec-fetch-mode":
                mode = value.lower()
            elif key == b"sec-fetch-dest":
                dest = value.lower()
        if origin is not None:
            named = origin.decode("ascii", errors="replace")
            own = _origin(f"{scope.get('scheme', 'http')}://{host.decode('ascii', errors='replace')}") if host else None
            if (given := _origin(named)) is None or (given != own and given not in self.origins):
                return (f"Origin: {named[:64]!r} is not this API's origin: a browser sent this request for a page of "
                        "another site, which may not use the node (call it from curl, an SDK or a server, which send "
                        "no Origin)")
        if site in _OTHER_SITES and not (scope["method"] == "GET" and mode == b"navigate" and dest not in _EMBEDDED):
            return (f"Sec-Fetch-Site: {site.decode('ascii', errors='replace')[:32]}: a browser sent this request for "
                    "a page of another site, which may not use the node (open the URL itself, or call it from curl, "
                    "an SDK or a server)")
        return None


def _origin(url: str) -> tuple[str, str, int] | None:
    """The (scheme, host, port) of an http(s) URL or serialised origin (RFC 6454 §6.2), the port made explicit;
    None for anything else (`null`, another scheme, a malformed one)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower().removesuffix("."), port or _DEFAULT_PORTS[scheme]
