"""The tunable constants of the trust score (DESIGN.md §6), validated once, with the defaults this node ships."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

AGENT_BASES = ("operator", "audit", "developer", "interaction")


def _default_basis_weights() -> dict[str, float]:
    # Pseudo-observations of good behaviour one full-weight vouch adds to the prior: an audit is the strongest
    # statement about an agent, an interaction vouch the weakest.
    return {"operator": 2.0, "audit": 3.0, "developer": 1.0, "interaction": 1.0}


@dataclass(frozen=True)
class ScoringParams:
    """Every knob of the model, grouped as the README's "How scores are computed" explains them."""

    # Org reputation: personalised PageRank from the trust roots.
    restart: float = 0.3  # probability of jumping back to a root at each step
    full_weight_share: float = 0.01  # reputation >= this x the roots' mean reputation weighs fully
    ppr_tolerance: float = 1e-10
    ppr_max_iterations: int = 500

    # Evidence: what one outcome is worth, in pseudo-observations.
    error_weight: float = 0.5
    timeout_weight: float = 0.25
    violation_weight: float = 10.0  # an action denied by policy
    high_risk_error_weight: float = 1.0
    high_risk_violation_weight: float = 20.0
    # A DP digest's cells count only beyond the noise they declare (vouching.dp_discount): beyond the count that
    # noise reaches with this probability. A digest has 6 bad cells (3 bad outcomes, low and high risk), so
    # hourly digests give 144 bad cells per agent per day at each org, and 1e-3 lets about 0.14 false bad cells a
    # day through per agent and org (one in a week), each a single outcome over the threshold. The price: DP at
    # epsilon hides up to t(epsilon) outcomes, ok or bad, per cell per epoch (13 at epsilon 1, 125 at 0.1).
    dp_false_alarm: float = 1e-3
    cap_window_ms: int = HOUR_MS  # digests of one org about one agent are capped per window of this length
    cap_good: float = 30.0
    cap_bad: float = 60.0
    good_half_life_ms: int = 30 * DAY_MS
    # A digest's time is its issuer's word: an org's evidence about an agent dated further ahead of now than this
    # (clock skew) counts nothing until then; dated a year ahead, it neither decayed nor met the deviation test.
    future_tolerance_ms: int = 5 * 60_000
    bad_half_life_ms: int = 180 * DAY_MS  # bad evidence fades slower than good

    # The posterior and the score.
    prior_good: float = 1.0
    prior_bad: float = 1.0
    quantile: float = 0.05  # the score is this lower quantile of the posterior, x 1000
    basis_weights: dict[str, float] = field(default_factory=_default_basis_weights)
    confidence_half: float = 10.0  # evidence (pseudo-observations) at which confidence is 0.5

    # Recent misbehaviour: windows where violations weigh much are "bad reports"; recent reports cap the score.
    bad_report_low: float = 0.1  # violations' share of a window's weighted evidence at which a report starts
    bad_report_high: float = 0.5  # ... and counts fully
    report_half_life_ms: int = DAY_MS
    reports_below_trusted: float = 0.4  # weighted recent bad reports that cap the score below `trusted`
    reports_below_provisional: float = 2.0  # ... below `provisional`

    # Verified needs independent corroboration.
    verified_min_orgs: int = 3
    independent_min_weight: float = 0.3  # an org below this weight is not an independent witness, and its bad
    #                                      evidence counts only as far as corroborated (vouching.confirmation)
    independent_min_good: float = 0.5  # nor one with less recent good evidence than this
    principal_share: float = 0.5  # an org a root vouches for getting more than this share of its reputation from
    #                               one voucher other than a root belongs to that voucher's group (reputation.py)

    # Deviation test: digests that contradict this node's (and its roots') own observations.
    deviation_z: float = 2.5
    deviation_window_ms: int = 7 * DAY_MS  # reference evidence this close in time to a digest is compared
    deviation_min_reference: int = 3  # reference events needed before a digest is tested
    credibility_prior_agree: float = 2.0  # an org nobody could check yet counts (2 / 3) ** 3 = 0.296: no
    #                                       independent witness (independent_min_weight) until its digests agree
    credibility_prior_disagree: float = 1.0
    credibility_exponent: float = 3.0

    # Accountability: vouchers lose weight when what they vouched for misbehaves.
    accountability_penalty: float = 4.0
    misbehaving_mean: float = 0.5  # posterior mean below which an agent with real bad evidence misbehaves
    well_behaved_mean: float = 0.8
    well_behaved_min_good: float = 3.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "basis_weights":
                _check_basis_weights(value)
            elif isinstance(value, (int, float)) and not value >= 0:  # also rejects NaN
                raise ValueError(f"{f.name}: must be a non-negative number, got {value!r}")
        for name in ("restart", "quantile", "full_weight_share", "principal_share", "dp_false_alarm"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name}: must be strictly between 0 and 1, got {getattr(self, name)!r}")
        if self.cap_window_ms < 1000:
            raise ValueError(f"cap_window_ms: must be at least 1000 (one second), got {self.cap_window_ms!r}")
        for name in ("cap_window_ms", "good_half_life_ms", "bad_half_life_ms", "report_half_life_ms",
                     "prior_good", "prior_bad", "confidence_half", "ppr_max_iterations", "independent_min_weight"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)!r}")
        if not self.bad_report_low < self.bad_report_high <= 1:
            raise ValueError("bad_report_low, bad_report_high: need 0 <= low < high <= 1")
        if not 0 < self.reports_below_trusted <= self.reports_below_provisional:
            raise ValueError("reports_below_trusted: must be positive and at most reports_below_provisional")
        if not self.misbehaving_mean <= self.well_behaved_mean <= 1:
            raise ValueError("misbehaving_mean, well_behaved_mean: need misbehaving <= well_behaved <= 1")


def _check_basis_weights(weights: object) -> None:
    if not isinstance(weights, dict) or set(weights) != set(AGENT_BASES):
        raise ValueError(f"basis_weights: must map exactly {', '.join(AGENT_BASES)} to a weight")
    for basis, weight in weights.items():
        if not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"basis_weights[{basis}]: must be a non-negative number, got {weight!r}")
