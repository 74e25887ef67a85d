"""The benchmark scripts' verdicts: `make bench` lists a script as missing its targets by its exit status."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
