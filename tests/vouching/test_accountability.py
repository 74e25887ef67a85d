"""Voucher accountability (README "How scores are computed", 3): what each vouch's subject is judged from."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from vouching.accountability import others_evidence
from vouching.batch import weighted_evidence
from vouching.confirmation import DISCREDITED, FULL, LIGHT, counted_bad
from vouching.evidence import EvidenceStore, Weighed
from vouching.grid import GRID
from vouching.params import ScoringParams

on_grid = st.integers(0, 2**30).map(lambda k: k / GRID)


@given(st.data())
def test_a_vouch_s_subject_is_judged_from_every_org_s_evidence_but_its_voucher_s(data):
    """Per vouch, exactly the sums of the other orgs' evidence of its subject (all at the witness weight, so that
    their bad counts in full), whatever the vouches (several for one agent, by one org or many, of agents nobody
    reported) and the order of the (agent, org) pairs."""
    n_orgs, n_agents = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    org, agent = st.integers(0, n_orgs - 1), st.integers(0, n_agents - 1)
    pairs = data.draw(st.dictionaries(st.tuples(agent, org), st.tuples(on_grid, on_grid), max_size=30))
    vouches = data.draw(st.lists(st.tuples(org, agent), max_size=20))
    orgs = np.array([o for _, o in pairs], dtype=np.int32)
    evidence = (np.array([a for a, _ in pairs], dtype=np.int32), orgs,
                np.array([g for g, _ in pairs.values()]), np.array([b for _, b in pairs.values()]),
                np.full(len(pairs), FULL), orgs)
    voucher = np.array([o for o, _ in vouches], dtype=np.int32)
    subject = np.array([a for _, a in vouches], dtype=np.int32)
    good, bad = others_evidence(voucher, subject, evidence, n_orgs, n_agents, source_cap=1.0)
    for row, (o, a) in enumerate(vouches):
        others = [value for (pa, po), value in pairs.items() if pa == a and po != o]
        assert (good[row], bad[row]) == (sum(g for g, _ in others), sum(b for _, b in others))


@given(st.data())
def test_what_a_vouch_s_subject_is_judged_from_is_the_same_whatever_order_the_evidence_came_in(data):
    """The weighted evidence of a store whose pairs came in another order (records reaching another node otherwise)
    leaves every vouch's subject judged from the very same sums (DESIGN.md §6: the same records, the same
    accountability): a sum less its voucher's part, with weights of any precision. Off the grid, such sums differ in
    their last bits from order to order, and a subject at a threshold is judged misbehaving at one node and not at
    another (no test failed with batch.weighted_evidence's rounding taken out)."""
    n_orgs, n_agents = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4))
    counts = st.floats(0.0, 50.0, allow_nan=False)
    pairs = data.draw(st.dictionaries(st.tuples(st.integers(0, n_agents - 1), st.integers(0, n_orgs - 1)),
                                      st.tuples(counts, counts), min_size=1, max_size=20))
    weights = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n_orgs, max_size=n_orgs)))
    vouches = data.draw(st.lists(st.tuples(st.integers(0, n_orgs - 1), st.integers(0, n_agents - 1)), max_size=10))
    voucher = np.array([o for o, _ in vouches], dtype=np.int32)
    subject = np.array([a for _, a in vouches], dtype=np.int32)
    groups = np.array(data.draw(st.lists(st.integers(0, n_orgs - 1), min_size=n_orgs, max_size=n_orgs)))
    discredited = np.array(data.draw(st.lists(st.booleans(), min_size=n_orgs, max_size=n_orgs)))
    judged = []
    for order in (list(pairs), data.draw(st.permutations(list(pairs)))):
        store = EvidenceStore(ScoringParams())
        for a, o in order:
            good, bad = pairs[a, o]
            store.add(store.new_pair(a, o, first_hand=False), 0.0, 0, Weighed(good, bad, 0.0), 1, capped=False)
        evidence = weighted_evidence(store, weights, groups, discredited, 0.0, 1e9, ScoringParams())
        judged.append(others_evidence(voucher, subject, evidence, n_orgs, n_agents, source_cap=1.0))
    assert [column.tolist() for column in judged[0]] == [column.tolist() for column in judged[1]]


@given(st.data())
def test_a_vouch_s_subject_is_judged_bad_as_its_score_counts_the_other_orgs_bad(data):
    """Per vouch, the bad its subject is judged from is the agent's bad counted as its score counts it
    (confirmation.counted_bad: one independence group's unchecked bad at most C beyond what the rest report, a
    discredited org's at most what orgs at the witness weight report) from every org's evidence but its voucher's:
    bad the score discounts costs the voucher no accountability either."""
    n_orgs, n_agents = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    org, agent = st.integers(0, n_orgs - 1), st.integers(0, n_agents - 1)
    pairs = data.draw(st.dictionaries(st.tuples(agent, org), on_grid, max_size=30))
    standing = np.array(data.draw(st.lists(st.sampled_from((FULL, LIGHT, DISCREDITED)), min_size=n_orgs,
                                           max_size=n_orgs)))
    groups = np.array(data.draw(st.lists(st.integers(0, n_orgs - 1), min_size=n_orgs, max_size=n_orgs)))
    source_cap = data.draw(st.sampled_from((0.0, 1.0, 2.0**10)))
    vouches = data.draw(st.lists(st.tuples(org, agent), max_size=20))
    orgs = np.array([o for _, o in pairs], dtype=np.int32)
    evidence = (np.array([a for a, _ in pairs], dtype=np.int32), orgs, np.zeros(len(pairs)),
                np.array(list(pairs.values())), standing[orgs], groups[orgs])
    voucher = np.array([o for o, _ in vouches], dtype=np.int32)
    subject = np.array([a for _, a in vouches], dtype=np.int32)
    _, bad = others_evidence(voucher, subject, evidence, n_orgs, n_agents, source_cap)
    for row, (o, a) in enumerate(vouches):
        others = {po: value for (pa, po), value in pairs.items() if pa == a and po != o}
        light = {}
        for po, value in others.items():
            if standing[po] == LIGHT:
                light[groups[po]] = light.get(groups[po], 0.0) + value
        full = sum(value for po, value in others.items() if standing[po] == FULL)
        discredited = sum(value for po, value in others.items() if standing[po] == DISCREDITED)
        assert bad[row] == counted_bad(full, light.values(), discredited, source_cap)
