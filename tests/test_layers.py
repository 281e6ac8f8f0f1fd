"""Layers point down: providers/ and storage/ import nothing from tasks/ or workers/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("providers", "storage")
UPPER = ("tasks", "workers")


# Parsed in a fresh interpreter: in a process where earlier code caught a RecursionError
# (the hostile-answer tests feed deeply nested JSON), CPython 3.11's ast.parse can fail with
# "SystemError: AST constructor recursion depth mismatch", whatever the file.
SCAN = """
import ast, json, sys
from pathlib import Path

root = Path(sys.argv[1])
found = {}
for package in sys.argv[2:]:
    for path in sorted((root / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(root))] = sorted(names)
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def imports() -> dict[str, list[str]]:
    """Every module each file of the lower layers and of tasks/ imports, at any depth."""
    scan = subprocess.run([sys.executable, "-c", SCAN, str(ROOT), *LOWER, "tasks"],
                          capture_output=True, text=True, check=True)
    return json.loads(scan.stdout)


@pytest.mark.parametrize("package", LOWER)
def test_lower_layers_import_nothing_above_them(imports, package):
    assert any(path.startswith(package + "/") for path in imports)
    offenders = {
        path: [name for name in names if name.split(".")[0] in UPPER]
        for path, names in imports.items() if path.startswith(package + "/")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_providers_import_nothing_from_storage(imports):
    """Storage builds on providers (ImageInfo, the error root): never the other way round."""
    offenders = [
        path for path, names in imports.items() if path.startswith("providers/")
        and any(name.split(".")[0] == "storage" for name in names)
    ]
    assert offenders == []


def test_pipeline_and_store_do_not_import_each_other_in_a_cycle(imports):
    """What both need lives below both, in tasks/jobsteps.py."""
    assert "tasks.pipeline" not in imports["tasks/store.py"]
    assert "tasks.jobsteps" in imports["tasks/store.py"]
