"""What an Idempotency-Key costs a `POST /v1/vouches` (node/api/idempotent.py): vouches signed one after another
through the app in process (no HTTP), without a key, with a fresh key each, and retried with their keys (answered
from the stored record). The key's row is committed (synchronous = FULL) on the node's trio thread before the
record is stored, so a keyed vouch pays one more durable commit there. A figure with no target; it is not a test.

    python benchmarks/vouch_keys.py                # 200 vouches each way
    python benchmarks/vouch_keys.py --vouches 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.api import create_app  # noqa: E402
from node.idempotency import IdempotencyStore  # noqa: E402
from vouching import did_key  # noqa: E402

TOKEN = "benchmark-token-" + "x" * 32


@dataclass
class View:
    """The part of node.api.NodeView the vouch route uses."""

    replica: Replica
    idempotency: IdempotencyStore
    token: str = TOKEN

    @property
    def did(self) -> str:
        return self.replica.did


async def timed(api: httpx.AsyncClient, bodies: list[dict[str, object]], keys: list[str] | None) -> list[float]:
    """Each POST's time (s), in order."""
    times = []
    for n, body in enumerate(bodies):
        headers = {} if keys is None else {"Idempotency-Key": keys[n]}
        start = time.perf_counter()
        response = await api.post("/v1/vouches", json=body, headers=headers)
        times.append(time.perf_counter() - start)
        if response.status_code != 201:
            raise SystemExit(f"POST /v1/vouches: {response.status_code} {response.text}")
    return times


def line(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"{label:<28} median {statistics.median(ms):6.2f} ms   p90 {ms[int(len(ms) * 0.9)]:6.2f} ms"


async def main(vouches: int) -> None:
    with tempfile.TemporaryDirectory() as directory, RecordStore.open(Path(directory)) as store:
        keys_store = IdempotencyStore.open(Path(directory), log_size=0)
        try:
            view = View(Replica(SigningKey.generate(), store, roots=(), max_hops=2, held_limit=100), keys_store)
            transport = httpx.ASGITransport(app=create_app(view))
            async with httpx.AsyncClient(transport=transport, base_url="http://node",
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                agents = [did_key(bytes(SigningKey.generate().verify_key)) for _ in range(2 * vouches)]
                bodies = [{"subject": agent, "weight": 0.5, "basis": "operator"} for agent in agents]
                keys = [f"key-{n}" for n in range(vouches)]
                print(line("without a key", await timed(api, bodies[:vouches], None)))
                print(line("with a fresh key", await timed(api, bodies[vouches:], keys)))
                print(line("retried with its key", await timed(api, bodies[vouches:], keys)))
        finally:
            keys_store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vouches", type=int, default=200)
    trio.run(main, parser.parse_args().vouches)
