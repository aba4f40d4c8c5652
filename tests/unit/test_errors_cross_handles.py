"""Errors raised on purpose inside a replica reach the API intact (Ray pickles them)."""

from __future__ import annotations

import pickle

import pytest

import api.security.errors as security_errors
import core.errors as core_errors
import index.errors as index_errors
from core.errors import EnclaveError


def _all_errors() -> list[type[EnclaveError]]:
    found: list[type[EnclaveError]] = []
    for module in (core_errors, index_errors, security_errors):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, EnclaveError):
                found.append(value)
    return sorted(set(found), key=lambda c: c.__name__)


def _instance(cls: type[EnclaveError]) -> EnclaveError:
    if issubclass(cls, index_errors.DocumentError):
        return cls("scan.pdf is not readable", source="scan.pdf", extra={"n": 1})  # type: ignore[call-arg]
    if issubclass(cls, security_errors.TooManyRequests):
        return cls("slow down", retry_after=7, extra={"n": 1})
    return cls("something to fix", extra={"n": 1})


@pytest.mark.parametrize("cls", _all_errors(), ids=lambda c: c.__name__)
def test_every_error_survives_pickling(cls: type[EnclaveError]) -> None:
    original = _instance(cls)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is cls
    assert copy.detail == original.detail
    assert copy.extra == original.extra
    assert copy.status_code == original.status_code
    assert vars(copy) == vars(original)
