"""The README's FastAPI and Django code is the examples' code, verbatim."""

from __future__ import annotations

import re

import pytest

from tests.system import ROOT


def readme_block(name: str) -> str:
    """The python block after ``<!-- examples/NAME -->`` in the README."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- examples/{re.escape(name)} -->\n```python\n(.*?)```", text, re.S)
    assert match, f"README has no block marked examples/{name}"
    return match.group(1)


def example_region(name: str) -> str:
    text = (ROOT / "examples" / name).read_text()
    return text.split("# README >>>\n", 1)[1].split("# <<< README\n", 1)[0]


@pytest.mark.parametrize("name", ["fastapi_app.py", "django_view.py"])
def test_readme_shows_the_example_verbatim(name):
    assert readme_block(name) == example_region(name)
