"""Ingest figures against issue 2's targets, in one run: the raw PyNaCl verify rate (the baseline); records decoded,
verified, validated and appended durably per second in batches of 100, through the path a node uses
(gossip.validation, then Replica.accept into a RecordStore), checked serially, on worker threads, and with their
signatures checked in worker processes, each while the previous batch is appended; then the ledger figures of
benchmarks/ledger.py (Merkle appends, proofs and open time at 10^6 entries, disk per entry).

Usage: python benchmarks/ingest.py [--records N] [--threads T ...] [--processes P ...] [--entries N] [--quick];
exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey, VerifyKey  # noqa: E402

from benchmarks import daemons  # noqa: E402
from benchmarks import ledger as ledger_bench  # noqa: E402
from benchmarks.ledger import Figure  # noqa: E402
from benchmarks.machine import Run, timed  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import INDEX_FILE, LEDGER_FILE, RecordStore  # noqa: E402
from gossip.validation import ProcessChecker, ThreadedChecker, check_records  # noqa: E402
from vouching import Record, did_key, digest_body, issue_record, verify_record_deferred, vouch_body  # noqa: E402

RATIO_TARGET = 70.0  # ingest as a percentage of the raw verify rate
_T0 = 1_700_000_000_000
_COUNTS = {"ok": 41, "error": 2, "denied": 1, "timeout": 0}
_CATEGORIES = {"tool": 30, "mcp": 8, "a2a": 2, "auth": 2, "resource": 2, "other": 0}
_HIGH_RISK = {"ok": 3, "error": 0, "denied": 1, "timeout": 0}


def make_records(count: int, issuers: int) -> tuple[list[bytes], list[str]]:
    """Records as the network carries them: hourly digests and agent vouches, alternating, from `issuers` orgs in
    turn (each org's chain in order); the records and the issuers' dids."""
    keys = [SigningKey(i.to_bytes(32, "big")) for i in range(1, issuers + 1)]
    agents = [did_key(i.to_bytes(32, "big")) for i in range(10**6, 10**6 + 5000)]
    prev: list[bytes | None] = [None] * issuers
    raws = []
    for n in range(count):
        i, agent = n % issuers, agents[n % len(agents)]
        if n % 2:
            kind, body = "vouch", vouch_body(agent, 0.8, "operator")
        else:
            kind, body = "digest", digest_body(agent, epoch=_T0 - 3_600_000, length=3_600_000, outcomes=_COUNTS,
                                               categories=_CATEGORIES, high_risk=_HIGH_RISK,
                                               evidence_root=n.to_bytes(32, "big"))
        record = issue_record(keys[i], kind, body, seq=n // issuers + 1, prev=prev[i], ts=_T0 + n)
        prev[i] = record.id
        raws.append(record.raw)
    return raws, [did_key(bytes(k.verify_key)) for k in keys]


def signatures(raws: list[bytes]) -> list[tuple[VerifyKey, bytes, bytes]]:
    """(issuer's key, ToBeSigned bytes, signature) of each record (vouching.verify_record_deferred), the keys made
    once per issuer: what PyNaCl checks, with nothing around it."""
    keys: dict[bytes, VerifyKey] = {}
    out = []
    for raw in raws:
        public_key, message, signature = verify_record_deferred(raw)[1]
        key = keys.get(public_key) or keys.setdefault(public_key, VerifyKey(public_key))
        out.append((key, message, signature))
    return out


def raw_verify_rate(items: list[tuple[VerifyKey, bytes, bytes]]) -> float:
    """Signatures per second that PyNaCl checks on one thread (VerifyKey.verify): the cost no ingest avoids."""

    def verify_all() -> None:
        for key, tbs, signature in items:
            key.verify(tbs, signature)

    wall, _ = timed(verify_all)
    return len(items) / wall


def _replica(directory: Path, issuers: list[str]) -> Replica:
    return Replica(SigningKey(bytes(32)), RecordStore.open(directory), roots=issuers, max_hops=1, held_limit=1000)


def _accept(replica: Replica, records: list[Record]) -> None:
    accepted = len(replica.accept(records).accepted)
    if accepted != len(records):
        raise AssertionError(f"only {accepted} of {len(records)} records were accepted")


def ingest_serially(replica: Replica, batches: list[list[bytes]]) -> None:
    """Check each batch on this thread, then accept it (one durable commit per batch)."""
    for batch in batches:
        _accept(replica, check_records(batch))


def ingest_pipelined(replica: Replica, batches: list[list[bytes]], checker: ThreadedChecker | ProcessChecker) -> None:
    """Submit each batch to `checker` before the batch before it is accepted on this thread (a ProcessChecker
    decodes it then, while its workers check the signatures of the one before), as gossip.sync_service does with
    verify_threads or verify_processes."""
    checking = checker.submit(batches[0])
    for batch in batches[1:]:
        following = checker.submit(batch)
        _accept(replica, checking.result())
        checking = following
    _accept(replica, checking.result())


def _workers_cpu() -> float:
    """CPU seconds used so far by this process's children (a ProcessChecker's workers)."""
    return sum(daemons.cpu_seconds(child.pid) for child in multiprocessing.active_children() if child.pid)


def _store_bytes(directory: Path) -> int:
    names = (LEDGER_FILE, INDEX_FILE)
    return sum(os.path.getsize(p) for n in names for p in (directory / n, directory / f"{n}-wal") if p.exists())


def ingest_figures(workdir: Path, count: int, issuers: int, batch: int, threads: list[int], processes: list[int]
                   ) -> list[Figure]:
    print(f"signing {count:,} records of {issuers} issuers ...", flush=True)
    raws, dids = make_records(count, issuers)
    batches = [raws[i:i + batch] for i in range(0, count, batch)]
    mean_bytes = sum(map(len, raws)) / count

    items = signatures(raws)
    raw_rates = [raw_verify_rate(items) for _ in range(3)]
    _, raw_cpu = timed(lambda: raw_verify_rate(items))
    check_wall, check_cpu = timed(lambda: check_records(raws))
    results: dict[str, tuple[float, float, int]] = {}
    runs: list[tuple[str, Callable[[], ThreadedChecker | ProcessChecker | None]]] = [("serially", lambda: None)]
    runs += [(f"on {t} thread{'s' * (t > 1)}", lambda t=t: ThreadedChecker(t)) for t in threads]
    runs += [(f"with signatures in {p} process{'es' * (p > 1)}", lambda p=p: ProcessChecker(p)) for p in processes]
    for name, make_checker in runs:
        directory = workdir / name.replace(" ", "-")
        directory.mkdir()
        replica = _replica(directory, dids)
        checker = make_checker()
        try:
            if checker is None:
                wall, cpu = timed(lambda: ingest_serially(replica, batches))
            else:
                checker.submit(batches[0][:1]).result()  # worker processes start on first use, not timed
                workers_cpu = _workers_cpu()
                wall, cpu = timed(lambda: ingest_pipelined(replica, batches, checker))
                cpu += _workers_cpu() - workers_cpu
        finally:
            replica.store.close()
            if checker is not None:
                checker.close()
        results[name] = (wall, cpu, _store_bytes(directory))
    raw_rates += [raw_verify_rate(items) for _ in range(3)]  # the baseline straddles the ingest runs
    raw = statistics.median(raw_rates)

    directory = workdir / "append-only"
    directory.mkdir()
    replica = _replica(directory, dids)
    checked = [check_records(b) for b in batches]
    append_wall, append_cpu = timed(lambda: [_accept(replica, records) for records in checked])
    replica.store.close()

    figures = [
        Figure(f"raw PyNaCl verify, 1 thread (median of 6; {min(raw_rates):,.0f}-{max(raw_rates):,.0f})", raw,
               "sig/s"),
        Figure("  CPU per signature", raw_cpu / count * 1e6, "us"),
        Figure("check_record alone, 1 thread", count / check_wall, "records/s"),
        Figure("  CPU per record", check_cpu / count * 1e6, "us"),
        Figure(f"Replica.accept alone (batches of {batch})", count / append_wall, "records/s"),
        Figure("  CPU per record", append_cpu / count * 1e6, "us"),
    ]
    for name, (wall, cpu, _) in results.items():
        figures += [
            Figure(f"ingest, checked {name}, batches of {batch}", count / wall, "records/s"),
            Figure("  as a share of the raw verify rate", 100 * count / wall / raw, "%"),
            Figure("  CPU per record (all threads and processes)", cpu / count * 1e6, "us"),
        ]
    best = max(results, key=lambda name: count / results[name][0])
    figures += [
        Figure(f"ingest, best ({best}) / raw verify rate", 100 * count / results[best][0] / raw, "%",
               RATIO_TARGET, True),
        Figure(f"record store on disk per record ({mean_bytes:.0f}-byte records)",
               results[best][2] / count, "bytes"),
    ]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000, help="records ingested per run")
    parser.add_argument("--issuers", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100, help="records per durable append")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                        help="worker threads checking records, one run each (besides the serial run)")
    parser.add_argument("--processes", type=int, nargs="*", default=[1],
                        help="worker processes checking signatures, one run each")
    parser.add_argument("--entries", type=int, default=1_000_000, help="ledger entries for the ledger figures")
    parser.add_argument("--entry-bytes", type=int, default=256)
    parser.add_argument("--samples", type=int, default=5_000, help="proofs timed")
    parser.add_argument("--quick", action="store_true",
                        help="10^4 records and a 10^5-entry ledger (not the targets' size)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.records, args.entries, args.samples = 10_000, 100_000, 1_000
    run = Run.start()
    print(run.header("ingest benchmark (issue 2, item 6)"), flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        figures = ingest_figures(Path(workdir), args.records, args.issuers, args.batch, args.threads, args.processes)
        for f in figures:
            print(f.line(), flush=True)
        print(f"building a {args.entries:,}-entry ledger ...", flush=True)
        ledger_figures = ledger_bench.run(Path(workdir), args.entries, args.entry_bytes, 10_000, args.samples)
    for f in ledger_figures:
        print(f.line())
    print(run.footer())
    return 1 if any(f.passed() is False for f in figures + ledger_figures) else 0


if __name__ == "__main__":
    sys.exit(main())
