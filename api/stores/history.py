"""Conversations and their messages in the SQL store: what users list, read, rename, delete
and export. Every query is scoped to the caller's tenant and pseudonymous user id; another
user's conversation is "not found". Content is stored with placeholders, never raw PII
(``PlaceholderVault.conceal`` turns the user's restored values back into placeholders).

What each placeholder stood for is kept per conversation in its *vault*, encrypted under its
user's data key (``api.stores.vault_keys``). Only the responses of this store to the owner (their
list, a conversation they read or export) restore the values; everything else (the audit
log, quality views, logs, the database itself) holds placeholders only. Erasing a user
destroys their data key, so their vaults can no longer be read.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.stores.vault_keys import HistoryKeyring, UserVaultKey
from core.db import Database, as_utc, conversations, messages
from core.errors import InvalidRequest, NotFound

__all__ = [
    "ConversationStore",
    "LastTurn",
    "StoredMessage",
    "conceal",
    "merge_vaults",
    "restore",
    "to_markdown",
]

_TITLE_CHARS = 80


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _iso(value: datetime | None) -> str | None:
    stamped = _utc(value)
    return None if stamped is None else stamped.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as the history keeps it (placeholders instead of personal data)."""

    role: str
    content: str
    request_id: str | None = None
    lineage: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LastTurn:
    """A conversation's latest exchange: what the user said and when they were answered."""

    user_text: str
    request_id: str | None
    answered_at: datetime
    lineage: dict[str, Any]


def new_conversation_id() -> str:
    """A fresh, unguessable conversation id."""
    return f"conv_{secrets.token_hex(12)}"


# A placeholder as stored, or as a small model copied it with square brackets.
_WRITTEN_PLACEHOLDER = re.compile(r"[<\[]([A-Z][A-Z_]{1,30})_(\d{1,4})[>\]]")


def restore(text: str, vault: Mapping[str, str]) -> str:
    """``text`` with the vault's placeholders turned back into the owner's words."""
    if not vault:
        return text
    return _WRITTEN_PLACEHOLDER.sub(
        lambda m: vault.get(f"<{m.group(1)}_{m.group(2)}>", m.group(0)), text
    )


def conceal(text: str, vault: Mapping[str, str]) -> str:
    """``text`` with the vault's values turned back into placeholders (longest first)."""
    for placeholder, value in sorted(vault.items(), key=lambda item: -len(item[1])):
        if value:
            text = text.replace(value, placeholder)
    return text


def merge_vaults(
    stored: Mapping[str, str], new: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The conversation's vault with a turn's placeholders added, and how the turn's
    placeholders must be renamed to mean the same in the whole conversation.

    Each request numbers placeholders afresh; a client that resends the history gets the
    same numbers again, but one that sends only its new message would reuse ``<PERSON_1>``
    for somebody else. A value already in the vault keeps its placeholder; a number already
    taken by another value gets the next free one of its type.
    """
    merged = dict(stored)
    by_value = {value: placeholder for placeholder, value in stored.items()}
    renames: dict[str, str] = {}
    for minted, value in new.items():
        known = by_value.get(value)
        if known is not None:
            if known != minted:
                renames[minted] = known
            continue
        placeholder = minted
        if placeholder in merged:
            match = _WRITTEN_PLACEHOLDER.fullmatch(placeholder)
            entity = match.group(1) if match else "PII"
            taken = [
                int(m.group(2))
                for m in map(_WRITTEN_PLACEHOLDER.fullmatch, merged)
                if m is not None and m.group(1) == entity
            ]
            placeholder = f"<{entity}_{max(taken, default=0) + 1}>"
            renames[minted] = placeholder
        merged[placeholder] = value
        by_value[value] = placeholder
    return merged, renames


def _renamed(text: str, renames: Mapping[str, str]) -> str:
    if not renames:
        return text
    return _WRITTEN_PLACEHOLDER.sub(
        lambda m: renames.get(f"<{m.group(1)}_{m.group(2)}>", m.group(0)), text
    )


def _cursor_of(row: Any) -> str:
    stamp = _utc(row.updated_at)
    raw = json.dumps([stamp.isoformat() if stamp else "", row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, conversation_id = json.loads(raw)
        return as_utc(datetime.fromisoformat(stamp)), str(conversation_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        msg = "before: pass the `next_cursor` of the previous page unchanged."
        raise InvalidRequest(msg) from exc


def _title_from(first_user_message: str) -> str:
    words = " ".join(first_user_message.split())
    return words if len(words) <= _TITLE_CHARS else words[: _TITLE_CHARS - 1].rstrip() + "…"


class ConversationStore:
    """The history of each user, in their tenant."""

    def __init__(self, db: Database, keyring: HistoryKeyring) -> None:
        self._db = db
        self._keyring = keyring

    async def _user_key(
        self, connection: AsyncConnection, tenant: str, user_id: str, *, create: bool = False
    ) -> UserVaultKey | None:
        return await self._keyring.for_user(connection, tenant, user_id, create=create)

    @staticmethod
    def _vault_of(key: UserVaultKey | None, row: Any) -> dict[str, str]:
        return {} if key is None else key.open(row.id, row.vault)

    async def owned(self, tenant: str, user_id: str, conversation_id: str) -> dict[str, Any]:
        """The conversation's row if the caller owns it and it is not deleted; else NotFound."""
        async with self._db.reading() as connection:
            row = await self._owned_row(connection, tenant, user_id, conversation_id)
        return dict(row._mapping)

    async def _owned_row(
        self, connection: AsyncConnection, tenant: str, user_id: str, conversation_id: str
    ) -> Any:
        row = (
            await connection.execute(
                select(conversations).where(
                    conversations.c.id == conversation_id,
                    conversations.c.tenant == tenant,
                    conversations.c.user_id == user_id,
                    conversations.c.deleted_at.is_(None),
                )
            )
        ).first()
        if row is None:
            msg = f"No conversation {conversation_id!r}. GET /v1/conversations lists yours."
            raise NotFound(msg, extra={"conversation_id": conversation_id})
        return row

    async def record_exchange(
        self,
        connection: AsyncConnection,
        *,
        tenant: str,
        user_id: str,
        conversation_id: str | None,
        new_messages: Sequence[StoredMessage],
        vault: Mapping[str, str] | None = None,
    ) -> tuple[str, list[str]]:
        """Append messages to the caller's conversation (created if ``conversation_id`` is
        None) inside the caller's transaction; returns the conversation and message ids.

        ``vault`` (placeholder → value, from this turn's scrubbing) is merged into the
        conversation's encrypted vault, so that the owner reads their own words later."""
        now = datetime.now(UTC)
        stored: dict[str, str] = {}
        key: UserVaultKey | None = None
        if vault or conversation_id is not None:
            key = await self._user_key(connection, tenant, user_id, create=bool(vault))
        if conversation_id is not None:
            row = await self._owned_row(connection, tenant, user_id, conversation_id)
            stored = self._vault_of(key, row)
        merged, renames = merge_vaults(stored, vault or {})
        new_messages = [
            StoredMessage(m.role, _renamed(m.content, renames), m.request_id, m.lineage)
            for m in new_messages
        ]
        if conversation_id is None:
            conversation_id = new_conversation_id()
            sealed = key.seal(conversation_id, merged) if key and merged else None
            first_user = next((m.content for m in new_messages if m.role == "user"), "")
            await connection.execute(
                insert(conversations).values(
                    id=conversation_id,
                    tenant=tenant,
                    user_id=user_id,
                    title=_title_from(first_user) or "New conversation",
                    created_at=now,
                    updated_at=now,
                    deleted_at=None,
                    vault=sealed,
                )
            )
            next_seq = 1
        else:
            last = (
                await connection.execute(
                    select(func.max(messages.c.seq)).where(
                        messages.c.conversation_id == conversation_id
                    )
                )
            ).scalar_one()
            next_seq = int(last or 0) + 1
            changes: dict[str, Any] = {"updated_at": now}
            if key is not None and merged != stored:
                changes["vault"] = key.seal(conversation_id, merged)
            await connection.execute(
                update(conversations).where(conversations.c.id == conversation_id).values(**changes)
            )
        ids: list[str] = []
        for offset, message in enumerate(new_messages):
            message_id = f"msg_{secrets.token_hex(12)}"
            ids.append(message_id)
            await connection.execute(
                insert(messages).values(
                    id=message_id,
                    conversation_id=conversation_id,
                    seq=next_seq + offset,
                    role=message.role,
                    content=message.content,
                    request_id=message.request_id,
                    created_at=now,
                    lineage=message.lineage,
                )
            )
        return conversation_id, ids

    async def list_conversations(
        self,
        tenant: str,
        user_id: str,
        *,
        search: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the caller's conversations, newest first, titles in the owner's words,
        and the cursor of the next (older) page, None at the end; ``search`` matches the
        stored title, ``before`` is the cursor of the page to read."""
        if not 1 <= limit <= 200:
            raise InvalidRequest(f"limit must be between 1 and 200, got {limit}.")
        order = (conversations.c.updated_at.desc(), conversations.c.id.desc())
        query = (
            select(conversations)
            .where(
                conversations.c.tenant == tenant,
                conversations.c.user_id == user_id,
                conversations.c.deleted_at.is_(None),
            )
            .order_by(*order)
            .limit(limit + 1)
        )
        if before:
            stamp, last_id = _parse_cursor(before)
            query = query.where(
                or_(
                    conversations.c.updated_at < stamp,
                    and_(conversations.c.updated_at == stamp, conversations.c.id < last_id),
                )
            )
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(conversations.c.title.ilike(pattern + "%", escape="\\"))
        async with self._db.reading() as connection:
            rows = (await connection.execute(query)).all()
            key = await self._user_key(connection, tenant, user_id) if rows else None
        page = rows[:limit]
        following = _cursor_of(page[-1]) if len(rows) > limit else None
        return [self._summary(row, self._vault_of(key, row)) for row in page], following

    @staticmethod
    def _summary(row: Any, vault: Mapping[str, str]) -> dict[str, Any]:
        return {
            "id": row.id,
            "title": restore(row.title, vault),
            "created_at": _iso(row.created_at),
            "updated_at": _iso(row.updated_at),
        }

    async def read(self, tenant: str, user_id: str, conversation_id: str) -> dict[str, Any]:
        """The conversation with its messages in order, in the owner's words (for the owner
        only: the caller must be the user whose conversation it is)."""
        async with self._db.reading() as connection:
            row = await self._owned_row(connection, tenant, user_id, conversation_id)
            vault = self._vault_of(await self._user_key(connection, tenant, user_id), row)
            rows = await connection.execute(
                select(messages)
                .where(messages.c.conversation_id == conversation_id)
                .order_by(messages.c.seq)
            )
            items = [
                {
                    "id": m.id,
                    "role": m.role,
                    "content": restore(m.content, vault),
                    "request_id": m.request_id,
                    "created_at": _iso(m.created_at),
                    "sources": (m.lineage or {}).get("sources", []),
                }
                for m in rows
            ]
        return {**self._summary(row, vault), "messages": items}

    async def last_turn(self, tenant: str, user_id: str, conversation_id: str) -> LastTurn | None:
        """The latest user message and the answer to it (None when the conversation has none)."""
        async with self._db.reading() as connection:
            await self._owned_row(connection, tenant, user_id, conversation_id)
            rows = (
                await connection.execute(
                    select(messages)
                    .where(messages.c.conversation_id == conversation_id)
                    .order_by(messages.c.seq.desc())
                    .limit(2)
                )
            ).all()
        if len(rows) < 2 or rows[0].role != "assistant" or rows[1].role != "user":
            return None
        answer, question = rows
        return LastTurn(
            user_text=question.content,
            request_id=answer.request_id,
            answered_at=_utc(answer.created_at) or datetime.now(UTC),
            lineage=answer.lineage if isinstance(answer.lineage, dict) else {},
        )

    async def rename(
        self, tenant: str, user_id: str, conversation_id: str, title: str
    ) -> dict[str, Any]:
        """Give the conversation a new title (the conversation's known values in it are
        stored as their placeholders, as the rest of the history is)."""
        title = " ".join(title.split())
        if not 1 <= len(title) <= 300:
            raise InvalidRequest("title: 1-300 characters.")
        async with self._db.transaction() as connection:
            row = await self._owned_row(connection, tenant, user_id, conversation_id)
            vault = self._vault_of(await self._user_key(connection, tenant, user_id), row)
            await connection.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(title=conceal(title, vault)[:300], updated_at=datetime.now(UTC))
            )
        return await self.read(tenant, user_id, conversation_id)

    async def delete(self, tenant: str, user_id: str, conversation_id: str) -> None:
        """Delete the conversation and its messages (gone, not hidden)."""
        async with self._db.transaction() as connection:
            await self._owned_row(connection, tenant, user_id, conversation_id)
            await connection.execute(
                messages.delete().where(messages.c.conversation_id == conversation_id)
            )
            await connection.execute(
                conversations.delete().where(conversations.c.id == conversation_id)
            )

    async def erase_user(self, connection: AsyncConnection, tenant: str, user_id: str) -> int:
        """Delete every conversation of a user and destroy their data key (erasure:
        copies of their vaults elsewhere, such as backups, no longer decrypt with anything
        the database holds); returns how many conversations went."""
        await self._keyring.destroy(connection, tenant, user_id)
        ids = [
            row.id
            for row in await connection.execute(
                select(conversations.c.id).where(
                    conversations.c.tenant == tenant, conversations.c.user_id == user_id
                )
            )
        ]
        if ids:
            await connection.execute(messages.delete().where(messages.c.conversation_id.in_(ids)))
            await connection.execute(conversations.delete().where(conversations.c.id.in_(ids)))
        return len(ids)


def to_markdown(conversation: dict[str, Any]) -> str:
    """A conversation as a Markdown document (export)."""
    lines = [f"# {conversation['title']}", "", f"_Exported from Enclave, {conversation['id']}_", ""]
    for message in conversation["messages"]:
        who = {"user": "You", "assistant": "Assistant", "system": "System"}.get(
            message["role"], message["role"]
        )
        lines += [f"## {who}", "", message["content"], ""]
        for source in message.get("sources") or []:
            lines.append(f"- [{source['number']}] {source['title']} ({source['document_id']})")
        if message.get("sources"):
            lines.append("")
    return "\n".join(lines)


def to_json(conversation: dict[str, Any]) -> str:
    """A conversation as a JSON document (export)."""
    return json.dumps(conversation, ensure_ascii=False, indent=2)
