"""OpenTelemetry traces: one trace per request, across the API and every Serve replica it calls.

- :func:`configure_tracing` builds the process's ``TracerProvider`` from
  :class:`~core.settings.TelemetrySettings`: OTLP/HTTP export (batched) to a collector on this
  host or in the cluster when ``otlp_endpoint`` is set, nothing exported otherwise. Spans and
  trace ids exist either way, so logs, response headers and audit records always carry one.
- Context crosses a Ray Serve handle as a plain ``dict[str, str]`` (W3C ``traceparent`` and
  the request id), passed as the keyword argument :data:`TRACE_CONTEXT_KWARG`: the caller
  builds it with :func:`inject`, the replica method enters :func:`extracted` with it.
- :func:`span` opens a child span. Attributes carry identifiers, versions, counts, timings and
  decisions only — never text a user wrote. A failing span records the error's class name,
  never its message (messages can quote user input).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from core.ids import is_valid_request_id
from core.settings import TelemetrySettings
from core.telemetry import bind_request_id, current_request_id

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = [
    "REQUEST_ID_KEY",
    "TRACER_NAME",
    "TRACE_CONTEXT_KWARG",
    "configure_tracing",
    "current_span_id",
    "current_trace_id",
    "extracted",
    "inject",
    "parent_context",
    "root_span",
    "span",
    "tracer",
]

_log = logging.getLogger("enclave.tracing")

TRACER_NAME = "enclave"
TRACE_CONTEXT_KWARG = "trace_context"
"""Keyword argument that carries :func:`inject`'s dict into a deployment method."""
REQUEST_ID_KEY = "x-request-id"
"""Carrier key of the request id (the W3C keys are ``traceparent`` and ``tracestate``)."""

# W3C trace context only: no baggage, which would let arbitrary key/values ride along.
_PROPAGATOR = TraceContextTextMapPropagator()
_GETTER: DefaultGetter = DefaultGetter()


def configure_tracing(
    settings: TelemetrySettings,
    *,
    exporter: SpanExporter | None = None,
    component: str | None = None,
    install: bool = True,
) -> TracerProvider:
    """The process's tracer provider, built from settings.

    ``exporter`` (tests: an ``InMemorySpanExporter``) receives every ended span at once
    (``SimpleSpanProcessor``), beside the OTLP exporter when one is configured. ``component``
    (``api``, ``llm_primary``, ...) tells the replicas of one trace apart. ``install`` makes it
    the global provider that :func:`tracer` and :func:`span` use; OpenTelemetry allows that
    once per process (a second install is ignored with a warning), so tests pass
    ``install=False`` and use ``provider.get_tracer(...)``.
    """
    attributes: dict[str, str] = {SERVICE_NAME: settings.service_name}
    if component is not None:
        attributes["enclave.component"] = component
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    if settings.otlp_endpoint is not None:
        # Imported here: it pulls in requests and protobuf, which a process that exports
        # nothing does not need.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if install:
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            _log.warning("tracing was already configured in this process; keeping the first")
        trace.set_tracer_provider(provider)
    _log.info(
        "tracing configured",
        extra={
            "otlp_export": settings.otlp_endpoint is not None,
            "sample_ratio": settings.trace_sample_ratio,
            "component": component,
        },
    )
    return provider


def tracer(name: str = TRACER_NAME) -> trace.Tracer:
    """A tracer of the globally installed provider (a no-op one until one is installed)."""
    return trace.get_tracer(name)


def _end_with_error(current: Span, exc: BaseException) -> None:
    current.set_attribute("error.type", type(exc).__name__)
    current.set_status(Status(StatusCode.ERROR, type(exc).__name__))


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    tracer: trace.Tracer | None = None,
) -> Iterator[Span]:
    """A child span of the current one, current while the block runs.

    An exception leaving the block marks the span failed with the error's class name only.
    """
    used = tracer if tracer is not None else trace.get_tracer(TRACER_NAME)
    with used.start_as_current_span(
        name,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except GeneratorExit:
            raise  # a consumer closed a stream early: not a failure of this span
        except BaseException as exc:
            _end_with_error(current, exc)
            raise


@contextmanager
def root_span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    tracer: trace.Tracer | None = None,
) -> Iterator[Span]:
    """A new trace's first span (kind SERVER), whatever context is current.

    The API starts each request's trace itself rather than adopting a ``traceparent`` sent
    by the client: the trace id is stored with the audit record, so a caller must not be
    able to choose it.
    """
    used = tracer if tracer is not None else trace.get_tracer(TRACER_NAME)
    token = otel_context.attach(otel_context.Context())
    try:
        with span(name, attributes, kind=SpanKind.SERVER, tracer=used) as current:
            yield current
    finally:
        otel_context.detach(token)


def inject() -> dict[str, str]:
    """The current trace context (and request id) as a plain dict to pass across a handle.

    Empty when there is no valid span (tracing not configured): the replica then starts
    nothing of its own, which is what an untraced call should do.
    """
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    request_id = current_request_id()
    if request_id is not None:
        carrier[REQUEST_ID_KEY] = request_id
    return carrier


def parent_context(carrier: Mapping[str, str] | None) -> Context:
    """The current context with the carrier's span as the parent (unchanged when the carrier
    holds no valid ``traceparent``); pass it as ``context=`` to ``start_span``."""
    return _PROPAGATOR.extract(
        dict(carrier or {}), context=otel_context.get_current(), getter=_GETTER
    )


@contextmanager
def extracted(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Inside a replica: make the caller's span the parent of what this block starts, and
    its request id the one this block's log lines carry.

    A missing or malformed carrier leaves the context as it is (a direct call, a test).
    """
    carrier = dict(carrier or {})
    token = otel_context.attach(parent_context(carrier))
    offered = carrier.get(REQUEST_ID_KEY, "")
    request_id = offered if is_valid_request_id(offered) else current_request_id()
    try:
        with bind_request_id(request_id):
            yield
    finally:
        otel_context.detach(token)


def current_trace_id() -> str | None:
    """The current trace's id (32 lowercase hex digits), or None outside any trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_span_id() -> str | None:
    """The current span's id (16 lowercase hex digits), or None outside any trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.span_id, "016x") if context.is_valid else None
