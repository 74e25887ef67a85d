"""`vouchnet score` and `vouchnet orgs`: how this node scores an agent, and how it weighs the orgs it knows."""

from __future__ import annotations

import argparse
from typing import Any

from node.client import NodeClient

from .common import Subparsers, UsageError, add_command, did_argument, open_client, print_json


def register(subparsers: Subparsers) -> None:
    score = add_command(
        subparsers,
        "score",
        summary="show an agent's trust score from this node's point of view, explained",
        description="Ask the running node for an agent's score (0-1000), tier and confidence, with the explanation: "
        "what each org's digests and each vouch contributed, how evidence decayed, and every cap or rule that "
        "bit. An agent the node has never heard of gets the cold-start score; an org's did, one that issued records "
        "the node holds and that nothing the node holds names as an agent, is refused (exit 2): `vouchnet orgs DID` "
        "shows an org.",
        examples=["vouchnet score did:key:z6Mk...", "vouchnet score did:key:z6Mk... --json"],
        run=_score,
    )
    score.add_argument("agent", metavar="DID", type=did_argument, help="the agent's did:key")
    score.add_argument("--json", action="store_true", help="print the node's whole answer as JSON")
    orgs = add_command(
        subparsers,
        "orgs",
        summary="list the orgs this node knows, with their reputation and why, or show one",
        description="List every org the running node knows, highest reputation first, or, given its did, one org "
        "with its explanation: its personalised PageRank reputation from this node's trust roots, its credibility "
        "(do its digests agree with what this node saw?), its accountability (did what it vouched for behave?), and "
        "the weight its word carries here. An org the node has never heard of has reputation 0; an agent's did, one "
        "the node holds vouches or digests about and no record issued by, is refused (exit 2): `vouchnet score DID` "
        "shows an agent.",
        examples=["vouchnet orgs", "vouchnet orgs --explain", "vouchnet orgs did:key:z6Mk...", "vouchnet orgs --json"],
        run=_orgs,
    )
    orgs.add_argument("org", nargs="?", metavar="DID", type=did_argument,
                      help="only this org (the did of any of its keys), with its explanation")
    orgs.add_argument("--explain", action="store_true", help="print each org's explanation in words")
    orgs.add_argument("--json", action="store_true", help="print the orgs as one JSON list, every page of the node's "
                      "(with DID: that org, as GET /v1/orgs/{did} answers)")


def _score(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        answer = client.score(args.agent)
        if not _named_as_agent(answer) and _issues_records(client, args.agent):
            raise UsageError(f"{args.agent} is an org (it issues records); score takes an agent's did: see "
                             f"`vouchnet orgs {args.agent}`")
    if args.json:
        print_json(answer)
        return 0
    print(f"{answer['agent']}: {answer['score']} ({answer['tier']}), confidence {answer['confidence']:.2f}")
    for line in answer["explanation"]["text"][1:]:  # the first line repeats the headline
        print(f"  {line}")
    return 0


def _orgs(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        orgs = [client.org(args.org)] if args.org else sorted(client.iter_orgs(), key=lambda o: -o["reputation"])
        if args.org and not _issues_records(client, args.org) and _named_as_agent(client.score(args.org)):
            raise UsageError(f"{args.org} is an agent (the node holds vouches or digests about it, and no record it "
                             f"issued); orgs takes an org's did: see `vouchnet score {args.org}`")
    if args.json:
        print_json(orgs[0] if args.org else orgs)
        return 0
    for org in orgs:
        role = "own" if org["own"] else "root" if org["root"] else "equivocator" if org["equivocator"] else ""
        print(f"{org['org']}  reputation {org['reputation']:.4f}  weight {org['weight']:.2f}  "
              f"credibility {org['credibility']:.2f}  accountability {org['accountability']:.2f}  {role}".rstrip())
        if args.explain or args.org:
            for line in org["text"]:
                print(f"    {line}")
    return 0


def _issues_records(client: NodeClient, did: str) -> bool:
    """Whether the node holds a record `did` signed: only an org's keys sign records (an agent's never do)."""
    return bool(client.records(issuer=did, limit=1)["records"])


def _named_as_agent(answer: dict[str, Any]) -> bool:
    """Whether a score `answer` (explained) rests on something the node holds about the agent, a vouch or an org's
    digest (TrustEngine.explain lists each), rather than being the cold start of a did the node knows nothing of."""
    explanation = answer.get("explanation", {})
    return bool(explanation.get("vouches_total") or explanation.get("orgs_total"))
