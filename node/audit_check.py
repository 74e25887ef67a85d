"""The whole private audit log re-checked (DESIGN §4, §7), for `vouchnet audit check` after a crash or a disk
incident: every entry re-hashed and decoded, the RFC 9162 tree rebuilt and compared with every hash the ledger
stores, acceptance times in order, digests.db's digested epochs against the entries, and every digest the org signed
against the entries its evidence_root and counts commit to (node.digests). It only reads, so it runs beside a node.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ledger import Ledger, LedgerError, StoredHashCheck, leaf_hash
from vouching import DigestBody, Record
from vouching.bodies import CATEGORIES, OUTCOMES
from vouching.counts import counted

from .digests import Tally
from .events import InvalidEvent, decode_entry

PAGE = 1000  # entries read at once
Progress = Callable[[int, int], None]
Epoch = tuple[int, int, int, int, bool]  # a digests.db row: (start, end, first, stop, done), node.digests.DigestState


@dataclass
class Problems:
    """What is wrong, in the order found: `count` of them, the first `keep` said in `named`."""

    keep: int = 20
    count: int = 0
    named: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.count += 1
        if len(self.named) < self.keep:
            self.named.append(problem)


@dataclass(frozen=True)
class AuditCheck:
    """What `check_audit_log` found: the log's size and how many entries were pruned to their hashes (their bytes
    cannot be re-checked), the stored hashes compared, the digested epochs and digests checked, the digests of
    pruned epochs left unchecked, and the problems (none: the log is intact)."""

    size: int
    pruned: int
    hashes: int
    epochs: int
    digests: int
    digests_pruned: int
    problems: Problems


def check_audit_log(ledger: Ledger, epochs: Sequence[Epoch], digests: Iterable[Record], *,
                    progress: Progress | None = None, keep: int = 20) -> AuditCheck:
    """Check the audit log `ledger` against itself, against `epochs` (digests.db's rows) and against `digests`
    (the org's digest records, under any of its keys, in the order the records ledger holds them), which are read
    as the walk of the entries reaches their epochs: as the node issues them, epoch by epoch, only those of the epochs
    being tallied are held (3.2 KB a digest: all those of 180 days of hourly epochs of 100 agents would take 1.4 GB).
    Digests stored out of that order (taken back from peers after a restore) are compared after, in a second read of
    the entries. Raises LedgerError only if the ledger cannot be read."""
    problems = Problems(keep)
    size, pruned = ledger.size, ledger.pruned
    epochs = sorted(epochs)
    _check_epoch_rows(epochs, size, problems)
    kept_from = _kept_from(ledger, epochs)
    spans = {(start, end - start) for start, end, _, _, done in epochs if done and start >= kept_from}
    walk = _Walk(epochs, spans, _DigestReader(digests, kept_from), problems)
    tree = StoredHashCheck(ledger, size, keep=keep)
    for start in range(0, pruned, PAGE):  # their bytes are gone: their leaf hashes are checked against the tree only
        for leaf in ledger.stored_hashes(0, start, min(start + PAGE, pruned)):
            tree.add(leaf)
    for start in range(pruned, size, PAGE):
        stop = min(start + PAGE, size)
        for index, entry in _entries(ledger, start, stop, problems):
            if entry is None:  # its stored leaf hash stands in for it: the rest of the tree is still checked
                tree.add(ledger.stored_hashes(0, index, index + 1)[0])
                continue
            tree.add(leaf_hash(entry))
            walk.entry(index, entry)
        if progress is not None:
            progress(stop, size)
    for level, index in tree.wrong:
        problems.add(_wrong_hash(level, index))
    problems.count += tree.mismatches - len(tree.wrong)  # not named: StoredHashCheck keeps the first `keep`
    walk.finish()
    if walk.late:
        by_epoch = sorted(walk.late, key=lambda record: record.body.epoch)  # so none is late again
        late = _Walk([], set(), _DigestReader(by_epoch, kept_from), problems, log_checks=False)
        for start in range(pruned, size, PAGE):
            for index, entry in _entries(ledger, start, min(start + PAGE, size), Problems(0)):  # (named above)
                if entry is not None:
                    late.entry(index, entry)
        late.finish()
        walk.checked += late.checked
        signed = {((record.body.epoch, record.body.length), record.body.agent) for record in walk.late}
        walk.unsigned = {key: found for key, found in walk.unsigned.items() if key not in signed}
    for (span, agent), (shown, count) in walk.unsigned.items():
        problems.add(f"entries {_named(shown, count)} of {agent}, in the epoch [{span[0]}, {span[0] + span[1]}): the "
                     "org signed no digest of them, though digests.db says all its digests were issued")
    return AuditCheck(size, pruned, tree.checked, len(epochs), walk.checked, walk.digests.unchecked, problems)


def _entries(ledger: Ledger, start: int, stop: int, problems: Problems) -> Iterator[tuple[int, bytes | None]]:
    """(index, bytes) of entries [start, stop), a page at once; where the page cannot be read (a row of them lost or
    damaged), one at a time, each that cannot be read named and given as None."""
    try:
        yield from enumerate(ledger.entries(start, stop), start)
        return
    except LedgerError:
        pass
    for index in range(start, stop):
        try:
            entry: bytes | None = ledger.entry(index)
        except LedgerError as error:
            problems.add(f"entry {index}: cannot be read ({error})")
            entry = None
        yield index, entry


def _wrong_hash(level: int, index: int) -> str:
    """The problem of a stored hash that is not the RFC 9162 hash of the entries below it (ledger.tree_check)."""
    if level == 0:
        return (f"entry {index}: its bytes do not hash to the leaf hash the ledger stores for it (its proofs and the "
                "roots over it were computed from that hash): the entry or the stored hash was changed")
    return (f"the stored hash at level {level} index {index} (over entries {index << level} to "
            f"{((index + 1) << level) - 1}) is not the hash of the entries below it: proofs through it fail")


def _check_epoch_rows(epochs: Sequence[Epoch], size: int, problems: Problems) -> None:
    """Each digested epoch's entries lie in the log, after the previous epoch's."""
    previous = 0
    for start, end, first, stop, _ in epochs:
        where = f"digests.db: the epoch [{start}, {end}) digested entries {first} to {stop - 1}"
        if stop > size:
            problems.add(f"{where}, but the log ends at entry {size - 1}: it lost entries it held (or digests.db is "
                         "of a later copy)")
        elif not previous <= first < stop:
            problems.add(f"{where}, not after the entries of the epoch before (to {previous - 1})")
        previous = max(previous, stop)


def _kept_from(ledger: Ledger, epochs: Sequence[Epoch]) -> int | float:
    """The earliest epoch start whose entries retention has pruned none of (node.retention prunes digested entries
    only: those of the interval holding the last pruned one, at the latest)."""
    pruned = ledger.pruned
    if not pruned:
        return -1
    holding = [end for _, end, first, stop, _ in epochs if first < pruned <= stop]
    if holding:
        return holding[0]
    if pruned == ledger.size:
        return float("inf")
    try:
        return decode_entry(ledger.entry(pruned))[0] + 1  # the entries before it were accepted no later
    except InvalidEvent:
        return float("inf")  # named by the walk


Span = tuple[int, int]  # a digest's interval: (epoch, length)


class _DigestReader:
    """The org's digests, read one ahead as the walk asks for those of epochs it reached; those of epochs retention
    pruned entries of are counted (`unchecked`), not given."""

    def __init__(self, digests: Iterable[Record], kept_from: int | float) -> None:
        self._source = (record for record in digests if isinstance(record.body, DigestBody))
        self._kept_from = kept_from
        self._next: Record | None = None
        self.unchecked = 0

    def until(self, at: int | float) -> Iterator[Record]:
        """The digests read next whose epoch begins at `at` or before, up to the first that does not (kept next)."""
        while (record := self._peek()) is not None and record.body.epoch <= at:
            self._next = None
            if record.body.epoch < self._kept_from:
                self.unchecked += 1
            else:
                yield record

    def _peek(self) -> Record | None:
        if self._next is None:
            self._next = next(self._source, None)
        return self._next


class _Walk:
    """Entries in log order, checked for order and against the digested epochs (unless `log_checks` is false), and
    against the digests; each digest's epoch, and each epoch digests.db says all its digests were issued (`spans`),
    tallied as its entries pass and compared once they have passed (`checked` counts the digests compared). A digest
    read after the walk passed the start of its epoch, untallied or compared already, is left in `late`; an agent
    with entries and no digest in an epoch whose digests were all issued, in `unsigned` (a late digest may be its)."""

    def __init__(self, epochs: Sequence[Epoch], spans: set[Span], digests: _DigestReader, problems: Problems, *,
                 log_checks: bool = True) -> None:
        self._epochs = epochs
        self._epoch_starts = [row[0] for row in epochs]
        self._epoch_firsts = [row[2] for row in epochs]
        self._done = {row[0]: row[4] for row in epochs}
        self._expected: dict[Span, dict[str, list[Record]]] = {span: {} for span in spans}
        self._spans = sorted(spans)
        self._span_starts = [span[0] for span in self._spans]
        self._compared: set[Span] = set()
        self._open: dict[Span, dict[str, tuple[Tally, list[int]]]] = {}  # spans being tallied: agent -> tally, entries
        self._problems = problems
        self._log_checks = log_checks
        self._last: tuple[int, int] | None = None  # (index, at) of the last entry decoded
        self._passed = -1  # the latest acceptance time walked past
        self.digests = digests
        self.checked = 0
        self.late: list[Record] = []
        self.unsigned: dict[tuple[Span, str], tuple[list[int], int]] = {}  # the first entries, and how many

    def entry(self, index: int, entry: bytes) -> None:
        """Check entry `index` (its bytes `entry`) and tally it into its digests' epoch, if it is in one."""
        try:
            at, event = decode_entry(entry)
        except InvalidEvent as error:
            if self._log_checks:
                self._problems.add(f"entry {index}: not an audit entry ({error})")
            return
        if self._log_checks:
            if self._last is not None and at < self._last[1]:
                self._problems.add(f"entry {index}: accepted at {at}, before entry {self._last[0]} ({self._last[1]}): "
                                   "acceptance times never decrease along the log")
            self._check_epoch(index, at)
        self._last = index, at
        self._take(at)
        self._passed = max(self._passed, at)
        i = bisect_right(self._span_starts, at) - 1
        if i < 0 or at >= self._spans[i][0] + self._spans[i][1]:
            return
        span = self._spans[i]
        for earlier in [other for other in self._open if other < span]:  # passed: times never decrease in a sound log
            self._compare(earlier)
        tally, indexes = self._open.setdefault(span, {}).setdefault(event.agent, (Tally(), []))
        tally.add(event, entry)
        indexes.append(index)

    def _take(self, at: int | float) -> None:
        """Read the digests of the epochs beginning at `at` or before, each into its epoch's (or `late`)."""
        for record in self.digests.until(at):
            body = record.body
            span = (body.epoch, body.length)
            if span in self._compared or (span not in self._expected and body.epoch <= self._passed):
                self.late.append(record)
                continue
            if span not in self._expected:
                self._expected[span] = {}
                i = bisect_right(self._spans, span)
                self._spans.insert(i, span)
                self._span_starts.insert(i, span[0])
            self._expected[span].setdefault(body.agent, []).append(record)

    def _check_epoch(self, index: int, at: int) -> None:
        """The entry lies in the digested epoch digests.db says holds it, and no other."""
        by_time = bisect_right(self._epoch_starts, at) - 1
        if by_time >= 0 and at >= self._epochs[by_time][1]:
            by_time = -1
        by_index = bisect_right(self._epoch_firsts, index) - 1
        if by_index >= 0 and index >= self._epochs[by_index][3]:
            by_index = -1
        if by_time == by_index:
            return
        said = []
        if by_time >= 0:
            start, end, first, stop, _ = self._epochs[by_time]
            said.append(f"in the epoch [{start}, {end}), which digests.db digested as entries {first} to {stop - 1}, "
                        "without it")
        if by_index >= 0:
            start, end, first, stop, _ = self._epochs[by_index]
            said.append(f"outside the epoch [{start}, {end}) digests.db digested it in (entries {first} to "
                        f"{stop - 1})")
        self._problems.add(f"entry {index}: accepted at {at}, " + "; and ".join(said))

    def finish(self) -> None:
        """Read the digests left and compare every epoch not compared yet (those no entry reached, too)."""
        self._take(float("inf"))
        for span in sorted(self._expected):
            self._compare(span)

    def _compare(self, span: Span) -> None:
        """Compare the digests of `span` with its tallies, once; then forget both."""
        tallies = self._open.pop(span, {})
        expected = self._expected.pop(span, None)
        if expected is None:
            return
        self._compared.add(span)
        epoch = f"epoch [{span[0]}, {span[0] + span[1]})"
        for agent, records in expected.items():
            tally, indexes = tallies.get(agent, (None, []))
            for record in records:
                self.checked += 1
                problem = _digest_problem(record.body, tally, indexes)
                if problem:
                    self._problems.add(f"digest {record.id.hex()} of {agent} for the {epoch}: {problem}")
        if self._done.get(span[0]):
            for agent in sorted(tallies.keys() - expected.keys()):
                indexes = tallies[agent][1]
                self.unsigned[span, agent] = indexes[:5], len(indexes)


def _digest_problem(body: DigestBody, tally: Tally | None, indexes: list[int]) -> str:
    """What the digest states that the log's entries of its agent and epoch do not (empty: nothing)."""
    if tally is None:
        return "the log holds none of the agent's entries in that epoch: they were lost"
    if tally.tree.root() != body.evidence_root:
        return (f"its evidence_root is not the hash of the log's {counted(len(indexes), 'entry', 'entries')} of the "
                f"agent in that epoch ({_named(indexes, len(indexes))}): an entry of that epoch was lost, added or "
                "changed")
    if body.dp_epsilon is None and (dict(zip(OUTCOMES, tally.outcomes)), dict(zip(CATEGORIES, tally.categories)),
                                    dict(zip(OUTCOMES, tally.high_risk))) != (
            dict(body.outcomes), dict(body.categories), dict(body.high_risk)):
        return f"its counts differ from those of the log's entries ({_named(indexes, len(indexes))})"
    return ""


def _named(indexes: list[int], count: int) -> str:
    """`count` entry indexes, beginning with `indexes`, as a reader takes them in: the first few, and how many more."""
    shown = ", ".join(map(str, indexes[:5]))
    return shown + (f" and {count - 5} more" if count > 5 else "")
