"""The rules that cap a score after the posterior (DESIGN.md §6), for one agent and for all at once, and the
plain words that explain each rule that bit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vouching.counts import counted
from vouching.evidence import own_cap_good
from vouching.explanation import OrgPart, Rule
from vouching.params import ScoringParams
from vouching.quantiles import source_cap
from vouching.tiers import PROVISIONAL, TRUSTED, VERIFIED

NEEDS_INDEPENDENT = "needs-independent-orgs"
RECENT_BAD_REPORTS = "recent-bad-reports"


def cap_score(score: int, reports: float, witnesses: int, params: ScoringParams) -> tuple[int, tuple[str, ...]]:
    """Verified needs `verified_min_orgs` independent witnesses; recent bad reports hold the score below trusted,
    or below provisional when there are many. Returns the capped score and the codes of the caps that bit."""
    caps: tuple[str, ...] = ()
    if score >= VERIFIED and witnesses < params.verified_min_orgs:
        score, caps = VERIFIED - 1, (NEEDS_INDEPENDENT,)
    limit = (PROVISIONAL - 1 if reports >= params.reports_below_provisional
             else TRUSTED - 1 if reports >= params.reports_below_trusted else None)
    if limit is not None and score > limit:
        score, caps = limit, (*caps, RECENT_BAD_REPORTS)
    return score, caps


def cap_scores(scores: np.ndarray, reports: np.ndarray, witnesses: np.ndarray, params: ScoringParams) -> np.ndarray:
    """`cap_score` over arrays (scores only)."""
    scores = np.where((scores >= VERIFIED) & (witnesses < params.verified_min_orgs), VERIFIED - 1, scores)
    scores = np.where(reports >= params.reports_below_trusted, np.minimum(scores, TRUSTED - 1), scores)
    return np.where(reports >= params.reports_below_provisional, np.minimum(scores, PROVISIONAL - 1), scores)


def explain_rules(caps: Sequence[str], lift: float, capped_lift: float, reports: float, witnesses: int,
                  uncorroborated_bad: float, org_parts: Sequence[OrgPart], now: int, params: ScoringParams
                  ) -> list[Rule]:
    """Each cap and rule that changed this score (at `now`), in words."""
    p = params
    rules = []
    if lift > capped_lift:
        rules.append(Rule("vouch-cap", f"vouches would lift the prior by {lift:.2f}; capped at {capped_lift:.2f} "
                                       f"because a vouch alone never lifts an agent above provisional"))
    if NEEDS_INDEPENDENT in caps:
        rules.append(Rule(NEEDS_INDEPENDENT, f"verified needs good evidence from {p.verified_min_orgs} independent "
                                             f"orgs (one per independence group, none of its operator's); it has "
                                             f"{witnesses}, so the score is held at {VERIFIED - 1}"))
    if RECENT_BAD_REPORTS in caps:
        limit = PROVISIONAL - 1 if reports >= p.reports_below_provisional else TRUSTED - 1
        rules.append(Rule(RECENT_BAD_REPORTS, f"weighted recent bad reports {reports:.2f} (windows where bad "
                                              f"evidence dominated; of each independence group, those of the org "
                                              f"that weigh most; none of a discredited org) hold the score at "
                                              f"{limit} or below"))
    if uncorroborated_bad:
        rules.append(Rule("uncorroborated-bad", f"{uncorroborated_bad:.2f} of the orgs' bad evidence is not "
                                                f"counted: of orgs below the witness weight "
                                                f"{p.independent_min_weight:g}, one independence group's beyond what "
                                                f"every other source reports counts at most {source_cap(p):.2f} (as "
                                                f"one org's good), and a discredited org's at most as much as this "
                                                f"node's own observations and orgs at that weight report"))
    held = [o for o in org_parts if o.good > o.good_cap]
    if held:
        rules.append(Rule("org-cap", f"good evidence from {counted(len(held), 'org')} is held at "
                                     f"{held[0].good_cap:.2f} each: an org's digests alone never lift an agent above "
                                     f"provisional (its vouch for the agent lifts the prior apart from them)"))
    own_capped = sum(o.capped for o in org_parts if o.first_hand)
    if own_capped:
        rules.append(Rule("own-window-cap", f"this node's own observations were scaled down in "
                                            f"{counted(own_capped, 'window')} (keeping the ratio of good to bad) to "
                                            f"{own_cap_good(p):.2f} good per {p.cap_window_ms // 60000} minute "
                                            f"window: a burst of events is one sample of behaviour, so no burst "
                                            f"alone lifts an agent above provisional; trust takes evidence spread "
                                            f"over at least three windows"))
    capped = sum(o.capped for o in org_parts if not o.first_hand)
    if capped:
        rules.append(Rule("window-cap", f"{counted(capped, 'digest')} {_were(capped)} scaled down (keeping the "
                                        f"ratio of good to bad) to at most {p.cap_good:g} good and {p.cap_bad:g} bad "
                                        f"per org, agent and {p.cap_window_ms // 60000} minute window"))
    ignored = sum(o.ignored for o in org_parts)
    if ignored:
        rules.append(Rule("out-of-order", f"{counted(ignored, 'digest')} for a window older than one already "
                                          f"counted from the same org {_were(ignored)} ignored"))
    ahead = sum(1 for o in org_parts if o.last_evidence > now + p.future_tolerance_ms and not o.first_hand)
    if ahead:
        rules.append(Rule("future-dated", f"evidence from {counted(ahead, 'org')} is dated more than "
                                          f"{p.future_tolerance_ms // 1000} s ahead of now and counts from its date"))
    unweighted = sum(1 for o in org_parts if o.weight == 0 and not o.first_hand) - ahead
    if unweighted:
        rules.append(Rule("no-weight", f"digests from {counted(unweighted, 'org')} with no weight (outside the "
                                       f"trust graph, equivocating or discredited) count nothing"))
    return rules


def _were(n: int) -> str:
    return "was" if n == 1 else "were"
