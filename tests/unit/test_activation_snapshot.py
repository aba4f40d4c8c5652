"""The one snapshot mechanism behind prompt versions and runtime configuration.

A replica serves what is active from memory, checks the store at most every ``refresh_s``,
sees its own changes at once (also one made while a reload was running), and keeps serving
the last good snapshot through a database outage.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy.exc import OperationalError

from api.stores.activation_snapshot import ActivationSnapshot

_log = logging.getLogger("enclave.test.activation_snapshot")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A store whose newest activation id is ``marker``; each refresh is one read."""

    def __init__(self) -> None:
        self.marker = 1
        self.reads = 0
        self.loads = 0
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.read_started = asyncio.Event()

    async def refresh(self, previous: tuple[int, str] | None) -> tuple[int, str]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        marker = self.marker  # what the database said when this read ran
        self.read_started.set()
        if self.gate is not None:
            await self.gate.wait()
        if previous is not None and previous[0] == marker:
            return previous
        self.loads += 1
        return (marker, f"active@{marker}")


def _snapshot(
    store: Store, clock: Clock, initial: tuple[int, str] | None = None
) -> ActivationSnapshot[tuple[int, str]]:
    return ActivationSnapshot(
        store.refresh, refresh_s=2.0, log=_log, what="test rows", initial=initial, clock=clock
    )


async def test_no_read_while_fresh_and_a_read_once_the_interval_passed() -> None:
    store, clock = Store(), Clock()
    snapshot = _snapshot(store, clock)
    assert await snapshot.current() == (1, "active@1")
    clock.now += 1.9
    store.marker = 2  # another replica activated something
    assert await snapshot.current() == (1, "active@1")
    assert store.reads == 1
    clock.now += 0.1
    assert await snapshot.current() == (2, "active@2")
    assert (store.reads, store.loads) == (2, 2)


async def test_an_unchanged_marker_keeps_the_same_snapshot_object() -> None:
    store, clock = Store(), Clock()
    snapshot = _snapshot(store, clock)
    first = await snapshot.current()
    clock.now += 5
    assert await snapshot.current() is first
    assert (store.reads, store.loads) == (2, 1)


async def test_invalidate_reads_the_store_on_the_next_request() -> None:
    store, clock = Store(), Clock()
    snapshot = _snapshot(store, clock)
    await snapshot.current()
    store.marker = 2  # this replica activated something
    snapshot.invalidate()
    assert await snapshot.current() == (2, "active@2")


async def test_a_change_made_during_a_reload_is_not_hidden_for_an_interval() -> None:
    store, clock = Store(), Clock()
    snapshot = _snapshot(store, clock)
    await snapshot.current()
    clock.now += 2
    store.gate = asyncio.Event()
    store.read_started.clear()
    reload = asyncio.create_task(snapshot.current())
    await store.read_started.wait()  # the reload has read marker 1 ...
    store.marker = 2  # ... then this replica activates and invalidates
    snapshot.invalidate()
    store.gate.set()
    assert await reload == (1, "active@1")  # the reload itself saw the old state
    store.gate = None
    # The old code counted that reload as fresh and served marker 1 for refresh_s more.
    assert await snapshot.current() == (2, "active@2")


async def test_a_database_error_keeps_the_last_good_snapshot_and_retries_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = Store(), Clock()
    snapshot = _snapshot(store, clock)
    await snapshot.current()
    clock.now += 2
    store.error = OperationalError("SELECT max(id)", {}, Exception("connection refused"))
    with caplog.at_level("WARNING", logger=_log.name):
        assert await snapshot.current() == (1, "active@1")
    assert "test rows not refreshed; keeping the last snapshot" in caplog.text
    assert store.reads == 2
    assert await snapshot.current() == (1, "active@1")
    assert store.reads == 2  # no read storm during the outage: the next try is after refresh_s
    store.error = None
    store.marker = 3
    clock.now += 2
    assert await snapshot.current() == (3, "active@3")


async def test_a_bug_is_not_mistaken_for_an_outage() -> None:
    store, clock = Store(), Clock()
    snapshot = _snapshot(store, clock)
    await snapshot.current()
    clock.now += 2
    store.error = KeyError("version")
    with pytest.raises(KeyError):
        await snapshot.current()


async def test_without_any_snapshot_an_error_serves_initial_or_propagates() -> None:
    failing = Store()
    failing.error = OSError("connection refused")
    with pytest.raises(OSError, match="refused"):
        await _snapshot(failing, Clock()).current()
    assert await _snapshot(failing, Clock(), initial=(-1, "settings only")).current() == (
        -1,
        "settings only",
    )
