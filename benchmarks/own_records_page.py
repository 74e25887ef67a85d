"""What GET /v1/node/own-records (no token needed) costs a node whose own_records.db lists `--conflicts` conflicting
records of `--size` bytes each (a thief's, the most the list keeps: gossip.own_records.MAX_CONFLICTS) and `--stored`
rows of records the ledger stores (each looked up at the opening too): the first page, and opening the list (as a start
does). Each page runs on the node's event loop. The file is warm in the page cache, as on a node that serves it. Through
the app in process, without HTTP. A page reads no record's bytes (whether a row keeps them, `bytes` and
`conflicts_with_bytes`, is read from the rows' headers: OwnRecords.keeping_bytes), and looks each record up in the
ledger's index (`stored`), and the record each conflicts with when the list keeps none of its bytes. `--held`: each
conflicts with a record the node only held, whose bytes the list keeps too (2 x `--size` a row, the most the file
holds); otherwise with records the ledger stores, as many. A figure with no target; it is not a test.

    python benchmarks/own_records_page.py                  # 1,000 conflicting records of 64 KiB
    python benchmarks/own_records_page.py --held           # ... each with the held record's 64 KiB too
    python benchmarks/own_records_page.py --conflicts 100 --size 1024
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402

from gossip.own_records import OwnRecords  # noqa: E402
from node.api import create_app  # noqa: E402
from tests.factories import Org  # noqa: E402
from tests.node.fake_node import fake_node  # noqa: E402

PAGES = 20


def _record(seq: int, size: int) -> SimpleNamespace:
    """A stand-in for a record of the org's key (the list reads its id, iss, seq and bytes only)."""
    return SimpleNamespace(id=os.urandom(32), iss="did:key:z6MkThief", seq=seq, raw=os.urandom(size))


async def measure(conflicts: int, size: int, stored: int, held: bool) -> list[dict[str, object]]:
    """Print the figures; the first page's rows."""
    with tempfile.TemporaryDirectory() as directory, fake_node(Path(directory)) as node:
        org = Org()
        ledger = [org.record() for _ in range(stored + (0 if held else conflicts))]  # stored, then conflicted with
        node.replica.store.append(ledger)
        conflicted = iter(ledger[stored:])
        own = OwnRecords.open(Path(directory), lambda: 1_700_000_000_000, node.replica.store)
        try:
            own.add([(record, "12D3KooWPeer") for record in ledger[:stored]])
            for first in range(0, conflicts, 100):
                own.add_conflicts([(_record(1, size), os.urandom(32), os.urandom(size), "12D3KooWPeer") if held else
                                   (_record(1, size), next(conflicted).id, None, "12D3KooWPeer")
                                   for _ in range(first, min(first + 100, conflicts))])
        finally:
            own.close()
        started = time.perf_counter()
        node.replica.own_records = OwnRecords.open(Path(directory), lambda: 0, node.replica.store)
        opening = time.perf_counter() - started
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as api:
            times = []
            for _ in range(PAGES):
                started = time.perf_counter()
                answer = await api.get("/v1/node/own-records")
                times.append(time.perf_counter() - started)
        node.replica.own_records.close()
    assert answer.status_code == 200 and len(answer.json()["records"]) == min(conflicts + stored, 1000), answer.text
    print(f"{conflicts:,} conflicting records of {size:,} bytes{' with held ones of as many' if held else ''} and "
          f"{stored:,} stored: the first page "
          f"{statistics.median(times) * 1000:.1f} ms (median of {PAGES}, {min(times) * 1000:.1f} to "
          f"{max(times) * 1000:.1f}; {len(answer.content):,} bytes), opening the list {opening * 1000:.1f} ms")
    return answer.json()["records"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conflicts", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument("--stored", type=int, default=0)
    parser.add_argument("--held", action="store_true", help="conflicts with held records, whose bytes the list keeps")
    args = parser.parse_args()
    trio.run(measure, args.conflicts, args.size, args.stored, args.held)


if __name__ == "__main__":
    main()
