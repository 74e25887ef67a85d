"""Forks in gossiped checkpoints (gossip.forks): a second root at a size an origin gossiped within the window is
reported with the first note as evidence, whatever the origin gossiped between the halves; what is remembered of an
origin is bounded by its pace, which an honest org's checkpoints never exceed."""

from __future__ import annotations

import functools
import hashlib
import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gossip.checkpoints import OrgCheckpoint, open_org_checkpoint
from gossip.forks import ForkDetector, Observed
from gossip.verdict import Verdict
from ledger import Checkpoint, Ed25519Signer, log_origin
from vouching import did_key

KEY = SigningKey(b"\x05" * 32)
DID = did_key(bytes(KEY.verify_key))
ORIGIN = log_origin("test", DID, "records")
ACCEPT, IGNORE = Observed(Verdict.ACCEPT), Observed(Verdict.IGNORE)


@functools.cache
def note(size: int, history: int = 0, *, key: SigningKey = KEY, extensions: tuple[str, ...] = ()) -> bytes:
    """The org's signed checkpoint at `size` of one of its histories (another history: another root)."""
    origin = log_origin("test", did_key(bytes(key.verify_key)), "records")
    root = hashlib.sha256(f"{history} {size}".encode()).digest()
    return Checkpoint(origin, size, root, extensions).sign([Ed25519Signer(origin, key)])


@functools.cache
def seen(size: int, history: int = 0, **kwargs) -> OrgCheckpoint:
    return open_org_checkpoint(note(size, history, **kwargs), "test")


def test_a_second_root_at_a_remembered_size_is_reported_with_the_first_note():
    forks = ForkDetector()
    assert forks.observe(seen(4), 0.0) == ACCEPT
    assert forks.observe(seen(4), 1.0) == IGNORE  # a repeat: nothing new
    assert forks.observe(seen(5), 2.0) == ACCEPT
    assert forks.observe(seen(4, history=1), 3.0) == Observed(Verdict.ACCEPT, note(4))  # relayed: all must see it
    assert forks.observe(seen(4, history=2), 4.0) == IGNORE  # it forked: evidence enough, and no flood of forks


def test_a_fork_gossiped_with_the_orgs_own_checkpoints_between_its_halves_is_caught():
    """A hostile org gossips one root at size 4, then checkpoints at made-up sizes as fast as it likes (nothing
    checks a size against anything), then another root at size 4 within the window: the first is still remembered
    (before, the 64 sizes seen last were, and 64 made-up ones pushed it out)."""
    forks = ForkDetector(window=600.0)
    assert forks.observe(seen(4), 0.0) == ACCEPT
    verdicts = [forks.observe(seen(size), (size - 1000) * 0.3).verdict for size in range(1000, 3000)]  # 3.3 a second
    assert verdicts.count(Verdict.ACCEPT) <= 3 + 600  # the rest over its pace: neither relayed nor remembered
    assert forks.observe(seen(4, history=1), 599.0) == Observed(Verdict.ACCEPT, note(4))


# A detector of a short window, so that examples cross it. An origin's gossip: (seconds since the last, size, history)
# with sizes mostly growing, as an org's that fills the memory would, or going back (stale), or kept (repeat, fork).
SHORT = {"window": 20.0, "rate": 1.0, "burst": 4.0}


@st.composite
def gossip(draw: st.DrawFn, min_size: int) -> list[tuple[float, int, int]]:
    waits = st.sampled_from([0.0, 0.1, 0.5, 1.0])  # (150 of them cross the window)
    steps = draw(st.lists(st.tuples(waits, st.integers(-3, 20), st.integers(0, 2)), min_size=min_size, max_size=150))
    sizes = itertools.accumulate((step for _, step, _ in steps), lambda size, step: max(0, size + step), initial=0)
    return [(wait, size, history) for (wait, _, history), size in zip(steps, list(sizes)[1:], strict=True)]


@settings(max_examples=100)
@given(gossip(min_size=30))
def test_what_is_remembered_of_an_origin_is_bounded_by_its_pace_whatever_it_gossips(gossiped):
    forks, now = ForkDetector(**SHORT), 0.0
    for wait, size, history in gossiped:
        now += wait
        forks.observe(seen(size, history), now)
        assert forks.entries(ORIGIN) <= forks.max_entries == 24


@settings(max_examples=200)
@given(st.integers(0, 40), gossip(min_size=10))
def test_a_fork_whose_halves_are_within_the_window_is_caught_whatever_comes_between(size, between):
    """Whatever the org gossips between the halves of its history 0 (another fork of it among them would be caught
    first), and however fast: the first half is remembered until the second comes, at the end of the window."""
    forks, now = ForkDetector(**SHORT), 0.0
    assert forks.observe(seen(size), now) == ACCEPT
    for wait, other, _ in between:
        now = min(19.9, now + wait)
        forks.observe(seen(other), now)
    assert forks.observe(seen(size, history=3), 19.9) == Observed(Verdict.ACCEPT, note(size))


def test_an_honest_orgs_checkpoints_one_a_second_and_growing_are_never_ignored():
    forks = ForkDetector(window=600.0)
    assert all(forks.observe(seen(size), float(size)) == ACCEPT for size in range(1, 1801))  # three windows


def test_repeats_and_replays_of_an_orgs_checkpoints_do_not_hold_up_its_new_ones():
    """Anyone can gossip an org's notes again: a repeat of one remembered, or an old one forgotten (smaller than its
    newest), is ignored and costs the org none of its pace."""
    forks = ForkDetector(window=600.0)
    for size in range(1, 1801, 10):  # every 10 s, growing: the old ones forgotten
        now = float(size)
        for replayed in range(1, size - 9, 7):
            assert forks.observe(seen(replayed), now) == IGNORE
        assert forks.observe(seen(size), now) == ACCEPT
        assert [forks.observe(seen(size), now) for _ in range(50)] == [IGNORE] * 50


def test_a_fork_whose_halves_are_more_than_the_window_apart_is_left_to_witnesses():
    """Witnesses refuse the second half (tests/ledger/test_witness.py: a fork of a cosigned log is refused at any
    size); here it is not caught, and not relayed, being smaller than the newest checkpoint of its origin."""
    forks = ForkDetector(window=600.0)
    forks.observe(seen(4), 0.0)
    forks.observe(seen(10), 1.0)
    assert forks.observe(seen(4, history=1), 601.0) == IGNORE


def test_the_newest_checkpoint_of_an_origin_is_kept_past_the_window_as_gossiped():
    forks = ForkDetector(window=600.0)
    for at, size in enumerate((5, 9, 7)):
        forks.observe(seen(size), float(at))
    assert forks.newest(ORIGIN) == (9, note(9))  # 7, smaller than the newest, was not remembered
    assert forks.newest(ORIGIN.replace("records", "other")) is None
    assert forks.observe(seen(5), 1000.0) == IGNORE  # forgotten: older than the newest
    assert (forks.entries(ORIGIN), forks.newest(ORIGIN)) == (1, (9, note(9)))
    assert forks.observe(seen(9, history=1), 1000.0) == Observed(Verdict.ACCEPT, note(9))


def test_a_checkpoint_with_extension_lines_is_not_remembered_but_is_compared():
    """vouchnet signs none, and its note could be 16 KiB: kept, it would cost 150 times a plain one."""
    forks = ForkDetector()
    assert forks.observe(seen(4, extensions=("x" * 1000,)), 0.0) == IGNORE
    assert forks.observe(seen(4), 1.0) == ACCEPT
    assert forks.observe(seen(4, history=1, extensions=("x",)), 2.0) == Observed(Verdict.ACCEPT, note(4))


def test_the_origins_seen_least_recently_are_forgotten_beyond_the_bound():
    keys = [SigningKey(bytes([k]) * 32) for k in (8, 9)]
    forks = ForkDetector(origins=2)
    forks.observe(seen(3), 0.0)
    for key in keys:
        forks.observe(seen(3, key=key), 0.0)
    assert forks.newest(ORIGIN) is None
    assert forks.observe(seen(3, history=1), 1.0) == ACCEPT  # the first origin was forgotten


def test_an_origin_at_its_bound_holds_about_112_bytes_a_checkpoint():
    forks = ForkDetector(window=600.0)
    gossiped = [seen(size) for size in range(forks.max_entries)]
    tracemalloc.start()
    try:
        for size, checkpoint in enumerate(gossiped):  # a burst, then one a second
            assert forks.observe(checkpoint, max(0.0, size - 3.0)) == ACCEPT
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert forks.entries(ORIGIN) == forks.max_entries == 604
    assert held < 128 * forks.max_entries  # sizes, times, roots and signatures packed; the origin's name and a note


@pytest.mark.parametrize("settings_", [{"window": 0.0}, {"rate": -1.0}, {"burst": 0.5}, {"origins": 0}])
def test_a_detector_needs_positive_settings(settings_):
    with pytest.raises(ValueError, match="positive"):
        ForkDetector(**settings_)
