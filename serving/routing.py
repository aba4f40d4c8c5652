"""Cache-aware routing for the LLM deployments (``llm.*.routing: prefix_affinity``).

Ray Serve LLM's ``PrefixCacheAffinityRouter`` sends a request to the replica whose prefix
tree matches most of its prompt while load is balanced, so a vLLM replica reuses its
prefix cache (the system prompt, retrieved documents, earlier turns). It reads the prompt
from a request argument's ``messages`` and understands lists of strings or dicts; ours is a
``GenerationRequest`` whose ``messages`` are a tuple of ``ChatMessage`` dataclasses, which
it would read as empty text (every request would look alike). This subclass reads them.

The router is imported from Ray's internal module: the public ``ray.serve.llm`` package
imports pyarrow and cloud filesystems at import time, which this stack does not install.
"""

from __future__ import annotations

from typing import Any

from ray.llm._internal.serve.routing_policies.prefix_aware.prefix_aware_router import (
    PrefixCacheAffinityRouter,
)

from models.llm.base import ChatMessage

__all__ = ["ChatPrefixAffinityRouter", "prompt_text"]


def prompt_text(messages: Any) -> str:
    """The text a prefix tree keys on: every message's role and content, in order."""
    if isinstance(messages, str):
        return messages
    parts = []
    for message in messages or ():
        if isinstance(message, ChatMessage):
            parts.append(f"{message.role}:{message.content}\n")
        elif isinstance(message, dict):
            parts.append(f"{message.get('role', '')}:{message.get('content', '')}\n")
        else:
            parts.append(str(message))
    return "".join(parts)


class ChatPrefixAffinityRouter(PrefixCacheAffinityRouter):
    """``PrefixCacheAffinityRouter`` that reads ``GenerationRequest.messages``."""

    def _normalize_prompt_to_string(self, prompt: Any) -> str:
        return prompt_text(prompt)
