"""Conversations and their messages in the SQL store: what users list, read, rename, delete
and export. Every query is scoped to the caller's tenant and pseudonymous user id; another
user's conversation is "not found". Content is stored with placeholders, never raw PII
(``PlaceholderVault.conceal`` turns the user's restored values back into placeholders).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db import Database, as_utc, conversations, messages
from core.errors import InvalidRequest, NotFound

__all__ = ["ConversationStore", "LastTurn", "StoredMessage", "to_markdown"]

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


def _title_from(first_user_message: str) -> str:
    words = " ".join(first_user_message.split())
    return words if len(words) <= _TITLE_CHARS else words[: _TITLE_CHARS - 1].rstrip() + "…"


class ConversationStore:
    """The history of each user, in their tenant."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
    ) -> tuple[str, list[str]]:
        """Append messages to the caller's conversation (created if ``conversation_id`` is
        None) inside the caller's transaction; returns the conversation and message ids."""
        now = datetime.now(UTC)
        if conversation_id is None:
            conversation_id = new_conversation_id()
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
                )
            )
            next_seq = 1
        else:
            await self._owned_row(connection, tenant, user_id, conversation_id)
            last = (
                await connection.execute(
                    select(func.max(messages.c.seq)).where(
                        messages.c.conversation_id == conversation_id
                    )
                )
            ).scalar_one()
            next_seq = int(last or 0) + 1
            await connection.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(updated_at=now)
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
        self, tenant: str, user_id: str, *, search: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The caller's conversations, newest first; ``search`` matches the title."""
        if not 1 <= limit <= 200:
            raise InvalidRequest(f"limit must be between 1 and 200, got {limit}.")
        query = (
            select(conversations)
            .where(
                conversations.c.tenant == tenant,
                conversations.c.user_id == user_id,
                conversations.c.deleted_at.is_(None),
            )
            .order_by(conversations.c.updated_at.desc())
            .limit(limit)
        )
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(conversations.c.title.ilike(pattern + "%", escape="\\"))
        async with self._db.reading() as connection:
            rows = await connection.execute(query)
            return [self._summary(row) for row in rows]

    @staticmethod
    def _summary(row: Any) -> dict[str, Any]:
        return {
            "id": row.id,
            "title": row.title,
            "created_at": _iso(row.created_at),
            "updated_at": _iso(row.updated_at),
        }

    async def read(self, tenant: str, user_id: str, conversation_id: str) -> dict[str, Any]:
        """The conversation with its messages, in order."""
        async with self._db.reading() as connection:
            row = await self._owned_row(connection, tenant, user_id, conversation_id)
            rows = await connection.execute(
                select(messages)
                .where(messages.c.conversation_id == conversation_id)
                .order_by(messages.c.seq)
            )
            items = [
                {
                    "id": m.id,
                    "role": m.role,
                    "content": m.content,
                    "request_id": m.request_id,
                    "created_at": _iso(m.created_at),
                    "sources": (m.lineage or {}).get("sources", []),
                }
                for m in rows
            ]
        return {**self._summary(row), "messages": items}

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
        """Give the conversation a new title."""
        title = " ".join(title.split())
        if not 1 <= len(title) <= 300:
            raise InvalidRequest("title: 1-300 characters.")
        async with self._db.transaction() as connection:
            await self._owned_row(connection, tenant, user_id, conversation_id)
            await connection.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(title=title, updated_at=datetime.now(UTC))
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
        """Delete every conversation of a user (erasure); returns how many."""
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
