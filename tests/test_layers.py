"""Layers point down: providers/ and storage/ import nothing from tasks/ or workers/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("providers", "storage")
UPPER = ("tasks", "workers")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", LOWER)
def test_lower_layers_import_nothing_above_them(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] in UPPER
        )
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_providers_import_nothing_from_storage():
    """Storage builds on providers (ImageInfo, the error root): never the other way round."""
    offenders = [
        str(path.relative_to(ROOT)) for path in sorted((ROOT / "providers").rglob("*.py"))
        if any(name.split(".")[0] == "storage" for name in imported_modules(path))
    ]
    assert offenders == []
