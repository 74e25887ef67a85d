"""The `vouching` and `ledger` packages import a module of theirs only when one of its names is asked for
(vouching.lazy): every `vouchnet` command imports a few modules of each, and imported whole they cost it 0.04 and
0.05 s of CPU. No module of `vouching`, `ledger` or `gossip` imports `node`."""

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["vouching", "ledger"])
def test_importing_a_package_imports_none_of_its_modules(package):
    code = (f"import sys, {package}; "
            f"print(sorted(m for m in sys.modules if m.startswith('{package}.') and m != 'vouching.lazy'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["vouching", "ledger"])
def test_every_name_of_a_package_is_one_of_its_module_s(package):
    imported = importlib.import_module(package)
    for name in imported.__all__:
        value = getattr(imported, name)
        assert any(getattr(module, name, None) is value for module_name, module in list(sys.modules.items())
                   if module_name.startswith(f"{package}.")), name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nothing'"):
        imported.nothing  # noqa: B018


def test_no_module_of_gossip_ledger_or_vouching_imports_node():
    """Dependencies point one way (DESIGN §1): node → gossip → (vouching, ledger)."""
    code = ("import importlib, pkgutil, sys\n"
            "for package in ('vouching', 'ledger', 'gossip'):\n"
            "    for module in pkgutil.iter_modules(importlib.import_module(package).__path__, package + '.'):\n"
            "        importlib.import_module(module.name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'node'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_loggers_counted_as_vouchnet_s_own_are_its_packages():
    """node.logs.OWN_LOGGERS (kept at DEBUG by `--log-level debug`, the libraries' at INFO) names the packages
    pyproject.toml installs, by hand: a package added there and not here would have its debug lines dropped."""
    import tomllib
    from pathlib import Path

    from node.logs import OWN_LOGGERS

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    packages = {pattern.removesuffix("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert set(OWN_LOGGERS) == packages | {"vouchnet"}  # (and the loggers named vouchnet.*: the node's, the SDK's)
