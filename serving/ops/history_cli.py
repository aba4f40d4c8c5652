"""``enclave history rewrap``: after a rotation of the history vault's deployment key,
re-wrap every user's data key under the new one, so that the old key can be destroyed.

Works on the database of the settings, beside a running stack (each row is updated in one
short transaction of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from core.settings import Settings

__all__ = ["add_history_commands"]


def _rewrap(settings: Settings, args: argparse.Namespace) -> int:
    from api.stores.vault_keys import HistoryKeyring
    from core.db import Database, check_schema

    keyring = HistoryKeyring.from_settings(settings)

    async def main() -> dict[str, int]:
        db = Database.from_settings(settings)
        try:
            async with db.reading() as connection:
                await check_schema(connection)
            async with db.transaction() as connection:
                return await keyring.rewrap_all(connection)
        finally:
            await db.dispose()

    result = asyncio.run(main())
    print(json.dumps({**result, "deployment_key_id": keyring.current_key_id}))
    # Keys no configured deployment key unwraps stay unreadable: say so, and fail.
    return 1 if result["unreadable"] else 0


def add_history_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``enclave history ...``."""
    history = commands.add_parser("history", help="owner-only history vaults").add_subparsers(
        dest="history_command", required=True
    )
    history.add_parser(
        "rewrap",
        help="re-wrap every user's data key under history.vault_key_file (after a rotation)",
    ).set_defaults(handler=_rewrap)
