"""Owner-only placeholder vaults: the owner reads their own words, the database holds
ciphertext only, another user reads nothing, erasure shreds the key, rotation re-wraps."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import select, text

from api.stores.history import ConversationStore, StoredMessage, conceal, merge_vaults, restore
from api.stores.vault_keys import DeploymentKey, HistoryKeyring
from core.db import Database, conversations, history_keys
from core.errors import ConfigurationError, InvalidRequest
from core.settings import Settings

CITY = "Lisbon"
PERSON = "Ana Silva"


async def _record(
    store: ConversationStore,
    database: Database,
    user: str,
    vault: dict[str, str],
    content: str,
    conversation_id: str | None = None,
) -> str:
    async with database.transaction() as connection:
        conversation, _ = await store.record_exchange(
            connection,
            tenant="acme",
            user_id=user,
            conversation_id=conversation_id,
            new_messages=[StoredMessage("user", content), StoredMessage("assistant", "Noted.")],
            vault=vault,
        )
    return conversation


async def _dump(database: Database) -> str:
    async with database.reading() as connection:
        rows = [
            repr(tuple(row))
            for table in ("conversations", "messages", "history_keys")
            for row in await connection.execute(text(f"SELECT * FROM {table}"))
        ]
    return "\n".join(rows)


async def test_the_owner_reads_their_words_and_the_database_holds_none(
    database: Database,
) -> None:
    store = ConversationStore(database, HistoryKeyring(DeploymentKey.generate()))
    question = "How many days of leave do I get in <LOCATION_1>?"
    conversation = await _record(store, database, "u1", {"<LOCATION_1>": CITY}, question)

    read = await store.read("acme", "u1", conversation)
    assert read["title"] == f"How many days of leave do I get in {CITY}?"
    assert read["messages"][0]["content"] == f"How many days of leave do I get in {CITY}?"
    listed, _ = await store.list_conversations("acme", "u1")
    assert listed[0]["title"] == read["title"]

    dump = await _dump(database)
    assert CITY not in dump
    assert CITY.encode() not in dump.encode()
    assert "<LOCATION_1>" in dump


async def test_another_user_of_the_tenant_has_no_way_to_the_values(database: Database) -> None:
    keyring = HistoryKeyring(DeploymentKey.generate())
    store = ConversationStore(database, keyring)
    mine = await _record(store, database, "u1", {"<PERSON_1>": PERSON}, "Call <PERSON_1>")
    await _record(store, database, "u2", {"<PERSON_1>": "Bo"}, "Call <PERSON_1>")
    async with database.reading() as connection:
        row = (
            await connection.execute(select(conversations).where(conversations.c.id == mine))
        ).one()
        their_key = await keyring.for_user(connection, "acme", "u2", create=False)
    assert their_key is not None
    # Their data key does not open my vault (nor does a copy of my row under their name).
    assert their_key.open(mine, row.vault) == {}


async def test_a_later_turn_reusing_a_number_for_another_value_is_renumbered(
    database: Database,
) -> None:
    store = ConversationStore(database, HistoryKeyring(DeploymentKey.generate()))
    conversation = await _record(store, database, "u1", {"<LOCATION_1>": CITY}, "In <LOCATION_1>")
    # A client that sends only its new message gets <LOCATION_1> again, for Porto.
    await _record(
        store, database, "u1", {"<LOCATION_1>": "Porto"}, "And <LOCATION_1>?", conversation
    )
    read = await store.read("acme", "u1", conversation)
    assert [m["content"] for m in read["messages"] if m["role"] == "user"] == [
        f"In {CITY}",
        "And Porto?",
    ]


def test_merge_keeps_known_values_and_swaps_without_clobbering() -> None:
    merged, renames = merge_vaults(
        {"<LOCATION_1>": CITY},
        {"<LOCATION_1>": "Porto", "<LOCATION_2>": CITY, "<LOCATION_3>": "Faro"},
    )
    assert merged == {"<LOCATION_1>": CITY, "<LOCATION_2>": "Porto", "<LOCATION_3>": "Faro"}
    assert renames == {"<LOCATION_1>": "<LOCATION_2>", "<LOCATION_2>": "<LOCATION_1>"}
    assert restore("[LOCATION_1] and <LOCATION_9>", merged) == f"{CITY} and <LOCATION_9>"
    assert conceal(f"{CITY} trip", merged) == "<LOCATION_1> trip"


async def test_rename_stores_the_owners_words_as_placeholders(database: Database) -> None:
    store = ConversationStore(database, HistoryKeyring(DeploymentKey.generate()))
    conversation = await _record(store, database, "u1", {"<LOCATION_1>": CITY}, "In <LOCATION_1>")
    renamed = await store.rename("acme", "u1", conversation, f"Leave in {CITY}")
    assert renamed["title"] == f"Leave in {CITY}"
    assert CITY not in await _dump(database)


async def test_erasure_destroys_the_key_so_a_backup_of_the_vault_stays_sealed(
    database: Database,
) -> None:
    keyring = HistoryKeyring(DeploymentKey.generate())
    store = ConversationStore(database, keyring)
    conversation = await _record(store, database, "u1", {"<PERSON_1>": PERSON}, "Call <PERSON_1>")
    async with database.reading() as connection:
        backup = (
            await connection.execute(
                select(conversations).where(conversations.c.id == conversation)
            )
        ).one()
    async with database.transaction() as connection:
        assert await store.erase_user(connection, "acme", "u1") == 1
    async with database.reading() as connection:
        assert (await connection.execute(select(history_keys))).all() == []
        # Nothing the database still holds opens the backed-up vault.
        assert await keyring.for_user(connection, "acme", "u1", create=False) is None
    async with database.transaction() as connection:
        fresh = await keyring.for_user(connection, "acme", "u1", create=True)
    assert fresh is not None
    assert fresh.open(conversation, backup.vault) == {}
    assert PERSON.encode() not in backup.vault


async def test_rotation_rewraps_under_the_new_key_and_retires_the_old(
    database: Database,
) -> None:
    old, new = DeploymentKey.generate(), DeploymentKey.generate()
    store = ConversationStore(database, HistoryKeyring(old))
    conversation = await _record(store, database, "u1", {"<PERSON_1>": PERSON}, "Call <PERSON_1>")

    rotated = HistoryKeyring(new, retired=(old,))
    async with database.transaction() as connection:
        assert await rotated.rewrap_all(connection) == {"rewrapped": 1, "unreadable": 0}
    async with database.reading() as connection:
        assert (await connection.execute(select(history_keys.c.kek_id))).scalar_one() == new.key_id
    # With the old key gone, the owner still reads their words.
    after = ConversationStore(database, HistoryKeyring(new))
    read = await after.read("acme", "u1", conversation)
    assert read["messages"][0]["content"] == f"Call {PERSON}"
    # Without any key that wrapped it, placeholders: never an error.
    lost = ConversationStore(database, HistoryKeyring(old))
    assert (await lost.read("acme", "u1", conversation))["messages"][0]["content"] == (
        "Call <PERSON_1>"
    )


async def test_pages_of_older_conversations_follow_the_cursor(database: Database) -> None:
    store = ConversationStore(database, HistoryKeyring(DeploymentKey.generate()))
    made = [await _record(store, database, "u1", {}, f"question {n}") for n in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_conversations("acme", "u1", limit=3, before=cursor)
        seen += [c["id"] for c in page]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    with pytest.raises(InvalidRequest, match="next_cursor"):
        await store.list_conversations("acme", "u1", before="not-a-cursor")


def test_the_key_file_is_made_once_with_mode_600_and_must_hold_32_bytes(
    settings: Settings, tmp_path: Path
) -> None:
    keyring = HistoryKeyring.from_settings(settings)
    path = settings.history.vault_key_path(settings.paths.data_dir)
    assert path.stat().st_mode & 0o777 == 0o600
    assert HistoryKeyring.from_settings(settings).current_key_id == keyring.current_key_id
    bad = tmp_path / "short"
    bad.write_bytes(base64.b64encode(b"x" * 16))
    with pytest.raises(ConfigurationError, match="32 random bytes"):
        DeploymentKey.from_file(bad)
    with pytest.raises(ConfigurationError, match="mount the Secret"):
        DeploymentKey.from_file(tmp_path / "missing")


async def test_enclave_history_rewrap_moves_every_key_to_the_new_deployment_key(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import asyncio
    import json

    from core.db import database_url, upgrade
    from serving.ops.history_cli import _rewrap

    await asyncio.to_thread(upgrade, database_url(settings))
    old_file = settings.history.vault_key_path(settings.paths.data_dir)
    database = Database.from_settings(settings)
    try:
        store = ConversationStore(database, HistoryKeyring.from_settings(settings))
        await _record(store, database, "u1", {"<PERSON_1>": PERSON}, "Call <PERSON_1>")
    finally:
        await database.dispose()
    new_file = tmp_path / "new-key"
    new_file.write_bytes(base64.b64encode(b"n" * 32))
    rotated = settings.model_copy(
        update={
            "history": settings.history.model_copy(
                update={"vault_key_file": new_file, "retired_vault_key_files": [old_file]}
            )
        }
    )
    assert await asyncio.to_thread(_rewrap, rotated, argparse.Namespace()) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rewrapped"] == 1
    assert printed["deployment_key_id"] == DeploymentKey.from_file(new_file).key_id
