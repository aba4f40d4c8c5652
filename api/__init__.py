"""The HTTP API: a Litestar app built from the services the composition root gives it.

``api.app.create_app(services)`` builds the application; ``api.services`` names, as
Protocols and dataclasses, everything it needs from the rest of the stack. The package is
split by context (``docs/architecture.md`` has the table): ``chat`` (the chat request's
stages, from validation to the exchange's record), ``stores`` (the SQL-backed stores and
the jobs over them), ``routes`` (HTTP handlers, one module per area), ``security``
(authentication, roles, rate limits, quotas) and ``portal`` (the staff portal's static
files); the root keeps the app factory, the access guard, the one error-to-HTTP mapping,
the OpenAPI document, request ids and bodies, and SSE framing.

The modules are the public surface; nothing is re-exported here, so that importing one
part (a store, from a command-line tool) does not build the whole app.
"""

from __future__ import annotations

__all__ = [
    "access",
    "app",
    "chat",
    "errors",
    "openapi_docs",
    "request_body",
    "request_ids",
    "routes",
    "security",
    "services",
    "sse",
    "stack_status",
    "stores",
]
