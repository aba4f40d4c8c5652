"""Errors of the audit log.

The tree (``core.errors`` draws the rest)::

    EnclaveError
    └── ServiceUnavailable            503  (core.errors)
        └── AuditUnavailable          503  the audit store cannot be written or read: the
                                           request fails whole, nothing is half-recorded

A broken chain is not an error: ``AuditLog.verify`` and ``verify_bundle`` return a report
that names the first broken record. Key-file problems are ``core.errors.ConfigurationError``
(they stop start-up).
"""

from __future__ import annotations

from core.errors import ServiceUnavailable

__all__ = ["AuditUnavailable"]


class AuditUnavailable(ServiceUnavailable):
    """The audit store cannot be written (or read); the exchange is not recorded at all."""

    title = "Audit log unavailable"
    type_slug = "audit-unavailable"
