"""The node's API token (DESIGN §8), one rule for the node, which reads it from `api.token` (node.keys), and for the
SDK, which sends it in a header (node.client._http): the text as a script reads it, without the ASCII whitespace
around it (the file's newline), of at least MIN_TOKEN characters, each printable ASCII, not ending in `api.token` (the
file's path given for its text). No message quotes a token.
Imports nothing, so that the SDK loads none of the node's modules for it."""

from __future__ import annotations

import string

MIN_TOKEN = 32  # the node takes no shorter token; `vouchnet init` writes 43 characters (secrets.token_urlsafe(32))
TOKEN_FILE = "api.token"  # what a token given as its file's path ends in (no token `vouchnet init` writes does)


class BadToken(ValueError):
    """Text that is not an API token; the message says what is wrong with it, as a phrase following "the token",
    never quoting it."""


def api_token(text: str) -> str:
    """`text` without the ASCII whitespace around it, if it is an API token; else BadToken."""
    token = text.strip(string.whitespace)
    if not all(" " <= c <= "~" for c in token):
        raise BadToken("holds a character other than printable ASCII (a line break within it, a control character "
                       "or a non-ASCII one), which no HTTP header carries")
    if token.endswith(TOKEN_FILE):
        raise BadToken(f"ends in {TOKEN_FILE}: it is the path of the node's token file, where the text that file holds "
                       "is wanted (VOUCHNET_TOKEN=\"$(cat ~/.vouchnet/api.token)\")")
    if len(token) < MIN_TOKEN:
        raise BadToken(f"is too short: {len(token)} characters, where the node takes {MIN_TOKEN} at the least "
                       "(`vouchnet init` writes 43)")
    return token
