"""CPU a hostile org inside the horizon can make a node's trust engine spend (the scoring review): figures, no
targets; not a test. Each attack is fed twice, with the engine's CPU time at growing sizes (linear growth is bounded,
quadratic is not): with a score read after each record, as a caller reading every change would, and as node.trust
reads (`TrustService._announce_soon`): after each record, but while an org-level change awaits its prompt
recompute, only once that recompute ran, modelled as one every RATE records (records arriving at RATE a second,
the recompute PROMPT_RECOMPUTE_S after the first). Then, what a further record about the victim from one of that
many fresh keys costs, each key having vouched for it and reported on it.
Last, what listing the orgs (GET /v1/orgs, no token) costs once an org vouched for that many fresh keys: one page
of the API's default size and of its largest, and every org, as a caller paging through at the largest gets them.
With --answers, what one answer about an agent or an org costs (GET .../score explains by default, no token) once
that many fresh keys of the org each vouch for the agent and for one other org: its JSON's size and the CPU to
build and serialise it, as the API does.

    python benchmarks/score_attacks.py                                # up to 8,000 records per attack
    python benchmarks/score_attacks.py --records 16000 --listing-only # the listing alone, up to 16,000 orgs
    python benchmarks/score_attacks.py --answers --records 1000,5000  # one answer at 1,000 and 5,000 keys
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import TypeAdapter  # noqa: E402

from node.api.records import DEFAULT_PAGE, MAX_PAGE  # noqa: E402
from vouching.evidence import Outcomes  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.scoring import TrustEngine  # noqa: E402


def _engine() -> TrustEngine:
    engine = TrustEngine("own", ["root"])
    engine.add_org_vouch("root", "attacker", 1.0, record_id=b"r" * 32, ts=0)
    return engine


RATE = 1000  # records a second the attacker's arrive at, for the reads node.trust makes


def _vouches_for_one_agent(engine: TrustEngine, n: int) -> int:
    engine.add_agent_vouch("attacker", "victim", 0.5, "developer", record_id=n.to_bytes(32, "big"), ts=n,
                           expires=10**12 + n)
    return n


def _sybil_vouches_between_digests(engine: TrustEngine, n: int) -> int:
    engine.add_org_vouch("attacker", f"sybil{n}", 0.5, record_id=n.to_bytes(32, "big"), ts=0)
    engine.add_digest("attacker", "victim", epoch=n * HOUR_MS, length=1000, outcomes=Outcomes(ok=1),
                      record_id=(1 << 40 | n).to_bytes(32, "big"), ts=n * HOUR_MS + 1000)
    return n * HOUR_MS + 1000


def _fresh_keys_vouching_for_one_agent(engine: TrustEngine, n: int) -> int:
    """Each fresh key, vouched for by the attacker (so inside the horizon), vouches for the victim: every read of the
    victim's score weighs each of its vouches, weightless ones too."""
    engine.add_org_vouch("attacker", f"sybil{n}", 0.5, record_id=n.to_bytes(32, "big"), ts=0)
    engine.add_agent_vouch(f"sybil{n}", "victim", 1.0, "audit", record_id=(1 << 40 | n).to_bytes(32, "big"), ts=n)
    return n


# Each feeds its n-th record(s), all about the agent "victim", and says when they arrived (the `now` to read at).
ATTACKS: dict[str, Callable[[TrustEngine, int], int]] = {
    "one org's vouches for one agent": _vouches_for_one_agent,
    "vouches for fresh keys between digests": _sybil_vouches_between_digests,
    "fresh keys' vouches for one agent": _fresh_keys_vouching_for_one_agent,
}


def _fed(attack: Callable[[TrustEngine, int], int], marks: list[int], as_node: bool) -> list[str]:
    """The engine's CPU time at each of `marks` records of `attack`, the victim's score read after each record, or
    (`as_node`) as node.trust reads it: at once unless an org-level change awaits the recompute, which runs every RATE
    records and reads it then."""
    engine, figures, start = _engine(), [], time.process_time()
    recomputed, deferred = engine.org_changes, False
    for n in range(1, marks[-1] + 1):
        now = attack(engine, n)
        if not as_node or engine.org_changes == recomputed:
            engine.score("victim", now=now)
        else:
            deferred = True
        if as_node and n % RATE == 0 and engine.org_changes != recomputed:
            engine.recompute(now=now)
            recomputed = engine.org_changes
            if deferred:
                engine.score("victim", now=now)
                deferred = False
        if n in marks:
            figures.append(f"{n}: {time.process_time() - start:.2f} s")
    return figures


def _further_records(keys: int) -> str:
    """The CPU per record of 1,000 records about the victim from the attacker's `keys` fresh keys once each vouched
    for it and reported on it (set up untimed): a key's vouch in place of its earlier one or its digest, alternately,
    each with a read at one `now`, as node.trust reads within a second."""
    engine, now = _engine(), 10**6
    for i in range(keys):
        engine.add_org_vouch("attacker", f"sybil{i}", 0.5, record_id=i.to_bytes(32, "big"), ts=0)
        engine.add_agent_vouch(f"sybil{i}", "victim", 1.0, "audit", record_id=(1 << 40 | i).to_bytes(32, "big"), ts=1)
        engine.add_digest(f"sybil{i}", "victim", epoch=0, length=1000, outcomes=Outcomes(ok=1),
                          record_id=(2 << 40 | i).to_bytes(32, "big"), ts=1000)
    engine.score("victim", now=now)
    start = time.process_time()
    for j in range(1000):
        record_id, key = (3 << 40 | j).to_bytes(32, "big"), f"sybil{j // 2 % keys}"
        if j % 2:
            engine.add_digest(key, "victim", epoch=1000, length=1000, outcomes=Outcomes(ok=1), record_id=record_id,
                              ts=2000)
        else:
            engine.add_agent_vouch(key, "victim", 0.5, "audit", record_id=record_id, ts=2)
        engine.score("victim", now=now)
    return f"{keys}: {(time.process_time() - start) * 1000:.0f} us"  # (1,000 records: ms in all, us each)


def _answers(keys: int) -> str:
    """One explained score of an agent and one org answer, each vouched for by `keys` fresh keys of the attacker:
    the JSON's size and the CPU of building and serialising it (the best of 5), as node.trust and the API do."""
    engine, now = _engine(), 10**6
    for i in range(keys):
        engine.add_org_vouch("attacker", f"sybil{i}", 0.5, record_id=i.to_bytes(32, "big"), ts=0)
        engine.add_agent_vouch(f"sybil{i}", "victim", 0.5, "developer", record_id=(1 << 40 | i).to_bytes(32, "big"),
                               ts=1)
        engine.add_org_vouch(f"sybil{i}", "target", 0.5, record_id=(2 << 40 | i).to_bytes(32, "big"), ts=1)
    engine.recompute(now=now)
    figures = []
    for name, answer in (("score", lambda: engine.explain("victim", now=now).as_dict()),
                         ("org", lambda: engine.org("target", now=now).as_dict())):
        times = []
        for _ in range(5):
            start = time.process_time()
            body = _JSON.dump_json(answer(), by_alias=True)
            times.append(time.process_time() - start)
        figures.append(f"{name} {len(body) / 1000:.1f} KB {min(times) * 1000:.1f} ms")
    return f"{keys} keys: " + ", ".join(figures)


_JSON = TypeAdapter(dict)  # as the API serialises an answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="8000",
                        help="records per attack (default 8000); with --answers, keys, comma-separated")
    parser.add_argument("--listing-only", action="store_true", help="time the listing of orgs alone")
    parser.add_argument("--answers", action="store_true", help="time one answer about an agent and an org alone")
    args = parser.parse_args()
    if args.answers:
        for keys in map(int, args.records.split(",")):
            print(_answers(keys))
        return
    args.records = int(args.records)
    marks = [args.records // 4 * k for k in range(1, 5)]
    for name, attack in ATTACKS.items() if not args.listing_only else ():
        for reads, as_node in (("a read after each", False), (f"as node.trust reads, {RATE}/s", True)):
            print(f"{name:42} {reads:28} " + ", ".join(_fed(attack, marks, as_node)))
    if not args.listing_only:
        print(f"{'a further record of one of the keys':42} {'a read after each, per record':28} "
              + ", ".join(map(_further_records, marks)))
    listings: dict[str, list[str]] = {f"a page of {DEFAULT_PAGE} orgs": [], f"a page of {MAX_PAGE} orgs": [],
                                      f"every org, in pages of {MAX_PAGE}": []}
    for n in marks:
        engine = _engine()
        for i in range(n):
            engine.add_org_vouch("attacker", f"sybil{i}", 0.5, record_id=i.to_bytes(32, "big"), ts=0)
        engine.orgs(now=1, limit=1)  # (the reputation refresh is the recompute's, not the listing's)
        for (name, figures), limit in zip(listings.items(), (DEFAULT_PAGE, MAX_PAGE)):
            start = time.process_time()
            engine.orgs(now=1, after=f"sybil{n // 2}", limit=limit)  # from the middle
            figures.append(f"{n}: {(time.process_time() - start) * 1000:.1f} ms")
        start, after = time.process_time(), None
        while page := engine.orgs(now=1, after=after, limit=MAX_PAGE):
            after = page[-1].org
        listings[f"every org, in pages of {MAX_PAGE}"].append(f"{n}: {time.process_time() - start:.3f} s")
    for name, figures in listings.items():
        print(f"{name:42} " + ", ".join(figures))


if __name__ == "__main__":
    main()
