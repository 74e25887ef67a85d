"""`vouchnet sim`: run the trust simulation suite and print the targets table (issue 3, items 4 and 5)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ledger.files import make_directory, replace_file
from node.cli_commands import summary_of
from node.commands.common import Subparsers, UsageError, add_local_command, seed_argument
from vouching.counts import counted


def register(subparsers: Subparsers) -> None:
    """Add the `sim` subcommand to the `vouchnet` parser's subcommands."""
    parser = add_local_command(
        subparsers,
        "sim",
        run=run,
        summary=summary_of("sim"),
        description="Run the real trust engine on synthetic networks of honest, colluding and Sybil orgs (and on "
                    "the Bitcoin OTC graph), print the targets T1-T9 with pass/fail, and write metrics, plots and "
                    "a Markdown summary.",
        examples=["vouchnet sim --suite standard --seed 1", "vouchnet sim --suite quick --scenario sybil --no-plots"],
    )
    parser.add_argument("--suite", choices=("standard", "quick"), default="standard",
                        help="scale of the networks (quick: the tests' reduced scale; default: %(default)s)")
    parser.add_argument("--seed", type=seed_argument, default=1, help="reproduces a run exactly (default: %(default)s)")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="run only this scenario or family (repeatable), e.g. 'sybil' or 'threat-c f=0.6'")
    parser.add_argument("--out", type=Path, default=Path("sim-results"),
                        help="directory for metrics.json, the plots and summary.md (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the targets as JSON to PATH")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-otc", action="store_true", help="skip the Bitcoin OTC replay")


def run(args: argparse.Namespace) -> int:
    from testnet.sim import report
    from testnet.sim.suite import run_suite, selectable
    from testnet.sim.targets import evaluate

    names, families = selectable(args.suite)
    if unknown := sorted(set(args.scenario or ()) - names - families):
        example = max(names - families)  # a scenario's own name, such as 'threat-c f=0.6'
        raise UsageError(f"--scenario {unknown[0]!r}: no scenario or family of the {args.suite} suite has this name; "
                         f"families: {', '.join(sorted(families))} (or one scenario, e.g. {example!r})")

    bar = _ProgressBar()
    started = time.monotonic()
    suite = run_suite(args.suite, args.seed, only=set(args.scenario or ()), otc=not args.no_otc, progress=bar)
    bar.close()
    targets = evaluate(suite)
    make_directory(args.out)
    plots: list[str] = []
    if not args.no_plots:
        try:
            from testnet.sim import plots as plotting
        except ImportError:  # matplotlib is the optional `sim` extra
            print("matplotlib is not installed (pip install 'vouchnet[sim]'): no plots", file=sys.stderr)
        else:
            plots = plotting.write_all(suite, args.out)
    # Each whole or not at all (ledger.files), readable as an ordinary file is (0o666 less the umask)
    replace_file(args.out / "metrics.json", json.dumps(report.metrics(suite, targets), indent=1).encode(), mode=0o666)
    replace_file(args.out / "summary.md", report.markdown(suite, targets, plots).encode(), mode=0o666)
    if args.json:
        replace_file(args.json, json.dumps(report.targets_json(targets), indent=1).encode(), mode=0o666)
    print(report.table(targets))
    print(f"\n{counted(len(suite.runs), 'scenario')} in {time.monotonic() - started:.0f} s; results in {args.out}/")
    return 0 if all(t.passed for t in targets) else 1


class _ProgressBar:
    """One line per scenario on stderr, redrawn as rounds complete (a line per scenario when not a terminal)."""

    def __init__(self) -> None:
        self._live = sys.stderr.isatty()
        self._current = ""

    def __call__(self, name: str, done: int, total: int) -> None:
        if name != self._current:
            self.close()
            self._current = name
        if self._live:
            filled = round(30 * done / total) if total else 30
            sys.stderr.write(f"\r{name:<24} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
            sys.stderr.flush()
        elif done == total:
            sys.stderr.write(f"{name}: {counted(total, 'round')}\n")

    def close(self) -> None:
        if self._live and self._current:
            sys.stderr.write("\n")
        self._current = ""
