"""The API reaches the retriever's knowledge bases through one generic handle forwarder.

Every method of ``index.base.KnowledgeService`` reaches the deployment with its arguments
unchanged, retrieval carries the trace context, and a replica's own error (an unknown
knowledge base) reaches the API as itself, so that the user gets the right 4xx.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from core.errors import NotFound
from index.base import KnowledgeService
from serving.clients import HandleForwarder, HandleKnowledgeService


class _Method:
    def __init__(self, handle: _RecordingHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    async def remote(self, *args: Any, **kwargs: Any) -> Any:
        self._handle.calls.append((self._name, args, kwargs))
        if self._handle.error is not None:
            raise self._handle.error
        return f"{self._name} answered"


class _RecordingHandle:
    """A deployment handle that records each call (what the replica would receive)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.error = error

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


def _protocol_methods() -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(KnowledgeService)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    )


async def test_every_knowledge_service_method_reaches_the_deployment_unchanged() -> None:
    handle = _RecordingHandle()
    service: KnowledgeService = HandleKnowledgeService(handle)
    methods = _protocol_methods()
    assert len(methods) >= 11
    for name in methods:
        assert await getattr(service, name)("acme", "handbook", actor="u_1") == f"{name} answered"
    assert [call[0] for call in handle.calls] == methods
    for name, args, kwargs in handle.calls:
        assert args == ("acme", "handbook")
        assert kwargs.pop("actor") == "u_1"
        # Only retrieval continues the caller's trace in the replica.
        assert ("trace_context" in kwargs) == (name == "retrieve")


async def test_a_replica_error_of_ours_reaches_the_api_as_itself() -> None:
    from ray.exceptions import RayTaskError

    missing = NotFound("No knowledge base named 'handbook'.")
    service = HandleKnowledgeService(_RecordingHandle(RayTaskError("get_base", "tb", missing)))
    with pytest.raises(NotFound, match="handbook") as caught:
        await service.get_base("acme", "handbook")
    assert caught.value is missing


def test_a_name_the_protocol_does_not_declare_is_not_forwarded() -> None:
    service = HandleKnowledgeService(_RecordingHandle())
    with pytest.raises(AttributeError, match="drop_everything"):
        service.drop_everything  # noqa: B018


def test_a_traced_method_the_protocol_lacks_fails_at_construction() -> None:
    with pytest.raises(TypeError, match="retrieve_all"):
        HandleForwarder(
            _RecordingHandle(), KnowledgeService, deployment="retriever", traced=("retrieve_all",)
        )
