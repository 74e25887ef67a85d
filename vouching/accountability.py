"""Voucher accountability (DESIGN.md §6): an org loses weight when what it vouched for misbehaves.

accountability = (1 + G) / (1 + G + penalty * B), where G is the vouch weight the org put behind agents that
behave well (its latest vouch for each agent and basis: one it replaced adds none) and B the weight behind agents
that misbehave and orgs caught equivocating. Revoking or replacing a vouch does not undo having given it; the
penalty fades as the agent's bad evidence decays.
"""

from __future__ import annotations

import numpy as np

from vouching.arrays import grid_sum_by

from vouching.params import ScoringParams


def agent_conduct(good: np.ndarray, bad: np.ndarray, params: ScoringParams) -> tuple[np.ndarray, np.ndarray]:
    """(misbehaving, well-behaved) masks from each agent's weighted evidence alone (vouches left out)."""
    mean = (params.prior_good + good) / (params.prior_good + params.prior_bad + good + bad)
    misbehaving = (mean < params.misbehaving_mean) & (bad >= params.violation_weight)
    well_behaved = (mean >= params.well_behaved_mean) & (good >= params.well_behaved_min_good)
    return misbehaving, well_behaved


def accountability(n_orgs: int, agent_voucher: np.ndarray, agent_subject: np.ndarray, agent_weight: np.ndarray,
                   agent_latest: np.ndarray, misbehaving: np.ndarray, well_behaved: np.ndarray,
                   org_voucher: np.ndarray, org_subject: np.ndarray, org_weight: np.ndarray, equivocator: np.ndarray,
                   params: ScoringParams) -> np.ndarray:
    """Accountability per org in (0, 1] from every vouch it gave for agents (`agent_latest`: its latest for the agent
    and basis) and for orgs, summed on the grid: the same whatever order the vouches came in (DESIGN.md §6). Of the
    vouches for an agent that behaves, the latest of each basis alone counts: each of a thousand vouches one org sent
    for one such agent, each replacing the one before, added its weight, and outweighed any misconduct of what else
    the org vouched for."""
    good = grid_sum_by(agent_voucher, agent_weight * (well_behaved[agent_subject] & agent_latest), n_orgs)
    bad = grid_sum_by(agent_voucher, agent_weight * misbehaving[agent_subject], n_orgs)
    bad += grid_sum_by(org_voucher, org_weight * equivocator[org_subject], n_orgs)
    return (1.0 + good) / (1.0 + good + params.accountability_penalty * bad)
