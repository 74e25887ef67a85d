"""Changing values in a node's `config.toml` as an operator would with an editor: the line `key = ...` of its
section is rewritten, comments and everything else stay, and the result must load (node.config.load_config)."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from ledger.files import replace_file
from node.config import CONFIG_FILE, parse_config

Value = str | int | float | list[str]
_SECTION = re.compile(r"^\s*\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$")


def toml_value(value: Value) -> str:
    """A TOML literal of a string, a number or a list of strings (a JSON string is a valid TOML basic string)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not config values of a node")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def set_values(text: str, values: Mapping[tuple[str, str], Value]) -> str:
    """`text` with each `(section, key)` set to its value: its line replaced, or a line added at the top of the
    section when the key is absent (or only a comment). A missing section is appended."""
    lines = text.splitlines()
    for (section, key), value in values.items():
        line = f"{key} = {toml_value(value)}"
        start = _section_start(lines, section)
        if start is None:
            lines += ["", f"[{section}]", line]
            continue
        end = next((i for i in range(start + 1, len(lines)) if _SECTION.match(lines[i])), len(lines))
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        found = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
        if found is None:
            lines.insert(start + 1, line)
        else:
            lines[found] = line
    return "\n".join(lines) + "\n"


def _section_start(lines: list[str], section: str) -> int | None:
    for i, line in enumerate(lines):
        match = _SECTION.match(line)
        if match and match.group(1) == section:
            return i
    return None


def edit_config(data_dir: Path, values: Mapping[tuple[str, str], Value]) -> bool:
    """Set `values` in `data_dir/config.toml`, replaced whole (ledger.files) with its mode kept; True if the file
    changed. Raises node.config.ConfigError, leaving the file as it was, if the edited configuration would not
    load."""
    path = data_dir / CONFIG_FILE
    before = path.read_text(encoding="utf-8")
    after = set_values(before, values)
    if after == before:
        return False
    parse_config(data_dir, after)
    replace_file(path, after.encode(), mode=stat.S_IMODE(path.stat().st_mode))
    return True
