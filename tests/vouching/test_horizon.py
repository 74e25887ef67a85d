"""The replication horizon: who is within max_hops of the roots, as vouches arrive, are revoked, or equivocate."""

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from vouching.horizon import Horizon


def _chain(h: Horizon, names: list[str]) -> None:
    for i, (a, b) in enumerate(zip(names, names[1:])):
        h.add_edge(bytes([i]) * 32, a, b)


def test_roots_are_inside_and_strangers_outside():
    h = Horizon(["root"], max_hops=3)
    assert "root" in h and h.hops("root") == 0
    assert "stranger" not in h and h.hops("stranger") is None


def test_a_chain_is_cut_at_max_hops():
    h = Horizon(["root"], max_hops=2)
    _chain(h, ["root", "a", "b", "c"])
    assert [h.hops(x) for x in ["a", "b", "c"]] == [1, 2, None]


def test_add_edge_reports_who_came_inside_including_transitively():
    h = Horizon(["root"], max_hops=3)
    h.add_edge(b"1" * 32, "a", "b")  # a is outside: nothing changes yet
    assert "b" not in h
    assert h.add_edge(b"2" * 32, "root", "a") == {"a", "b"}


def test_revoking_the_only_path_drops_the_subtree():
    h = Horizon(["root"], max_hops=3)
    _chain(h, ["root", "a", "b"])
    h.remove_edge(bytes([0]) * 32)
    assert "a" not in h and "b" not in h and "root" in h


def test_an_equivocator_no_longer_extends_the_horizon_but_stays_if_reached():
    h = Horizon(["root"], max_hops=3)
    _chain(h, ["root", "bad", "sybil"])
    h.flag("bad")
    assert "bad" in h and "sybil" not in h


@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=40),
    st.integers(0, 4),
    st.sets(st.integers(0, 39), max_size=10),
)
def test_incremental_hops_equal_a_fresh_breadth_first_search(edges, max_hops, revoked):
    h = Horizon(["o0"], max_hops)
    for i, (a, b) in enumerate(edges):
        h.add_edge(i.to_bytes(32, "big"), f"o{a}", f"o{b}")
    for i in revoked:
        h.remove_edge(i.to_bytes(32, "big"))
    live = [(f"o{a}", f"o{b}") for i, (a, b) in enumerate(edges) if i not in revoked]
    expected, queue = {"o0": 0}, deque(["o0"])
    while queue:
        org = queue.popleft()
        for a, b in live:
            if a == org and b not in expected and expected[org] < max_hops:
                expected[b] = expected[org] + 1
                queue.append(b)
    assert {o: h.hops(o) for o in expected} == expected
    assert h.members() == frozenset(expected) and len(h) == len(expected)


def test_a_successor_key_is_inside_at_its_predecessors_distance():
    h = Horizon(["root"], max_hops=2)
    _chain(h, ["root", "a"])
    assert h.add_successor("a", "a2") == {"a2"} and h.hops("a2") == 1
    h.add_edge(b"\x09" * 32, "a2", "b")  # the successor's vouches reach as far as its predecessor's would
    assert h.hops("b") == 2


def test_a_successor_comes_inside_when_its_predecessor_does():
    h = Horizon(["root"], max_hops=2)
    assert h.add_successor("a", "a2") == set()
    assert h.add_edge(b"\x01" * 32, "root", "a") == {"a", "a2"}
    h.remove_edge(b"\x01" * 32)
    assert "a2" not in h


def test_a_prior_key_claimed_from_inside_is_inside_but_reaches_no_one_until_it_names_its_claimant_back():
    """A partner vouched for an org's new key only: the old key's chain, which holds the rotation that links the
    two, must come in; but a claim alone gives the claimed key no reach (any key may claim any other)."""
    h = Horizon(["root"], max_hops=3)
    _chain(h, ["root", "new"])
    h.add_edge(b"\x09" * 32, "old", "friend")
    assert h.add_prior("new", "old") == {"old"} and h.hops("old") == 1
    assert "friend" not in h
    assert h.add_successor("old", "new") == {"friend"}  # linked: one org, its vouches reaching as the new key's
    assert (h.hops("old"), h.hops("friend")) == (1, 2)


def test_a_prior_key_comes_inside_with_its_claimant_and_leaves_with_it():
    h = Horizon(["root"], max_hops=2)
    h.add_edge(b"\x09" * 32, "old", "friend")
    assert h.add_successor("old", "new") == set() and h.add_prior("new", "old") == set()
    assert h.add_edge(b"\x01" * 32, "root", "new") == {"new", "old", "friend"}
    assert (h.hops("old"), h.hops("friend")) == (1, 2)
    h.remove_edge(b"\x01" * 32)
    assert h.members() == frozenset({"root"})


def test_a_false_claim_brings_in_the_claimed_key_alone():
    h = Horizon(["root"], max_hops=3)
    _chain(h, ["root", "liar"])
    h.add_edge(b"\x09" * 32, "victim", "friend")
    h.add_successor("victim", "heir")  # the claimed key rotated, to another key than the liar
    assert h.add_prior("liar", "victim") == {"victim", "heir"}
    assert h.hops("victim") == h.hops("heir") == 1 and "friend" not in h


def test_a_flagged_orgs_successor_is_inside_but_its_vouches_reach_no_further_unless_others_bring_it_in():
    """An equivocator's vouches extend nothing; its rotation must not either. Its successor is inside, so that
    its first record can be accepted (and, naming the equivocator, get it flagged too), but a successor that
    never names it back stays unflagged: its vouches extended the horizon from the equivocator's place."""
    for flag_first in (True, False):
        h = Horizon(["root"], max_hops=3)
        _chain(h, ["root", "bad"])
        if flag_first:
            h.flag("bad")
        h.add_successor("bad", "fresh")
        h.add_edge(b"\x09" * 32, "fresh", "sybil")
        h.add_successor("fresh", "fresher")
        h.add_edge(b"\x0a" * 32, "fresher", "sybil2")
        if not flag_first:
            h.flag("bad")
        assert {"bad", "fresh", "fresher"} <= h.members() and h.hops("fresh") == 1
        assert "sybil" not in h and "sybil2" not in h
        h.add_edge(b"\x0b" * 32, "root", "fresher")  # brought in by an honest vouch, it extends from there
        assert h.hops("sybil2") == 2 and "sybil" not in h


def _apply(h: Horizon, i: int, event: tuple[str, int, int]) -> None:
    """Event number i: a vouch (its record id is i), a rotation, a claim, a flag, or ("revoke", a, _) of the vouch of
    event i - 1 - a (if it is one)."""
    kind, a, b = event
    if kind == "edge":
        h.add_edge(i.to_bytes(32, "big"), f"o{a}", f"o{b}")
    elif kind == "successor":
        h.add_successor(f"o{a}", f"o{b}")
    elif kind == "prior":
        h.add_prior(f"o{a}", f"o{b}")
    elif kind == "flag":
        h.flag(f"o{a}")
    elif kind == "revoke":
        h.remove_edge((i - 1 - a).to_bytes(32, "big", signed=True))


@given(
    st.lists(st.tuples(st.sampled_from(["edge", "successor", "prior", "flag"]), st.integers(0, 7), st.integers(0, 7)),
             max_size=30),
    st.integers(0, 3),
    st.randoms(use_true_random=False),
)
def test_vouches_rotations_and_flags_in_any_order_leave_the_same_horizon(events, max_hops, order):
    def built(events: list) -> tuple:
        h = Horizon(["o0"], max_hops)
        for i, event in events:
            _apply(h, i, event)
        return {o: h.hops(o) for o in h.members()}

    numbered = list(enumerate(events))
    shuffled = list(numbered)
    order.shuffle(shuffled)
    # A key names one successor and one prior: the first of each in the list (a second would be an equivocation).
    named = {}
    for i, (kind, a, b) in numbered:
        if kind in ("successor", "prior"):
            named.setdefault((kind, a), i)
    keep = [(i, e) for i, e in shuffled if e[0] not in ("successor", "prior") or named[e[:2]] == i]
    assert built(keep) == built(sorted(keep))


def test_revoking_vouches_for_fresh_keys_one_by_one_places_each_org_a_bounded_number_of_times(monkeypatch):
    """An org inside may vouch for any number of fresh keys and revoke the vouches one by one: each revocation
    recomputed the whole horizon, n^2 / 2 orgs placed for n keys (8,000 took 34 s of CPU, on every node that holds
    the org). Now a revocation places again only the orgs whose hops rested on the vouch."""
    h = Horizon(["root"], max_hops=3)
    h.add_edge(b"r" * 32, "root", "org")
    n = 200
    for i in range(n):
        h.add_edge(i.to_bytes(32, "big"), "org", f"fresh{i}")
    placed = []
    expand = h._expand
    monkeypatch.setattr(h, "_expand", lambda starts: (before := len(h._hops), expand(starts),
                                                      placed.append(len(h._hops) - before))[1])
    for i in range(n):
        h.remove_edge(i.to_bytes(32, "big"))
    assert h.members() == {"root", "org"}
    assert sum(p for p in placed if p > 0) <= n  # 20,300 with a recompute each


@given(
    st.lists(st.tuples(st.sampled_from(["edge", "successor", "prior", "flag", "revoke"]), st.integers(0, 7),
                       st.integers(0, 7)), max_size=40),
    st.integers(0, 3),
)
def test_revocations_leave_the_horizon_a_fresh_one_without_the_revoked_vouches_has(events, max_hops):
    """Events in order (`_apply`); "none" is no event."""
    def built(events: list) -> tuple[dict, dict]:
        h = Horizon(["o0"], max_hops)
        for i, event in enumerate(events):
            _apply(h, i, event)
        return h._hops, h._reach  # (the reach decides what a later vouch brings in)

    revoked = {i - 1 - a for i, (kind, a, _) in enumerate(events) if kind == "revoke"}
    kept = [("none", 0, 0) if kind == "revoke" or (kind == "edge" and i in revoked) else (kind, a, b)
            for i, (kind, a, b) in enumerate(events)]
    assert built(events) == built(kept)


def test_the_orgs_an_org_vouches_in_are_in_its_group_however_many():
    """The keys one org vouches in, and those they vouch in, are the group of that org (the one a root vouched for):
    a node that dials or hears them counts them as one (gossip.peers), not as orgs of their own."""
    h = Horizon(["root"], max_hops=3)
    _chain(h, ["root", "partner"])
    h.add_edge(b"\x01" * 32, "root", "other")
    for i in range(20):
        h.add_edge(bytes([2, i]) * 16, "partner", f"fresh{i}")
    h.add_edge(b"\x03" * 32, "fresh0", "further")
    h.add_edge(b"\x04" * 32, "other", "fresh1")  # vouched by two: the first of them, by did
    assert [h.group(org) for org in ("root", "partner", "other", "further", "stranger")] == [
        "root", "partner", "other", "partner", None]
    assert {h.group(f"fresh{i}") for i in range(20)} == {"partner", "other"} and h.group("fresh1") == "other"


def test_a_key_named_by_a_rotation_or_a_first_record_is_in_the_group_of_the_key_that_named_it():
    """A fresh key may claim any key as its prior, which comes inside at its distance: in a group of its own, each
    fresh key would bring in another."""
    h = Horizon(["root"], max_hops=3)
    _chain(h, ["root", "partner", "fresh"])
    h.add_prior("fresh", "claimed")
    h.add_successor("fresh", "heir")
    h.add_successor("partner", "partner2")
    assert [h.group(org) for org in ("claimed", "heir", "partner2")] == ["partner", "partner", "partner"]


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=40), st.integers(0, 4))
def test_every_org_inside_is_in_the_group_of_a_root_or_of_an_org_a_root_vouches_for(edges, max_hops):
    h = Horizon(["o0"], max_hops)
    for i, (a, b) in enumerate(edges):
        h.add_edge(i.to_bytes(32, "big"), f"o{a}", f"o{b}")
    for org in h.members():
        group = h.group(org)
        assert group in h and h.hops(group) <= 1
        assert group == org if h.hops(org) <= 1 else h.hops(group) == 1


def test_an_equivocator_s_vouches_place_no_org_in_its_group():
    """An org vouched in by two partners, the first by did flagged as an equivocator since (its vouches extend the
    horizon no more), is in the group of the other: the one its place inside rests on."""
    h = Horizon(["root"], max_hops=3)
    for i, (issuer, subject) in enumerate([("root", "a-partner"), ("root", "b-partner"), ("a-partner", "fresh"),
                                           ("b-partner", "fresh"), ("a-partner", "a-only")]):
        h.add_edge(bytes([i]) * 32, issuer, subject)
    assert (h.group("fresh"), h.group("a-only")) == ("a-partner", "a-partner")
    h.flag("a-partner")
    assert (h.group("fresh"), h.group("a-only")) == ("b-partner", None)


@given(
    st.lists(st.tuples(st.sampled_from(["edge", "successor", "prior", "flag", "revoke"]), st.integers(0, 7),
                       st.integers(0, 7)), max_size=40),
    st.integers(0, 3),
)
def test_groups_asked_between_changes_are_those_of_a_horizon_built_afresh(events, max_hops):
    """`group` keeps its answers until the horizon changes: each answer, asked after any event (a vouch, a rotation,
    a claim, a flag, a revocation), is the one a horizon built from the events so far gives."""
    h = Horizon(["o0"], max_hops)
    orgs = [f"o{n}" for n in range(8)]
    for i, event in enumerate(events):
        _apply(h, i, event)
        fresh = Horizon(["o0"], max_hops)
        for j, earlier in enumerate(events[:i + 1]):
            _apply(fresh, j, earlier)
        assert [h.group(org) for org in orgs] == [fresh.group(org) for org in orgs]


def test_a_group_asked_before_a_change_is_worked_out_again_after_it():
    """A vouch, a revoked vouch, a rotation and a claimed prior key each move an org inside to another group; the
    group asked before is not answered after."""
    h = Horizon(["root"], max_hops=3)
    for i, (issuer, subject) in enumerate([("root", "partner"), ("root", "other"), ("other", "m"), ("m", "far"),
                                           ("partner", "x"), ("m", "claimed")]):
        h.add_edge(bytes([i]) * 32, issuer, subject)
    steps = [(lambda: h.add_edge(bytes([6]) * 32, "other", "x"), ["other", "other", "other"]),  # (first by did)
             (lambda: h.remove_edge(bytes([6]) * 32), ["partner", "other", "other"]),
             (lambda: h.add_successor("partner", "far"), ["partner", "partner", "other"]),
             (lambda: h.add_prior("partner", "claimed"), ["partner", "partner", "partner"])]
    groups = ["partner", "other", "other"]
    for change, after in steps:
        assert [h.group(org) for org in ("x", "far", "claimed")] == groups
        change()
        groups = after
    assert [h.group(org) for org in ("x", "far", "claimed")] == groups
