"""Tables of prompt versions, runtime configuration versions, quality signals and
evaluation runs (SQLAlchemy Core, on ``schema.metadata``).

Scopes: ``tenant`` ``"*"`` is every tenant (the platform's level); ``client`` ``""`` is the
tenant's own level, otherwise one application within the tenant. The active version of a
scope is the one named by its latest activation row (activations are only ever added, so
the history of who switched what, when, stays readable).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from core.db.schema import metadata

__all__ = [
    "config_activations",
    "config_versions",
    "eval_runs",
    "prompt_activations",
    "prompt_versions",
    "quality_events",
    "user_profiles",
]

prompt_versions = Table(
    "prompt_versions",
    metadata,
    Column("id", String(40), primary_key=True, comment="pv_ + random hex"),
    Column("tenant", String(64), nullable=False),
    Column("client", String(64), nullable=False, comment="'' = the tenant's own level"),
    Column("name", String(64), nullable=False, comment="which prompt, e.g. chat"),
    Column("number", Integer, nullable=False, comment="1, 2, 3, ... per scope and name"),
    Column("parts", JSON, nullable=False, comment="part name -> Jinja template"),
    Column("variables", JSON, nullable=False, comment="declared variables and their types"),
    Column("note", String(500), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_check", JSON, nullable=True, comment="the last regression-suite result"),
    UniqueConstraint("tenant", "client", "name", "number"),
)

prompt_activations = Table(
    "prompt_activations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("client", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("version_id", String(40), nullable=True, comment="null: inherit the level above"),
    Column("action", String(16), nullable=False, comment="activate | rollback | deactivate"),
    Column("activated_by", String(128), nullable=False),
    Column("activated_at", DateTime(timezone=True), nullable=False),
    Index(None, "tenant", "client", "name", "id"),
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False, comment="'*' = every tenant"),
    Column("number", Integer, nullable=False, comment="1, 2, 3, ... per tenant"),
    Column("document", JSON, nullable=False, comment="the validated runtime settings"),
    Column("note", String(500), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant", "number"),
)

config_activations = Table(
    "config_activations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("number", Integer, nullable=True, comment="null: no overrides for this tenant"),
    Column("action", String(16), nullable=False, comment="activate | rollback"),
    Column("activated_by", String(128), nullable=False),
    Column("activated_at", DateTime(timezone=True), nullable=False),
    Index(None, "tenant", "id"),
)

quality_events = Table(
    "quality_events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("user_id", String(128), nullable=False, comment="pseudonymous user id"),
    Column("request_id", String(64), nullable=False, comment="the answer it is about"),
    Column("conversation_id", String(40), nullable=True),
    Column(
        "kind",
        String(24),
        nullable=False,
        comment="thumbs_up | thumbs_down | regenerate | copy | abandoned | rephrase",
    ),
    Column("comment", Text, nullable=True, comment="PII-scrubbed (placeholders only)"),
    Column("prompt_version", String(80), nullable=True),
    Column("config_version", String(80), nullable=True),
    Column("model", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index(None, "tenant", "created_at"),
    Index(None, "request_id"),
)

eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("dataset", String(64), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("prompt_version", String(80), nullable=True),
    Column("model", String(128), nullable=True),
    Column("config_version", String(80), nullable=True),
    Column("cases", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("details", JSON, nullable=False, comment="per case: id, passed, failures (no text)"),
    Index(None, "dataset", "started_at"),
)

user_profiles = Table(
    "user_profiles",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True, comment="pseudonymous user id"),
    Column("display_name", String(100), nullable=False, comment="chosen by the user"),
    Column("language", String(16), nullable=False, comment="BCP 47 tag, e.g. en or de-CH"),
    Column("default_knowledge_base", String(64), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
