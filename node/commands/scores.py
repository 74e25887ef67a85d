"""`vouchnet score` and `vouchnet orgs`: how this node scores an agent, and how it weighs the orgs it knows."""

from __future__ import annotations

import argparse

from node.cli_commands import summary_of
from node.client import NodeApiError, NodeClient

from .common import Subparsers, UsageError, add_command, did_argument, open_client, org_did_argument, print_json

NOT_AN_AGENT = "not_an_agent"  # the node's refusal of an org's did where an agent's is asked for (node.api.scores)


def register(subparsers: Subparsers) -> None:
    score = add_command(
        subparsers,
        "score",
        summary=summary_of("score"),
        description="Ask the running node for an agent's score (0-1000), tier and confidence, with the explanation: "
        "what each org's digests and each vouch contributed, how evidence decayed, and every cap or rule that "
        "bit. An agent the node has never heard of gets the cold-start score, and the line says so; an org's did (one "
        "that signed records the node holds, or that a trust root or an org-peer vouch names) that nothing the node "
        "holds names as an agent is refused (exit 2): `vouchnet orgs DID` shows an org.",
        examples=["vouchnet score did:key:z6Mk...", "vouchnet score did:key:z6Mk... --json"],
        run=_score,
    )
    score.add_argument("agent", metavar="DID", type=did_argument, help="the agent's did:key")
    score.add_argument("--json", action="store_true", help="print the node's whole answer as JSON")
    orgs = add_command(
        subparsers,
        "orgs",
        summary=summary_of("orgs"),
        description="List every org the running node knows, highest reputation first, or, given its did, one org "
        "with its explanation: its personalised PageRank reputation from this node's trust roots, its credibility "
        "(do its digests agree with what this node saw?), its accountability (did what it vouched for behave?), and "
        "the weight its word carries here. An org the node has never heard of has reputation 0; an agent's did, one "
        "the node holds vouches or digests about and no record issued by, is refused (exit 2): `vouchnet score DID` "
        "shows an agent.",
        examples=["vouchnet orgs", "vouchnet orgs --explain", "vouchnet orgs did:key:z6Mk...", "vouchnet orgs --json"],
        run=_orgs,
    )
    orgs.add_argument("org", nargs="?", metavar="DID", type=org_did_argument,
                      help="only this org (the did of any of its keys), with its explanation")
    orgs.add_argument("--explain", action="store_true", help="print each org's explanation in words")
    orgs.add_argument("--json", action="store_true", help="print the orgs as one JSON list, every page of the node's "
                      "(with DID: that org, as GET /v1/orgs/{did} answers)")


def _score(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        try:
            answer = client.score(args.agent)
        except NodeApiError as error:
            if error.code != NOT_AN_AGENT:
                raise
            said = error.detail.removeprefix("path.did: ").partition("; GET ")[0]  # the CLI's command, not the path
            raise UsageError(f"{said}; score takes an agent's did: see `vouchnet orgs {args.agent}`") from None
    if args.json:
        print_json(answer)
        return 0
    unknown = "; the node holds nothing on it: the cold-start score" if answer.get("known") is False else ""
    print(f"{answer['agent']}: {answer['score']} ({answer['tier']}), confidence {answer['confidence']:.2f}{unknown}")
    for line in answer["explanation"]["text"][1:]:  # the first line repeats the headline
        print(f"  {line}")
    return 0


def _orgs(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        orgs = [client.org(args.org)] if args.org else sorted(client.iter_orgs(), key=lambda o: -o["reputation"])
        if args.org and not _issues_records(client, args.org) and _named_as_agent(client, args.org):
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


def _named_as_agent(client: NodeClient, did: str) -> bool:
    """Whether the node holds something naming `did` as an agent, a vouch, an org's digest or its own observations
    (its score answer's `known`; from a node older than that field, the vouches and orgs its explanation lists),
    rather than scoring it as a did it knows nothing of; an org's did, which the node refuses to score, is not."""
    try:
        known = client.score(did, explain=False).get("known")
        if known is None:
            explanation = client.score(did)["explanation"]
            return bool(explanation.get("vouches_total") or explanation.get("orgs_total"))
        return known
    except NodeApiError as error:
        if error.code == NOT_AN_AGENT:
            return False
        raise
