"""The directories a command makes on the way to one it was given (`--dir`, `--out`), to be removed again when it
leaves nothing in them: never one that was there before."""

from __future__ import annotations

import contextlib
from pathlib import Path


def missing(path: Path) -> list[Path]:
    """`path` and its parents that do not exist now, outermost first: those making `path` makes. One a `..` passes
    through counts (making `a/../b` makes `a`); a path ending in `..` or `.` names one its parent made."""
    return [p for p in (*reversed(path.parents), path) if p.name not in ("", ".", "..") and not p.exists()]


def unmake(made: list[Path]) -> None:
    """Remove the directories `made` (missing's, made since), innermost first: those still empty, each tried (making
    `a/x/../../a/y` makes `a/../a`, which is `a`, after `a/x`)."""
    for path in reversed(made):
        with contextlib.suppress(OSError):
            path.rmdir()
