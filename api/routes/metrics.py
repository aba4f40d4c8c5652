"""``GET /metrics`` and the telemetry around every HTTP request.

:func:`metrics_route` serves a registry in the Prometheus text format (or OpenMetrics when
the scraper asks for it), first refreshing the canary's results from the SQL store
(``core.metrics.CanaryResults``) when it is given them. :func:`record_http` installs
:class:`HttpTelemetry` around the app's routing: each request gets its own trace (root
span; id returned in ``X-Trace-Id``), its request id bound for the log lines, and its
``enclave_http_*`` metrics labelled with the route *template*, never the raw path.

Why an ASGI middleware around ``Litestar.asgi_handler`` rather than Litestar's ``middleware=``
or a ``before_send`` hook pair: app-level Litestar middleware is built into each route's
handler stack, so it never sees a request no route matched (404/405), and ``before_send``
runs only when the response starts, so nothing marks the request's start or makes the
request's span current while guards and handlers run. Around ``asgi_handler`` (routing,
the exception handlers, CORS) the middleware sees every request from its first moment to its
last byte, including guard refusals and unmatched paths, while ``create_app`` still returns
the ``Litestar`` app that tests and Serve use; Litestar's own ``before_send`` hooks still run
after it on each message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry.trace import Status, StatusCode, Tracer
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from api.request_ids import request_id_of
from core.metrics import UNMATCHED, CanaryResults, EnclaveMetrics
from core.telemetry import bind_request_id
from core.tracing import current_trace_id, root_span

__all__ = ["TRACE_ID_HEADER", "HttpTelemetry", "metrics_route", "record_http"]

TRACE_ID_HEADER = "x-trace-id"
_CLIENT_GONE = 499  # the client left before the response started (nginx's convention)


def metrics_route(
    registry: CollectorRegistry, *, canary: CanaryResults | None = None
) -> HTTPRouteHandler:
    """The ``GET /metrics`` handler over ``registry`` (public: labels carry no user data).

    ``canary``: the canary's results, registered on ``registry``; each scrape refreshes them
    from the store first (at most every few seconds, bounded in time; a database error
    leaves the last values and never fails the scrape).
    """

    @get(
        "/metrics",
        include_in_schema=False,
        summary="Prometheus metrics (docs/metrics.md)",
    )
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Every metric of the catalogue, in the format the scraper asked for."""
        if canary is not None:
            await canary.refresh()
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(content=encoder(registry), media_type=content_type)

    return metrics


class HttpTelemetry:
    """ASGI middleware: a root span, the bound request id, the trace id header and the
    ``enclave_http_*`` metrics for every HTTP request that passes through it."""

    def __init__(
        self, app: ASGIApp, metrics: EnclaveMetrics, *, tracer: Tracer | None = None
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        method = str(scope.get("method", "GET")).upper()
        request_id = request_id_of(scope)
        status: int | None = None
        attributes = {"http.request.method": method, "enclave.request_id": request_id}
        with (
            bind_request_id(request_id),
            root_span(f"HTTP {method}", attributes, tracer=self._tracer) as span,
        ):
            trace_id = current_trace_id()

            async def send_with_telemetry(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start" and status is None:
                    status = int(message["status"])
                    self._metrics.request(
                        _route(scope), method, status, time.perf_counter() - started
                    )
                    if trace_id is not None:
                        MutableScopeHeaders.from_message(message)[TRACE_ID_HEADER] = trace_id
                await send(message)

            try:
                await self._app(scope, receive, send_with_telemetry)
            except asyncio.CancelledError:
                if status is None:
                    status = _CLIENT_GONE
                    self._metrics.request(
                        _route(scope), method, status, time.perf_counter() - started
                    )
                raise
            except Exception:
                if status is None:
                    status = 500
                    self._metrics.request(
                        _route(scope), method, status, time.perf_counter() - started
                    )
                raise
            finally:
                route = _route(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def _route(scope: Scope) -> str:
    # Litestar's router sets the matched route's template; no match, no template.
    template = scope.get("path_template")
    return str(template) if template else UNMATCHED


def record_http(app: Litestar, metrics: EnclaveMetrics, *, tracer: Tracer | None = None) -> None:
    """Install :class:`HttpTelemetry` around ``app``'s routing and declare its routes, so
    that their request counters start at zero and no other route label can appear."""
    metrics.declare_routes(
        (method, route.path_format)
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        for method in handler.http_methods
    )
    app.asgi_handler = HttpTelemetry(app.asgi_handler, metrics, tracer=tracer)
