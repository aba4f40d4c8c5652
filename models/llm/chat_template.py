"""Chat templating with the model's own tokenizer (shared by every engine)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.llm.base import ChatMessage

__all__ = ["prompt_token_ids"]


def prompt_token_ids(
    tokenizer: Any, messages: Sequence[ChatMessage], continue_from: str = ""
) -> list[int]:
    """Token ids of the chat, rendered by the tokenizer's chat template, ready to generate.

    With ``continue_from``, the chat ends in an unfinished assistant message holding that
    text (no end-of-turn token), so the model continues it rather than starting anew.
    """
    chat = [{"role": m.role, "content": m.content} for m in messages]
    if continue_from:
        chat.append({"role": "assistant", "content": continue_from})
        encoded = tokenizer.apply_chat_template(
            chat, add_generation_prompt=False, continue_final_message=True, tokenize=True
        )
    else:
        encoded = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    # transformers 5 returns a BatchEncoding; older releases a plain list.
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(token) for token in ids]
