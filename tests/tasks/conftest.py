"""Fixtures of the step tests: the test system's runtime and a recording dispatcher."""

from __future__ import annotations

import pytest

from tests.tasks.dispatch import RecordingDispatcher


@pytest.fixture
def rt(system):
    return system.runtime


@pytest.fixture
def dispatch():
    return RecordingDispatcher()
