"""Runtime configuration, the pure model: which settings may change while Enclave runs.

Settings (``core.settings``) are loaded once at start. A few of them — feature flags, the
engine a tenant is answered by, retrieval parameters, answer limits and a canary rollout —
may be overridden at run time by *versions* stored in the database. This module is the
model of those overrides (documents, validation, merging, cohorts), with no database; the
versions and the snapshot requests read are kept by ``api.stores.runtime_config``. Two
levels exist: ``'*'`` (every tenant, set by platform admins) and each tenant's own; a
request runs under settings ⊕ global ⊕ tenant, the most specific set value winning
(:func:`effective_runtime`).

A document is validated before it is stored (:func:`validate_overrides`), and listing every
problem at once, against the deployment it is meant for: an override cannot ask for an
engine or a retriever the deployment does not run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidRequest
from core.settings import Settings

__all__ = [
    "Decoding",
    "DecodingOverrides",
    "EffectiveRuntime",
    "Engine",
    "FeatureOverrides",
    "GenerationOverrides",
    "ModelRouting",
    "PiiOverrides",
    "RetrievalOverrides",
    "Rollout",
    "RuntimeOverrides",
    "cohort",
    "effective_runtime",
    "validate_overrides",
]

Engine = Literal["primary", "fallback"]
"""One of the two configured engines (``llm.primary``, ``llm.fallback``)."""


class _Overrides(BaseModel):
    # strict: a JSON "5" for a number or "yes" for a flag is a mistake to report, not guess at.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FeatureOverrides(_Overrides):
    """Feature flags; null: inherit the level above."""

    retrieval: bool | None = Field(
        default=None, description="Retrieve documents from knowledge bases for answers."
    )
    fallback: bool | None = Field(
        default=None,
        description="Whether the fallback engine may step in when the first engine fails.",
    )


class ModelRouting(_Overrides):
    """Which configured engine answers this tenant's requests first."""

    engine: Engine | None = Field(
        default=None, description="The engine that answers first; null: inherit (primary)."
    )


class RetrievalOverrides(_Overrides):
    """Retrieval parameters; null: inherit the level above."""

    top_k: int | None = Field(
        default=None, ge=1, le=20, description="Chunks put into the prompt, at most."
    )
    min_score: float | None = Field(
        default=None, ge=0, le=1, description="Cosine similarity a chunk needs to be used."
    )
    max_context_tokens: int | None = Field(
        default=None,
        ge=64,
        le=8192,
        description="Prompt tokens the retrieved chunks may take, at most.",
    )


class GenerationOverrides(_Overrides):
    """Answer-length limits; null: inherit the level above."""

    default_max_tokens: int | None = Field(
        default=None, ge=1, le=4096, description="Answer budget when a request sets none."
    )
    max_completion_tokens: int | None = Field(
        default=None, ge=1, le=4096, description="Largest max_tokens a request may ask for."
    )


class EngineDecoding(_Overrides):
    """Repetition penalties of one engine's model; null: inherit (the model's settings)."""

    repetition_penalty: float | None = Field(
        default=None, gt=0, le=2, description="1: off; above 1 discourages repeated tokens."
    )
    frequency_penalty: float | None = Field(
        default=None, ge=-2, le=2, description="Per earlier occurrence in the answer; 0: off."
    )
    presence_penalty: float | None = Field(
        default=None, ge=-2, le=2, description="Once per token already in the answer; 0: off."
    )


class DecodingOverrides(_Overrides):
    """Decoding settings per engine (each engine runs its own model); null: inherit."""

    primary: EngineDecoding | None = Field(default=None, description="The primary's model.")
    fallback: EngineDecoding | None = Field(default=None, description="The fallback's model.")


class LimitOverrides(_Overrides):
    """Token quotas per period (the periods stay those of ``limits`` in the settings); null:
    inherit the level above."""

    user_tokens: int | None = Field(
        default=None,
        ge=1,
        le=10**12,
        description="Tokens each user of the tenant may use per limits.user_tokens.period.",
    )
    tenant_tokens: int | None = Field(
        default=None,
        ge=1,
        le=10**15,
        description="Tokens the whole tenant may use per limits.tenant_tokens.period.",
    )


_PLACE = r"^[^\x00-\x1f<>]{1,100}$"


class PiiOverrides(_Overrides):
    """The organisation's own places, which messages may name without being scrubbed; null:
    inherit. Levels add up: the global list and the tenant's list both apply."""

    allow_places: list[Annotated[str, Field(pattern=_PLACE)]] | None = Field(
        default=None,
        max_length=2000,
        description="Places that are not personal data here (offices, the cities the "
        "knowledge bases name; `enclave kb places --apply` derives them). A place on the "
        'list is still scrubbed where a person\'s life is attached ("I live in ...").',
    )
    protect_places: list[Annotated[str, Field(pattern=_PLACE)]] | None = Field(
        default=None,
        max_length=2000,
        description="Places always scrubbed, even when allow_places (at any level) names them.",
    )


class Rollout(_Overrides):
    """A canary: a share of the tenant's users gets a new prompt version and/or engine."""

    percent: int = Field(
        default=0, ge=0, le=100, description="Share of users in the canary cohort; 0: none."
    )
    prompt_version: str | None = Field(
        default=None,
        pattern=r"^pv_[0-9a-f]{1,37}$",
        description="A prompt version id (pv_...) of this tenant the canary cohort gets.",
    )
    engine: Engine | None = Field(
        default=None, description="The engine the canary cohort is answered by first."
    )


class RuntimeOverrides(_Overrides):
    """One configuration version's document; every section optional."""

    features: FeatureOverrides | None = Field(default=None, description="Feature flags.")
    models: ModelRouting | None = Field(default=None, description="Engine routing.")
    retrieval: RetrievalOverrides | None = Field(default=None, description="Retrieval parameters.")
    generation: GenerationOverrides | None = Field(default=None, description="Answer limits.")
    limits: LimitOverrides | None = Field(default=None, description="Token quotas.")
    pii: PiiOverrides | None = Field(
        default=None, description="Places that are not personal data for this tenant."
    )
    decoding: DecodingOverrides | None = Field(
        default=None, description="Repetition penalties per engine."
    )
    rollout: Rollout | None = Field(
        default=None,
        description="A canary rollout; it replaces the level above's rollout as a whole "
        "(percent 0 opts a tenant out of a global canary).",
    )


@dataclass(frozen=True, slots=True)
class Decoding:
    """The repetition penalties one engine answers with."""

    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """Field by field (the names of the engines' sampling options)."""
        return {
            "repetition_penalty": self.repetition_penalty,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }


@dataclass(frozen=True, slots=True)
class EffectiveRuntime:
    """What a request runs under: settings ⊕ global (``'*'``) ⊕ tenant overrides."""

    retrieval_enabled: bool
    fallback_enabled: bool
    engine: Engine
    top_k: int
    min_score: float
    max_context_tokens: int
    default_max_tokens: int
    max_completion_tokens: int
    user_tokens: int | None
    """The user token quota per period; None: unlimited."""
    tenant_tokens: int | None
    """The tenant token quota per period; None: unlimited."""
    allowed_places: tuple[str, ...]
    """Places messages may name unscrubbed (outside a personal context); sorted."""
    rollout: Rollout | None
    """None when no canary runs (no rollout, percent 0, or nothing to try)."""
    version: str
    """``g<global number>.t<tenant number>``; ``g0.t0``: settings only."""
    decoding: dict[Engine, Decoding] = field(default_factory=dict)
    """Per configured engine; an engine missing here answers with neutral settings."""

    def decoding_for(self, engine: Engine) -> Decoding:
        """The penalties ``engine`` answers with."""
        return self.decoding.get(engine) or Decoding()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for the admin API and lineage)."""
        return {
            "retrieval_enabled": self.retrieval_enabled,
            "fallback_enabled": self.fallback_enabled,
            "engine": self.engine,
            "top_k": self.top_k,
            "min_score": self.min_score,
            "max_context_tokens": self.max_context_tokens,
            "default_max_tokens": self.default_max_tokens,
            "max_completion_tokens": self.max_completion_tokens,
            "user_tokens": self.user_tokens,
            "tenant_tokens": self.tenant_tokens,
            "allowed_places": list(self.allowed_places),
            "rollout": None if self.rollout is None else self.rollout.model_dump(mode="json"),
            "decoding": {engine: d.as_dict() for engine, d in self.decoding.items()},
            "version": self.version,
        }


def _pick(*values: Any) -> Any:
    """The first value that is set (levels given most specific first)."""
    return next(value for value in values if value is not None)


def _first(*values: int | None) -> int | None:
    """The first value that is set; None when none is (an unlimited quota)."""
    return next((value for value in values if value is not None), None)


def effective_runtime(
    settings: Settings,
    global_overrides: RuntimeOverrides | None,
    global_number: int,
    tenant_overrides: RuntimeOverrides | None,
    tenant_number: int,
) -> EffectiveRuntime:
    """Merge settings < global < tenant, field by field.

    What the deployment cannot do is dropped rather than obeyed (a document validated
    against earlier settings may ask for a fallback that has since been removed): no
    fallback engine configured means no fallback and the primary answers; no retriever
    means no retrieval; the answer budget never exceeds the completion limit.
    """
    levels = [o for o in (tenant_overrides, global_overrides) if o is not None]

    def section(name: str) -> list[Any]:
        return [getattr(o, name) for o in levels if getattr(o, name) is not None]

    features, models = section("features"), section("models")
    retrieval, generation = section("retrieval"), section("generation")
    quotas = section("limits")
    has_fallback = settings.llm.fallback is not None

    def value(sections: list[Any], field: str, base: Any) -> Any:
        return _pick(*(getattr(s, field) for s in sections), base)

    engine: Engine = value(models, "engine", "primary")
    if engine == "fallback" and not has_fallback:
        engine = "primary"
    max_completion = value(generation, "max_completion_tokens", settings.api.max_completion_tokens)
    default_max = value(generation, "default_max_tokens", settings.llm.default_max_tokens)
    return EffectiveRuntime(
        retrieval_enabled=settings.retrieval.enabled
        and value(features, "retrieval", settings.retrieval.enabled),
        fallback_enabled=has_fallback and value(features, "fallback", has_fallback),
        engine=engine,
        top_k=value(retrieval, "top_k", settings.retrieval.top_k),
        min_score=value(retrieval, "min_score", settings.retrieval.min_score),
        max_context_tokens=value(
            retrieval, "max_context_tokens", settings.retrieval.max_context_tokens
        ),
        default_max_tokens=min(default_max, max_completion),
        max_completion_tokens=max_completion,
        user_tokens=_first(*(q.user_tokens for q in quotas), settings.limits.user_tokens.tokens),
        tenant_tokens=_first(
            *(q.tenant_tokens for q in quotas), settings.limits.tenant_tokens.tokens
        ),
        allowed_places=_allowed_places(section("pii")),
        rollout=_live_rollout(section("rollout"), has_fallback),
        version=f"g{global_number}.t{tenant_number}",
        decoding=_decoding(settings, section("decoding")),
    )


def _allowed_places(levels: list[PiiOverrides]) -> tuple[str, ...]:
    """Every level's allowed places, less every level's protected ones (case-insensitive)."""
    protected = {p.casefold() for level in levels for p in level.protect_places or ()}
    allowed = {p.casefold(): p for level in reversed(levels) for p in level.allow_places or ()}
    return tuple(sorted(name for key, name in allowed.items() if key not in protected))


def _decoding(settings: Settings, sections: list[DecodingOverrides]) -> dict[Engine, Decoding]:
    """Each configured engine's penalties: its model's settings, then global, then tenant."""
    models: dict[Engine, Any] = {"primary": settings.llm.primary}
    if settings.llm.fallback is not None:
        models["fallback"] = settings.llm.fallback
    decoding: dict[Engine, Decoding] = {}
    for engine, model in models.items():
        levels = [getattr(s, engine) for s in sections if getattr(s, engine) is not None]
        base = model.decoding
        decoding[engine] = Decoding(
            **{
                name: _pick(*(getattr(level, name) for level in levels), getattr(base, name))
                for name in ("repetition_penalty", "frequency_penalty", "presence_penalty")
            }
        )
    return decoding


def _live_rollout(rollouts: list[Rollout], has_fallback: bool) -> Rollout | None:
    """The most specific rollout, or None when it would change nothing."""
    if not rollouts:
        return None
    rollout = rollouts[0]
    if rollout.engine == "fallback" and not has_fallback:
        rollout = rollout.model_copy(update={"engine": None})
    if rollout.percent == 0 or (rollout.prompt_version is None and rollout.engine is None):
        return None
    return rollout


# Plain words for pydantic's error types; the rest use pydantic's own message.
_MESSAGES = {
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
}


def _plain(error: Mapping[str, Any], known: Mapping[str, tuple[str, ...]]) -> str:
    """One pydantic error as ``path: what to fix``."""
    location = [str(part) for part in error["loc"]]
    path = ".".join(location) or "(document)"
    kind = str(error["type"])
    context = error.get("ctx") or {}
    got = _shown(error.get("input"))
    if kind == "extra_forbidden":
        section = ".".join(location[:-1])
        allowed = ", ".join(known.get(section, ()))
        return f"{path}: unknown setting; known here: {allowed}"
    if kind == "greater_than_equal":
        return f"{path}: must be at least {context.get('ge')} (got {got})"
    if kind == "less_than_equal":
        return f"{path}: must be at most {context.get('le')} (got {got})"
    if kind == "literal_error":
        return f"{path}: must be one of {context.get('expected')} (got {got})"
    if kind == "string_pattern_mismatch" and location[:1] == ["pii"]:
        return f"{path}: must be a place name of 1-100 characters, no < > or control characters"
    if kind == "string_pattern_mismatch":
        return f"{path}: must be a prompt version id like pv_0123abcd (got {got})"
    if kind in _MESSAGES:
        return f"{path}: {_MESSAGES[kind]} (got {got})"
    return f"{path}: {error['msg']}"


def _shown(value: Any) -> str:
    """A wrong value as quoted in a message, cut short (it came from the caller)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _known_fields() -> dict[str, tuple[str, ...]]:
    known: dict[str, tuple[str, ...]] = {"": tuple(RuntimeOverrides.model_fields)}
    for name, info in RuntimeOverrides.model_fields.items():
        model = next(a for a in getattr(info.annotation, "__args__", ()) if a is not type(None))
        known[name] = tuple(model.model_fields)
    for engine in DecodingOverrides.model_fields:
        known[f"decoding.{engine}"] = tuple(EngineDecoding.model_fields)
    return known


def _get(document: Mapping[str, Any], section: str, field: str) -> Any:
    """A raw value, or None when absent or not where a value is expected."""
    part = document.get(section)
    return part.get(field) if isinstance(part, Mapping) else None


def _deployment_problems(document: Mapping[str, Any], settings: Settings) -> list[str]:
    """What the document asks of this deployment that it cannot do, or that contradicts itself."""
    problems: list[str] = []
    none_configured = "needs llm.fallback configured; this deployment has none"
    if settings.llm.fallback is None:
        if _get(document, "models", "engine") == "fallback":
            problems.append(f"models.engine: 'fallback' {none_configured}")
        if _get(document, "features", "fallback") is True:
            problems.append(f"features.fallback: true {none_configured}")
        if _get(document, "rollout", "engine") == "fallback":
            problems.append(f"rollout.engine: 'fallback' {none_configured}")
        if _get(document, "decoding", "fallback") is not None:
            problems.append(f"decoding.fallback {none_configured}")
    if not settings.retrieval.enabled and _get(document, "features", "retrieval") is True:
        problems.append(
            "features.retrieval: true needs retrieval.enabled in the settings; this "
            "deployment runs no retriever"
        )
    window = settings.llm.primary.max_model_len
    default_max = _get(document, "generation", "default_max_tokens")
    max_completion = _get(document, "generation", "max_completion_tokens")
    for name, wanted in (
        ("default_max_tokens", default_max),
        ("max_completion_tokens", max_completion),
    ):
        if _is_int(wanted) and wanted >= window:
            problems.append(
                f"generation.{name}: {wanted} does not fit the model's context window of "
                f"{window} tokens; use fewer"
            )
    ceiling = max_completion if _is_int(max_completion) else settings.api.max_completion_tokens
    if _is_int(default_max) and default_max > ceiling:
        problems.append(
            f"generation.default_max_tokens must not exceed max_completion_tokens "
            f"({default_max} > {ceiling})"
        )
    context = _get(document, "retrieval", "max_context_tokens")
    if _is_int(context) and context >= window:
        problems.append(
            f"retrieval.max_context_tokens: {context} does not fit the model's context "
            f"window of {window} tokens; use fewer"
        )
    percent = _get(document, "rollout", "percent")
    rollout = document.get("rollout")
    if (
        _is_int(percent)
        and percent > 0
        and isinstance(rollout, Mapping)
        and rollout.get("prompt_version") is None
        and rollout.get("engine") is None
    ):
        problems.append(
            "rollout: a canary needs a prompt_version or an engine to try (or percent 0)"
        )
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_overrides(document: Mapping[str, Any], settings: Settings) -> RuntimeOverrides:
    """The validated overrides, or :class:`InvalidRequest` listing every problem with its
    field path and what to fix."""
    if not isinstance(document, Mapping):
        msg = 'The overrides must be a JSON object, e.g. {"retrieval": {"top_k": 6}}.'
        raise InvalidRequest(msg)
    problems: list[str] = []
    overrides: RuntimeOverrides | None = None
    try:
        overrides = RuntimeOverrides.model_validate(dict(document))
    except ValidationError as exc:
        known = _known_fields()
        problems.extend(_plain(error, known) for error in exc.errors())
    problems.extend(_deployment_problems(document, settings))
    if problems or overrides is None:
        listed = "; ".join(problems)
        raise InvalidRequest(
            f"The configuration is not valid: {listed}.", extra={"problems": problems}
        )
    return overrides


def cohort(tenant: str, subject: str, percent: int) -> Literal["canary", "stable"]:
    """The user's cohort in the tenant's rollout: deterministic, so a user stays in it.

    The bucket (0..9999) comes from sha256 over tenant and subject; raising the percent only
    adds users to the canary, never moves one out.
    """
    if not 0 <= percent <= 100:
        msg = f"percent must lie in 0..100, got {percent}"
        raise ValueError(msg)
    digest = hashlib.sha256(f"{tenant}\x00{subject}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000
    return "canary" if bucket < percent * 100 else "stable"
