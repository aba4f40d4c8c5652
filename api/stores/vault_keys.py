"""Envelope encryption of the history's placeholder vaults, one data key per user.

A conversation is stored with placeholders (``<LOCATION_1>``); what each placeholder stood for
is kept in the conversation's *vault*, encrypted (AES-256-GCM) under a *data key* of its
user. Each data key is stored only wrapped (AES-256-GCM) by the *deployment key*, a file
outside the database (a Kubernetes Secret in a cluster). So:

- the database alone (a dump, a backup, an operator's ``SELECT``) holds no readable value;
- only the API, holding the deployment key, unwraps a data key, and it does so only to answer
  that user (``api.stores.history``);
- erasing a person deletes their wrapped data key (crypto-shredding): their vaults in the
  live database are unreadable at once, and those in older backups once every deployment key
  that wrapped the deleted row is retired (docs/operations.md, "History vault keys").

Every ciphertext is bound to where it belongs with associated data (a data key to its
tenant and user, a vault to its conversation), so a row copied elsewhere does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db import history_keys
from core.errors import ConfigurationError
from core.settings import Settings

__all__ = ["DeploymentKey", "HistoryKeyring", "UserVaultKey"]

_log = logging.getLogger("enclave.history.keys")

_KEY_BYTES = 32
_NONCE_BYTES = 12
_VAULT_FORMAT = b"\x01"
_KEY_AAD = b"enclave/history-data-key/v1\x00"
_VAULT_AAD = b"enclave/history-vault/v1\x00"


def _key_id(key: bytes) -> str:
    # Names the key without revealing it: the rows say which deployment key wrapped them.
    return hashlib.sha256(b"enclave/history-kek-id\x00" + key).hexdigest()[:16]


def _parse_key(raw: bytes, path: Path) -> bytes:
    if len(raw) == _KEY_BYTES:
        return raw
    try:
        decoded = base64.b64decode(raw.strip(), validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != _KEY_BYTES:
        msg = (
            f"history vault key {path} must hold 32 random bytes, raw or base64 "
            "(e.g. `head -c 32 /dev/urandom | base64`)."
        )
        raise ConfigurationError(msg)
    return decoded


@dataclass(frozen=True, slots=True)
class DeploymentKey:
    """A key-encryption key: wraps and unwraps users' data keys."""

    key_id: str
    _aead: AESGCM

    @classmethod
    def from_bytes(cls, key: bytes) -> DeploymentKey:
        """A deployment key from its 32 bytes."""
        return cls(_key_id(key), AESGCM(key))

    @classmethod
    def generate(cls) -> DeploymentKey:
        """A fresh key (tests, tools)."""
        return cls.from_bytes(secrets.token_bytes(_KEY_BYTES))

    @classmethod
    def from_file(cls, path: Path, *, create: bool = False) -> DeploymentKey:
        """Load the key at ``path``; with ``create``, make it (mode 600) when it is missing."""
        if not path.exists():
            if not create:
                msg = (
                    f"history vault key {path} does not exist: mount the Secret there, or set "
                    "history.generate_vault_key to create one (embedded mode)."
                )
                raise ConfigurationError(msg)
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(base64.b64encode(secrets.token_bytes(_KEY_BYTES)) + b"\n")
            except FileExistsError:
                pass  # another replica made it first: use theirs
            except OSError as exc:
                msg = f"history vault key {path} cannot be created: {exc.strerror}."
                raise ConfigurationError(msg) from exc
        try:
            raw = path.read_bytes()
        except OSError as exc:
            msg = f"history vault key {path} cannot be read: {exc.strerror}."
            raise ConfigurationError(msg) from exc
        return cls.from_bytes(_parse_key(raw, path))

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        """``data_key`` encrypted under this key (nonce + ciphertext + tag)."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """The data key; raises ``InvalidTag`` when the row was not wrapped by this key for
        this user."""
        return self._aead.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], aad)


@dataclass(frozen=True, slots=True)
class UserVaultKey:
    """One user's data key, unwrapped for the length of one request; never stored so."""

    _aead: AESGCM

    def seal(self, conversation_id: str, vault: dict[str, str]) -> bytes:
        """The vault (placeholder → value) encrypted for this conversation."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = json.dumps(vault, ensure_ascii=False, sort_keys=True).encode()
        sealed = self._aead.encrypt(nonce, plain, _VAULT_AAD + conversation_id.encode())
        return _VAULT_FORMAT + nonce + sealed

    def open(self, conversation_id: str, blob: bytes | None) -> dict[str, str]:
        """The vault, or ``{}`` when there is none or it does not decrypt (then the owner
        reads placeholders, as everyone else does)."""
        if not blob or blob[:1] != _VAULT_FORMAT:
            return {}
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, _VAULT_AAD + conversation_id.encode())
        except InvalidTag:
            _log.warning("a conversation vault does not decrypt; placeholders shown")
            return {}
        loaded = json.loads(plain)
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def _user_aad(tenant: str, user_id: str) -> bytes:
    return _KEY_AAD + tenant.encode() + b"\x00" + user_id.encode()


class HistoryKeyring:
    """Users' data keys in ``history_keys``, wrapped by the deployment key."""

    def __init__(self, current: DeploymentKey, retired: tuple[DeploymentKey, ...] = ()) -> None:
        self._current = current
        self._by_id = {key.key_id: key for key in (*retired, current)}

    @classmethod
    def from_settings(cls, settings: Settings) -> HistoryKeyring:
        """The keyring the settings name (creating the default key file when allowed)."""
        history = settings.history
        current = DeploymentKey.from_file(
            history.vault_key_path(settings.paths.data_dir), create=history.generate_vault_key
        )
        retired = tuple(DeploymentKey.from_file(p) for p in history.retired_vault_key_files)
        return cls(current, retired)

    @property
    def current_key_id(self) -> str:
        """The id of the deployment key that wraps new and re-wrapped data keys."""
        return self._current.key_id

    async def for_user(
        self, connection: AsyncConnection, tenant: str, user_id: str, *, create: bool
    ) -> UserVaultKey | None:
        """The user's data key (made when ``create`` and missing); None when they have none
        or it cannot be unwrapped (its deployment key is gone)."""
        row = await self._row(connection, tenant, user_id)
        if row is None:
            if not create:
                return None
            await self._insert(connection, tenant, user_id)
            # Another request of the same user may have inserted first: read the winner.
            row = await self._row(connection, tenant, user_id)
            if row is None:  # pragma: no cover - the insert above guarantees a row
                return None
        kek = self._by_id.get(row.kek_id)
        if kek is None:
            _log.warning("a history data key was wrapped by an unknown deployment key")
            return None
        aad = _user_aad(tenant, user_id)
        try:
            data_key = kek.unwrap(row.wrapped_key, aad)
        except InvalidTag:
            _log.warning("a history data key does not unwrap; placeholders shown")
            return None
        if create and kek is not self._current:
            # Inside a write transaction: move the row to the current key (rotation).
            await self._store_wrapped(connection, tenant, user_id, data_key)
        return UserVaultKey(AESGCM(data_key))

    async def destroy(self, connection: AsyncConnection, tenant: str, user_id: str) -> bool:
        """Delete the user's data key (crypto-shredding); True if there was one."""
        result = await connection.execute(
            delete(history_keys).where(
                history_keys.c.tenant == tenant, history_keys.c.user_id == user_id
            )
        )
        return bool(result.rowcount)

    async def rewrap_all(self, connection: AsyncConnection) -> dict[str, int]:
        """Re-wrap every data key under the current deployment key (after a rotation);
        returns how many were re-wrapped and how many no configured key unwraps."""
        rows = (
            await connection.execute(
                select(history_keys).where(history_keys.c.kek_id != self._current.key_id)
            )
        ).all()
        rewrapped = unreadable = 0
        for row in rows:
            kek = self._by_id.get(row.kek_id)
            try:
                if kek is None:
                    raise InvalidTag
                data_key = kek.unwrap(row.wrapped_key, _user_aad(row.tenant, row.user_id))
            except InvalidTag:
                unreadable += 1
                continue
            await self._store_wrapped(connection, row.tenant, row.user_id, data_key)
            rewrapped += 1
        return {"rewrapped": rewrapped, "unreadable": unreadable}

    async def _row(self, connection: AsyncConnection, tenant: str, user_id: str) -> Any:
        return (
            await connection.execute(
                select(history_keys).where(
                    history_keys.c.tenant == tenant, history_keys.c.user_id == user_id
                )
            )
        ).first()

    async def _insert(self, connection: AsyncConnection, tenant: str, user_id: str) -> None:
        now = datetime.now(UTC)
        values = {
            "tenant": tenant,
            "user_id": user_id,
            "kek_id": self._current.key_id,
            "wrapped_key": self._current.wrap(
                secrets.token_bytes(_KEY_BYTES), _user_aad(tenant, user_id)
            ),
            "created_at": now,
            "wrapped_at": now,
        }
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        await connection.execute(
            dialect.insert(history_keys).values(**values).on_conflict_do_nothing()
        )

    async def _store_wrapped(
        self, connection: AsyncConnection, tenant: str, user_id: str, data_key: bytes
    ) -> None:
        await connection.execute(
            update(history_keys)
            .where(history_keys.c.tenant == tenant, history_keys.c.user_id == user_id)
            .values(
                kek_id=self._current.key_id,
                wrapped_key=self._current.wrap(data_key, _user_aad(tenant, user_id)),
                wrapped_at=datetime.now(UTC),
            )
        )
