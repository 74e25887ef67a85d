"""What a GET of a status list of this org's vouches (`/v1/credentials/vouch-status/{did}/0`, node.credentials_api)
costs with `--revokes` of the org's vouches revoked: the first after a start (every revoke read, node.vouch_revocations),
served again from the list signed last (an index seek finds no new revoke), and signed anew after a revoke (the
new revoke read, the list's bits GZIPped, signed). Through the app in process, without HTTP. A figure with no
target; it is not a test.

    python benchmarks/vouch_status.py                     # 1,000 revokes of 2,000 vouches
    python benchmarks/vouch_status.py --revokes 50000 --vouches 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.credential_registry import CredentialRegistry  # noqa: E402
from node.credential_status import vouch_list_url  # noqa: E402
from node.credentials_api import credentials_router  # noqa: E402
from vouching import did_key, revoke_body, vouch_body  # noqa: E402


def fill(replica: Replica, vouches: int, revokes: int) -> None:
    agents = [did_key(bytes(SigningKey.generate().verify_key)) for _ in range(100)]
    issued = replica.issue_many("vouch", [vouch_body(agents[i % 100], 0.5, "operator") for i in range(vouches)])
    replica.issue_many("revoke", [revoke_body(vouch.id, "left the org") for vouch in issued[:revokes]])


async def measure(app: FastAPI, replica: Replica, rounds: int) -> dict[str, list[float]]:
    path, agent = vouch_list_url("", replica.did, 0), did_key(bytes(SigningKey.generate().verify_key))
    first: list[float] = []
    cached: list[float] = []
    signed: list[float] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:
        start = time.perf_counter()
        assert (await client.get(path)).status_code == 200
        first.append(time.perf_counter() - start)
        for _ in range(rounds):
            replica.issue("revoke", revoke_body(replica.issue("vouch", vouch_body(agent, 0.5, "operator")).id,
                                                "left"))
            for times in (signed, cached):  # the first GET after a revoke signs the list; the next reuses it
                start = time.perf_counter()
                response = await client.get(path)
                times.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
    return {"first": first, "served again": cached, "signed anew": signed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vouches", type=int, default=2000)
    parser.add_argument("--revokes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, RecordStore.open(Path(directory)) as store:
        key = SigningKey.generate()
        replica = Replica(key, store, roots=(), max_hops=2, held_limit=100)
        fill(replica, args.vouches, min(args.revokes, args.vouches))
        registry = CredentialRegistry.open(Path(directory))
        app = FastAPI()
        app.include_router(credentials_router(key, replica, registry, "https://vouchnet.example.org"))
        measured = trio.run(measure, app, replica, args.rounds)
        registry.close()
    print(f"{args.vouches} vouches, {min(args.revokes, args.vouches)} revoked (+1 a round), {args.rounds} rounds")
    for name, times in measured.items():
        print(f"  {name:13} median {statistics.median(times) * 1e3:7.2f} ms   max {max(times) * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
