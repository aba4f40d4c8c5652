"""One typed settings tree, loaded once at start-up and passed in.

Precedence, lowest first: field defaults → ``settings.yaml`` → ``settings-<profile>.yaml``
→ ``ENCLAVE_*`` environment variables (nested with ``__``, e.g.
``ENCLAVE_API__PORT=9000``). The YAML files are deep-merged. Invalid settings raise
:class:`core.errors.ConfigurationError` listing every problem at once. The *config
version* is the sha256 of the canonical JSON of the effective settings.

The tree apart from its loading, as private-gpt keeps them: ``tree`` (the root
``Settings``), one module per group of sections (``deployment``: paths, API, replica
resources, Ray; ``llm``; ``chat``: PII, guards, prompts, context, retrieval; ``storage``:
database, audit, retention, history; ``operations``: telemetry, canary, alerts;
``security``: auth, rate limits, quotas; ``scaling``: autoscaling and placement; ``base``:
the ``Section`` every section derives from), and ``loader`` (files, profile, environment,
config version). Import from here: the modules are the package's own layout.
"""

from __future__ import annotations

from core.settings.base import Section
from core.settings.chat import (
    ContextSettings,
    GuardSettings,
    IntentAction,
    KnowledgeBaseSettings,
    PIIPattern,
    PiiPolicy,
    PIISettings,
    PromptSettings,
    RetrievalSettings,
    SeedKnowledgeBase,
)
from core.settings.deployment import ApiSettings, DeploymentResources, PathsSettings, RaySettings
from core.settings.llm import DecodingSettings, LLMModelSettings, LLMSettings
from core.settings.loader import config_version, load_settings
from core.settings.operations import (
    AlertSettings,
    CanarySettings,
    TelemetrySettings,
    local_url_problem,
)
from core.settings.scaling import AutoscalingSettings, PlacementSettings
from core.settings.security import (
    ROLE_NAMES,
    ApiKeySettings,
    AuthSettings,
    LimitsSettings,
    OIDCSettings,
    QuotaPeriod,
    RoleName,
    StoreOutagePolicy,
    TokenQuotaSettings,
)
from core.settings.storage import (
    AuditSettings,
    DatabaseSettings,
    HistorySettings,
    RetentionSettings,
)
from core.settings.tree import ENV_PREFIX, Settings

__all__ = [
    "ENV_PREFIX",
    "ROLE_NAMES",
    "AlertSettings",
    "ApiKeySettings",
    "ApiSettings",
    "AuditSettings",
    "AuthSettings",
    "AutoscalingSettings",
    "CanarySettings",
    "ContextSettings",
    "DatabaseSettings",
    "DecodingSettings",
    "DeploymentResources",
    "GuardSettings",
    "HistorySettings",
    "IntentAction",
    "KnowledgeBaseSettings",
    "LLMModelSettings",
    "LLMSettings",
    "LimitsSettings",
    "OIDCSettings",
    "PIIPattern",
    "PIISettings",
    "PathsSettings",
    "PiiPolicy",
    "PlacementSettings",
    "PromptSettings",
    "QuotaPeriod",
    "RaySettings",
    "RetentionSettings",
    "RetrievalSettings",
    "RoleName",
    "Section",
    "SeedKnowledgeBase",
    "Settings",
    "StoreOutagePolicy",
    "TelemetrySettings",
    "TokenQuotaSettings",
    "config_version",
    "load_settings",
    "local_url_problem",
]
