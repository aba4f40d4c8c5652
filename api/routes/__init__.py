"""HTTP route handlers, one module per area."""

from __future__ import annotations

from api.routes.admin import ApiKeyController, erase_person
from api.routes.audit import AuditController
from api.routes.chat import ChatController
from api.routes.health import healthz, info, readyz, stack_status
from api.routes.history import ConversationController
from api.routes.knowledge import KnowledgeBaseController
from api.routes.me import me, my_usage
from api.routes.models import list_models

__all__ = [
    "ApiKeyController",
    "AuditController",
    "ChatController",
    "ConversationController",
    "KnowledgeBaseController",
    "erase_person",
    "healthz",
    "info",
    "list_models",
    "me",
    "my_usage",
    "readyz",
    "stack_status",
]
