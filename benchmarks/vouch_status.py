"""What a GET of a status list of this org's vouches (`/v1/credentials/vouch-status/{did}/0`, node.credentials_api)
costs with `--revokes` of the org's vouches revoked, and the longest the event loop stood still meanwhile (a task
that sleeps 1 ms at a time measures it): the first after a start, asked as the node starts (it waits for the
start-up read of every revoke, node.vouch_revocations, done in worker threads), asked once that read is done, and
with no start-up read (the ask reads every revoke, on the loop, as before it); then served again from the list
signed last (an index seek finds no new revoke), signed anew after a revoke (the new revoke read, the list's bits
GZIPped, signed), and asked by `--verifiers` at once after a revoke; each with the loop's longest stall. Through the
app in process, without HTTP. A figure with no target; it is not a test.

    python benchmarks/vouch_status.py                     # 1,000 revokes of 2,000 vouches
    python benchmarks/vouch_status.py --revokes 20000 --vouches 40000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from node.vouch_revocations import VouchRevocations  # noqa: E402
from vouching import did_key, revoke_body, vouch_body  # noqa: E402

URL = "https://vouchnet.example.org"


def fill(replica: Replica, vouches: int, revokes: int) -> None:
    agents = [did_key(bytes(SigningKey.generate().verify_key)) for _ in range(100)]
    issued = replica.issue_many("vouch", [vouch_body(agents[i % 100], 0.5, "operator") for i in range(vouches)])
    replica.issue_many("revoke", [revoke_body(vouch.id, "left the org") for vouch in issued[:revokes]])


@asynccontextmanager
async def stalls() -> AsyncIterator[list[float]]:
    """The longest the loop stood still while the block ran (s), in a list of one once it is over."""
    longest = [0.0]

    async def tick() -> None:
        while True:
            start = time.perf_counter()
            await trio.sleep(0.001)
            longest[0] = max(longest[0], time.perf_counter() - start - 0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await trio.sleep(0.01)  # ticking
        yield longest
        await trio.sleep(0.01)  # the ticker wakes from the sleep the block's last stall held up
        nursery.cancel_scope.cancel()


async def first_get(key: SigningKey, replica: Replica, registry: CredentialRegistry, start_up: str) -> tuple[
        float, float]:
    """The first GET after a start (s), and the loop's longest stall from the start to its answer (s)."""
    vouches = VouchRevocations(replica.store)
    app = FastAPI()
    app.include_router(credentials_router(key, replica, registry, URL, vouches=vouches))
    async with trio.open_nursery() as nursery, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                  base_url="http://n") as client:
        assert (await client.get("/.well-known/jwks.json")).status_code == 200  # the app's own first request
        async with stalls() as longest:
            if start_up != "none":
                await nursery.start(vouches.run, [replica.did])
            if start_up == "done":
                await vouches.revoked(replica.did, [])  # once the read is over
            start = time.perf_counter()
            assert (await client.get(vouch_list_url("", replica.did, 0))).status_code == 200
            took = time.perf_counter() - start
    return took, longest[0]


async def timed(client: httpx.AsyncClient, path: str, asks: int = 1) -> tuple[float, float, float]:
    """`asks` GETs of `path` at once, as many verifiers' (s, until the last is answered), the loop's longest stall
    meanwhile (s), and the CPU time the loop's thread spent on them (s: on a loaded machine, the stall is mostly the
    wait for a core, the CPU time is not)."""
    answers: list[httpx.Response] = []

    async def ask() -> None:
        answers.append(await client.get(path))

    async with stalls() as longest:
        start, cpu = time.perf_counter(), time.thread_time()  # (worker threads' time is their own)
        async with trio.open_nursery() as nursery:
            for _ in range(asks):
                nursery.start_soon(ask)
        took, cpu = time.perf_counter() - start, time.thread_time() - cpu
    assert all(response.status_code == 200 for response in answers), answers[0].text
    return took, longest[0], cpu


async def measure(key: SigningKey, replica: Replica, registry: CredentialRegistry, rounds: int, verifiers: int) -> None:
    for name, start_up in (("as it starts", "running"), ("after its read", "done"), ("no start-up read", "none")):
        took, stall = await first_get(key, replica, registry, start_up)
        print(f"  first, {name:17} {took * 1e3:8.2f} ms   loop stalled {stall * 1e3:7.2f} ms at most")
    app = FastAPI()
    app.include_router(credentials_router(key, replica, registry, URL))
    path, agent = vouch_list_url("", replica.did, 0), did_key(bytes(SigningKey.generate().verify_key))
    figures: dict[str, list[tuple[float, float, float]]] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:
        assert (await client.get(path)).status_code == 200
        for _ in range(rounds):
            replica.issue("revoke", revoke_body(replica.issue("vouch", vouch_body(agent, 0.5, "operator")).id,
                                                "left"))
            # The first GET after a revoke signs the list; the next reuses it.
            figures.setdefault("signed anew", []).append(await timed(client, path))
            figures.setdefault("served again", []).append(await timed(client, path))
            replica.issue("revoke", revoke_body(replica.issue("vouch", vouch_body(agent, 0.5, "operator")).id,
                                                "left"))
            figures.setdefault(f"{verifiers} at once after a revoke", []).append(await timed(client, path, verifiers))
    print_figures(figures)


def print_figures(figures: dict[str, list[tuple[float, float, float]]]) -> None:
    """Each kind of ask's time (`timed`), the loop's longest stall meanwhile and its thread's CPU time, median and
    max over the rounds (ms)."""
    for name, rounds in figures.items():
        print(f"  {name:30}", "   ".join(f"{what} {statistics.median(f) * 1e3:6.2f} (max {max(f) * 1e3:6.2f})"
                                         for what, f in zip(("took", "loop stalled", "loop CPU"), zip(*rounds))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vouches", type=int, default=2000)
    parser.add_argument("--revokes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--verifiers", type=int, default=20, help="asks at once after a revoke")
    args = parser.parse_args()
    revokes = min(args.revokes, args.vouches)
    with tempfile.TemporaryDirectory() as directory:
        key = SigningKey.generate()
        with RecordStore.open(Path(directory)) as store:
            fill(Replica(key, store, roots=(), max_hops=2, held_limit=100), args.vouches, revokes)
        with RecordStore.open(Path(directory)) as store:  # as a node starts: the index is committed
            registry = CredentialRegistry.open(Path(directory))
            print(f"{args.vouches} vouches, {revokes} revoked (+2 a round), {args.rounds} rounds")
            trio.run(measure, key, Replica(key, store, roots=(), max_hops=2, held_limit=100), registry, args.rounds,
                     args.verifiers)
            registry.close()


if __name__ == "__main__":
    main()
