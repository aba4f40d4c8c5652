"""Fits a conversation into the model's context window.

System messages and the newest user turn are always kept; the oldest other turns are
dropped first; room is reserved for retrieved text and for the answer. What was dropped is
reported so that it can be recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api.services import PromptTokenizer
from core.errors import ContextTooLong
from models.llm.base import ChatMessage

__all__ = ["ContextFit", "fit_context"]


@dataclass(frozen=True, slots=True)
class ContextFit:
    """The conversation as it will be sent, and what had to go."""

    messages: tuple[ChatMessage, ...]
    prompt_token_ids: tuple[int, ...]
    max_tokens: int
    dropped_messages: int


def fit_context(
    messages: Sequence[ChatMessage],
    tokenizer: PromptTokenizer,
    *,
    max_model_len: int,
    requested_max_tokens: int,
    reserve_retrieval_tokens: int,
    min_answer_tokens: int,
) -> ContextFit:
    """Drop the oldest turns until prompt + answer budget fit the window.

    The answer budget shrinks (down to ``min_answer_tokens``) before the newest user turn
    would have to go; a conversation that cannot fit even then is a ``ContextTooLong``.
    """
    window = max_model_len - reserve_retrieval_tokens
    kept = list(messages)
    dropped = 0
    while True:
        ids = tokenizer.prompt_token_ids(kept)
        if len(ids) + requested_max_tokens <= window:
            return ContextFit(tuple(kept), tuple(ids), requested_max_tokens, dropped)
        droppable = [i for i, m in enumerate(kept[:-1]) if m.role != "system"]
        if not droppable:
            break
        del kept[droppable[0]]
        dropped += 1
    room_for_answer = window - len(ids)
    if room_for_answer >= min_answer_tokens:
        return ContextFit(tuple(kept), tuple(ids), room_for_answer, dropped)
    limit = window - min_answer_tokens
    raise ContextTooLong(
        f"The message is {len(ids)} tokens long with its system prompt; this model accepts "
        f"at most {limit} prompt tokens (context window {max_model_len}, "
        f"{reserve_retrieval_tokens} reserved for documents, {min_answer_tokens} for the "
        "answer). Shorten the message or split it.",
        extra={"prompt_tokens": len(ids), "max_prompt_tokens": limit},
    )
