"""The README's table of the local API names every route the node serves, and only those; it names every metric
the node serves and every `vouchnet` command, its shell examples parse as written, every option it names exists, and the
limits it states are the code's, as are the scoring defaults, the high-risk tools and the benchmark scripts (docs match
the code)."""

import argparse
import base64
import inspect
import re
import shlex
from pathlib import Path

import pytest

import httpx
import numpy as np
import trio
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from gossip.forks import FORK_WINDOW
from gossip.own_records import MAX_CONFLICT_ROWS, MAX_CONFLICTS, MAX_UNLISTED_SEEN
from gossip.peers import MAX_DIAL_BURST, MAX_DIAL_RATE, MAX_DIALS, MAX_ERROR, MAYBE_BLOCKED, QUICK_CLOSE_S
from gossip.serving_budget import ServingRates
from gossip.sync_service import SyncService
from ledger import Checkpoint, Ed25519Signer, format_note, note_signature
from node import cli
from node.api import create_app
from node.api.http_server import (KEEP_ALIVE_S, LINGER_BYTES, LINGER_S, MAX_HEAD_BYTES, READ_TIMEOUT_S,
                                  REQUEST_DEADLINE_S)
from node.api.records import DEFAULT_PAGE, MAX_PAGE
from node.client.score_stream import MAX_RETRY_AFTER_S
from node.credential_status import LIST_ENTRIES
from node.credentials import VOUCH_CREDENTIAL_DAYS
from node.idempotency import MAX_KEY
from node.stream import MAX_CLIENTS
from node.trust import SNAPSHOT_AFTER
from vouching import MAX_RECORD_SIZE, did_key
from vouching.deviation import credibility
from vouching.explanation import MAX_LISTED_PARTS
from vouching.params import DAY_MS, ScoringParams
from vouching.policy import DEFAULT_HIGH_RISK_TOOLS

from ..tlog_reference import Reference
from .fake_node import fake_node
from .in_process import running

README = Path(__file__).parents[2] / "README.md"
MAKEFILE = Path(__file__).parents[2] / "Makefile"


def documented_paths() -> set[str]:
    """Every path in the first column of the README's API table, parameters as `{}`, query and body dropped."""
    text = README.read_text()
    table = text[text.index("### The local API"):]
    table = table[:table.index("\n\n", table.index("| --- |"))]
    paths = set()
    for row in table[table.index("| --- |"):].splitlines()[1:]:
        first_cell = row.split("|")[1]
        for code in re.findall(r"`([^`]*)`", first_cell):  # `GET /v1/x`, `/v1/y?q=`, `POST /v1/z {body}`
            path = next((token for token in code.split() if token.startswith("/")), None)
            if path is not None:
                paths.add(re.sub(r"\{[^}]*\}", "{}", re.split(r"[?\[]", path)[0]))
    return paths


async def test_every_route_is_in_the_readme_table_and_nothing_else(tmp_path):
    with trio.fail_after(30):
        async with running(tmp_path) as node:
            async with httpx.AsyncClient() as client:
                spec = (await client.get(f"{node.api_url}/openapi.json")).json()
    served = {re.sub(r"\{[^}]*\}", "{}", path) for path in spec["paths"]}
    assert documented_paths() == served - {"/openapi.json"}


async def test_every_metric_the_node_serves_is_in_the_readme(tmp_path):
    """An operator learns a metric from the README before an alert shows it to them."""
    with trio.fail_after(30):
        async with running(tmp_path) as node:
            served = re.findall(r"^# TYPE (\S+) ", node.metrics.render(), re.MULTILINE)
    readme = README.read_text()
    assert len(served) > 50
    assert [name for name in served if not re.search(rf"`{name}[`{{]", readme)] == []


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    """vouchnet's parser, built once for the module's tests, which only read it and parse with it (a build takes
    75-250 ms, and the spans and examples checked below number about 160)."""
    return cli.build_parser()


def test_every_command_is_in_the_readme(parser):
    readme = README.read_text()
    commands = [name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                for name in action.choices]
    assert [c for c in commands if f"vouchnet {c}" not in readme and f"`{c}`" not in readme] == []


# What the shell examples leave to the shell: Alice's peer address and did, and Bob's did, read from their
# `status --json`, and the did of the agent Alice mints.
_SHELL = {"${ALICE% *}": "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWAm5xWQ1ALokCrEo7EjTt2s6Rc3JyAoPWqUcPSn75gtvM",
          "${ALICE#* }": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
          "$BOB": "did:key:z6MkrYzqmeWeDF8xbLGqsXrSCwz5guAUCYN4wSwdbMc6QswM",
          "$AGENT": "did:key:z6MksypVNrP6EaSmRJbBf6QbpccS23xFWnJmQ9B4E5CHhdKG"}


def _sh_commands() -> list[str]:
    """Every `vouchnet` command line of the README's shell examples, continuations joined and shell variables
    filled in; comments, redirections, and what follows a `;`, `&` or `|` dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL):
        for variable, value in _SHELL.items():
            block = block.replace(variable, value)
        for line in block.replace("\\\n", " ").splitlines():
            commands += [m.strip() for m in re.findall(r"(?:^|[;&|(]\s*|\b(?:do|until)\s+)(vouchnet\s[^#;&|)>]*)",
                                                       line)]
    return commands


@pytest.mark.parametrize("line", _sh_commands())
def test_every_shell_example_parses_as_written(line, capsys, parser):
    try:
        args = parser.parse_args(shlex.split(line)[1:])
    except SystemExit:
        pytest.fail(f"{line}: {capsys.readouterr().err}")
    assert callable(args.func)


def test_init_s_help_makes_alice_and_bob_as_the_readme_does(parser):
    """Its examples are the README's two nodes on one machine, up to the peer address and did left to the reader."""
    init, _ = _subcommand(parser, ["init"])
    examples = [" ".join(line.split()) for line in init.epilog.replace("\\\n", " ").splitlines()
                if "--dir ./" in line]
    readme = [line for line in _sh_commands() if line.startswith("vouchnet init --dir ./")]
    assert len(examples) == len(readme) == 2
    for example, line in zip(examples, readme):
        assert " ".join(line.split()).startswith(example.split("...")[0])


def _subcommand(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the (sub)command of vouchnet's `parser` that `words` start with, and the words after its name."""
    while words:
        found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction) and words[0] in a.choices]
        if not found:
            break
        parser, words = found[0].choices[words[0]], words[1:]
    return parser, words


def test_every_option_the_readme_names_exists(parser):
    """A span of prose such as `vouchnet audit verify --org DID` need not be a whole command, but its options must
    be the command's."""
    missing = []
    for span in re.findall(r"`(vouchnet [^`]*)`", README.read_text()):
        command, rest = _subcommand(parser, span.split()[1:])
        options = {o for action in command._actions for o in action.option_strings}
        missing += [f"{span}: {word}" for word in rest if word.startswith("-") and word not in options]
    assert missing == []


_RATES = ServingRates()


@pytest.mark.parametrize("statement", [
    f"at most {MAX_CLIENTS} clients at once",
    f"`limit` 1–{MAX_PAGE}, default {DEFAULT_PAGE};",
    f"each peer may have {_RATES.peer_burst:,.0f} units at once and {_RATES.peer_rate:,.0f} a second, all peers "
    f"together {_RATES.node_burst:,.0f} and {_RATES.node_rate:,.0f}",
    f"is valid for {VOUCH_CREDENTIAL_DAYS} days from when it is fetched",
    f"(N is `seq // {LIST_ENTRIES}`)",
    f"`Retry-After`, at most {MAX_RETRY_AFTER_S:.0f} s,",
    f"{MAX_DIALS} dials at once, bootstrap peers first, and {MAX_DIAL_RATE:.0f} addresses a second in all (bursts "
    f"of {MAX_DIAL_BURST})",
    f"`last_error` (one line of printable text, at most {MAX_ERROR} characters:",
    f"one of a connection closed within {QUICK_CLOSE_S:g} s of opening, not by this node, adds that {MAYBE_BLOCKED};",
    f"once {SNAPSHOT_AFTER:,} records, or an eighth of those it covers if more, are not in it, so a node of fewer than "
    f"{SNAPSHOT_AFTER:,} records has none",
    f"clamp_min(vouchnet_engine_snapshot_records / 8, {SNAPSHOT_AFTER})",
    f"at least every {inspect.signature(SyncService).parameters['refresh_rounds'].default} `[p2p] sync_interval`s",
    f"up to {inspect.signature(SyncService).parameters['accept_records'].default:,} or "
    f"{inspect.signature(SyncService).parameters['accept_bytes'].default >> 20} MiB and a page, are stored as it ends",
    f"it keeps the bytes of {MAX_CONFLICTS:,} conflicting records at most (with those of the held records they "
    f"conflict with: {2 * MAX_CONFLICTS:,} records' bytes, {2 * MAX_CONFLICTS * MAX_RECORD_SIZE / 1e6:.0f} MB of "
    f"{MAX_RECORD_SIZE // 1024} KiB records), and {MAX_CONFLICT_ROWS:,} rows of them.",
    f"past {MAX_CONFLICT_ROWS:,} rows the oldest acknowledged row is dropped",
    f"ids of the last {MAX_UNLISTED_SEEN:,} counted",
    f"431 `head_too_large` for a head over {MAX_HEAD_BYTES // 1024} KiB",
    f"up to {LINGER_BYTES >> 20} MiB within {LINGER_S:g} s of an answer with `Connection: close`, else as a body is "
    f"read (each read within {READ_TIMEOUT_S:g} s, all within the {REQUEST_DEADLINE_S:g} s above)",
    f"within {REQUEST_DEADLINE_S:g} s of its connection opening or falling idle (each read of its body within "
    f"{READ_TIMEOUT_S:g} s)",
    f"its head must arrive within {KEEP_ALIVE_S:g} s, or the connection is closed unanswered",
    f"An `Idempotency-Key` header is optional: any 1 to {MAX_KEY} printable ASCII characters",
    f"gossiped checkpoints are compared for {FORK_WINDOW / 60:g} minutes,",
])
def test_the_readme_states_the_figures_the_code_uses(statement):
    assert statement in " ".join(README.read_text().split())


_P = ScoringParams()
_UNTESTED = float(credibility(np.zeros(1), np.zeros(1), _P)[0])  # an org's credibility before any check


@pytest.mark.parametrize("statement", [
    f"With probability α = {_P.restart} at every step",
    f"r_full = {_P.full_weight_share:.0%} of the roots' mean reputation",
    f"within ±{_P.deviation_window_ms // DAY_MS} days",
    f"|x − np| > {_P.deviation_z}·√(np(1−p)(n_ref+1+n)/(n_ref+2))",
    f"It is tested once *n_ref* ≥ {_P.deviation_min_reference};",
    f"credibility = ((A + {_P.credibility_prior_agree:g})/(A + D + "
    f"{_P.credibility_prior_agree + _P.credibility_prior_disagree:g})){'³' if _P.credibility_exponent == 3 else ''}",
    f"| no check yet (nobody could check it) | {_UNTESTED:.3f} (below the {_P.independent_min_weight} of an "
    "independent witness) |",
    f"accountability = (1 + G)/(1 + G + {_P.accountability_penalty:g}B)",
    f"(posterior mean ≥ {_P.well_behaved_mean} with ≥ {_P.well_behaved_min_good:g} good)",
    f"(mean < {_P.misbehaving_mean} with at least one violation's worth",
    f"bad = {_P.error_weight}·error + {_P.timeout_weight}·timeout + {_P.violation_weight:g}·denied",
    f"high-risk errors {_P.high_risk_error_weight:g} and violations {_P.high_risk_violation_weight:g}",
    f"at most {_P.cap_good:g} good and {_P.cap_bad:g} bad count",
    f"good with a {_P.good_half_life_ms // DAY_MS}-day half-life, bad with {_P.bad_half_life_ms // DAY_MS} days",
    f"more than {_P.future_tolerance_ms // 60_000} minutes ahead of now",
    *(f"| {basis} | {weight:g} |" for basis, weight in _P.basis_weights.items()),
    f"confidence = m/(m + {_P.confidence_half:g})",
    f"score = ⌊1000 · I⁻¹₀.₀₅(α, β)⌋ the {_P.quantile:.0%} lower quantile",
    f"at least {_P.verified_min_orgs} independent witnesses: orgs with witness weight ≥ {_P.independent_min_weight} "
    f"and decayed good ≥ {_P.independent_min_good}",
    f"ramp(violation share, {_P.bad_report_low}→{_P.bad_report_high}) × min(1, violation weight/"
    f"{_P.violation_weight:g})",
    f"| ≥ {_P.reports_below_trusted} | 499 (below `trusted`",
    f"| ≥ {_P.reports_below_provisional} | 199 (below `provisional`)",
    f"the {MAX_LISTED_PARTS} heaviest by default",
    f"`verified` needs good evidence from {_P.verified_min_orgs} independence groups",  # the threat model's
    f"(evidence dated more than {_P.future_tolerance_ms // 60_000} minutes ahead counts from then only)",
])
def test_the_readme_states_the_scoring_defaults(statement):
    """"How scores are computed" states vouching.params.ScoringParams' defaults as the engine uses them."""
    assert statement in " ".join(README.read_text().split())


def test_the_readme_lists_the_default_high_risk_tools():
    """"How scores are computed" 8 names every default high-risk tool of vouching.policy, and no other."""
    listed = re.search(r"The default list: ([^.]*)\.", " ".join(README.read_text().split()))
    assert listed is not None
    assert set(listed.group(1).split(", ")) == DEFAULT_HIGH_RISK_TOOLS


def test_the_readme_names_the_scripts_make_bench_runs():
    """Performance's "Reproduce" names, and counts, the scripts the Makefile's `bench` runs."""
    makefile = re.search(r"^BENCHMARKS := (.*)$", MAKEFILE.read_text(), re.MULTILINE)
    readme = re.search(r"`make bench` runs the (\w+) scripts with targets, (.*?) \(about",
                       " ".join(README.read_text().split()))
    assert makefile is not None and readme is not None
    scripts = makefile.group(1).split()
    assert readme.group(1) == ("one two three four five six seven eight nine ten".split())[len(scripts) - 1]
    assert set(re.findall(r"`(\w+)\.py`", readme.group(2))) == set(scripts)


def _check_log_script() -> dict:
    """The globals of the README's script that checks a node's log ("Checking a node's log yourself"), run as a
    module that is not `__main__`."""
    found = re.search(r"<!-- script: check_log -->\n```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert found is not None
    namespace = {"__name__": "readme_check_log"}
    exec(compile(found.group(1), "README.md:check_log", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def test_the_readme_s_log_checks_accept_rfc_9162_proofs_and_refuse_changed_ones():
    """Its inclusion and consistency checks agree with tests/tlog_reference.py, the independent client, on every
    pair of sizes up to 20: each proof verifies, and one with a hash changed, dropped or added does not, nor does the
    empty proof of a root as the leaf of a larger tree."""
    script = _check_log_script()
    entries = [i.to_bytes(2, "big") for i in range(20)]
    ref = Reference(entries)
    leaves = [script["sha"](b"\x00" + entry) for entry in entries]

    def altered(proof: list[bytes]) -> list[list[bytes]]:
        changed = [proof[:i] + [bytes(32)] + proof[i + 1:] for i in range(len(proof))]
        return changed + [proof[1:]] * bool(proof) + [proof + [bytes(32)]]

    for size in range(1, 21):
        assert script["root_of"](leaves[:size]) == ref.root(size)
        for index in range(size):
            proof = ref.path(index, 0, size)
            assert script["included"](leaves[index], index, size, proof, ref.root(size))
            assert not any(script["included"](leaves[index], index, size, p, ref.root(size)) for p in altered(proof))
            assert size == 1 or not script["included"](ref.root(size), index, size, [], ref.root(size))
        for old in range(size + 1):
            proof = ref.consistency(old, size)
            assert script["consistent"](old, size, ref.root(old), ref.root(size), proof), (old, size)
            assert not any(script["consistent"](old, size, ref.root(old), ref.root(size), p)
                           for p in altered(proof)), (old, size)


async def test_the_readme_s_script_checks_a_node_s_log_and_its_cosignatures(tmp_path):
    """Found by stop 45's walk of the README as an evaluator: nothing said how to check a node's log without
    vouchnet. The README's script checks what the API serves (the checkpoint, its org's signature and its witnesses'
    cosignatures, every entry) and names the witnesses; a cosignature or entry that does not match is refused."""
    script = _check_log_script()
    witnesses = [SigningKey.generate() for _ in range(2)]
    with fake_node(tmp_path) as node:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(node)),
                                     base_url="http://node") as api:

            async def fetch(path: str) -> bytes:
                return (await api.get(path)).raise_for_status().content

            def check() -> tuple[str, int, list[str]]:
                return script["check_log"](lambda path: trio.from_thread.run(fetch, path))

            node.replica.store.ledger.append([b"entry %d" % i for i in range(70)])
            node.sign_checkpoint(cosigners=tuple(witnesses))
            assert await trio.to_thread.run_sync(check) == (
                node.origin, 70, [did_key(bytes(key.verify_key)) for key in witnesses])

            line = node.note.splitlines()[-1]
            raw = base64.b64decode(line.split()[-1])
            later = raw[:4] + (int.from_bytes(raw[4:12], "big") + 1).to_bytes(8, "big") + raw[12:]
            node.note = node.note.replace(line, line.replace(line.split()[-1], base64.b64encode(later)))
            with pytest.raises(BadSignatureError):  # a cosignature's time is signed
                await trio.to_thread.run_sync(check)

            text = Checkpoint(node.origin, 70, bytes(32)).to_text()  # signed by the org, of a root not the log's
            node.note = format_note(text, [note_signature(text, Ed25519Signer(node.origin, node.replica.key))])
            with pytest.raises(AssertionError, match="the entries do not hash to the checkpoint's root"):
                await trio.to_thread.run_sync(check)


def test_every_link_to_a_section_of_the_readme_finds_it():
    """Each `(#anchor)` link names a heading, as GitHub makes its anchor (lower case, spaces to hyphens, punctuation
    but hyphens dropped, a repeated one numbered): the threat model and the contents send an evaluator across it."""
    text = re.sub(r"```.*?```", "", README.read_text(), flags=re.DOTALL)
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.*)$", text, re.MULTILINE):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        repeated = sum(1 for a in anchors if a == anchor or re.fullmatch(rf"{re.escape(anchor)}-\d+", a))
        anchors.add(f"{anchor}-{repeated}" if repeated else anchor)
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) > 100
    assert [link for link in links if link not in anchors] == []
