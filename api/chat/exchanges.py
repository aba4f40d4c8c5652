"""An exchange's record: its conversation rows and its audit record, in one transaction.

The history keeps what the model saw and wrote (placeholders, never the user's values in the
clear: those go only into the conversation's vault, encrypted for its owner); the
audit record keeps the lineage (ids, decisions, counts, timings). If either cannot be
written, neither is, and the caller reports ``AuditUnavailable`` (503).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.chat.pipeline import ChatRun
from api.chat.validation import ValidatedChat
from api.security import Principal
from api.services import Services
from api.stores.history import StoredMessage
from models.llm.base import GenerationDelta

__all__ = ["RecordedExchange", "record_exchange"]


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """Where the exchange was recorded."""

    conversation_id: str
    message_ids: tuple[str, ...]
    audit_seq: int


def _new_messages(chat: ValidatedChat, run: ChatRun, answer: str) -> list[StoredMessage]:
    scrubbed = [m for m in run.guard.messages if m.role != "system"]
    if chat.conversation_id is not None:
        # The conversation holds the earlier turns already: only this turn is new.
        scrubbed = scrubbed[-1:]
    stored = [StoredMessage(m.role, m.content) for m in scrubbed]
    full = run.lineage()
    # What the history, the quality view and feedback need: ids, versions and outcomes.
    lineage = {
        key: full[key]
        for key in (
            "decision",
            "sources",
            "model",
            "engine",
            "fallback",
            "retrieval",
            "prompt_version",
            "prompt_chain",
            "config_version",
            "cohort",
        )
    }
    stored.append(
        StoredMessage(
            "assistant",
            run.guard.vault.conceal(answer),
            request_id=run.request_id,
            lineage=lineage,
        )
    )
    return stored


def _without_quotes(lineage: dict[str, Any]) -> dict[str, Any]:
    """The audit record keeps ids and scores of the sources, not the quoted passage text."""
    sources = lineage.get("sources")
    if not sources:
        return lineage
    return {
        **lineage,
        "sources": [{k: v for k, v in source.items() if k != "quote"} for source in sources],
    }


async def record_exchange(
    services: Services,
    principal: Principal,
    chat: ValidatedChat,
    run: ChatRun,
    *,
    answer: str,
    last: GenerationDelta,
    lineage: dict[str, Any],
) -> RecordedExchange:
    """Write the conversation rows and the audit record together."""
    audit = services.audit
    async with audit.transaction(services.database) as connection:
        conversation_id, message_ids = await services.history.record_exchange(
            connection,
            tenant=principal.tenant,
            user_id=principal.subject,
            conversation_id=chat.conversation_id,
            new_messages=_new_messages(chat, run, answer),
            # Encrypted under the user's data key: the owner reads their own words later.
            vault=run.guard.vault.mapping(),
        )
        record = await audit.append(
            connection,
            tenant=principal.tenant,
            actor=principal.subject,
            event_type="chat.blocked" if run.decision == "block" else "chat.exchange",
            event={
                "request_id": run.request_id,
                "conversation_id": conversation_id,
                "message_ids": message_ids,
                "auth_method": principal.auth_method,
                "usage": {
                    "prompt_tokens": last.prompt_tokens,
                    "completion_tokens": last.completion_tokens,
                },
                "lineage": _without_quotes(lineage),
            },
        )
    return RecordedExchange(conversation_id, tuple(message_ids), record.seq)
