"""Resilience for the generation path: a circuit breaker and per-token deadlines.

Why not a package: ``aiobreaker`` (last release 2021), ``pybreaker`` and ``circuitbreaker``
wrap a call (a decorator or a coroutine); ``purgatory`` wraps a block. A streamed answer is
neither: its verdict is known only when the stream ends, and a stream the client closed,
or one refused by a full queue, is no verdict on the engine's health at all. None of them
opens on a failure *rate* over a time window, and none takes a clock, so their state
machine cannot be tested without sleeping. The breaker below is ~100 lines with an explicit
``allow`` / ``record_success`` / ``record_failure`` / ``release`` protocol that fits a stream.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from enum import IntEnum
from typing import TypeVar

from core.errors import ServiceUnavailable

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "FirstTokenTimeout",
    "StageTimeout",
    "StallTimeout",
    "with_deadlines",
]

_log = logging.getLogger("enclave.resilience")
T = TypeVar("T")


class CircuitState(IntEnum):
    """Breaker states, valued as the ``enclave_circuit_state`` gauge reports them."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


StateListener = Callable[[str, CircuitState], None]


class CircuitBreaker:
    """Stops calling a failing dependency for a while, then lets one probe through.

    Closed: every call goes through; the breaker opens after ``failure_threshold``
    consecutive failures, or when at least ``min_calls`` calls ended in the last
    ``window_s`` seconds and the share that failed reached ``failure_rate``.
    Open: no call goes through for ``open_s`` seconds. Half-open: one probe goes through;
    its success closes the breaker, its failure opens it again. A probe that neither
    succeeds nor fails (``release``) frees its slot; one that never reports at all stops
    blocking others after ``open_s``.

    Safe for one event loop (no method awaits) and for threads (one lock).
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        failure_rate: float = 0.5,
        window_s: float = 30.0,
        min_calls: int = 10,
        open_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or min_calls < 1:
            msg = "failure_threshold and min_calls must be at least 1"
            raise ValueError(msg)
        if not 0 < failure_rate <= 1 or window_s <= 0 or open_s <= 0:
            msg = "failure_rate must be in (0, 1]; window_s and open_s must be positive"
            raise ValueError(msg)
        self.name = name
        self._failure_threshold = failure_threshold
        self._failure_rate = failure_rate
        self._window_s = window_s
        self._min_calls = min_calls
        self._open_s = open_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._outcomes: deque[tuple[float, bool]] = deque()  # (when, failed)
        self._opened_at = 0.0
        self._probe_since: float | None = None
        self._listeners: list[StateListener] = []

    def subscribe(self, listener: StateListener) -> None:
        """Call ``listener(name, state)`` on every change (e.g. to set a gauge)."""
        self._listeners.append(listener)

    @property
    def state(self) -> CircuitState:
        """The state now (an open breaker whose cool-down passed reads half-open)."""
        with self._lock:
            changed = self._cool_down()
        self._notify(changed)
        return self._state

    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 unless open)."""
        with self._lock:
            if self._state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self._open_s - self._clock())

    def allow(self) -> bool:
        """Whether a call may go through now; a ``True`` must be followed by one verdict."""
        with self._lock:
            changed = self._cool_down()
            now = self._clock()
            if self._state is CircuitState.CLOSED:
                allowed = True
            elif self._state is CircuitState.OPEN:
                allowed = False
            elif self._probe_since is None or now - self._probe_since >= self._open_s:
                self._probe_since = now
                allowed = True
            else:
                allowed = False
        self._notify(changed)
        return allowed

    def record_success(self) -> None:
        """The call worked: a half-open breaker closes."""
        self._record(failed=False)

    def record_failure(self) -> None:
        """The call failed: may open the breaker."""
        self._record(failed=True)

    def release(self) -> None:
        """The call ended without saying anything about the dependency's health."""
        with self._lock:
            self._probe_since = None

    def _record(self, *, failed: bool) -> None:
        with self._lock:
            changed = self._cool_down()
            now = self._clock()
            if self._state is CircuitState.HALF_OPEN:
                self._probe_since = None
                changed = self._open(now) if failed else self._close()
            elif self._state is CircuitState.CLOSED:
                self._consecutive = self._consecutive + 1 if failed else 0
                self._outcomes.append((now, failed))
                while self._outcomes and self._outcomes[0][0] <= now - self._window_s:
                    self._outcomes.popleft()
                failures = sum(1 for _, f in self._outcomes if f)
                calls = len(self._outcomes)
                if self._consecutive >= self._failure_threshold or (
                    calls >= self._min_calls and failures >= self._failure_rate * calls
                ):
                    changed = self._open(now)
            # An outcome reported while open (a call let through before it opened) is stale.
        self._notify(changed)

    def _cool_down(self) -> CircuitState | None:
        if self._state is CircuitState.OPEN and self._clock() >= self._opened_at + self._open_s:
            self._state = CircuitState.HALF_OPEN
            self._probe_since = None
            return self._state
        return None

    def _open(self, now: float) -> CircuitState:
        self._state = CircuitState.OPEN
        self._opened_at = now
        self._consecutive = 0
        self._outcomes.clear()
        return self._state

    def _close(self) -> CircuitState:
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._outcomes.clear()
        return self._state

    def _notify(self, changed: CircuitState | None) -> None:
        if changed is None:
            return
        _log.warning("circuit %s", changed.name.lower(), extra={"circuit": self.name})
        for listener in self._listeners:
            listener(self.name, changed)


class StageTimeout(TimeoutError):
    """A stage took longer than its deadline."""

    def __init__(self, stage: str, limit_s: float) -> None:
        super().__init__(f"{stage} exceeded its {limit_s:g} s deadline")
        self.stage = stage
        self.limit_s = limit_s


class FirstTokenTimeout(StageTimeout):
    """No first item arrived within the first-token deadline."""


class StallTimeout(StageTimeout):
    """The stream started, then no next item arrived within the stall deadline."""


async def with_deadlines(
    stream: AsyncIterator[T], *, first_s: float, gap_s: float
) -> AsyncGenerator[T, None]:
    """Pass ``stream`` through; raise if its first item takes over ``first_s`` seconds or a
    later one over ``gap_s``. The source is cancelled at the deadline and always closed."""
    source = aiter(stream)
    first = True
    try:
        while True:
            limit = first_s if first else gap_s
            deadline = asyncio.timeout(limit)
            try:
                async with deadline:
                    item = await anext(source)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not deadline.expired():
                    raise  # the source's own timeout, not ours
                kind = FirstTokenTimeout if first else StallTimeout
                raise kind("first token" if first else "next token", limit) from None
            first = False
            yield item
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


async def retry_idempotent(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 2,
    backoff_s: float = 0.25,
) -> T:
    """``call()``, tried again after a growing pause when a dependency was briefly away
    (``ServiceUnavailable``: a full queue, a restarting replica). Only for calls that are
    safe to repeat (classification, PII scans, searches) — never for generation."""
    for attempt in range(attempts):
        try:
            return await call()
        except ServiceUnavailable:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(backoff_s * (2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover
