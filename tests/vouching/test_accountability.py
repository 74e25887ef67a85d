"""Voucher accountability (README "How scores are computed", 3): what each vouch's subject is judged from."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from vouching.accountability import others_evidence
from vouching.grid import GRID

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
