"""The exception tree: stable codes, the retry split, and surviving serialisation."""

from __future__ import annotations

import json
import pickle
import re

import pytest
from celery import Celery
from celery.backends.base import BaseBackend

import storage.jobs  # noqa: F401  (registers UnknownJob under NotFound)
from providers import errors
from providers.errors import (
    BODY_EXCERPT_CHARS,
    EnhanceError,
    PermanentError,
    RateLimited,
    TransientError,
    error_for_code,
)
from storage import errors as storage_errors


def all_error_classes() -> list[type[EnhanceError]]:
    found, stack = [], [EnhanceError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


CLASSES = all_error_classes()
FULL_ARGS = ("it broke", "picwish", 4001, 429, 2.5, "{'status': 500}")


@pytest.mark.parametrize("module", [errors, storage_errors], ids=lambda m: m.__name__)
def test_module_docstring_draws_every_class_of_the_module(module):
    defined = [
        name for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, EnhanceError)
        and obj.__module__ == module.__name__
    ]
    drawn = re.findall(r"^[\s│]*(?:[├└]── )?([A-Z]\w+)\s{2,}", module.__doc__, flags=re.MULTILINE)
    roots = {"EnhanceError", "TransientError", "PermanentError"} - set(defined)
    assert sorted(set(drawn) - roots) == sorted(defined)


def test_storage_errors_hang_from_the_one_root():
    for cls in (storage_errors.StorageUnavailable, storage_errors.StorageFailed,
                storage_errors.ResultCheckFailed):
        assert issubclass(cls, EnhanceError) and error_for_code(cls.code) is cls


def test_every_class_has_its_own_code():
    codes = [cls.code for cls in CLASSES]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert all(code and code == code.lower() for code in codes)


@pytest.mark.parametrize("cls", [c for c in CLASSES if c is not EnhanceError], ids=lambda c: c.__name__)
def test_every_class_is_either_transient_or_permanent(cls):
    transient = issubclass(cls, TransientError)
    permanent = issubclass(cls, PermanentError)
    assert transient != permanent
    assert cls.retryable is transient


@pytest.mark.parametrize(
    ("name", "retryable"),
    [
        ("RateLimited", True),
        ("ProviderUnavailable", True),
        ("ProviderTimeout", True),
        ("StorageUnavailable", True),
        ("InvalidInput", False),
        ("AuthFailed", False),
        ("InsufficientCredits", False),
        ("OutcomeUnknown", False),
        ("DeadlineExceeded", False),
        ("ResultExpired", False),
    ],
)
def test_retry_split_of_named_classes(name, retryable):
    module = storage_errors if hasattr(storage_errors, name) else errors
    assert getattr(module, name).retryable is retryable


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_error_for_code_round_trip(cls):
    assert error_for_code(cls.code) is cls


def test_error_for_code_falls_back_to_the_base():
    assert error_for_code("no_such_code") is EnhanceError


def test_fields_str_repr_and_dict():
    exc = RateLimited(*FULL_ARGS)
    assert (exc.message, exc.provider, exc.vendor_code) == ("it broke", "picwish", 4001)
    assert (exc.http_status, exc.retry_after_s, exc.body) == (429, 2.5, "{'status': 500}")
    assert str(exc) == "it broke"
    assert repr(exc) == "RateLimited(code='rate_limited', message='it broke')"
    assert exc.to_dict() == {
        "code": "rate_limited", "message": "it broke", "provider": "picwish",
        "vendor_code": 4001, "http_status": 429,
    }


def test_to_dict_leaves_out_unknown_fields():
    assert errors.InvalidInput("bad model").to_dict() == {
        "code": "invalid_input", "message": "bad model",
    }


def test_long_body_is_truncated_and_marked():
    body = "x" * (BODY_EXCERPT_CHARS * 3)
    exc = errors.ProtocolError("odd answer", body=body)
    assert exc.body == "x" * BODY_EXCERPT_CHARS + "...[truncated]"
    assert exc.args[-1] == exc.body  # what serialisation carries is the short form


def test_body_at_the_limit_is_kept_whole():
    body = "y" * BODY_EXCERPT_CHARS
    assert errors.ProtocolError("odd", body=body).body == body


def assert_same_error(rebuilt: EnhanceError, original: EnhanceError) -> None:
    assert type(rebuilt) is type(original)
    assert rebuilt.args == original.args
    assert vars(rebuilt) == vars(original)
    assert rebuilt.code == original.code


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_survives_pickling(cls):
    original = cls(*FULL_ARGS[:-1], "z" * 2000)
    assert_same_error(pickle.loads(pickle.dumps(original)), original)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_survives_celery_json_exception_round_trip(cls):
    backend = BaseBackend(app=Celery(set_as_current=False), serializer="json")
    original = cls(*FULL_ARGS[:-1], "z" * 2000)
    wire = json.loads(json.dumps(backend.prepare_exception(original)))
    rebuilt = backend.exception_to_python(wire)
    assert_same_error(rebuilt, original)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_rebuilds_from_args_alone(cls):
    original = cls("only a message")
    assert_same_error(type(original)(*original.args), original)
