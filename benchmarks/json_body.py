"""What reading a JSON request body once (node.api.json_body: the I-JSON reader is the parser FastAPI's handler calls)
saves, where FastAPI parsed a body model's JSON with json.loads and the I-JSON check parsed it again: a vouch write
through the app in process (no HTTP; benchmarks/vouch_keys.py's), and the parses themselves, of a vouch's body and
of an events batch of 500 (POST /v1/events has no body model: its reader, node.ingest, parsed it once before too).
Run it on the code before and after to compare the writes. A figure with no target; it is not a test.

    python benchmarks/json_body.py                 # 1,000 vouches, parses timed 2,000 / 200 times
    python benchmarks/json_body.py --vouches 3000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from benchmarks.telemetry import event_batches  # noqa: E402
from benchmarks.vouch_keys import TOKEN, View, timed  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.api import create_app  # noqa: E402
from node.idempotency import IdempotencyStore  # noqa: E402
from node.strict_json import loads_strict  # noqa: E402
from vouching import did_key  # noqa: E402


def parse_us(body: bytes, number: int) -> tuple[float, float]:
    """The best of five runs of `number` parses of `body`, in µs each: json.loads (FastAPI's) and loads_strict."""
    return tuple(min(timeit.repeat(lambda: parse(body), number=number, repeat=5)) / number * 1e6
                 for parse in (json.loads, loads_strict))


async def vouch_writes(vouches: int) -> tuple[list[float], float]:
    """Each vouch write's time (s) through the app in process, without an Idempotency-Key, and the CPU time (s)
    of them all (the store's durable commits wait on the disk, which the CPU time leaves out)."""
    with tempfile.TemporaryDirectory() as directory, RecordStore.open(Path(directory)) as store:
        keys_store = IdempotencyStore.open(Path(directory), log_size=0)
        try:
            view = View(Replica(SigningKey.generate(), store, roots=(), max_hops=2, held_limit=100), keys_store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(view)), base_url="http://node",
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                bodies = [{"subject": did_key(bytes(SigningKey.generate().verify_key)), "weight": 0.5,
                           "basis": "operator"} for _ in range(vouches)]
                cpu = time.process_time()
                times = await timed(api, bodies, None)
                return times, time.process_time() - cpu
        finally:
            keys_store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vouches", type=int, default=1000)
    vouches = parser.parse_args().vouches
    vouch_body = json.dumps({"subject": did_key(bytes(SigningKey.generate().verify_key)), "weight": 0.5,
                             "basis": "operator"}).encode()
    (batch,) = event_batches(1)
    for name, body, number in (("a vouch's body", vouch_body, 2000), ("an events batch of 500", batch, 200)):
        loads, strict = parse_us(body, number)
        print(f"parse {name} ({len(body):,} bytes): json.loads {loads:,.1f} µs, loads_strict {strict:,.1f} µs")
    times, cpu = trio.run(vouch_writes, vouches)
    ms = sorted(t * 1000 for t in times)
    print(f"vouch write in process ({vouches:,}): {cpu / vouches * 1e6:,.0f} µs of CPU each; wall median "
          f"{statistics.median(ms):.3f} ms, p90 {ms[int(len(ms) * 0.9)]:.3f} ms")


if __name__ == "__main__":
    main()
