"""`vouchnet audit export` and `vouchnet audit verify` of one agent's events over many digested epochs (DESIGN §4,
§7): the time and peak memory of export_agent and verify_export, and the time per exported event, which stays flat
as the epochs grow when each epoch's entries are found by bisection (scanning every entry for each epoch, the time
per event grew with the epochs: hours for a year of hourly epochs).

The audit log and digests.db are written directly (entries, and one done row per epoch), as the digester leaves
them; no digest is signed. Usage: python benchmarks/audit_export.py [--epochs N] [--events K] [--others M].
"""

from __future__ import annotations

import argparse
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey  # noqa: E402

from node.audit_export import export_agent, verify_export  # noqa: E402
from node.audit_log import AuditLog  # noqa: E402
from node.digests import DigestState  # noqa: E402
from node.events import SALT_SIZE, Event, encode_entry  # noqa: E402
from vouching import did_key  # noqa: E402

HOUR_MS = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01, an epoch boundary


def build(directory: Path, agent: str, epochs: int, events: int, others: int) -> tuple[AuditLog, DigestState]:
    """An audit log of `epochs` hourly epochs, each with `events` of `agent` and `others` of other agents."""
    audit, state = AuditLog.open(directory), DigestState.open(directory)
    strangers = [did_key(bytes(SigningKey.generate().verify_key)) for _ in range(8)]
    for epoch in range(epochs):
        start = T0 + epoch * HOUR_MS
        batch = [encode_entry(Event(agent, start + i, "tool", "search", "ok"), start + i,
                              secrets.token_bytes(SALT_SIZE)) for i in range(events)]
        batch += [encode_entry(Event(strangers[i % 8], start + events + i, "mcp", "read", "error"),
                               start + events + i, secrets.token_bytes(SALT_SIZE)) for i in range(others)]
        first = audit.ledger.append(batch)
        state.begin(start, start + HOUR_MS, first, first + len(batch), 0)
        state.finish(start)
    return audit, state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2000, help="hourly epochs digested")
    parser.add_argument("--events", type=int, default=20, help="the exported agent's events per epoch")
    parser.add_argument("--others", type=int, default=20, help="other agents' events per epoch")
    args = parser.parse_args()
    agent, key = did_key(bytes(SigningKey.generate().verify_key)), SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        audit, state = build(Path(tmp), agent, args.epochs, args.events, args.others)
        began = time.perf_counter()
        document = export_agent(audit, state, key=key, org=did_key(bytes(key.verify_key)), network="bench",
                                agent=agent, start=T0, end=T0 + args.epochs * HOUR_MS)
        exported = time.perf_counter() - began
        began = time.perf_counter()
        verified = verify_export(document)
        checked = time.perf_counter() - began
        audit.close()
        state.close()
    count = len(verified.events)
    assert count == args.epochs * args.events and len(verified.epochs) == args.epochs
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count:,} events in {args.epochs:,} epochs of a log of {audit.size:,} entries")
    print(f"  export: {exported:.2f} s ({exported / count * 1e6:.0f} us an event)")
    print(f"  verify: {checked:.2f} s ({checked / count * 1e6:.0f} us an event)")
    print(f"  peak memory of the process: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
