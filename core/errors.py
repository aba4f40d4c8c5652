"""Errors that cross package boundaries, each carrying the HTTP status it maps to.

The tree::

    EnclaveError                      500  base; never raised directly
    ├── ClientError                   4xx  the caller can fix it
    │   ├── InvalidRequest            400  malformed or out-of-range input
    │   │   └── ContextTooLong        400  a message does not fit the model's window
    │   ├── NotFound                  404
    │   │   └── UnknownModel          404  the requested model is not served
    │   ├── Conflict                  409  the resource exists already / the state forbids it
    │   ├── RegressionFailed          422  a prompt version failed its regression suite
    │   ├── PayloadTooLarge           413
    │   └── UnsupportedMediaType      415  the body is not in a format the route reads
    ├── ServiceUnavailable            503  a dependency is down or overloaded (Retry-After)
    │   └── GenerationFailed          503  both the primary and the fallback engine failed
    │       └── GenerationInterrupted 503  an answer broke off mid-stream
    ├── ConfigurationError            -    settings are invalid (stops start-up)
    └── ModelStoreError               -    a model is missing or corrupt (stops start-up)

``api/errors.py`` is the only place that turns these into HTTP responses.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ClientError",
    "ConfigurationError",
    "Conflict",
    "ContextTooLong",
    "EnclaveError",
    "GenerationFailed",
    "GenerationInterrupted",
    "InvalidRequest",
    "ModelStoreError",
    "NotFound",
    "PayloadTooLarge",
    "RegressionFailed",
    "ServiceUnavailable",
    "UnknownModel",
    "UnsupportedMediaType",
]


class EnclaveError(Exception):
    """Base of every error Enclave raises on purpose."""

    status_code: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    type_slug: ClassVar[str] = "internal-error"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = extra or {}

    def http_headers(self) -> dict[str, str]:
        """Headers the HTTP response carries for this error (none by default)."""
        return {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross Ray handles pickled. The default pickling calls ``cls(*args)``, which
        # fails for subclasses with keyword-only arguments; rebuild from the state instead.
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: type[EnclaveError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ClientError(EnclaveError):
    """The request was wrong; the message says how to fix it."""

    status_code = 400
    title = "Bad request"
    type_slug = "bad-request"


class InvalidRequest(ClientError):
    """Malformed or out-of-range input."""

    title = "Invalid request"
    type_slug = "invalid-request"


class ContextTooLong(InvalidRequest):
    """A message, on its own, is larger than the model's context window allows."""

    title = "Message too long for the model"
    type_slug = "context-too-long"


class NotFound(ClientError):
    """The addressed resource does not exist."""

    status_code = 404
    title = "Not found"
    type_slug = "not-found"


class UnknownModel(NotFound):
    """The requested model is not one this deployment serves."""

    title = "Unknown model"
    type_slug = "unknown-model"


class Conflict(ClientError):
    """The request clashes with what exists (a name taken, a state that forbids it)."""

    status_code = 409
    title = "Conflict"
    type_slug = "conflict"


class RegressionFailed(ClientError):
    """A prompt version failed cases of its regression suite; ``extra`` lists them."""

    status_code = 422
    title = "Regression suite failed"
    type_slug = "regression-failed"


class PayloadTooLarge(ClientError):
    """The request body is larger than the configured limit."""

    status_code = 413
    title = "Request body too large"
    type_slug = "payload-too-large"


class UnsupportedMediaType(ClientError):
    """The request body is not in a format this route reads."""

    status_code = 415
    title = "Unsupported media type"
    type_slug = "unsupported-media-type"


class ServiceUnavailable(EnclaveError):
    """A dependency is down or overloaded; the client may retry after ``retry_after`` s."""

    status_code = 503
    title = "Service unavailable"
    type_slug = "service-unavailable"

    def __init__(
        self, detail: str, *, retry_after: int = 5, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail, extra=extra)
        self.retry_after = retry_after

    def http_headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds."""
        return {"Retry-After": str(self.retry_after)}


class GenerationFailed(ServiceUnavailable):
    """Neither the primary nor the fallback engine could produce an answer."""

    title = "Generation failed"
    type_slug = "generation-failed"


class GenerationInterrupted(GenerationFailed):
    """An answer that had begun broke off for a reason that is not one of our errors."""

    title = "Generation interrupted"
    type_slug = "generation-interrupted"


class ConfigurationError(EnclaveError):
    """The effective settings are invalid; the message lists every problem."""

    title = "Invalid configuration"
    type_slug = "invalid-configuration"


class ModelStoreError(EnclaveError):
    """A model in the store is missing or corrupt; the message names the file and the fix."""

    title = "Model store problem"
    type_slug = "model-store"
