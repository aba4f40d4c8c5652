"""Timestamps read back from the SQL store, as UTC-aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_utc"]


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime: SQLite hands timestamps back without their zone
    (every one was written in UTC); PostgreSQL's carry the session's zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
