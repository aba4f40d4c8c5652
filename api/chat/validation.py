"""Turns an OpenAI chat request into the engine's plain types, reporting every problem at once."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from api.chat.openai_types import ChatCompletionRequest, RequestMessage
from core.errors import InvalidRequest
from core.settings import ApiSettings
from models.llm.base import ChatMessage, SamplingOptions

__all__ = ["ANSWER_LANGUAGES", "ValidatedChat", "answer_language", "validate_chat_request"]

_ROLE_ALIASES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_MAX_STOP_SEQUENCES = 4
# Control characters other than tab, newline and carriage return carry no meaning in chat text.
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}
_KB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CONVERSATION_ID = re.compile(r"^conv_[0-9a-f]{24}$")
_CLIENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Languages a chat may ask answers in (BCP 47 primary tags; the portal's profile offers the
# same). Kept short on purpose: a tag here is a promise that answers in it are usable.
ANSWER_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "pt")


def answer_language(value: str) -> str | None:
    """``de``, ``de-CH`` or ``DE_ch`` → ``de`` / ``de-CH``; None if the language is not ours."""
    parts = value.strip().replace("_", "-").split("-")
    primary = parts[0].lower()
    if primary not in ANSWER_LANGUAGES or len(parts) > 2:
        return None
    if len(parts) == 1:
        return primary
    region = parts[1]
    # A region subtag: two letters (CH) or three digits (419, Latin America).
    if (len(region) == 2 and region.isascii() and region.isalpha()) or (
        len(region) == 3 and region.isdigit()
    ):
        return f"{primary}-{region.upper()}"
    return None


@dataclass(frozen=True, slots=True)
class ValidatedChat:
    """A chat request that passed validation, normalised."""

    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    stream: bool
    include_usage: bool
    ignore_eos: bool = False
    knowledge_base: str | None = None
    conversation_id: str | None = None
    client: str | None = None
    language: str | None = None
    # The client's own penalties (OpenAI fields); None: the answering engine's configured one.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None

    @property
    def requested_decoding(self) -> dict[str, float]:
        """The penalties the client set, by name; they win over every engine's configured
        ones (repetition_penalty is not an OpenAI field: it stays configuration only)."""
        requested = {
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }
        return {name: value for name, value in requested.items() if value is not None}

    def sampling(self, max_tokens: int) -> SamplingOptions:
        """Sampling options with the answer budget decided by the context fitter; the
        penalties are each engine's, set by the pipeline (``ChatRun.decoding_for``)."""
        return SamplingOptions(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop,
            seed=self.seed,
            ignore_eos=self.ignore_eos,
        )


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if ch in _ALLOWED_CONTROLS or unicodedata.category(ch) != "Cc")


def _message_text(index: int, message: RequestMessage, problems: list[str]) -> str:
    content = message.content
    if content is None:
        problems.append(f"messages[{index}].content: is missing; send the message text")
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part_index, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            problems.append(
                f"messages[{index}].content[{part_index}]: only text parts are supported "
                f"(got type {part.get('type')!r})"
            )
            continue
        parts.append(part["text"])
    return "".join(parts)


def validate_chat_request(
    body: ChatCompletionRequest, limits: ApiSettings, *, max_completion_tokens: int | None = None
) -> ValidatedChat:
    """Check a request against the API's limits; raise one InvalidRequest naming every problem.

    ``max_completion_tokens`` replaces the settings' limit (a tenant's runtime configuration).
    """
    problems: list[str] = []
    completion_limit = max_completion_tokens or limits.max_completion_tokens
    if not body.messages:
        problems.append("messages: must contain at least one message")
    if len(body.messages) > limits.max_messages:
        problems.append(
            f"messages: {len(body.messages)} messages sent, at most {limits.max_messages} allowed"
        )
    messages: list[ChatMessage] = []
    for index, message in enumerate(body.messages[: limits.max_messages]):
        role = _ROLE_ALIASES.get(message.role)
        if role is None:
            problems.append(
                f"messages[{index}].role: {message.role!r} is not supported; "
                "use system, developer, user or assistant"
            )
        text = _normalise(_message_text(index, message, problems))
        if message.content is not None and not text.strip():
            problems.append(f"messages[{index}].content: is empty; send some text")
        if len(text) > limits.max_message_chars:
            problems.append(
                f"messages[{index}].content: {len(text)} characters, "
                f"at most {limits.max_message_chars} allowed"
            )
        if role is not None:
            messages.append(ChatMessage(role=role, content=text))  # type: ignore[arg-type]
    if messages and messages[-1].role != "user" and not problems:
        problems.append("messages: the last message must come from the user")
    if body.n != 1:
        problems.append(f"n: only n=1 is supported (got {body.n})")
    if (
        body.max_tokens is not None
        and body.max_completion_tokens is not None
        and (body.max_tokens != body.max_completion_tokens)
    ):
        problems.append("max_tokens and max_completion_tokens disagree; send only one")
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None and max_tokens > completion_limit:
        problems.append(
            f"max_tokens: {max_tokens} is above this server's limit of {completion_limit}"
        )
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > _MAX_STOP_SEQUENCES:
        problems.append(f"stop: at most {_MAX_STOP_SEQUENCES} sequences allowed")
    if any(not s for s in stop):
        problems.append("stop: sequences must not be empty")
    if body.knowledge_base is not None and not _KB_NAME.match(body.knowledge_base):
        problems.append(
            "knowledge_base: use 1-64 lower-case letters, digits, '-' or '_' "
            "(GET /v1/knowledge-bases lists them)"
        )
    if body.conversation_id is not None and not _CONVERSATION_ID.match(body.conversation_id):
        problems.append(
            "conversation_id: use the `enclave.conversation_id` of an earlier answer "
            "(conv_ followed by 24 hex digits), or leave it out to start a new conversation"
        )
    if body.client is not None and not _CLIENT.match(body.client):
        problems.append("client: use 1-64 lower-case letters, digits, '-' or '_' (e.g. portal)")
    language = None if body.language is None else answer_language(body.language)
    if body.language is not None and language is None:
        problems.append(
            f"language: {body.language[:40]!r} is not offered; use one of "
            + ", ".join(ANSWER_LANGUAGES)
            + " (a region is fine, e.g. de-CH)"
        )
    # Only what asks for tools is refused: an empty list or "none" asks for nothing.
    offered = [
        name
        for name, value in (
            ("tools", body.tools),
            ("tool_choice", body.tool_choice),
            ("functions", body.functions),
            ("function_call", body.function_call),
        )
        if value not in (None, [], "none")
    ]
    if offered:
        problems.append(
            f"{', '.join(offered)}: tool calling is not offered by this server; send the "
            "request without tools, tool_choice, functions or function_call"
        )
    if body.stream_options is not None and not body.stream:
        problems.append("stream_options: only allowed when stream is true")
    if problems:
        raise InvalidRequest(
            "The chat request is not valid: " + "; ".join(problems) + ".",
            extra={"errors": [{"message": p} for p in problems]},
        )
    return ValidatedChat(
        model=body.model,
        messages=tuple(messages),
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=stop,
        seed=body.seed,
        stream=body.stream,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        ignore_eos=body.ignore_eos,
        knowledge_base=body.knowledge_base,
        conversation_id=body.conversation_id,
        client=body.client,
        language=language,
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
    )
