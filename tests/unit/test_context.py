"""Context budget: system kept, oldest turns dropped first, clear error when impossible."""

from __future__ import annotations

import pytest

from api.chat.context import fit_context
from core.errors import ContextTooLong
from models.llm.base import ChatMessage
from tests.fakes import WordTokenizer


def msg(role: str, words: int, tag: str = "w") -> ChatMessage:
    return ChatMessage(role=role, content=" ".join(f"{tag}{i}" for i in range(words)))  # type: ignore[arg-type]


def fit(messages: list[ChatMessage], **overrides: int):  # type: ignore[no-untyped-def]
    options = {
        "max_model_len": 100,
        "requested_max_tokens": 20,
        "reserve_retrieval_tokens": 0,
        "min_answer_tokens": 5,
    }
    options.update(overrides)
    return fit_context(messages, WordTokenizer(), **options)


def test_short_conversation_is_untouched() -> None:
    messages = [msg("system", 5), msg("user", 5)]
    result = fit(messages)
    assert result.messages == tuple(messages)
    assert result.dropped_messages == 0
    assert result.max_tokens == 20
    assert len(result.prompt_token_ids) == 16


def test_oldest_turns_go_first_and_system_stays() -> None:
    system = msg("system", 10, "s")
    turns = [
        msg("user", 20, "u1"),
        msg("assistant", 20, "a1"),
        msg("user", 20, "u2"),
        msg("assistant", 10, "a2"),
        msg("user", 10, "u3"),
    ]
    result = fit([system, *turns])
    assert result.messages[0] == system
    assert result.messages[-1] == turns[-1]
    assert turns[0] not in result.messages  # the oldest went first
    assert result.dropped_messages >= 1
    assert len(result.prompt_token_ids) + result.max_tokens <= 100


def test_retrieval_reserve_is_respected() -> None:
    messages = [msg("user", 30), msg("assistant", 30), msg("user", 10)]
    result = fit(messages, reserve_retrieval_tokens=40)
    assert len(result.prompt_token_ids) + result.max_tokens <= 60
    assert result.dropped_messages == 2


def test_answer_budget_shrinks_before_the_last_turn_is_lost() -> None:
    result = fit([msg("user", 80)], requested_max_tokens=50)
    assert result.max_tokens == 100 - 83
    assert result.dropped_messages == 0


def test_single_message_too_long_names_the_limit() -> None:
    with pytest.raises(ContextTooLong) as caught:
        fit([msg("system", 5), msg("user", 200)])
    assert "at most 95 prompt tokens" in caught.value.detail
    assert caught.value.status_code == 400
