"""What the GETs that read the agent credential registry (node.credential_registry) cost with `--credentials`
minted, half of them revoked, all in the first status lists, and a key retired after they were issued: a status list
of the agents' credentials (`/v1/credentials/status/0`) and the JWKS (`/.well-known/jwks.json`, which serves the
retired key while a credential it may have signed lives), each asked right after another connection changed the
registry (as `vouchnet agent revoke` and `agent new` do) and asked again, with the longest the event loop stood still
meanwhile (a task that sleeps 1 ms at a time measures it); then each asked again while another process holds a
write transaction open on the registry (a reader of a WAL file never waits for it), and what a kept answer costs
the loop (CredentialRegistry.kept_only: a read of data_version and a look-up), alone and with that writer. Through
the app in process, without HTTP. A figure with no target; it is not a test.

    python benchmarks/credential_status.py                      # 16,384 credentials
    python benchmarks/credential_status.py --credentials 131072
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from benchmarks.machine import Run  # noqa: E402
from benchmarks.vouch_status import URL, print_figures, timed  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.credential_registry import CREDENTIALS_FILE, CredentialRegistry  # noqa: E402
from node.credentials_api import credentials_router  # noqa: E402

DAY_S = 86_400
KEPT_ASKS = 20_000
# Another process's write transaction, held open until its stdin closes: half the rows updated, spilled to the WAL.
HOLDER = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
          "db.execute('PRAGMA cache_size = 10'); db.execute('BEGIN IMMEDIATE'); "
          "db.execute(\"UPDATE agent_credentials SET reason = 'held' WHERE idx % 2 = 0\"); print('held', flush=True); "
          "sys.stdin.read(); db.execute('ROLLBACK')")


def fill(directory: Path, credentials: int, now: int) -> None:
    """`credentials` minted three days ago for 30 days, every other one revoked, in one transaction."""
    CredentialRegistry.open(directory).close()  # the schema
    with sqlite3.connect(directory / CREDENTIALS_FILE) as db:
        db.executemany("INSERT INTO agent_credentials (idx, agent, issued_at, expires_at, revoked_at, reason) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       ((i, f"did:key:agent{i}", now - 3 * DAY_S, now + 27 * DAY_S,
                         now - DAY_S if i % 2 else None, "left" if i % 2 else None) for i in range(credentials)))


@contextmanager
def write_held(directory: Path) -> Iterator[None]:
    """Another process holds a write transaction open on the registry meanwhile."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(directory / CREDENTIALS_FILE)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        try:
            yield
        finally:
            holder.stdin.close()
    assert holder.returncode == 0


def kept_answer(registry: CredentialRegistry) -> str:
    """What a kept answer costs on the loop (`lists`, kept_only) over KEPT_ASKS: median and max (us), and how often the
    thread gave up its core (a wait for a lock or a sleep would; being preempted on a loaded machine, which makes
    the max, does not)."""
    registry.lists()  # kept
    took, waits = [], resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    for _ in range(KEPT_ASKS):
        start = time.perf_counter()
        with registry.kept_only():
            registry.lists()
        took.append(time.perf_counter() - start)
    waits = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - waits
    return f"median {statistics.median(took) * 1e6:.1f}, max {max(took) * 1e6:.0f}, waits {waits}"


async def measure(app: FastAPI, registry: CredentialRegistry, directory: Path, rounds: int) -> None:
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
        alone = kept_answer(registry)
        with write_held(directory):
            for _ in range(rounds):
                for name, path in (("status list, writer holding", "/v1/credentials/status/0"),
                                   ("JWKS, writer holding", "/.well-known/jwks.json")):
                    figures.setdefault(name, []).append(await timed(client, path))
            holding = kept_answer(registry)
    writer.close()
    print_figures(figures)
    print(f"  a kept answer on the loop, of {KEPT_ASKS} (us): {alone}; another process holding a write transaction: "
          f"{holding}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--credentials", type=int, default=16_384)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    run, now = Run.start(), int(time.time())
    print(run.header("the agent credential registry's GETs"))
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
            trio.run(measure, app, registry, directory, args.rounds)
            registry.close()
    print(run.footer())


if __name__ == "__main__":
    main()
