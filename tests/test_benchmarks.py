"""The benchmark scripts: their verdicts (`make bench` lists a script as missing its targets by its exit status), and
what they measure, as their docstrings and the README say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import trio

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sdk_py_remembers_a_missed_target_for_its_exit_status(capsys):
    """sdk.py printed OVER TARGET and exited 0, so `make bench` never listed it."""
    sdk = _script("sdk")
    sdk._report("cached decision", [40_000] * 100, 50)  # 40 us each: within 50 us
    assert sdk._missed == [] and "ok)" in capsys.readouterr().out
    sdk._report("uncached decision", [4_000_000] * 100, 3000)  # 4 ms each: over 3 ms
    assert sdk._missed == ["uncached decision"] and "OVER TARGET" in capsys.readouterr().out


def test_own_records_page_py_lists_records_the_ledger_stores_as_it_says():
    """Its `--stored` rows and the records its conflicting rows conflict with (but with `--held`) were ids its empty
    ledger did not hold: each page looked them up in an empty index and said `stored` false and `not_kept`, so the
    README's figure for conflicts with stored records measured none."""
    page = _script("own_records_page")
    for held in (False, True):
        rows = trio.run(page.measure, 3, 16, 2, held)
        assert [(r["stored"], r["bytes"], r["conflicts_with_bytes"]) for r in rows] == (
            [(True, None, None)] * 2 + [(False, "kept", "kept")] * 3), held


def test_adopt_rebuild_py_refuses_fewer_records_than_a_snapshot_is_written_for(capsys):
    """With --records under SNAPSHOT_AFTER it waited for ever for the start's engine.snapshot, which no node writes."""
    adopt = _script("adopt_rebuild")
    assert adopt._arguments(["--records", str(adopt.SNAPSHOT_AFTER)]).records == adopt.SNAPSHOT_AFTER
    with pytest.raises(SystemExit) as stopped:
        adopt._arguments(["--records", "5000"])
    assert stopped.value.code == 2
    assert f"--records: at least {adopt.SNAPSHOT_AFTER:,}" in capsys.readouterr().err


def test_adopt_rebuild_py_refuses_no_orgs_no_agents_or_a_negative_flood_naming_the_option(capsys):
    """With no orgs or no agents the build of its data directory divided by zero: a traceback, not a usage error."""
    adopt = _script("adopt_rebuild")
    for option, value, least in (("--orgs", "0", 1), ("--agents", "0", 1), ("--flood", "-1", 0)):
        with pytest.raises(SystemExit) as stopped:
            adopt._arguments(["--records", str(adopt.SNAPSHOT_AFTER), option, value])
        assert stopped.value.code == 2
        assert f"{option}: at least {least}, got {value}" in capsys.readouterr().err
    assert adopt._arguments(["--orgs", "1", "--agents", "1", "--flood", "0"]).orgs == 1
