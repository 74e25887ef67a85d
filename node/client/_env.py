"""Where the SDK finds its node and the node's API token when not told: $VOUCHNET_NODE (default the local node,
DESIGN §8's 127.0.0.1:8700) and $VOUCHNET_TOKEN (the token the node's data directory holds in `api.token`, not that
file's path), or $VOUCHNET_TOKEN_FILE (that file's path: read again at each write, node.client._token_file)."""

from __future__ import annotations

import os

NODE_ENV = "VOUCHNET_NODE"
TOKEN_ENV = "VOUCHNET_TOKEN"
TOKEN_FILE_ENV = "VOUCHNET_TOKEN_FILE"
LOCAL_NODE = "http://127.0.0.1:8700"


def default_node() -> str:
    return os.environ.get(NODE_ENV) or LOCAL_NODE


def default_token() -> str | None:
    return os.environ.get(TOKEN_ENV) or None
