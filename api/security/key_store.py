"""API-key records in the SQL store (``api_keys``): the production ``ApiKeyStore``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from api.security.api_keys import ApiKeyRecord
from core.db import Database, api_keys

__all__ = ["SqlApiKeyStore"]


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without their zone; every stored time is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _record(row: Any) -> ApiKeyRecord:
    created = _utc(row.created_at)
    assert created is not None
    return ApiKeyRecord(
        key_id=row.key_id,
        hash=row.hash,
        tenant=row.tenant,
        roles=frozenset(row.roles),
        name=row.name,
        created_at=created,
        expires_at=_utc(row.expires_at),
        revoked_at=_utc(row.revoked_at),
    )


class SqlApiKeyStore:
    """Key records, by key id; the secret itself is never stored."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id``, or None."""
        async with self._db.reading() as connection:
            row = (
                await connection.execute(select(api_keys).where(api_keys.c.key_id == key_id))
            ).first()
        return None if row is None else _record(row)

    async def add(self, record: ApiKeyRecord, *, created_by: str = "system") -> None:
        """Store a new record."""
        async with self._db.transaction() as connection:
            await connection.execute(
                insert(api_keys).values(
                    key_id=record.key_id,
                    hash=record.hash,
                    tenant=record.tenant,
                    roles=sorted(record.roles),
                    name=record.name,
                    created_by=created_by,
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                    revoked_at=record.revoked_at,
                )
            )

    async def revoke(self, key_id: str, at: datetime) -> bool:
        """Mark ``key_id`` revoked (the first revocation time is kept); False if unknown."""
        async with self._db.transaction() as connection:
            found = (
                await connection.execute(
                    select(api_keys.c.key_id).where(api_keys.c.key_id == key_id)
                )
            ).first()
            if found is None:
                return False
            await connection.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return True

    async def list_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of one tenant, if given), newest first."""
        query = select(api_keys).order_by(api_keys.c.created_at.desc())
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        async with self._db.reading() as connection:
            return [_record(row) for row in await connection.execute(query)]

    async def has_active_key_with_role(self, role: str, now: datetime) -> bool:
        """Whether any unrevoked, unexpired key holds ``role`` (first-start bootstrap)."""
        for record in await self.list_keys():
            usable = record.revoked_at is None and (
                record.expires_at is None or record.expires_at > now
            )
            if usable and role in record.roles:
                return True
        return False
