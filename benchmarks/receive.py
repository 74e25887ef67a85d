"""CPU a receiving node spends on its own part of each gossiped record (issue 7, item 9), without libp2p: the
records topic's validator (gossip.gate: decode, schema, signature, the stored-already question), delivery, and
acceptance into the replica with the listeners a running node has (trust engine and score stream, the latency
histogram, the sync issuer index). The records are what benchmarks/gossip.py's publishers issue: one digest per
agent per 1 s epoch, from 4 orgs, packed into messages as gossip.service packs them.

benchmarks/gossip.py measures everything a node process spends per record, py-libp2p and the periodic services
included, on a network sharing the machine's cores; this isolates vouchnet's share, with far less noise, so that
a change to it can be measured.

Usage: python benchmarks/receive.py [--agents 125] [--epochs 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio
from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import Run  # noqa: E402
from gossip.batch import pack, unpack  # noqa: E402
from gossip.gate import RecordGate  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from gossip.sync import IssuerIndex  # noqa: E402
from node.config import Limits  # noqa: E402
from node.metrics import LATENCY_BUCKETS, Registry, record_latency_listener  # noqa: E402
from node.stream import Broadcaster  # noqa: E402
from node.trust import TrustService  # noqa: E402
from vouching import (  # noqa: E402
    DigestBody,
    did_key,
    digest_body,
    failed_signatures,
    issue_digests,
    verify_record_deferred,
)
from vouching.bodies import CATEGORIES, OUTCOMES, parse_body  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.policy import Policy  # noqa: E402

PUBLISHERS = 4
# Rates high enough never to refuse a record: this measures the work, not the limits.
UNLIMITED = Limits(org_records_per_second=1e9, peer_messages_per_second=1e9, peer_bytes_per_second=1e12)


@dataclass(frozen=True)
class Stages:
    """Microseconds of CPU per record in each stage of one pass over the messages."""

    validate: float  # RecordGate.check: the pubsub validator
    deliver: float  # RecordGate.records: the verified records of an accepted message
    accept: float  # Replica.accept, with the listeners

    @property
    def total(self) -> float:
        return self.validate + self.deliver + self.accept


def messages(agents: int, epochs: int) -> tuple[list[str], list[tuple[str, bytes]]]:
    """The publishers' dids, and their messages in the order they are published: (publisher did, message)."""
    keys = [SigningKey(bytes([i + 1]) * 32) for i in range(PUBLISHERS)]
    dids = [did_key(bytes(key.verify_key)) for key in keys]
    counts = {"outcomes": dict.fromkeys(OUTCOMES, 0) | {"ok": 1},
              "categories": dict.fromkeys(CATEGORIES, 0) | {"tool": 1}, "high_risk": dict.fromkeys(OUTCOMES, 0)}
    now = int(time.time() * 1000)
    heads: list[tuple[int, bytes | None]] = [(1, None)] * PUBLISHERS
    out = []
    for e in range(epochs):
        epoch = now - (epochs - e) * 1000
        for p, key in enumerate(keys):
            bodies = []
            for a in range(agents):
                agent = did_key((p << 32 | a).to_bytes(32, "big"))
                wire = digest_body(agent, epoch=epoch, length=1000, evidence_root=bytes(32), **counts)
                body = parse_body("digest", wire, iss=dids[p], ts=epoch + 1000)
                assert isinstance(body, DigestBody)
                bodies.append(body)
            seq, prev = heads[p]
            records = issue_digests(key, bodies, seq=seq, prev=prev)
            heads[p] = (records[-1].seq + 1, records[-1].id)
            out += [(dids[p], m) for m in pack([r.raw for r in records], UNLIMITED.gossip_batch_bytes)]
    return dids, out


def receive(directory: Path, dids: list[str], sent: list[tuple[str, bytes]]) -> Stages:
    """Pass every message through a fresh node's gate and replica, as GossipService does; CPU per stage."""
    store = RecordStore.open(directory)
    try:
        replica = Replica(SigningKey(bytes(32)), store, roots=dids, max_hops=2, held_limit=10_000)
        metrics = Registry()
        trust = TrustService(replica, roots=dids, policy=Policy(), broadcaster=Broadcaster(metrics), metrics=metrics,
                             recompute_interval=60.0, epoch_ms=HOUR_MS)
        trust.replay([])
        replica.listeners += [
            trust.on_records,
            record_latency_listener(metrics.histogram("record_latency_seconds", "", LATENCY_BUCKETS), replica.did,
                                    lambda: int(time.time() * 1000)),
            IssuerIndex(store).add,
        ]
        gate = RecordGate(UNLIMITED, own_peer="self", known=store.holds, org_of=lambda peer: None)
        spent = [0.0, 0.0, 0.0]
        records = 0
        for publisher, data in sent:
            t0 = time.process_time()
            gate.check(publisher, data, 0.0)
            t1 = time.process_time()
            delivered = gate.records(data)
            t2 = time.process_time()
            accepted = replica.accept(delivered).accepted
            t3 = time.process_time()
            if len(accepted) != len(delivered):
                raise AssertionError(f"{len(accepted)} of {len(delivered)} records accepted")
            records += len(accepted)
            spent[0] += t1 - t0
            spent[1] += t2 - t1
            spent[2] += t3 - t2
    finally:
        store.close()
    validate, deliver, accept = (1e6 * s / records for s in spent)
    return Stages(validate, deliver, accept)


def signatures_alone(sent: list[tuple[str, bytes]]) -> float:
    """Microseconds of CPU per record for its signature check alone (the floor of validation)."""
    checks = [verify_record_deferred(raw)[1] for _, data in sent for raw in unpack(data, 1 << 20)]
    t0 = time.process_time()
    failed_signatures(checks)  # type: ignore[arg-type]  (digests always come with their check)
    return 1e6 * (time.process_time() - t0) / len(checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=125, help="digests per publisher per epoch (4 publishers)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="passes, each into a fresh node; medians reported")
    args = parser.parse_args()
    run = Run.start()
    print(run.header("receive benchmark: a node's own CPU per gossiped record (issue 7, item 9)"), flush=True)
    dids, sent = messages(args.agents, args.epochs)
    records = PUBLISHERS * args.agents * args.epochs
    print(f"{records:,} digests from {PUBLISHERS} orgs in {len(sent)} messages of "
          f"{statistics.mean(len(m) for _, m in sent):,.0f} bytes on average")
    passes = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            passes.append(trio.run(_receive, Path(directory), dids, sent))
    signature = statistics.median(signatures_alone(sent) for _ in range(args.repeat))
    print(f"{'us/record':>10} {'validate':>9} {'deliver':>8} {'accept':>7} {'total':>7}")
    for i, p in enumerate(passes):
        print(f"{'pass ' + str(i + 1):>10} {p.validate:9.1f} {p.deliver:8.1f} {p.accept:7.1f} {p.total:7.1f}")
    median = Stages(*(statistics.median(getattr(p, f) for p in passes) for f in ("validate", "deliver", "accept")))
    print(f"{'median':>10} {median.validate:9.1f} {median.deliver:8.1f} {median.accept:7.1f} {median.total:7.1f}")
    print(f"signature checks alone: {signature:.1f} us per record (inside validate)")
    print(run.footer())
    return 0


async def _receive(directory: Path, dids: list[str], sent: list[tuple[str, bytes]]) -> Stages:
    """receive() inside trio.run, as in a node (the trust service makes trio events)."""
    return receive(directory, dids, sent)


if __name__ == "__main__":
    sys.exit(main())
