"""The README's table of the local API names every route the node serves, and only those; and it names every
`vouchnet` command (docs match the code)."""

import argparse
import re
from pathlib import Path

import httpx
import trio

from node import cli

from .in_process import running

README = Path(__file__).parents[2] / "README.md"


def documented_paths() -> set[str]:
    """Every path in the first column of the README's API table, parameters as `{}`, query and body dropped."""
    text = README.read_text()
    table = text[text.index("**The local API**"):]
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


def test_every_command_is_in_the_readme():
    readme = README.read_text()
    commands = [name for action in cli.build_parser()._actions if isinstance(action, argparse._SubParsersAction)
                for name in action.choices]
    assert [c for c in commands if f"vouchnet {c}" not in readme and f"`{c}`" not in readme] == []
