"""The API's defence against DNS rebinding: a request must name a host the API answers to, whatever address it reached.

A web page on evil.example whose name the attacker then points at 127.0.0.1 runs, in the browser, as that name's
origin: the browser lets it read whatever the node on 127.0.0.1 answers (peers, metrics, scores) and send it open
writes (a policy check, traces where `[api] traces_need_token = false`), with `Host: evil.example` in each request.
The connection need not arrive on loopback: a node in a container published as `-p 127.0.0.1:8700:8700` takes it on
the container's address, and a node bound to a LAN address is reached by a page that rebinds a name to that address.
So every request is answered only if its Host header (RFC 9110 §7.2) names an IP address (a rebinding page cannot
send one: its Host is its own name), `localhost` or a name under it (RFC 6761 §6.3: resolved to loopback by the
client itself), a name of `[api] hosts`, the host of `[api] public_url` or the name `[api] bind` gives; else 403
`forbidden_host`. `[api] hosts = ["*"]` answers any Host (no defence). Geth's `--http.vhosts` (which this follows),
Syncthing's GUI and Jupyter's `allow_remote_access` refuse such requests the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError

# What HostGuard's 403 means, for the OpenAPI entry of every route it stands before (node.api.app.create_app).
FORBIDDEN_HOST = ("`forbidden_host`: a request whose `Host` names neither an IP address, `localhost`, a name of "
                  "`[api] hosts` nor `[api] public_url`'s host (a web page's, by DNS rebinding)")


class HostGuard:
    """ASGI middleware: 403 `forbidden_host` for a request naming a host the API does not answer to (see the
    module's docstring); `names` are further host names to answer to ([api] hosts, public_url's and bind's);
    `any_host` answers every Host (`[api] hosts = ["*"]`); `refused(status, code)` is told of each refusal
    (node.api.refusals counts them)."""

    def __init__(self, app: ASGIApp, names: Collection[str] = (), *, any_host: bool = False,
                 refused: Callable[[int, str], None]) -> None:
        self.app = app
        self.names = frozenset(_normal(name) for name in names)
        self.any_host = any_host
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.any_host:
            host = next((value for key, value in scope["headers"] if key == b"host"), None)
            if host is not None and not self._answers_for(host):
                shown = host[:64].decode("ascii", errors="replace")
                refusal = ApiError(403, "forbidden_host", f"Host: {shown!r} is not a name this node answers to: add "
                                   "it to [api] hosts in config.toml, or call the API by its IP address or localhost "
                                   "(a page on a name not listed that resolves here is refused, against DNS "
                                   "rebinding)")
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
