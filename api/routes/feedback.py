"""``/v1/feedback``, ``/v1/signals`` and ``/v1/quality``: users rate their answers and the
portal reports implicit signals; tenant admins read the quality view.

A comment is scrubbed of PII by the guard's scanner (placeholders such as ``<PERSON_1>``,
as in chat messages) before it is stored, logged or echoed; if the scanner is away the
rating fails rather than keeping raw text.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal

import msgspec
from litestar import Controller, get, post

from api.chat.guarding import scrub_free_text
from api.security import Principal
from api.services import Services
from api.stores.quality import MAX_DAYS, AnswerRef, QualityStore
from core.errors import InvalidRequest, NotFound
from core.ids import is_valid_request_id

__all__ = ["FeedbackController", "FeedbackCreate", "SignalCreate"]

_log = logging.getLogger("enclave.api.quality")

MAX_COMMENT_CHARS: Final = 2000
# The column's width; core.ids allows longer ids than the history stores.
_REQUEST_ID_CHARS: Final = 64
# The id a chat completion shows is the request id behind this prefix; accept either.
_COMPLETION_PREFIX: Final = "chatcmpl-"


class FeedbackCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/feedback`` body: a rating of one answer, with an optional comment."""

    request_id: str
    rating: Literal["up", "down"]
    comment: str | None = None


class SignalCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/signals`` body: an implicit signal the client saw (``abandoned`` and
    ``rephrase`` the server records itself)."""

    request_id: str
    kind: Literal["regenerate", "copy"]


def _request_id(value: str) -> str:
    """The answer's request id, from either it or the completion id (``chatcmpl-...``)."""
    request_id = value.strip().removeprefix(_COMPLETION_PREFIX)
    if len(request_id) > _REQUEST_ID_CHARS or not is_valid_request_id(request_id):
        msg = (
            "request_id: give the id of the answer, as the chat response's `id` or its "
            f"X-Request-ID header (8-{_REQUEST_ID_CHARS} letters, digits, '.', '_', ':' or '-')."
        )
        raise InvalidRequest(msg)
    return request_id


async def _own_answer(quality: QualityStore, principal: Principal, request_id: str) -> AnswerRef:
    answer = await quality.answer_of(principal.tenant, principal.subject, request_id)
    if answer is None:
        msg = (
            f"There is no answer {request_id!r} of yours. Use the id of an answer in one of "
            "your conversations (GET /v1/conversations/{id} lists them with their request_id)."
        )
        raise NotFound(msg, extra={"answer_request_id": request_id})
    return answer


class FeedbackController(Controller):
    """Quality signals on the caller's own answers, and the tenant's quality view."""

    path = "/v1"
    tags = ["quality"]  # noqa: RUF012 - Litestar reads this class attribute

    @post("/feedback", status_code=201, summary="Rate one of your answers")
    async def rate(
        self,
        data: FeedbackCreate,
        principal: Principal,
        services: Services,
        quality: QualityStore,
    ) -> dict[str, Any]:
        """Thumbs up or down, with an optional comment (PII is replaced by placeholders).
        Rating an answer again replaces the earlier rating."""
        request_id = _request_id(data.request_id)
        comment = (data.comment or "").strip() or None
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            msg = f"comment: at most {MAX_COMMENT_CHARS} characters, got {len(comment)}."
            raise InvalidRequest(msg)
        answer = await _own_answer(quality, principal, request_id)
        if comment is not None:
            comment = await scrub_free_text(services.guard, comment, services.metrics)
        kind = "thumbs_up" if data.rating == "up" else "thumbs_down"
        event_id = await quality.record(
            tenant=principal.tenant,
            user_id=principal.subject,
            request_id=request_id,
            kind=kind,
            conversation_id=answer.conversation_id,
            comment=comment,
            prompt_version=answer.prompt_version,
            config_version=answer.config_version,
            model=answer.model,
        )
        services.metrics.quality_event(kind, answer.prompt_version)
        _log.info(
            "answer rated",
            extra={"request_id": request_id, "kind": kind, "with_comment": comment is not None},
        )
        return {"id": event_id, "request_id": request_id, "rating": data.rating, "comment": comment}

    @post("/signals", status_code=202, summary="Report an implicit signal on one of your answers")
    async def signal(
        self,
        data: SignalCreate,
        principal: Principal,
        services: Services,
        quality: QualityStore,
    ) -> dict[str, Any]:
        """``regenerate`` or ``copy``, as the client saw the user do it."""
        request_id = _request_id(data.request_id)
        answer = await _own_answer(quality, principal, request_id)
        event_id = await quality.record(
            tenant=principal.tenant,
            user_id=principal.subject,
            request_id=request_id,
            kind=data.kind,
            conversation_id=answer.conversation_id,
            prompt_version=answer.prompt_version,
            config_version=answer.config_version,
            model=answer.model,
        )
        services.metrics.quality_event(data.kind, answer.prompt_version)
        return {"id": event_id}

    @get("/quality", summary="Quality of your tenant's answers per day and prompt version")
    async def view(
        self, principal: Principal, quality: QualityStore, days: int = 14
    ) -> dict[str, Any]:
        """Satisfaction, fallback, refusal and degraded-retrieval rates and signal counts
        for the last ``days`` UTC days (1-90), per day and prompt version, and per version."""
        if not 1 <= days <= MAX_DAYS:
            msg = f"days must be between 1 and {MAX_DAYS}, got {days}."
            raise InvalidRequest(msg)
        summary = await quality.summary(principal.tenant, days=days)
        return summary.as_json()
