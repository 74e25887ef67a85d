"""Attacks on the score that the review of the scoring engine found and left open, each needing a design decision
(strict xfails: each turns into a failure, to be made a plain test, once its rule is decided and built)."""

import numpy as np
import pytest

from vouching.reputation import independence_groups


@pytest.mark.xfail(strict=True, reason="an org vouched for equally by two non-root orgs is its own independence "
                                       "group (test_groups_follow_principal_vouchers_but_not_roots asks for it), so "
                                       "two colluding orgs mint any number of 'independent' witnesses for verified")
def test_orgs_only_two_colluding_orgs_vouch_for_are_not_more_independent_witnesses_than_the_two():
    # 0 is the root; it vouches for 1 and 2 (the attack edges); 1 and 2 each vouch for 3, 4 and 5 alike.
    edges = [(0, 1), (0, 2)] + [(v, s) for s in (3, 4, 5) for v in (1, 2)]
    src, dst = np.array([e[0] for e in edges]), np.array([e[1] for e in edges])
    is_root = np.array([True] + [False] * 5)
    group = independence_groups(6, src, dst, np.ones(len(edges)), is_root, 0.5)
    assert len(set(group[1:].tolist())) <= 2
