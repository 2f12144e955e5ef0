"""Imports point down only: protocol adapters -> domain packages -> db (STYLE.md, rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "appliance"
DOMAIN = ["queue", "hql", "stats", "config", "cluster", "commands", "policy", "delivery",
          "bounce", "access", "db"]
ADAPTER_MODULES = ("appliance.soap", "appliance.smtp", "appliance.cli", "appliance.compose",
                   "appliance.process", "appliance.web")
PROTOCOL_LIBRARIES = ("spyne", "aiosmtpd", "pycurl")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _domain_files() -> list[Path]:
    return [p for pkg in DOMAIN for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("path", _domain_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_does_not_import_protocols_or_adapters(path: Path) -> None:
    bad = {
        name for name in _imports(path)
        if name.split(".")[0] in PROTOCOL_LIBRARIES or name.startswith(ADAPTER_MODULES)
    }
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_db_imports_no_domain_package() -> None:
    for path in sorted((ROOT / "db").rglob("*.py")):
        bad = {n for n in _imports(path) if n.startswith("appliance.") and not n.startswith(
            ("appliance.db", "appliance.errors", "appliance.types", "appliance.settings",
             "appliance.resources"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
