"""Cross-cutting code that every other package may use, and that imports none of ours.

``settings`` (the typed settings tree and its loader), ``errors`` (the error tree),
``runtime_overrides`` (what may change while Enclave runs, as a pure model), ``prompts``
(sandboxed prompt templates and their resolution), ``audit`` (the signed, hash-chained
audit log), ``db`` (every table, the async engine, migrations), ``metrics``, ``tracing``,
``telemetry`` (logging) and ``ids``.

The modules are the public surface; nothing is re-exported here, so that importing
``core.errors`` does not load the settings tree or the database layer.
"""

from __future__ import annotations

__all__ = [
    "audit",
    "db",
    "errors",
    "ids",
    "metrics",
    "prompts",
    "runtime_overrides",
    "settings",
    "telemetry",
    "tracing",
]
