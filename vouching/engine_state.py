"""The trust engine's record-derived state (vouching.scoring.TrustEngine) as plain values and back: what a replay of
records builds (orgs, agents, vouches, evidence and deviation columns, equivocators), not what the full recompute or
reads derive from it (credibility, reputation, verdicts, caches), which a recompute after loading makes anew.

`capture` and `restore` walk the tables below: an attribute the engine adds is one entry in one of them (and a bump
of the file's format, node.engine_snapshot.FORMAT). tests/vouching/test_engine_state.py fails for an attribute that
is in neither a table nor `_DERIVED`. Columns (array.array attributes, vouching.arrays.array_columns) are taken
whole, by name, as arrays (node.engine_snapshot writes their bytes as they are and reads them straight back into
arrays): a column added to a store is captured with no entry here, and a state missing one is refused.
"""

from __future__ import annotations

import dataclasses
import itertools
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from .arrays import array_columns
from .deviation import DeviationTest
from .evidence import EvidenceStore
from .scoring import STALE_BARRED, TrustEngine, flat_pairs, latest_vouches, paired
from .vouches import Vouch, VouchBook, latest_key, latest_of, vouch_key


class StateMismatch(ValueError):
    """A captured state this engine cannot take (other parameters, roots or columns); says which."""


def _same(value: Any) -> Any:
    return value


def _tuples(value: list) -> list[tuple]:
    return [tuple(item) for item in value]


def _sorted(value: set) -> list:
    return sorted(value)


# TrustEngine attributes a replay of records sets: name -> (to a plain value, back). Ints, floats, strs and lists of
# them are CBOR as they are.
ENGINE_FIELDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "_orgs": (_same, list),
    "_org_index": (_same, dict),
    "_by_did": (_same, _tuples),
    "_weights": (_same, list),
    "_voucher_weights": (_same, list),
    "_groups": (_same, list),
    "_agent_dids": (_same, list),
    "_equivocators": (_sorted, set),
    "_merged": (_sorted, set),
    "_version": (_same, int),
    "org_changes": (_same, int),
    "_graph_edits": (_same, int),
    "_own": (_same, int),
    "_roots": (_same, list),
    "_chain_times": (_same, dict),
    "_rotation_halves": (_same, dict),
    "_rotation_links": (_same, dict),
}
# TrustEngine attributes kept per agent and captured as an agent's row (`_caches` is not: the reads make it anew).
AGENT_FIELDS = ("_pairs", "_scoped", "_stamps", "_agent_vouches")
# TrustEngine attributes made elsewhere: by the constructor from its arguments, here by hand (the stores, agents and
# digest ids below), or by the full recompute and reads, which a loaded engine's first recompute makes anew.
_DERIVED = frozenset({
    "params", "own_org", "epoch_ms", "_source_cap", "_cold_score",  # the constructor's
    "_agent_index", *AGENT_FIELDS, "_caches", "_vouches", "_evidence", "_deviation", "_seen_digests",  # below
    "_barred",  # below, stale, from the agents' latest vouches
    "_credibility", "_accountability", "_agreements", "_disagreements", "_reputation", "_edges", "_full_weight",
    "_graph_seen", "_edges_span", "_stamp", "_copying", "_recomputed", "_discredited",  # the recompute's and reads'
})
VOUCH_FIELDS = tuple(f.name for f in dataclasses.fields(Vouch))
DEVIATION_FIELDS = ("_wide", "_tested_upto")  # DeviationTest attributes beside its columns
# DeviationTest attributes only its `counts` sets, which an engine captured has never run (`capturing` refuses one
# recomputed): a loaded engine's first recompute sets them anew.
DEVIATION_DERIVED = ("_reference",)
# Agents, vouches or latest vouches (one an agent, issuer and basis) `capturing` takes between two yields: some 2 ms
# of Python (2 us an agent, of 1.5*10^5 a flood made: benchmarks/adopt_rebuild.py --flood).
CAPTURE_CHUNK = 1_000
# What `letting_go` empties of an engine: the TrustEngine's and its VouchBook's lists, dicts and sets of an item an
# agent or a vouch, each the engine's own (not, say, the parameters' basis weights, which the VouchBook shares).
_LET_GO = (("_pairs", "_scoped", "_stamps", "_agent_vouches", "_barred", "_caches", "_agent_index",
            "_agent_dids"),
           ("by_id", "_pending", "_latest", "org_vouches"))
# Bytes of columns `capturing` copies between two yields: some 0.5 ms (at 10^5 agents the columns are 32 MB, which
# copied at once held the loop 13-17 ms: benchmarks/engine_capture.py).
COPY_BYTES = 1 << 20


def capture(engine: TrustEngine, *, copy: bool = True) -> dict[str, Any]:
    """The engine's record-derived state as CBOR-ready values and columns (copies, its lists and dicts too: the
    engine may go on taking records; with `copy` False, its columns and lists themselves, of an engine that takes no
    more). Only of an engine that has fed records alone: a recompute or a read would have set state a capture leaves
    out. `capturing` at once."""
    return drained(capturing(engine, copy=copy))


def capturing(engine: TrustEngine, *, copy: bool = True) -> Generator[None, None, dict[str, Any]]:
    """`capture`, yielding after each COPY_BYTES of columns copied and each CAPTURE_CHUNK agents, vouches or latest
    vouches, for a caller on an event loop to let it run in between; returns the state. The engine must take nothing
    until it returns (a dict it walks raises if it grows)."""
    if engine._stamp or engine._recomputed is not None or engine._graph_seen:
        raise RuntimeError("capture: the engine has been recomputed or read; only a replay's state is captured")
    book = engine._vouches
    # Rows as tuples of numbers, strings and bytes (CBOR arrays, as lists are), which the garbage collector untracks:
    # as lists, a capture's 4 to 6 an agent, and their copies as it is written (node.engine_snapshot), were most of
    # what a full collection walked during a rebuild (benchmarks/adopt_rebuild.py).
    agents: list[tuple] = []
    vouches: list[tuple] = []
    latest: list[tuple] = []
    state: dict[str, Any] = {
        "params": _params(engine),
        "own_org": engine.own_org,
        "engine": {name: _copied(out(getattr(engine, name)), copy) for name, (out, _) in ENGINE_FIELDS.items()},
        "agents": agents,
        "vouches": vouches,
        "vouch_columns": array_columns(book),  # (copied below if `copy`, as the evidence's and deviation's)
        "pending_revokes": [[record_id, issuer, ts] for record_id, revokes in book._pending.items()
                            for issuer, ts in revokes.items()],
        "latest_vouches": latest,
        "org_vouches": book.org_vouches[:],
        "evidence": array_columns(engine._evidence),
        "deviation": array_columns(engine._deviation),
        "deviation_wide": engine._deviation._wide,
        "deviation_tested_upto": engine._deviation._tested_upto,
    }
    yield
    if copy:
        for columns in (state["vouch_columns"], state["evidence"], state["deviation"]):
            for name, column in columns.items():
                columns[name] = yield from _copy_of(column)
        state["deviation_wide"] = yield from _copy_of(state["deviation_wide"])
    yield from _in_chunks(agents, ((flat_pairs(pairs), a in engine._scoped, stamp, tuple(latest_vouches(vouches)))
                                   for a, (pairs, stamp, vouches)
                                   in enumerate(zip(engine._pairs, engine._stamps, engine._agent_vouches))))
    yield from _in_chunks(vouches, book.by_id.values())  # (rows of VOUCH_FIELDS as they are)
    yield from _in_chunks(latest, ((*latest_of(key), column) for key, column in book._latest.items()))
    return state


def restore(state: dict[str, Any], engine: TrustEngine, seen_digests: Iterable[bytes]) -> None:
    """Make `engine`, fresh from its constructor, hold `state` (a `capture`), and as counted digests the record ids
    `seen_digests` (SeenIds keeps fingerprints under a key of the process, so they are not captured: the caller
    names the digests the captured records hold). StateMismatch, leaving the engine unusable, if the state is of
    other scoring parameters, another own org or roots (the orgs the engine's constructor made of them, each key as
    its org: whichever key of an org was configured), or columns or a platform this engine does not have.
    `restoring` at once."""
    drained(restoring(state, engine, seen_digests))


def restoring(state: dict[str, Any], engine: TrustEngine,
              seen_digests: Iterable[bytes]) -> Generator[None, None, None]:
    """`restore`, yielding after each CAPTURE_CHUNK agents indexed, vouches, latest vouches or agents, for a caller on
    an event loop to let it run in between (in a worker thread, its Python held the GIL from the loop: a flood's batch
    of 0.1 s took 0.4-0.6 s, benchmarks/snapshot_forward.py; the index of every agent at once, 18 ms of a step at
    1.2*10^5 agents). The engine is unusable until it returns."""
    if _plain(state["params"]) != _params(engine):  # (a snapshot's long lists come back as tuples)
        raise StateMismatch("the scoring parameters differ")
    fields = state["engine"]
    if state["own_org"] != engine.own_org or fields["_own"] != engine._own or fields["_roots"] != engine._roots \
            or fields["_orgs"][:len(engine._orgs)] != engine._orgs:
        raise StateMismatch("the own org or the roots differ")
    for name, (_, back) in ENGINE_FIELDS.items():
        setattr(engine, name, back(fields[name]))
    engine._agent_index = {}
    for start, dids in zip(itertools.count(0, CAPTURE_CHUNK), _chunks(engine._agent_dids)):
        engine._agent_index.update(zip(dids, itertools.count(start)))
        yield
    book = engine._vouches
    _set_columns(book, state["vouch_columns"])
    book.by_id = {}
    for rows in _chunks(state["vouches"]):
        book.by_id.update((row[0], row) for row in map(_vouch, rows))
        yield
    book._pending = {}
    for record_id, issuer, ts in state["pending_revokes"]:
        book._pending.setdefault(record_id, {})[issuer] = ts
    book._latest = {}
    for rows in _chunks(state["latest_vouches"]):
        book._latest.update((latest_key(agent, issuer, basis), column) for agent, issuer, basis, column in rows)
        yield
    book.org_vouches = [book.by_id[record_id][0] for record_id in state["org_vouches"]]
    if len(engine._agent_dids) != len(state["agents"]):
        raise StateMismatch("the agents and their rows differ in number")
    for start, rows in zip(itertools.count(0, CAPTURE_CHUNK), _chunks(state["agents"])):
        for a, (pairs, scoped, stamp, vouches) in enumerate(rows, start):
            engine._pairs.append(dict(paired(pairs)))
            engine._stamps.append(stamp)
            engine._agent_vouches.append({vouch_key(issuer, basis): book.by_id[record_id][0]  # (its bytes, not a copy)
                                          for issuer, basis, record_id in vouches})
            if any(basis == "operator" for _, basis, _ in vouches):
                engine._barred[a] = STALE_BARRED
            engine._caches.append(None)
            if scoped:
                engine._scoped.add(a)
        yield
    _set_columns(engine._evidence, state["evidence"])
    _set_columns(engine._deviation, state["deviation"])
    engine._deviation._wide = _column(state["deviation_wide"], engine._deviation._wide.typecode)
    engine._deviation._tested_upto = state["deviation_tested_upto"]
    for record_id in seen_digests:
        engine._seen_digests.add(record_id)


def letting_go(state: dict[str, Any] | None = None, engine: TrustEngine | None = None) -> Generator[None, None, None]:
    """Empty the lists, dicts and sets of `state` (a `capture`, or a snapshot's state once restored), in it and in its
    dicts, and `engine`'s of an item an agent or a vouch (_LET_GO), CAPTURE_CHUNK items at a time from their ends,
    yielding after each, for a caller on an event loop that is done with them: what they hold, let go of at once, an
    object or more an agent, a vouch and a row, held the loop 150-250 ms at 1.2*10^5 agents (a running node's
    bring-forward, benchmarks/snapshot_forward.py). Of a capture with `copy` False, the engine's own are emptied:
    neither is of use after."""
    if state is not None:
        yield from _emptying_in(state)
    if engine is not None:
        for holder, names in ((engine, _LET_GO[0]), (engine._vouches, _LET_GO[1])):
            yield from _emptying_in({name: getattr(holder, name) for name in names})


def _emptying_in(holder: dict) -> Generator[None, None, None]:
    """`letting_go` of the lists, dicts and sets among the values of `holder` (those in a dict first), not of it,
    yielding after each CAPTURE_CHUNK of its values looked at too (a dict of a vouch an item holds no list)."""
    for looked, value in enumerate(holder.values(), 1):
        if isinstance(value, dict):
            yield from _emptying_in(value)
        if isinstance(value, list):
            while value:
                del value[-CAPTURE_CHUNK:]
                yield
        elif isinstance(value, (dict, set)):
            pop = value.popitem if isinstance(value, dict) else value.pop
            while value:
                for _ in range(min(CAPTURE_CHUNK, len(value))):
                    pop()
                yield
        if looked % CAPTURE_CHUNK == 0:
            yield


def _vouch(values: list) -> tuple:
    """A captured vouch as VouchBook keeps it (Vouch.row)."""
    vouch = Vouch(**dict(zip(VOUCH_FIELDS, values, strict=True)))
    if vouch.scope is not None:
        vouch.scope = tuple(vouch.scope)  # (CBOR has lists only)
    return vouch.row()


def _params(engine: TrustEngine) -> list:
    """The scoring parameters as a plain value, to compare: a change of any makes a replay count otherwise."""
    return _plain(dataclasses.asdict(engine.params))


def _plain(value: Any) -> Any:
    """`value` as CBOR gives it back: tuples as lists, dicts as sorted [key, value] lists."""
    if isinstance(value, dict):
        return sorted([key, _plain(item)] for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _chunks(rows: list) -> Iterator[list]:
    """`rows` CAPTURE_CHUNK at a time (`restoring`)."""
    return (rows[start:start + CAPTURE_CHUNK] for start in range(0, len(rows), CAPTURE_CHUNK))


def drained(steps: Generator[None, None, Any]) -> Any:
    """What a generator of `capturing`'s or `restoring`'s kind (or node.engine_snapshot's `encoding`, ...) returns,
    run at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _in_chunks(into: list, rows: Iterable[tuple]) -> Generator[None, None, None]:
    """Add `rows` to `into`, yielding after each CAPTURE_CHUNK of them (`capturing`)."""
    rows = iter(rows)
    while chunk := list(itertools.islice(rows, CAPTURE_CHUNK)):
        into += chunk
        yield


def _copied(value: Any, copy: bool) -> Any:
    """A list or dict of the engine's (its orgs, agents' dids, ...), copied if `copy`: an org or agent the engine
    takes after the capture would join the captured list, which no longer matched the capture's agents and columns."""
    return value.copy() if copy and isinstance(value, (list, dict)) else value


def _copy_of(column: array) -> Generator[None, None, array]:
    """A copy of `column`, made COPY_BYTES at a time, yielding after each (`capturing`). A view of the column is held
    during a copy alone: one held across a yield would keep the engine from growing the column after an abandoned
    capture."""
    copy = array(column.typecode)
    for start in range(0, len(column) * column.itemsize, COPY_BYTES):
        with memoryview(column) as view, view.cast("B") as raw:
            copy.frombytes(raw[start:start + COPY_BYTES])
        yield
    return copy


def _column(value: Any, typecode: str) -> array:
    if not isinstance(value, array) or value.typecode != typecode:
        raise StateMismatch(f"a column is not of type {typecode!r}")
    return value


def _set_columns(store: EvidenceStore | DeviationTest | VouchBook, columns: dict[str, array]) -> None:
    """Put `columns` (taken, not copied) in place of the store's (fresh, so empty) ones: the same names and types."""
    mine = array_columns(store)
    if set(columns) != set(mine):
        raise StateMismatch(f"the columns of a {type(store).__name__} differ")
    vars(store).update({name: _column(column, mine[name].typecode) for name, column in columns.items()})
