"""The OpenAI chat-completions wire format, as the ``openai`` Python client uses it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "Choice",
    "ChunkChoice",
    "Delta",
    "ModelCard",
    "ModelList",
    "RequestMessage",
    "ResponseMessage",
    "StreamOptions",
    "Usage",
]


class RequestMessage(msgspec.Struct, forbid_unknown_fields=False):
    """A message as a client sends it; content may be a string or text parts."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(msgspec.Struct):
    """``stream_options``: whether the last chunk carries ``usage``."""

    include_usage: bool = False


Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
Penalty = Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class ChatCompletionRequest(msgspec.Struct, forbid_unknown_fields=False):
    """``POST /v1/chat/completions`` body. Unknown OpenAI fields are accepted and ignored."""

    model: str
    messages: list[RequestMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    # null: the answering engine's configured penalty (llm.<engine>.decoding, runtime config).
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    user: str | None = None
    # vLLM's extension, used by its serving benchmark to fix the answer length.
    ignore_eos: bool = False
    # Enclave's extension (the openai client sends it with extra_body): the knowledge base
    # to answer from; null: the tenant's default.
    knowledge_base: str | None = None
    # Enclave's extension: the conversation this turn belongs to (from an earlier
    # response's `enclave.conversation_id`); null: a new conversation.
    conversation_id: str | None = None
    # Enclave's extension: the application within the tenant that asks (e.g. "portal"); it
    # picks the client-level prompt overrides. null: the tenant's own prompt.
    client: str | None = None
    # Enclave's extension: the language to answer in (a BCP 47 tag such as "de"); null: the
    # prompt's default.
    language: str | None = None
    # Tool calling is not offered: these are declared only so that a request carrying them
    # is refused (validation) instead of answered as if the tools had been considered.
    tools: list[Any] | None = None
    tool_choice: Any | None = None
    functions: list[Any] | None = None
    function_call: Any | None = None


class Usage(msgspec.Struct):
    """Token counts of one completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(msgspec.Struct):
    """The assistant's answer."""

    content: str
    role: Literal["assistant"] = "assistant"


class Choice(msgspec.Struct):
    """One (the only) choice of a non-streamed completion."""

    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(msgspec.Struct, omit_defaults=False):
    """A non-streamed completion."""

    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None
    # Enclave's extension: the response's lineage (OpenAI clients ignore unknown fields).
    enclave: dict[str, Any] | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    """The new part of a streamed answer."""

    role: str | None = None
    content: str | None = None


class ChunkChoice(msgspec.Struct):
    """One choice of a streamed chunk."""

    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct):
    """One server-sent event of a streamed completion."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = None
    enclave: dict[str, Any] | None = None


class ModelCard(msgspec.Struct):
    """One entry of ``GET /v1/models``."""

    id: str
    created: int
    owned_by: str = "enclave"
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct):
    """``GET /v1/models``."""

    data: list[ModelCard]
    object: Literal["list"] = "list"
