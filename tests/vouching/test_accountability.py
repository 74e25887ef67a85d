"""Voucher accountability (README "How scores are computed", 3): what each vouch's subject is judged from."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from vouching.accountability import others_evidence
from vouching.batch import weighted_evidence
from vouching.evidence import EvidenceStore, Weighed
from vouching.grid import GRID
from vouching.params import ScoringParams

on_grid = st.integers(0, 2**30).map(lambda k: k / GRID)


@given(st.data())
def test_a_vouch_s_subject_is_judged_from_every_org_s_evidence_but_its_voucher_s(data):
    """Per vouch, exactly the sums of the other orgs' evidence of its subject, whatever the vouches (several for one
    agent, by one org or many, of agents nobody reported) and the order of the (agent, org) pairs."""
    n_orgs, n_agents = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    org, agent = st.integers(0, n_orgs - 1), st.integers(0, n_agents - 1)
    pairs = data.draw(st.dictionaries(st.tuples(agent, org), st.tuples(on_grid, on_grid), max_size=30))
    vouches = data.draw(st.lists(st.tuples(org, agent), max_size=20))
    evidence = (np.array([a for a, _ in pairs], dtype=np.int32), np.array([o for _, o in pairs], dtype=np.int32),
                np.array([g for g, _ in pairs.values()]), np.array([b for _, b in pairs.values()]))
    voucher = np.array([o for o, _ in vouches], dtype=np.int32)
    subject = np.array([a for _, a in vouches], dtype=np.int32)
    good, bad = others_evidence(voucher, subject, evidence, n_orgs, n_agents)
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
    judged = []
    for order in (list(pairs), data.draw(st.permutations(list(pairs)))):
        store = EvidenceStore(ScoringParams())
        for a, o in order:
            good, bad = pairs[a, o]
            store.add(store.new_pair(a, o, first_hand=False), 0.0, 0, Weighed(good, bad, 0.0), 1, capped=False)
        evidence = weighted_evidence(store, weights, 0.0, good_cap=1e9)
        judged.append(others_evidence(voucher, subject, evidence, n_orgs, n_agents))
    assert [column.tolist() for column in judged[0]] == [column.tolist() for column in judged[1]]
