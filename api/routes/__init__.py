"""HTTP route handlers, one module per area."""

from __future__ import annotations

from api.routes.chat import ChatController
from api.routes.health import healthz, info, readyz
from api.routes.knowledge import KnowledgeBaseController
from api.routes.models import list_models

__all__ = [
    "ChatController",
    "KnowledgeBaseController",
    "healthz",
    "info",
    "list_models",
    "readyz",
]
