"""Builds the API's security services from settings: key store, authenticator, limits.

Also the first-start bootstrap: with no usable platform-admin key in the store, one is
issued and printed once (``enclave serve``); it is never logged and never shown again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from api.security import (
    AlarmCallback,
    Authenticator,
    MemoryQuotaLedger,
    OIDCVerifier,
    QuotaAlarm,
    QuotaLedger,
    RateLimiter,
    RedisQuotaLedger,
    StoreOutage,
    build_limits_store,
    issue_api_key,
)
from api.security.key_store import SqlApiKeyStore
from api.services import Security
from core.db import Database
from core.settings import Settings
from serving.runtime_env import api_key_pepper

__all__ = ["build_security", "ensure_platform_admin_key"]

BOOTSTRAP_KEY_NAME = "first platform admin"


def build_security(
    settings: Settings, db: Database, registry: CollectorRegistry | None = None
) -> Security:
    """The authenticator over the SQL key store (and OIDC if on), rate limits and quotas."""
    auth, limits = settings.auth, settings.limits
    keys = SqlApiKeyStore(db)
    pepper = api_key_pepper(settings)
    authenticator = Authenticator(
        oidc=OIDCVerifier(auth.oidc) if auth.oidc.enabled else None,
        api_keys=keys if auth.api_keys.enabled else None,
        api_key_prefix=auth.api_keys.prefix,
        pepper=pepper,
    )
    store = build_limits_store(limits)
    on_alarm = _alarm_to_webhook(settings)
    # One outage policy (and metric) for the rate limiter and the ledger: they share Redis.
    outage = StoreOutage(limits.on_store_unavailable, registry)
    quotas: QuotaLedger
    if limits.store == "redis":
        # The ledger runs its Lua scripts on the same client as the rate limiter's store.
        quotas = RedisQuotaLedger(
            store._redis,  # type: ignore[attr-defined]
            key_prefix=limits.key_prefix,
            alarm_levels=limits.alarm_levels,
            registry=registry,
            on_alarm=on_alarm,
            lease_ttl_s=limits.reservation_lease_ttl_s,
            outage=outage,
        )
    else:
        quotas = MemoryQuotaLedger(
            alarm_levels=limits.alarm_levels, registry=registry, on_alarm=on_alarm
        )
    return Security(
        authenticator=authenticator,
        rate_limiter=RateLimiter.from_settings(limits, store, outage),
        quotas=quotas,
        api_keys=keys,
        api_key_pepper=pepper,
    )


def _alarm_to_webhook(settings: Settings) -> AlarmCallback | None:
    """Quota alarms posted to the alert webhook (Slack-compatible), when one is configured."""
    if settings.alerts.webhook_url is None:
        return None
    from serving.ops.alert_webhook import WebhookNotifier

    notifier = WebhookNotifier(settings.alerts)

    async def post(alarm: QuotaAlarm) -> None:
        scope = alarm.scope
        text = (
            f"Enclave quota alarm: the {scope.period}ly token quota of {scope.kind} "
            f"{scope.id} reached {alarm.level}% ({alarm.used} of {scope.limit} tokens); it "
            f"resets at {alarm.resets_at:%Y-%m-%d %H:%M} UTC."
        )
        await asyncio.to_thread(notifier.post, {"text": text})

    return post


async def ensure_platform_admin_key(settings: Settings, db: Database) -> str | None:
    """Issue a platform-admin key when none is usable; return it (to be shown once) or None."""
    keys = SqlApiKeyStore(db)
    now = datetime.now(UTC)
    if await keys.has_active_key_with_role("platform_admin", now):
        return None
    issued = issue_api_key(
        tenant="default",
        roles=["platform_admin"],
        name=BOOTSTRAP_KEY_NAME,
        prefix=settings.auth.api_keys.prefix,
        pepper=api_key_pepper(settings),
        now=now,
    )
    await keys.add(issued.record, created_by="bootstrap")
    return issued.plaintext
