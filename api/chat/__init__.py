"""The chat path: one service owns a request from validation to its audit record.

``ChatService.start`` runs the stages that may refuse the request; its ``ChatTurn.events``
yield the answer as typed events (``TextDelta``, ``Notice``, ``Completed``, ``Failed``) that
the route frames. ``ChatPipeline`` holds the stages themselves.
"""

from __future__ import annotations

from api.chat.events import ChatEvent, Completed, Failed, Notice, TextDelta
from api.chat.pipeline import ChatPipeline, ChatRun
from api.chat.service import ChatService, ChatTurn, lineage_headers

__all__ = [
    "ChatEvent",
    "ChatPipeline",
    "ChatRun",
    "ChatService",
    "ChatTurn",
    "Completed",
    "Failed",
    "Notice",
    "TextDelta",
    "lineage_headers",
]
