"""The system message a chat request sends to the model, from a prompt and its documents.

One function, used by the chat pipeline and by the serving benchmark (which gives the raw
engine exactly the prompt Enclave's engine received, so that both do equal work).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.prompts.resolution import EffectivePrompt

__all__ = ["system_message"]


def system_message(
    prompt: EffectivePrompt,
    values: Mapping[str, Any],
    client_system: Sequence[str] = (),
) -> str:
    """The prompt's ``system`` part, its ``developer`` part (when it renders to something),
    then whatever system text the client sent, as one message.

    ``values`` are the template's variables, ``documents`` among them (an empty list for an
    answer without documents).
    """
    parts = [prompt.render("system", values)]
    if prompt.has("developer"):
        developer = prompt.render("developer", values)
        if developer.strip():  # a part may render to nothing (e.g. English answers)
            parts.append(developer)
    return "\n\n".join([*parts, *client_system])
