"""What rate limits and token quotas do while their store (Redis) is unavailable.

``limits.on_store_unavailable`` chooses, once for both:

- ``fail_closed`` (the default): a request that needs the store to be admitted -- every
  request's rate-limit hit, a chat's quota reservation -- is refused with 503 and
  ``Retry-After``. Nobody exceeds a limit, and nobody is served while Redis is down.
- ``fail_open``: such a request proceeds unmetered (no rate count, no reservation), and the
  process logs it. Users keep working; limits do not hold until Redis is back.

Reads and erasure (``/v1/me/usage``, forgetting a user's counters) cannot proceed without
the store whatever the policy: they are 503. A settle that fails is never the request's
error (the answer is already given): the ledger retries it.

Either way every failure counts in ``enclave_limits_store_unavailable_total{store,policy}``
(``store``: ``rate_limit`` or ``quota``), which the ``EnclaveLimitsStoreUnavailable`` alert
watches, so an operator learns of the outage from the alert, not from users.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from redis.exceptions import RedisError

from core.errors import ServiceUnavailable
from core.settings import StoreOutagePolicy

__all__ = ["LIMITS_STORES", "LimitsStore", "StoreOutage"]

_log = logging.getLogger("enclave.api.limits")

LimitsStore = Literal["rate_limit", "quota"]
LIMITS_STORES: Final[tuple[LimitsStore, ...]] = ("rate_limit", "quota")
# How the 503's message names each store (tests and runbooks quote these words).
_WHAT: Final[dict[LimitsStore, str]] = {"rate_limit": "rate-limit", "quota": "quota"}
RETRY_AFTER_S: Final = 5


class StoreOutage:
    """The outage policy of the limits store, its metric and its log (one per process)."""

    def __init__(
        self, policy: StoreOutagePolicy = "fail_closed", registry: CollectorRegistry | None = None
    ) -> None:
        self.policy: StoreOutagePolicy = policy
        self._counter = Counter(
            "enclave_limits_store_unavailable_total",
            "Operations of rate limits and quotas that failed because the store (Redis) was "
            "unavailable, by store and the outage policy in force.",
            ["store", "policy"],
            registry=REGISTRY if registry is None else registry,
        )
        for store in LIMITS_STORES:
            # From zero, so that increase() sees the first failure.
            self._counter.labels(store=store, policy=policy)

    @property
    def fails_open(self) -> bool:
        """Whether requests proceed unmetered while the store is unavailable."""
        return self.policy == "fail_open"

    def unavailable(self, store: LimitsStore, exc: RedisError) -> ServiceUnavailable:
        """Count and log one failure; return the 503 a refused request gets."""
        self._counter.labels(store=store, policy=self.policy).inc()
        # The error's type only: a Redis error can quote the command and its keys (user ids).
        _log.warning(
            "limits store unavailable",
            extra={"store": store, "policy": self.policy, "error_type": type(exc).__name__},
        )
        msg = f"The {_WHAT[store]} store is unavailable; retry in a few seconds."
        return ServiceUnavailable(msg, retry_after=RETRY_AFTER_S)

    def admit_unmetered(self, store: LimitsStore, exc: RedisError) -> None:
        """An admission step failed: return (fail_open: the request proceeds unmetered) or
        raise the 503 (fail_closed)."""
        refusal = self.unavailable(store, exc)
        if not self.fails_open:
            raise refusal from exc
        _log.warning(
            "request admitted unmetered: the limits store is unavailable",
            extra={"store": store, "policy": self.policy},
        )

    @asynccontextmanager
    async def required(self, store: LimitsStore) -> AsyncIterator[None]:
        """For steps that cannot proceed without the store (reads, erasure): always 503."""
        try:
            yield
        except RedisError as exc:
            raise self.unavailable(store, exc) from exc
