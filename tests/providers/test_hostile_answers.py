"""Hostile provider answers against the real clients over loopback HTTP (ops/faults/malformed).

A fixed seed makes the generated answers the same on every run: this cannot flake, and a
failure names the answer that broke it.
"""

from __future__ import annotations

import pytest

from ops.faults.malformed import CATEGORIES, ENDPOINTS, Answer, judge, run
from providers.errors import ProtocolError, ProviderUnavailable

EXAMPLES = 150
SEED = 20261130


@pytest.fixture(scope="module")
def report():
    return run(examples=EXAMPLES, seed=SEED)


def test_no_answer_raises_anything_outside_our_tree(report):
    unhandled = [o for o in report.outcomes if o.result.startswith("unhandled")]
    assert unhandled == []


def test_no_malformed_answer_is_accepted_and_every_error_is_the_right_one(report):
    assert [(o.answer.endpoint, o.answer.category, o.problem) for o in report.problems] == []


def test_at_least_100_distinct_answers_covering_every_category_and_endpoint(report):
    assert report.distinct >= 100
    assert {o.answer.category for o in report.outcomes} == set(CATEGORIES)
    assert {o.answer.endpoint for o in report.outcomes} == set(ENDPOINTS)


def test_the_same_seed_gives_the_same_answers():
    first = [o.answer.key() for o in run(examples=15, seed=SEED).outcomes]
    again = [o.answer.key() for o in run(examples=15, seed=SEED).outcomes]
    assert first == again


# --- The judge itself: it must be able to fail ------------------------------------------


ANSWER = Answer("hitpaw.query", "html", 200, b"<html>oops</html>")


def test_the_judge_flags_an_accepted_answer():
    assert judge(ANSWER, None).problem == "a malformed answer was accepted"


def test_the_judge_flags_an_internal_error():
    assert "unhandled ValueError" in judge(ANSWER, ValueError("cannot convert float NaN")).problem


def test_the_judge_flags_an_error_without_the_vendors_text():
    bare = ProtocolError("hitpaw: no documented shape", "hitpaw", None, 200, None, None)
    assert "vendor's text" in judge(ANSWER, bare).problem


def test_the_judge_flags_a_wrong_class():
    wrong = ProviderUnavailable("x", "hitpaw", None, 200, None, "<html>oops</html>")
    assert "expected protocol_error" in judge(ANSWER, wrong).problem


def test_the_judge_passes_a_protocol_error_carrying_the_text():
    right = ProtocolError("x", "hitpaw", None, 200, None, "<html>oops</html>")
    assert judge(ANSWER, right).problem is None
