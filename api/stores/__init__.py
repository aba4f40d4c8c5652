"""The API's stores in the SQL database, one module per domain, and the jobs that run over them.

Each store is built from a ``core.db.Database`` (and, where it writes audit records, the
``core.audit.AuditLog``): conversation history and its per-user vault keys, quality signals,
evaluation runs, user profiles, prompt versions, runtime configuration versions, the audit
trail of admin actions, and the retention and checkpoint jobs. Prompt versions and runtime
configuration reach every replica through one mechanism, ``ActivationSnapshot``. Chat stages
(``api.chat``) and routes (``api.routes``) use the stores; a store never imports a route.

Two modules are imported by their own name and not re-exported here, because they sit above
the others: ``api.stores.lifecycle`` (retention and erasure, which need the whole
``api.services.Services``) and ``api.stores.profiles`` (which shares the chat's answer
languages, ``api.chat.validation``). Re-exporting them would make ``api.services``, which
needs ``ConversationStore``, import itself through this package.
"""

from __future__ import annotations

from api.stores.activation_snapshot import ActivationSnapshot
from api.stores.audit_checkpoints import CheckpointJob
from api.stores.audit_trail import AuditTrail
from api.stores.evals import EvalStore
from api.stores.history import ConversationStore
from api.stores.prompt_registry import PromptRegistry
from api.stores.quality import QualityStore
from api.stores.runtime_config import RuntimeConfigStore
from api.stores.vault_keys import DeploymentKey, HistoryKeyring

__all__ = [
    "ActivationSnapshot",
    "AuditTrail",
    "CheckpointJob",
    "ConversationStore",
    "DeploymentKey",
    "EvalStore",
    "HistoryKeyring",
    "PromptRegistry",
    "QualityStore",
    "RuntimeConfigStore",
]
