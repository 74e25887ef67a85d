"""Voucher accountability (DESIGN.md §6): an org loses weight when what it vouched for misbehaves.

accountability = (1 + G) / (1 + G + penalty * B), where G is the vouch weight the org put behind agents that
behave well (its latest vouch for each agent and basis: one it replaced adds none) and B the weight behind agents
that misbehave and orgs caught equivocating (its heaviest vouch for each agent and basis, and for each org: a vouch
given again adds none, and one given again lighter sheds none). A vouch answers for misconduct that began while it
stood: one revoked or expired, only if the other orgs whose bad counts on their own word reported the agent's
misconduct before its end (DeviationTest.misconduct_began; vouching.recompute), a revocation dated no earlier than what
its key signed before it (TrustEngine.chain_time). Replacing a vouch does not undo having given it; the penalty
fades as the agent's bad evidence decays. For each org that vouched for it, an agent's conduct
is judged from the other orgs' evidence: an org reporting its own agent's violations pays no more than one hiding them
would, and reporting it well earns it nothing. Their bad counts as the agent's score counts it (vouching.confirmation):
a discredited org's, or one unchecked org's alone, costs the voucher no more than it costs the agent.
"""

from __future__ import annotations

import numpy as np

from vouching.arrays import distinct, grid_sum_by, sum_by
from vouching.confirmation import counted_bad_less
from vouching.params import ScoringParams


def conduct(good: np.ndarray, bad: np.ndarray, params: ScoringParams) -> tuple[np.ndarray, np.ndarray]:
    """(misbehaving, well-behaved) masks from weighted good and bad evidence (vouches left out)."""
    mean = (params.prior_good + good) / (params.prior_good + params.prior_bad + good + bad)
    misbehaving = (mean < params.misbehaving_mean) & (bad >= params.violation_weight)
    well_behaved = (mean >= params.well_behaved_mean) & (good >= params.well_behaved_min_good)
    return misbehaving, well_behaved


def others_evidence(voucher: np.ndarray, subject: np.ndarray, evidence: tuple[np.ndarray, ...], n_orgs: int,
                    n_agents: int, source_cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Per agent vouch, the weighted good evidence of its subject and its bad as its score counts it
    (confirmation.counted_bad_less), less what its voucher itself reported of it: what its subject's conduct is
    judged from for its voucher's accountability, so that an org's own reports of an agent neither cost nor earn it
    accountability for vouching for it, and bad that does not lower the agent's score (a discredited org's beyond
    what orgs at the witness weight report, one independence group's beyond one source's cap) costs its voucher
    none. `evidence`: per pair, agent, org, weighted good and bad on the grid, standing and independence group
    (batch.weighted_evidence), so that the sums less one pair's part are exact."""
    agent, org, good = evidence[:3]
    own = _own_pairs(voucher, subject, agent, org, n_orgs, n_agents)
    reported = np.flatnonzero(own >= 0)
    good_of = sum_by(agent, good, n_agents)[subject]
    good_of[reported] -= good[own[reported]]
    return good_of, counted_bad_less(subject, own, evidence, n_orgs, n_agents, source_cap)


def _own_pairs(voucher: np.ndarray, subject: np.ndarray, pair_agent: np.ndarray, pair_org: np.ndarray, n_orgs: int,
               n_agents: int) -> np.ndarray:
    """Per vouch, the evidence pair of its voucher about its subject, or -1. Each pair is looked for among the distinct
    (subject, voucher) keys of its own agent: at once where the agent has one voucher (most have), by binary search
    where it has several, so that a million pairs cost no million binary searches."""
    key = subject.astype(np.int64) * n_orgs + voucher
    known = distinct(key)
    if not len(known):
        return np.full(len(key), -1, dtype=np.int64)
    pair_key = pair_agent.astype(np.int64) * n_orgs + pair_org
    bounds = np.searchsorted(known, np.arange(n_agents + 1, dtype=np.int64) * n_orgs)
    at = bounds[pair_agent]  # the agent's first key: its only one where it has one voucher
    several = np.flatnonzero(np.diff(bounds)[pair_agent] > 1)
    at[several] = np.searchsorted(known, pair_key[several])
    found = np.flatnonzero(known[np.minimum(at, len(known) - 1)] == pair_key)
    pair_of_key = np.full(len(known), -1, dtype=np.int64)
    pair_of_key[at[found]] = found
    return pair_of_key[np.searchsorted(known, key)]


def accountability(n_orgs: int, agent_voucher: np.ndarray, agent_subject: np.ndarray, agent_basis: np.ndarray,
                   agent_weight: np.ndarray, agent_latest: np.ndarray, misbehaving: np.ndarray,
                   well_behaved: np.ndarray,
                   org_voucher: np.ndarray, org_subject: np.ndarray, org_weight: np.ndarray, equivocator: np.ndarray,
                   params: ScoringParams) -> np.ndarray:
    """Accountability per org in (0, 1] from every vouch it gave for agents (`agent_latest`: its latest for the agent
    and basis; `misbehaving`, `well_behaved`: its subject's conduct as its voucher answers for it, others_evidence) and
    for orgs, summed on the grid: the same whatever order the vouches came in (DESIGN.md §6). Of the
    vouches for an agent that behaves, the latest of each basis alone counts: each of a thousand vouches one org sent
    for one such agent, each replacing the one before, added its weight, and outweighed any misconduct of what else
    the org vouched for. Of those for an agent that misbehaves or an org that equivocated, the heaviest of each basis
    (`agent_basis`) alone counts: an honest org renewing its vouch weekly for an agent that then misbehaved was
    penalised once a renewal."""
    good = grid_sum_by(agent_voucher, agent_weight * (well_behaved & agent_latest), n_orgs)
    bad = _heaviest_behind(n_orgs, misbehaving, agent_weight, agent_voucher, agent_subject, agent_basis)
    bad += _heaviest_behind(n_orgs, equivocator[org_subject], org_weight, org_voucher, org_subject)
    return (1.0 + good) / (1.0 + good + params.accountability_penalty * bad)


def _heaviest_behind(n_orgs: int, flagged: np.ndarray, weight: np.ndarray, voucher: np.ndarray, subject: np.ndarray,
                     *more: np.ndarray) -> np.ndarray:
    """Per org, the weight of its `flagged` vouches, of those naming one voucher, subject and `more` the heaviest
    alone, summed on the grid."""
    at = np.flatnonzero(flagged)
    keys = [column[at] for column in (voucher, subject, *more)]
    weight = weight[at]
    order = np.lexsort((weight, *reversed(keys)))  # by voucher, subject, `more`, then weight: the heaviest last
    lighter = np.zeros(len(order), dtype=bool)  # the next in that order names the same voucher, subject and `more`
    lighter[:-1] = True
    for key in keys:
        ordered = key[order]
        lighter[:-1] &= ordered[1:] == ordered[:-1]
    heaviest = order[~lighter]
    return grid_sum_by(keys[0][heaviest], weight[heaviest], n_orgs)
