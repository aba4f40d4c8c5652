"""``/v1/conversations``: the caller's own chat history — list, read, rename, delete, export.

Responses restore the caller's own words from their conversation's encrypted vault; nobody
else can reach these conversations (another user's are "not found")."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Controller, Response, delete, get, patch

from api.security import Principal
from api.stores.audit_trail import AuditTrail
from api.stores.history import ConversationStore, to_json, to_markdown

__all__ = ["ConversationController", "ConversationRename"]


class ConversationRename(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /v1/conversations/{id}`` body."""

    title: str


class ConversationController(Controller):
    """A user's conversations; another user's are not found."""

    path = "/v1/conversations"
    tags = ["history"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List your conversations (newest first)")
    async def list_conversations(
        self,
        principal: Principal,
        history: ConversationStore,
        search: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> dict[str, Any]:
        """Titles (in your own words) and times, one page at a time: pass ``next_cursor`` as
        ``before`` for the next, older page (null: no more); ``search`` matches the start of
        a stored title."""
        found, following = await history.list_conversations(
            principal.tenant, principal.subject, search=search, limit=limit, before=before
        )
        return {"data": found, "next_cursor": following}

    @get("/{conversation_id:str}", summary="Read a conversation")
    async def read(
        self, conversation_id: str, principal: Principal, history: ConversationStore
    ) -> dict[str, Any]:
        """Its messages in order, in your own words, with the sources each answer cited."""
        return await history.read(principal.tenant, principal.subject, conversation_id)

    @patch("/{conversation_id:str}", summary="Rename a conversation")
    async def rename(
        self,
        conversation_id: str,
        data: ConversationRename,
        principal: Principal,
        history: ConversationStore,
    ) -> dict[str, Any]:
        """A new title."""
        return await history.rename(
            principal.tenant, principal.subject, conversation_id, data.title
        )

    @delete("/{conversation_id:str}", status_code=204, summary="Delete a conversation")
    async def delete_conversation(
        self,
        conversation_id: str,
        principal: Principal,
        history: ConversationStore,
        audit_trail: AuditTrail,
    ) -> None:
        """The conversation and its messages are deleted, not hidden."""
        await history.delete(principal.tenant, principal.subject, conversation_id)
        await audit_trail.action(principal, "history.deleted", conversation_id=conversation_id)

    @get("/{conversation_id:str}/export", summary="Export a conversation (Markdown or JSON)")
    async def export(
        self,
        conversation_id: str,
        principal: Principal,
        history: ConversationStore,
        audit_trail: AuditTrail,
        format: Literal["markdown", "json"] = "markdown",
    ) -> Response[str]:
        """A download of the conversation as Markdown or JSON."""
        conversation = await history.read(principal.tenant, principal.subject, conversation_id)
        await audit_trail.action(
            principal, "history.exported", conversation_id=conversation_id, format=format
        )
        if format == "json":
            body, media, suffix = to_json(conversation), "application/json", "json"
        else:
            body, media, suffix = to_markdown(conversation), "text/markdown", "md"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{conversation_id}.{suffix}"'},
        )
