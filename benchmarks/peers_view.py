"""What GET /v1/peers costs a node that knows `--peers` peers (orgs whose `org` records name an address, each with
a failed dial and a long error): the first page after a peer came or went (DialSchedule.known sorts its peer ids
again), a page after that (a slice of the sorted ids), and every page of 500 in turn, as `vouchnet peers` reads
them. Each page runs on the node's event loop. Through the app in process, without HTTP. A figure with no target;
it is not a test.

    python benchmarks/peers_view.py                 # 10,000 peers
    python benchmarks/peers_view.py --peers 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402

from gossip.host import peer_id_from_public_key  # noqa: E402
from node.api import create_app  # noqa: E402
from tests.node.fake_node import fake_node  # noqa: E402

ERROR = "dial /ip4/10.0.0.1/tcp/4001/p2p/{}: unable to connect" + "; failed" * 60 + ": Connection refused"


async def measure(peers: int) -> None:
    with tempfile.TemporaryDirectory() as directory, fake_node(Path(directory)) as node:
        ids = [peer_id_from_public_key(os.urandom(32)) for _ in range(peers)]
        for peer in ids:
            node.schedule.announce(peer, [f"/ip4/10.0.0.1/tcp/4001/p2p/{peer}"])
            node.schedule.failed(peer, trio.current_time(), ERROR.format(peer))
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as api:
            started = time.perf_counter()
            first = (await api.get("/v1/peers")).json()
            after_change = time.perf_counter() - started
            started = time.perf_counter()
            await api.get("/v1/peers", params={"after": first["next"]})
            cached = time.perf_counter() - started
            started, pages, after, listed = time.perf_counter(), 0, None, 0
            while True:
                answer = (await api.get("/v1/peers", params={"limit": 500, **({"after": after} if after else {})}))
                page = answer.json()
                pages, listed = pages + 1, listed + len(page["known"])
                if (after := page["next"]) is None:
                    break
            every = time.perf_counter() - started
    assert listed == peers, (listed, peers)
    print(f"{peers:,} known peers: first page of 100 after a change {after_change * 1000:.1f} ms, a page of 100 "
          f"{cached * 1000:.1f} ms, all {pages} pages of 500 {every:.2f} s ({every / pages * 1000:.1f} ms a page, "
          f"{len(answer.content):,} bytes the last)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=10_000)
    trio.run(measure, parser.parse_args().peers)


if __name__ == "__main__":
    main()
