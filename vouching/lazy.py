"""A package's names imported from their modules when each is first asked for (PEP 562), for `vouching` and
`ledger`: each names dozens from its modules, and importing any one of those modules runs the package's __init__,
which imported them all (0.04 and 0.05 s of CPU for each `vouchnet` command)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_names(package: str, modules: Mapping[str, tuple[str, ...]]) -> tuple[list[str], Callable[[str], object]]:
    """`__all__` and `__getattr__` for `package`, whose names are `modules`' (relative module name -> its names):
    a name is imported from its module when first asked for, then kept in the package."""
    where = {name: module for module, names in modules.items() for name in names}

    def attribute(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    return sorted(where), attribute
