"""Errors of prompt templates.

The tree::

    InvalidRequest (core.errors)      400
    └── PromptInvalid                 400  a template is rejected at save time; lists every problem
    EnclaveError (core.errors)        500
    └── PromptRenderError             500  a saved template could not be rendered for a request

``PromptInvalid`` names the part, the line and what to fix. ``PromptRenderError`` never
carries the text of the values or internals of Python objects: only the part, the kind of
failure and, where known, the template line.
"""

from __future__ import annotations

from typing import Any

from core.errors import EnclaveError, InvalidRequest

__all__ = ["PromptInvalid", "PromptRenderError"]


class PromptInvalid(InvalidRequest):
    """A prompt template (or suite) was rejected; ``problems`` lists every reason."""

    title = "Invalid prompt template"
    type_slug = "invalid-prompt"

    def __init__(self, problems: list[str] | str, *, extra: dict[str, Any] | None = None) -> None:
        listed = [problems] if isinstance(problems, str) else list(problems)
        detail = listed[0] if len(listed) == 1 else "; ".join(listed)
        super().__init__(detail, extra={"problems": listed, **(extra or {})})
        self.problems: tuple[str, ...] = tuple(listed)


class PromptRenderError(EnclaveError):
    """A saved prompt could not be rendered (a value of the wrong type, a sandbox limit)."""

    title = "Prompt could not be rendered"
    type_slug = "prompt-render"
