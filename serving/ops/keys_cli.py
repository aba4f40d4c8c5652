"""``enclave keys create|list|revoke``: API keys from the command line, offline.

For operators: a key for the canary or a benchmark, a new platform-admin key when the first
one was lost, or revoking one without the API. Works on the database of the settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from core.settings import Settings

__all__ = ["add_keys_commands"]

T = TypeVar("T")


def _with_store(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from api.security.key_store import SqlApiKeyStore
    from core.db import Database, check_schema, database_url, upgrade

    if settings.database.migrate_on_start:
        upgrade(database_url(settings))

    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            async with db.reading() as connection:
                await check_schema(connection)
            return await work(SqlApiKeyStore(db))
        finally:
            await db.dispose()

    return asyncio.run(main())


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from api.security import issue_api_key
    from serving.runtime_env import api_key_pepper

    expires = datetime.fromisoformat(args.expires) if args.expires else None
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    issued = issue_api_key(
        tenant=args.tenant,
        roles=args.role,
        name=args.name,
        prefix=settings.auth.api_keys.prefix,
        pepper=api_key_pepper(settings),
        expires_at=expires,
    )
    _with_store(settings, lambda store: store.add(issued.record, created_by="cli"))
    if args.json:
        print(json.dumps({"key_id": issued.record.key_id, "api_key": issued.plaintext}))
    else:
        print(issued.plaintext)
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    records = _with_store(settings, lambda store: store.list_keys(args.tenant))
    for r in records:
        state = "revoked" if r.revoked_at else "active"
        expires = f" expires {r.expires_at:%Y-%m-%d}" if r.expires_at else ""
        print(
            f"{r.key_id}  {r.tenant:<16} {','.join(sorted(r.roles)):<28} {state}{expires}  {r.name}"
        )
    return 0


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    found = _with_store(settings, lambda store: store.revoke(args.key_id, datetime.now(UTC)))
    print(f"Revoked {args.key_id}." if found else f"No API key {args.key_id}.")
    return 0 if found else 1


def add_keys_commands(commands: Any) -> None:
    """Register ``enclave keys ...``."""
    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="issue a key and print it (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--tenant", default="default")
    create.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["staff", "tenant_admin", "auditor", "platform_admin"],
        help="repeat for several roles",
    )
    create.add_argument("--expires", help="ISO time, e.g. 2027-01-01T00:00:00Z")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=_create)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant", default=None)
    listing.set_defaults(handler=_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_revoke)
