"""The PostgreSQL server itself restarted while 20 answers stream.

Unlike ``test_chaos``'s unreachable database (one database closed to new connections), this
stops the whole local server (``pg_ctlcluster stop``, fast mode: every session is cut) and
starts it again. It is held down for ``OUTAGE_S`` rather than bounced at once, so that the
streams' exchanges come to be recorded while it is down — the moment a half-written
exchange or a raw database error would show. It needs root and Debian's ``pg_ctlcluster``
(as ``.ci/run`` uses); the other databases on the server must come back with it.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.chaos.conftest import ADMIN_URL
from tests.chaos.traffic import (
    StreamOutcome,
    bearer,
    chain_verifies,
    chat,
    stream_chat,
    until,
    wait_ready,
)
from tests.e2e.stack import RunningStack, issue_key

pytestmark = pytest.mark.chaos

STREAMS = 20
OUTAGE_S = 10.0
ANSWER = {"max_tokens": 64, "ignore_eos": True}


def _cluster() -> tuple[str, str]:
    """The version and name of the local cluster serving the tests' PostgreSQL URL."""
    port = urlsplit(ADMIN_URL).port or 5432
    try:
        listed = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"restarting PostgreSQL needs Debian's pg_lsclusters/pg_ctlcluster: {exc}")
    for line in listed.splitlines():
        version, name, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return version, name
    pytest.fail(f"no local PostgreSQL cluster on port {port}:\n{listed}")


def _pg_ctl(cluster: tuple[str, str], action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        check=True,
        timeout=120,
        capture_output=True,
    )


async def _databases() -> set[str]:
    connection = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        rows = await connection.fetch("SELECT datname FROM pg_database WHERE NOT datistemplate")
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


async def _server_back(timeout_s: float = 60.0) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await _databases()
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def _user(stack: RunningStack) -> tuple[dict[str, str], str]:
    """A new staff user, so that its history and audit records are this test's alone."""
    key = issue_key(stack.base_url, stack.admin_key, "default", "staff")
    me = httpx.get(f"{stack.base_url}/v1/me", headers=bearer(key), timeout=30)
    assert me.status_code == 200, me.text
    return bearer(key), str(me.json()["subject"])


def _history(stack: RunningStack, auth: dict[str, str]) -> list[dict[str, Any]]:
    """Every message of every conversation of the user, as the user reads them back."""
    messages: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 50, **({"before": before} if before else {})}
        page = httpx.get(
            f"{stack.base_url}/v1/conversations", params=params, headers=auth, timeout=30
        ).json()
        for conversation in page["data"]:
            read = httpx.get(
                f"{stack.base_url}/v1/conversations/{conversation['id']}", headers=auth, timeout=30
            )
            assert read.status_code == 200, read.text
            messages += read.json()["messages"]
        before = page["next_cursor"]
        if before is None:
            return messages


def _exchange_records(
    stack: RunningStack, auditor: dict[str, str], subject: str
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"event_type": "chat.exchange", "actor": subject, "limit": 500}
        if after is not None:
            params["after_seq"] = after
        page = httpx.get(
            f"{stack.base_url}/v1/audit/records", params=params, headers=auditor, timeout=60
        )
        assert page.status_code == 200, page.text
        records += [r["event"] for r in page.json()["data"]]
        after = page.json()["next_cursor"]
        if after is None:
            return records


def test_a_postgres_restart_under_20_streams_fails_cleanly_half_writes_nothing_and_recovers(
    chaos_stack: RunningStack, chaos_keys: dict[str, str]
) -> None:
    wait_ready(chaos_stack)
    cluster = _cluster()
    url = f"{chaos_stack.base_url}/v1/chat/completions"
    auth, subject = _user(chaos_stack)
    # Half the streams continue a conversation: recording such a turn first reads the turn
    # before it, one more database call while the server may be down.
    conversations = []
    for n in range(STREAMS // 2):
        first = httpx.post(
            url, json=chat(f"Hello, topic {n}", max_tokens=4), headers=auth, timeout=120
        )
        assert first.status_code == 200, first.text
        conversations.append(first.json()["enclave"]["conversation_id"])
    databases = asyncio.run(_databases())

    async def scenario() -> tuple[list[StreamOutcome], list[StreamOutcome]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            bodies = [
                chat(f"Write a long story about the sea, part {n}.", **ANSWER)
                for n in range(STREAMS - len(conversations))
            ] + [
                chat("And another story, please.", conversation_id=c, **ANSWER)
                for c in conversations
            ]
            watched = [StreamOutcome() for _ in bodies]
            streams = [
                asyncio.create_task(stream_chat(client, url, auth, body, outcome))
                for body, outcome in zip(bodies, watched, strict=True)
            ]
            # Stop the server once the first wave streams: those answers end, and want to
            # be recorded, while it is down.
            began = await until(lambda: sum(o.began for o in watched) >= 4, timeout_s=120)
            assert began, f"the streams never began: {watched}"
            stopped = time.monotonic()
            try:
                await asyncio.to_thread(_pg_ctl, cluster, "stop")
                # New requests while it is down: each is refused before streaming, or its
                # stream ends with an error event.
                during = [
                    asyncio.create_task(
                        stream_chat(
                            client, url, auth, chat("Where is the VPN guide?", max_tokens=8)
                        )
                    )
                    for _ in range(4)
                ]
                await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            finally:
                await asyncio.to_thread(_pg_ctl, cluster, "start")
            outcomes = await asyncio.wait_for(asyncio.gather(*streams), timeout=300)
            refused = await asyncio.wait_for(asyncio.gather(*during), timeout=120)
        return outcomes, refused

    outcomes, during = asyncio.run(scenario())
    print(  # what the restart did to the clients (shown with -rA / -s)
        "streams:",
        Counter(o.ending for o in outcomes),
        "during the outage:",
        Counter(o.ending for o in during),
    )

    # The server came back, with every database it had (other suites' included).
    assert databases <= asyncio.run(_server_back())
    problems = [o for o in outcomes + during if not o.clean]
    assert problems == [], [o.ending for o in problems]
    assert not [o for o in outcomes + during if o.status == 500]
    # The restart cut in: some exchanges failed to record and said so, and new requests
    # during the outage were refused with a retryable 503.
    assert any(o.status == 503 or o.error for o in outcomes + during), outcomes + during
    assert any(o.status == 503 for o in during), during

    # Service resumes within a bounded wait: a new streamed chat finishes.
    deadline = time.monotonic() + 60
    while True:
        again = asyncio.run(_one_stream(url, auth))
        if again.done or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert again.done, again

    # Nothing half-written: the user's history and the audit log name the same exchanges.
    messages = _history(chaos_stack, auth)
    records = _exchange_records(
        chaos_stack, {"Authorization": f"Bearer {chaos_keys['auditor']}"}, subject
    )
    assert sorted(m["id"] for m in messages) == sorted(i for r in records for i in r["message_ids"])
    answered = {m["request_id"] for m in messages if m["role"] == "assistant"}
    assert answered == {r["request_id"] for r in records}
    # Each client's view agrees with them: a finished stream was recorded, a failed one not.
    for outcome in outcomes + during:
        assert (outcome.request_id in answered) == outcome.done, outcome
    chain_verifies(chaos_stack, chaos_keys)


async def _one_stream(url: str, auth: dict[str, str]) -> StreamOutcome:
    async with httpx.AsyncClient(timeout=120) as client:
        return await stream_chat(
            client, url, auth, chat("Is the VPN needed at home?", max_tokens=8)
        )
