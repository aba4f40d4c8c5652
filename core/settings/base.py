"""The base of every settings section (``core.settings``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    """A settings section: unknown keys are errors (typos are caught), values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
