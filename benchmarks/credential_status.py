"""What the GETs that read the agent credential registry (node.credential_registry) cost with `--credentials`
minted, half of them revoked, all in the first status lists, and a key retired after they were issued: a status list
of the agents' credentials (`/v1/credentials/status/0`) and the JWKS (`/.well-known/jwks.json`, which serves the
retired key while a credential it may have signed lives), each asked right after another connection changed the
registry (as `vouchnet agent revoke` and `agent new` do) and asked again, with the longest the event loop stood still
meanwhile (a task that sleeps 1 ms at a time measures it). Through the app in process, without HTTP. A figure with
no target; it is not a test.

    python benchmarks/credential_status.py                      # 16,384 credentials
    python benchmarks/credential_status.py --credentials 131072
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from benchmarks.vouch_status import URL, print_figures, timed  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.credential_registry import CREDENTIALS_FILE, CredentialRegistry  # noqa: E402
from node.credentials_api import credentials_router  # noqa: E402

DAY_S = 86_400


def fill(directory: Path, credentials: int, now: int) -> None:
    """`credentials` minted three days ago for 30 days, every other one revoked, in one transaction."""
    CredentialRegistry.open(directory).close()  # the schema
    with sqlite3.connect(directory / CREDENTIALS_FILE) as db:
        db.executemany("INSERT INTO agent_credentials (idx, agent, issued_at, expires_at, revoked_at, reason) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       ((i, f"did:key:agent{i}", now - 3 * DAY_S, now + 27 * DAY_S,
                         now - DAY_S if i % 2 else None, "left" if i % 2 else None) for i in range(credentials)))


async def measure(app: FastAPI, directory: Path, rounds: int) -> None:
    figures: dict[str, list[tuple[float, float, float]]] = {}
    writer = CredentialRegistry.open(directory)  # another process's connection, as `vouchnet agent` is
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:
        for path in ("/v1/credentials/status/0", "/.well-known/jwks.json"):
            await timed(client, path)
        for n in range(rounds):
            now = int(time.time())
            writer.revoke(2 * n, reason="left", at=now)  # one of the list's, not revoked yet
            for name in ("status list, after a revoke", "status list, again"):
                figures.setdefault(name, []).append(await timed(client, "/v1/credentials/status/0"))
            writer.allocate(f"did:key:new{n}", name=None, issued_at=now, expires_at=now + DAY_S)
            for name in ("JWKS, after a new credential", "JWKS, again"):
                figures.setdefault(name, []).append(await timed(client, "/.well-known/jwks.json"))
    writer.close()
    print_figures(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--credentials", type=int, default=16_384)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    now = int(time.time())
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        fill(directory, args.credentials, now)
        key, retired = SigningKey.generate(), SigningKey.generate()
        with RecordStore.open(directory) as store:
            registry = CredentialRegistry.open(directory)
            app = FastAPI()
            app.include_router(credentials_router(key, Replica(key, store, roots=(), max_hops=2, held_limit=100),
                                                  registry, URL, retired_keys=[(retired.verify_key, now - 2 * DAY_S)]))
            print(f"{args.credentials} credentials, {args.credentials // 2} revoked (+1 a round), a key retired "
                  f"after they were issued, {args.rounds} rounds")
            trio.run(measure, app, directory, args.rounds)
            registry.close()


if __name__ == "__main__":
    main()
