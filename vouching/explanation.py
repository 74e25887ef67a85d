"""Why a score is what it is (DESIGN.md §6, "every score is explainable"): the parts of one agent's score and of
one org's reputation as values, and the same in plain words.

The values hold the heaviest MAX_LISTED_PARTS vouches, orgs' evidence and vouchers of an org (TrustEngine.explain
and .org; all of them on request) and count them all; the plain structures (`as_dict`, what the node's API answers,
no token needed) and the words list at most MAX_LISTED_PARTS of each (`listed`): any org inside the horizon can
mint keys that each vouch for an agent or an org, or sign a digest of an agent, and each would otherwise add a part
to every answer about it (2 MB and 0.1 s of the node's loop an answer at 5,000 keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vouching.counts import counted
from vouching.grid import on_grid
from vouching.tiers import Tier

MAX_LISTED_PARTS = 64  # vouches, orgs' evidence, vouchers of an org listed in an answer (`listed`)
VouchStatus = Literal["counted", "revoked", "expired", "out of scope", "voucher has no weight"]
# How an org's bad evidence counts, by its confirmation.standing_of (FULL, LIGHT, DISCREDITED): as it is; beyond what
# every other source reports, its independence group's counts at most C; at most as much as the FULL sources'.
BadCounts = Literal["fully", "as corroborated", "as confirmed"]
BAD_COUNTS: tuple[BadCounts, ...] = ("fully", "as corroborated", "as confirmed")


def _flat(value: Any) -> dict[str, Any]:
    """dataclasses.asdict of a dataclass whose fields hold no dataclass, without asdict's recursion and deep
    copies of immutable values: an explanation's parts in 6 us rather than 120 (GET .../score makes one each)."""
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def listed(name: str, parts: Sequence[Any], total: int, plain: Callable[[Any], dict[str, Any]] = _flat
           ) -> dict[str, Any]:
    """The `name`, `name_complete` and `name_total` fields of an answer (as node.trust.listed_scopes lists an
    agent's tools): the first MAX_LISTED_PARTS of `parts` (heaviest first, as the engine orders them) as plain
    dicts (`plain`), whether that is all `total` of them, and `total`."""
    shown = parts[:MAX_LISTED_PARTS]
    return {name: tuple(map(plain, shown)), f"{name}_complete": len(shown) == total, f"{name}_total": total}


def _more(shown: int, total: int, what: str) -> list[str]:
    """The line saying how many of `total` parts the words leave out past the `shown` ones, if any."""
    return [f"  ... and {total - shown} more {what}, none weighing more than those above."] if total > shown else []


@dataclass(frozen=True)
class Score:
    """An agent's score 0..1000, its tier, how much evidence stands behind it (0..1), and the codes of the caps
    and rules that lowered it."""

    agent: str
    score: int
    tier: Tier
    confidence: float
    computed_at: int
    caps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A cap or rule that changed a score: a stable code and a sentence."""

    code: str
    text: str


@dataclass(frozen=True)
class VouchPart:
    record_id: str  # hex
    issuer: str
    basis: str
    weight: float
    voucher_weight: float
    lift: float  # pseudo-observations of good behaviour added to the prior, before the cap
    status: VouchStatus
    scope: tuple[str, ...] | None
    expires: int | None


@dataclass(frozen=True)
class OrgPart:
    """What one org's digests (or this node's own observations) contribute."""

    org: str
    first_hand: bool
    weight: float  # what this org's word counts, 0..1 (1 for first-hand)
    good: float  # decayed pseudo-observations, before the weight and the cap
    good_cap: float  # one org's good counts at most this much (infinite for first-hand)
    bad: float
    recent_bad_reports: float  # decayed, before the weight
    batches: int  # digests counted; of this node's own observations, the epochs they fall in (EvidenceStore.add)
    events: int
    capped: int  # digests scaled down to the window's caps; of this node's own observations, the windows
    ignored: int
    last_evidence: int
    independent: bool
    group: str
    operators_group: bool  # its group holds an org whose operator vouch for the agent stands: not independent of it
    counts_reports: bool  # its recent bad reports are its independence group's, which count once: its heaviest
    bad_counts: BadCounts  # how its bad evidence counts (vouching.confirmation; Explanation.uncorroborated_bad)

    @property
    def counted_good(self) -> float:
        return on_grid(self.weight * min(self.good, self.good_cap))

    @property
    def counted_bad(self) -> float:
        return on_grid(self.weight * self.bad)

    @property
    def counted_reports(self) -> float:
        return on_grid(self.weight * self.recent_bad_reports) if self.counts_reports and \
            self.bad_counts != "as confirmed" else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The fields and what the part counts, which the explanation's alpha, beta (less its `uncorroborated_bad`) and
        recent bad reports sum."""
        return {**_flat(self), "counted_good": self.counted_good, "counted_bad": self.counted_bad,
                "counted_reports": self.counted_reports}


@dataclass(frozen=True)
class Explanation:
    """An agent's score and its parts: `vouches` by the lift each adds (most first), then the voucher's weight,
    then issuer, basis and record id; `orgs` by the evidence each counts (counted good plus counted bad, most
    first), then its weight, then the org's did."""

    score: Score
    prior_good: float
    prior_bad: float
    vouch_lift: float  # after the cap
    vouch_lift_cap: float
    vouches: tuple[VouchPart, ...]
    vouches_total: int  # vouches there are, listed or not
    orgs: tuple[OrgPart, ...]
    orgs_total: int
    alpha: float
    beta: float
    quantile: float
    uncapped_score: int
    recent_bad_reports: float
    uncorroborated_bad: float  # of the orgs' counted_bad, what beta leaves out uncorroborated (vouching.confirmation)
    independent_orgs: int
    good_half_life_ms: int
    bad_half_life_ms: int
    report_half_life_ms: int
    witness_min_weight: float  # an independent witness weighs at least this
    witness_min_good: float  # and holds at least this much decayed good evidence
    rules: tuple[Rule, ...]
    tool: str | None = None  # the tool whose check the score is for (its scoped vouches count); None: general

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able structure (for the node's API), with the plain-words lines under "text", and each org
        part's counted values (OrgPart.as_dict): alpha = prior_good + vouch_lift + their counted_good, and beta =
        prior_bad + their counted_bad - uncorroborated_bad, exactly, when the parts are all listed; of the vouches and
        orgs, the first MAX_LISTED_PARTS (`listed`)."""
        out = _flat(self)
        out["score"] = _flat(self.score)
        out.update(listed("vouches", self.vouches, self.vouches_total))
        out.update(listed("orgs", self.orgs, self.orgs_total, OrgPart.as_dict))
        out["rules"] = tuple(map(_flat, self.rules))
        out["mean"] = self.mean
        out["text"] = self.lines()
        return out

    def lines(self) -> list[str]:
        s = self.score
        out = [f"{s.agent}: score {s.score} ({s.tier})" + (f" for tool {self.tool}" if self.tool is not None else "")
               + f", confidence {s.confidence:.2f}."]
        out.append(
            f"Posterior Beta({self.alpha:.2f}, {self.beta:.2f}), mean {self.mean:.3f}; the score is its "
            f"{self.quantile:.0%} lower quantile x 1000 = {self.uncapped_score}."
        )
        out.append(
            f"Prior: {self.prior_good:g} good and {self.prior_bad:g} bad pseudo-observations, plus "
            f"{self.vouch_lift:.2f} from vouches (at most {self.vouch_lift_cap:.2f}, so that vouches alone stay "
            f"below trusted)."
        )
        vouches, orgs = self.vouches[:MAX_LISTED_PARTS], self.orgs[:MAX_LISTED_PARTS]
        for v in vouches:
            out.append(
                f"  vouch {v.record_id[:12]} by {v.issuer} ({v.basis}, weight {v.weight:g}, voucher weight "
                f"{v.voucher_weight:.2f}): {v.status}, lift {v.lift:.2f}"
                + (f", scope {', '.join(v.scope)}" if v.scope else "")
                + (f", expires at {v.expires}" if v.expires is not None else "")
            )
        out.extend(_more(len(vouches), self.vouches_total, "vouches"))
        if not self.orgs_total:
            out.append("No behaviour evidence yet.")
        for o in orgs:
            who = "this node's own observations" if o.first_hand else f"digests from {o.org}"
            held = counted(o.batches, "epoch", "epochs") if o.first_hand else counted(o.batches, "batch", "batches")
            out.append(
                f"  {who}: weight {_beside(o.weight, self.witness_min_weight)}; {counted(o.events, 'event')} in "
                f"{held}; after decay {_beside(o.good, self.witness_min_good)} good and {o.bad:.2f} bad, counted as "
                f"{o.counted_good:.2f} good and "
                f"{o.counted_bad:.2f} bad{'' if o.bad_counts == 'fully' else ' ' + o.bad_counts}; recent bad "
                f"reports {o.recent_bad_reports:.2f}"
                + ("" if not o.recent_bad_reports
                   else ", not counted: the deviation test discredited it" if o.bad_counts == "as confirmed"
                   else "" if o.counts_reports
                   else f", not counted: the group of {o.group} counts the reports of its org that weigh most")
                + (f"; {counted(o.capped, 'window') if o.first_hand else o.capped} capped" if o.capped else "")
                + (f"; {o.ignored} ignored as out of order" if o.ignored else "")
                + (("; an independent witness" if o.group == o.org
                    else f"; a witness in the group of {o.group}, which counts once")
                   if o.independent else f"; not an independent witness: {self._not_witness(o)}")
            )
        out.extend(_more(len(orgs), self.orgs_total, "orgs' evidence"))
        out.append(
            f"Decay half-lives: good {_days(self.good_half_life_ms)}, bad {_days(self.bad_half_life_ms)}, bad "
            f"reports {_days(self.report_half_life_ms)}. Independent orgs with good evidence: "
            f"{self.independent_orgs} (one per group). Weighted recent bad reports: {self.recent_bad_reports:.2f} "
            f"(one org's per group)."
        )
        out.extend(f"Rule: {r.text}" for r in self.rules)
        return out

    def _not_witness(self, o: OrgPart) -> str:
        """Why an org part is no independent witness (DESIGN.md §6, verified needs independence): each bar it
        falls short of."""
        return ", ".join([
            *([f"weight below {self.witness_min_weight:g}"] if o.weight < self.witness_min_weight else []),
            *([f"good below {self.witness_min_good:g}"] if o.good < self.witness_min_good else []),
            *([f"its group ({o.group}) holds the agent's operator"] if o.operators_group else []),
        ])


@dataclass(frozen=True)
class VouchShare:
    """One voucher's part in an org's reputation."""

    issuer: str
    weight: float
    inflow: float  # reputation mass arriving over this vouch


@dataclass(frozen=True)
class OrgReputation:
    """An org as this node sees it: its personalised PageRank mass, and what its word weighs and why; `vouched_by`
    by the reputation each vouch brings (most first), then its weight, then the issuer's did."""

    org: str
    reputation: float
    weight: float  # what its digests count
    voucher_weight: float  # what its vouches for agents count (credibility is about digests)
    credibility: float
    accountability: float
    agreements: float
    disagreements: float
    root: bool
    own: bool
    equivocator: bool
    group: str
    vouched_by: tuple[VouchShare, ...]
    vouched_by_total: int  # vouches for it there are, listed or not
    full_weight_reputation: float
    witness_min_weight: float  # the weight an independent witness needs

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able structure, with the words under "text"; of the vouchers, the first MAX_LISTED_PARTS
        (`listed`)."""
        out = _flat(self)
        out.update(listed("vouched_by", self.vouched_by, self.vouched_by_total))
        out["text"] = self.lines()
        return out

    def lines(self) -> list[str]:
        if self.own:
            role = "this node's own org (a trust root; its observations count fully)"
        elif self.root:
            role = "a configured trust root"
        else:
            role = "an org"
        bar = self.witness_min_weight
        credibility = _beside(self.credibility, bar)
        out = [f"{self.org}: {role}; weight {_beside(self.weight, bar)}."]
        if self.equivocator:
            out.append("It was caught equivocating (two records for one sequence number): its word counts 0.")
        out.append(
            f"Reputation {self.reputation:.3g} (personalised PageRank from the trust roots); full weight from "
            f"{self.full_weight_reputation:.3g}."
        )
        if self.root:
            out.append(f"Credibility {credibility}: a trust root's digests are what the other orgs' are "
                       "compared with, not tested themselves.")
        elif self.agreements or self.disagreements:
            out.append(f"Credibility {credibility}: its digests agreed {self.agreements:.1f} and disagreed "
                       f"{self.disagreements:.1f} times with what this node and its roots observed.")
        else:
            out.append(f"Credibility {credibility}, the starting credibility of an org none of whose digests "
                       "could be compared yet with what this node and its roots observed; it rises as they agree and "
                       "falls as they disagree.")
        out.append(f"Accountability {self.accountability:.2f} for what it vouched for; its vouches for agents "
                   f"count {self.voucher_weight:.2f}, its digests {_beside(self.weight, bar)}"
                   + ("." if self.weight >= bar else f", below the {bar:g} an independent witness needs."))
        if self.group != self.org:
            out.append(f"Not independent: it witnesses in the group of {self.group}. Only the trust roots and the "
                       f"orgs a root vouches for found groups (unless one other org brings most of their reputation); "
                       f"any other org joins its heaviest voucher nearer the roots.")
        shown = self.vouched_by[:MAX_LISTED_PARTS]
        out.extend(f"  vouched for by {v.issuer} (weight {v.weight:g}), bringing {v.inflow:.3g} reputation"
                   for v in shown)
        out.extend(_more(len(shown), self.vouched_by_total, "vouches for it"))
        return out


def _days(ms: int) -> str:
    days = ms / 86_400_000
    return f"{days:g} day{'' if days == 1 else 's'}" if days >= 1 else f"{ms / 3_600_000:g} hours"


def _beside(value: float, threshold: float) -> str:
    """`value` to 2 decimals, or to as many more as keep it on its side of `threshold`: an untested org's credibility
    (2/3)³ = 0.296 reads 0.296 beside the witness weight 0.3, not 0.30, which would seem to meet it."""
    for places in range(2, 18):
        text = f"{value:.{places}f}"
        if (float(text) < threshold) == (value < threshold):
            return text
    return repr(value)
