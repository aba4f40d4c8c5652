"""A reservation whose request ends without settling it is given back (the request-task
lease): in the memory ledger, and through the chat service when a route never starts the
answer's events."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.chat import ChatService
from api.chat.openai_types import ChatCompletionRequest, RequestMessage
from api.security import MemoryQuotaLedger, Principal, QuotaExceeded, QuotaScope, Reservation
from core.db import Database
from core.settings import Settings, TokenQuotaSettings
from tests.fakes import TestKeys, build_services

USER = QuotaScope("user", "u_lease", 1000, "day")


def reclaimed(registry: CollectorRegistry, reason: str = "request_ended") -> float | None:
    return registry.get_sample_value("enclave_quota_reclaimed_tokens_total", {"reason": reason})


async def used(ledger: MemoryQuotaLedger) -> int:
    return (await ledger.balance(USER)).used


async def test_a_request_that_ends_without_settling_gives_its_tokens_back() -> None:
    registry = CollectorRegistry()
    ledger = MemoryQuotaLedger(registry=registry)
    assert reclaimed(registry) == 0.0

    async def forgetful_request() -> Reservation:
        return await ledger.reserve([USER], 600)  # and never settles

    reservation = await asyncio.create_task(forgetful_request())
    await ledger.stop()  # waits for the release the task's end started
    assert await used(ledger) == 0
    assert reservation.settled
    assert reservation.reclaimed
    assert reclaimed(registry) == 600.0
    # The released tokens are free again: a request needing them fits.
    await ledger.reserve([USER], 1000)


async def test_a_cancelled_request_gives_its_tokens_back() -> None:
    registry = CollectorRegistry()
    ledger = MemoryQuotaLedger(registry=registry)
    reserved = asyncio.Event()

    async def cancelled_while_answering() -> None:
        await ledger.reserve([USER], 700)
        reserved.set()
        await asyncio.sleep(3600)  # the client leaves here

    task = asyncio.create_task(cancelled_while_answering())
    await reserved.wait()
    assert await used(ledger) == 700
    with pytest.raises(QuotaExceeded):
        await ledger.reserve([USER], 400)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ledger.stop()
    assert await used(ledger) == 0
    assert reclaimed(registry) == 700.0


async def test_a_settled_reservation_is_never_reclaimed() -> None:
    registry = CollectorRegistry()
    ledger = MemoryQuotaLedger(registry=registry)

    async def request() -> None:
        reservation = await ledger.reserve([USER], 500)
        await ledger.settle(reservation, 120)

    await asyncio.create_task(request())
    await ledger.stop()
    assert await used(ledger) == 120  # the real use stays counted
    assert reclaimed(registry) == 0.0


async def test_settling_after_the_release_subtracts_nothing_twice() -> None:
    ledger = MemoryQuotaLedger(registry=CollectorRegistry())

    async def request() -> Reservation:
        return await ledger.reserve([USER], 300)

    reservation = await asyncio.create_task(request())
    await ledger.stop()
    other = await ledger.reserve([USER], 200)  # someone else's tokens, still held
    with pytest.raises(RuntimeError, match="already settled"):
        await ledger.settle(reservation, 0)
    assert await used(ledger) == 200
    await ledger.settle(other, 200)


async def test_a_chat_whose_route_never_starts_the_answer_gives_its_tokens_back(
    settings: Settings, keys: TestKeys, database: Database
) -> None:
    """Before: the settle lived in the answer generator's ``finally``, which never runs when
    the generator never starts (a streamed body the server never iterated); the tokens
    stayed reserved until the period ended."""
    quota = settings.limits.model_copy(
        update={"user_tokens": TokenQuotaSettings(tokens=1000, period="day")}
    )
    small = settings.model_copy(update={"limits": quota})
    services = build_services(small, keys, database)
    app = create_app(services)
    chat_service = app.dependencies["chat_service"].dependency()
    assert isinstance(chat_service, ChatService)
    principal = Principal("u_stream", "default", frozenset({"staff"}), "api_key")
    scope = QuotaScope("user", "u_stream", 1000, "day")
    ledger = services.security.quotas
    body = ChatCompletionRequest(
        model="test-model",
        messages=[RequestMessage(role="user", content="what is the vpn address?")],
        max_tokens=40,
    )

    async def request_whose_body_never_starts() -> int:
        turn = await chat_service.start(body, principal, "req-lease-1")
        return int(turn.headers["X-Quota-Remaining-Tokens"])

    remaining = await asyncio.create_task(request_whose_body_never_starts())
    assert remaining < 1000  # it did reserve
    await ledger.stop()
    assert (await ledger.balance(scope)).used == 0
