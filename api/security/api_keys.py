"""API keys for service accounts and the canary: issued once, stored only as a hash.

A key reads ``<prefix><key_id>.<secret>``, e.g. ``enc_3f9a0c1d2b4e5f60.Jc0...``: the prefix
lets secret scanners find leaked keys, ``key_id`` (16 hex) is the lookup handle an admin
sees and revokes, and ``secret`` is 32 bytes from :mod:`secrets` (43 url-safe characters).

Stored form: ``hmac-sha256:<hex>`` of the whole key under a server-side pepper (a mounted
Secret), or ``sha256:<hex>`` without one. A fast hash is right here -- unlike passwords,
a 256-bit random secret cannot be guessed, so a slow KDF would only cost every request
time. The pepper adds that a stolen database alone cannot even confirm a leaked key.
Comparison is constant-time (:func:`hmac.compare_digest`).

Storage is the :class:`ApiKeyStore` Protocol; :class:`MemoryApiKeyStore` backs the tests,
the SQL store comes with the database layer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from api.security.errors import Unauthenticated
from api.security.principal import Principal, Role

__all__ = [
    "ApiKeyRecord",
    "ApiKeyStore",
    "IssuedApiKey",
    "MemoryApiKeyStore",
    "hash_api_key",
    "issue_api_key",
    "verify_api_key",
]

_KEY_ID_HEX = 16
_SECRET_BYTES = 32
_BODY_CHARS = r"[A-Za-z0-9_-]{43}"  # what token_urlsafe(32) produces


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What is stored about a key: never the secret, only its hash."""

    key_id: str
    hash: str
    tenant: str
    roles: frozenset[Role]
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """A freshly issued key: ``plaintext`` is shown to the admin once, then forgotten."""

    plaintext: str
    record: ApiKeyRecord


class ApiKeyStore(Protocol):
    """Where key records live (SQL in production, memory in tests)."""

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id``, or None."""
        ...

    async def add(self, record: ApiKeyRecord) -> None:
        """Store a new record (key ids are unique)."""
        ...

    async def revoke(self, key_id: str, at: datetime) -> bool:
        """Mark ``key_id`` revoked from ``at`` on; False if there is no such key."""
        ...


class MemoryApiKeyStore:
    """An :class:`ApiKeyStore` in a dict, for tests and single-process development."""

    def __init__(self) -> None:
        self._records: dict[str, ApiKeyRecord] = {}

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id``, or None."""
        return self._records.get(key_id)

    async def add(self, record: ApiKeyRecord, *, created_by: str = "system") -> None:
        """Store a new record; a duplicate key id is a programming error."""
        if record.key_id in self._records:
            msg = f"API key id {record.key_id} already exists"
            raise ValueError(msg)
        self._records[record.key_id] = record

    async def list_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of one tenant, if given), newest first."""
        records = [r for r in self._records.values() if tenant is None or r.tenant == tenant]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    async def revoke(self, key_id: str, at: datetime) -> bool:
        """Mark ``key_id`` revoked (the first revocation time is kept)."""
        record = self._records.get(key_id)
        if record is None:
            return False
        if record.revoked_at is None:
            self._records[key_id] = replace(record, revoked_at=at)
        return True


def hash_api_key(plaintext: str, pepper: bytes | None = None) -> str:
    """The stored form of a key: HMAC-SHA256 under ``pepper``, or SHA-256 without one."""
    data = plaintext.encode()
    if pepper:
        return "hmac-sha256:" + hmac.new(pepper, data, hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def issue_api_key(
    *,
    tenant: str,
    roles: Iterable[Role],
    name: str,
    prefix: str = "enc_",
    pepper: bytes | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> IssuedApiKey:
    """A new key and its record; store the record, show ``plaintext`` once."""
    key_id = secrets.token_hex(_KEY_ID_HEX // 2)
    plaintext = f"{prefix}{key_id}.{secrets.token_urlsafe(_SECRET_BYTES)}"
    created_at = now or datetime.now(UTC)
    if expires_at is not None and expires_at <= created_at:
        msg = "expires_at must lie in the future"
        raise ValueError(msg)
    record = ApiKeyRecord(
        key_id=key_id,
        hash=hash_api_key(plaintext, pepper),
        tenant=tenant,
        roles=frozenset(roles),
        name=name,
        created_at=created_at,
        expires_at=expires_at,
    )
    return IssuedApiKey(plaintext=plaintext, record=record)


def _key_pattern(prefix: str) -> re.Pattern[str]:
    key_id = rf"(?P<key_id>[0-9a-f]{{{_KEY_ID_HEX}}})"
    return re.compile(rf"{re.escape(prefix)}{key_id}\.{_BODY_CHARS}")


async def verify_api_key(
    presented: str,
    store: ApiKeyStore,
    *,
    prefix: str = "enc_",
    pepper: bytes | None = None,
    now: datetime | None = None,
) -> Principal:
    """The service account's Principal, or :class:`Unauthenticated` (unknown, revoked,
    expired or malformed key)."""
    match = _key_pattern(prefix).fullmatch(presented)
    if match is None:
        msg = f"The API key is malformed; Enclave keys read {prefix}<key id>.<secret>."
        raise Unauthenticated(msg)
    key_id = match["key_id"]
    record = await store.get(key_id)
    computed = hash_api_key(presented, pepper)
    # Compare even for unknown ids, so timing tells nothing about which ids exist.
    stored = record.hash if record is not None else hash_api_key("", pepper)
    if not hmac.compare_digest(computed.encode(), stored.encode()) or record is None:
        msg = "The API key is not valid; check that it was copied whole, or ask for a new one."
        raise Unauthenticated(msg)
    moment = now or datetime.now(UTC)
    if record.revoked_at is not None and record.revoked_at <= moment:
        msg = f"The API key {key_id} was revoked; ask your tenant admin for a new one."
        raise Unauthenticated(msg)
    if record.expires_at is not None and record.expires_at <= moment:
        expired = record.expires_at.astimezone(UTC)
        msg = (
            f"The API key {key_id} expired at {expired:%Y-%m-%d %H:%M} UTC; "
            "ask your tenant admin for a new one."
        )
        raise Unauthenticated(msg)
    return Principal(
        subject=f"svc_{key_id}",
        tenant=record.tenant,
        roles=record.roles,
        auth_method="api_key",
        key_id=key_id,
    )
