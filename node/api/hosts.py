"""The API's defence against DNS rebinding: a request that reached a loopback address must name a loopback host.

A web page on evil.example whose name the attacker then points at 127.0.0.1 runs, in the browser, as that name's
origin: the browser lets it read whatever the node on 127.0.0.1 answers (peers, metrics, scores) and send it open
writes (a policy check, traces where `[api] traces_need_token = false`), with `Host: evil.example` in each request.
So a request whose connection arrived on a loopback address is answered only if its Host header (RFC 9110 §7.2)
names an IP address, `localhost` or a name under it (RFC 6761 §6.3: resolved to loopback by the client itself), or
the host of `[api] public_url` (a proxy on this machine that passes the public name on); else 403 `forbidden_host`.
Syncthing's GUI, Geth's `--http.vhosts` and Jupyter's `allow_remote_access` refuse such requests the same way.
A connection to any other address is the operator's choice of exposure (DESIGN §8) and is not checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError

# What HostGuard's 403 means, for the OpenAPI entry of every route it stands before (node.api.app.create_app).
FORBIDDEN_HOST = ("`forbidden_host`: a request to a loopback address whose `Host` names neither an IP address, "
                  "`localhost` nor `[api] public_url`'s host (a web page's, by DNS rebinding)")


class HostGuard:
    """ASGI middleware: 403 `forbidden_host` for a request that reached a loopback address naming another host
    (see the module's docstring); `names` are further host names to answer for (public_url's); `refused(status,
    code)` is told of each refusal (node.api.refusals counts them)."""

    def __init__(self, app: ASGIApp, names: Collection[str] = (),
                 refused: Callable[[int, str], None] = lambda status, code: None) -> None:
        self.app = app
        self.names = frozenset(_normal(name) for name in names)
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_loopback(scope.get("server")):
            host = next((value for key, value in scope["headers"] if key == b"host"), None)
            if host is not None and not self._answers_for(host):
                shown = host[:64].decode("ascii", errors="replace")
                refusal = ApiError(403, "forbidden_host", f"Host: {shown!r} is not this node's name: call the API at "
                                   "127.0.0.1, [::1] or localhost (a page on another name that resolves here is "
                                   "refused, against DNS rebinding), or set [api] public_url to the name you use")
                self.refused(refusal.status_code, refusal.code)
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _answers_for(self, host: bytes) -> bool:
        name = _host_name(host.decode("ascii", errors="replace"))
        if name in self.names or name == "localhost" or name.endswith(".localhost"):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


def _host_name(host: str) -> str:
    """The host of a Host header's `host[:port]` (an IPv6 address without its brackets), normalised."""
    if host.startswith("["):
        return host[1:].partition("]")[0].lower()
    return _normal(host.rpartition(":")[0] if ":" in host else host)


def _normal(name: str) -> str:
    return name.lower().removesuffix(".")


def _is_loopback(server: tuple[str, int] | None) -> bool:
    if server is None:
        return False
    try:
        address = ipaddress.ip_address(server[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
