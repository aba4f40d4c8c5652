"""Logging set-up: one structured logger configuration for every Enclave process.

Log lines carry only identifiers, sizes, timings and error types — never message text.
Every line logged while a request is handled carries its ``request_id`` (bound with
:func:`bind_request_id`) and, when a span is current, its ``trace_id`` and ``span_id``, so
a log line leads to the trace and to the audit record.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

from core.settings import TelemetrySettings

__all__ = ["JsonFormatter", "bind_request_id", "configure_logging", "current_request_id"]

# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

_REQUEST_ID: ContextVar[str | None] = ContextVar("enclave_request_id", default=None)


@contextmanager
def bind_request_id(request_id: str | None) -> Iterator[None]:
    """Make ``request_id`` the id every log line in this context carries (None: unbind).

    Context variables follow the request into tasks and ``asyncio.to_thread`` calls it
    starts, and stay out of concurrent requests.
    """
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        # A stream that Serve cancels is closed from another task, whose context did not set
        # this token; the binding ends with the stream's own context anyway.
        with suppress(ValueError):
            _REQUEST_ID.reset(token)


def current_request_id() -> str | None:
    """The request id bound in this context, if any."""
    return _REQUEST_ID.get()


def _correlation() -> dict[str, str]:
    ids: dict[str, str] = {}
    request_id = _REQUEST_ID.get()
    if request_id is not None:
        ids["request_id"] = request_id
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        ids["trace_id"] = format(context.trace_id, "032x")
        ids["span_id"] = format(context.span_id, "016x")
    return ids


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request and trace ids,
    and the ``extra`` fields (an explicit ``extra`` wins over the bound ids)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_correlation())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
            entry["stack"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(settings: TelemetrySettings) -> None:
    """Route the ``enclave`` loggers to stderr in the configured format (idempotent)."""
    logger = logging.getLogger("enclave")
    logger.setLevel(settings.log_level)
    for handler in list(logger.handlers):
        if getattr(handler, "_enclave", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._enclave = True  # type: ignore[attr-defined]
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
