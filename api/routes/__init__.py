"""HTTP route handlers, one module per area."""

from __future__ import annotations

from api.routes.admin import ApiKeyController
from api.routes.chat import ChatController
from api.routes.health import healthz, info, readyz
from api.routes.knowledge import KnowledgeBaseController
from api.routes.me import me, my_usage
from api.routes.models import list_models

__all__ = [
    "ApiKeyController",
    "ChatController",
    "KnowledgeBaseController",
    "healthz",
    "info",
    "list_models",
    "me",
    "my_usage",
    "readyz",
]
