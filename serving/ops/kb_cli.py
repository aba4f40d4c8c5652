"""``enclave kb ...`` and ``enclave db ...``: the knowledge-base admin API's operations, offline.

The commands run the same ``KnowledgeBaseService`` as the retriever deployment, in this
process, on the data dir and database of the settings. A running stack picks the changes
up (its replicas reload a knowledge base whose index version changed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from core.errors import EnclaveError
from core.settings import Settings

__all__ = ["add_db_commands", "add_kb_commands"]

T = TypeVar("T")


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from core.db import database_url, head_revision, upgrade

    upgrade(database_url(settings))
    print(f"Database schema at revision {head_revision()}.")
    return 0


def _db_current(settings: Settings, args: argparse.Namespace) -> int:
    from core.db import Database, current_revision, head_revision

    async def read() -> str | None:
        db = Database.from_settings(settings)
        try:
            async with db.reading() as connection:
                return await current_revision(connection)
        finally:
            await db.dispose()

    current = asyncio.run(read())
    head = head_revision()
    state = "up to date" if current == head else f"needs `enclave db upgrade` to {head}"
    print(f"Database schema revision: {current or '(none)'} — {state}.")
    return 0 if current == head else 1


def _run_with_service(
    settings: Settings, work: Callable[[Any], Awaitable[T]], *, pii: bool = False
) -> T:
    """Run ``work(service)`` against an in-process knowledge service."""
    from serving.runtime_env import offline_environment

    os.environ.update(offline_environment(settings))
    from core.db import Database, check_schema, database_url, upgrade
    from index.service import KnowledgeBaseService
    from models.encoder import SentenceEncoder
    from models.store import ModelStore
    from serving.clients import LocalSpanFinder

    if settings.database.migrate_on_start:
        upgrade(database_url(settings))
    store = ModelStore(settings.paths.model_store)
    name = settings.retrieval.encoder_store_name
    entry = store.verify([name])[name]
    finder = None
    if pii:
        from models.pii.presidio_scanner import PresidioScanner

        spacy = settings.pii.spacy_store_name
        scanner = PresidioScanner(store.verify([spacy])[spacy].folder(store.root), settings.pii)
        scanner.load()
        finder = LocalSpanFinder(scanner, settings.retrieval.ignore_pii_types)

    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            async with db.reading() as connection:
                await check_schema(connection)
            service = KnowledgeBaseService(
                db,
                SentenceEncoder(entry.folder(store.root)),
                encoder_id=f"{name}@{entry.version}",
                root=settings.paths.data_dir / "knowledge",
                settings=settings.retrieval,
                finder=finder,
            )
            return await work(service)
        finally:
            await db.dispose()

    return asyncio.run(main())


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(value, indent=2, default=str))


def _kb_list(settings: Settings, args: argparse.Namespace) -> int:
    bases = _run_with_service(settings, lambda s: s.list_bases(args.tenant))
    if args.json:
        _print([asdict(b) for b in bases], True)
        return 0
    for base in bases:
        print(
            f"{base.name:<24} {base.documents:>5} documents {base.chunks:>6} chunks  "
            f"pii:{base.pii_policy:<7} version {base.version or '-'}"
        )
    if not bases:
        print(f"Tenant {args.tenant!r} has no knowledge bases.")
    return 0


def _kb_create(settings: Settings, args: argparse.Namespace) -> int:
    base = _run_with_service(
        settings,
        lambda s: s.create_base(
            args.tenant,
            args.kb,
            description=args.description,
            pii_policy=args.pii_policy,
            actor="cli",
        ),
    )
    print(f"Created knowledge base {base.name!r} (PII policy {base.pii_policy}).")
    return 0


def _files_of(path: Path) -> list[Path]:
    from index.parsing import MEDIA_TYPES

    if path.is_file():
        return [path]
    if not path.is_dir():
        msg = f"{path} does not exist."
        raise FileNotFoundError(msg)
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_TYPES)


def _kb_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from index.base import UploadedFile
    from index.errors import UnknownKnowledgeBase

    paths = _files_of(Path(args.path))
    if not paths:
        print(f"No documents of a supported type under {args.path}.")
        return 1
    files = [UploadedFile(p.name, p.read_bytes()) for p in paths]

    async def ingest(service: Any) -> Any:
        try:
            await service.get_base(args.tenant, args.kb)
        except UnknownKnowledgeBase:
            await service.create_base(args.tenant, args.kb, actor="cli")
            print(f"Created knowledge base {args.kb!r}.")
        return await service.upload(args.tenant, args.kb, files, actor="cli")

    outcome = _run_with_service(settings, ingest, pii=True)
    if args.json:
        _print(asdict(outcome), True)
        return 0
    for doc in outcome.documents:
        line = f"{doc.doc_id:<40} {doc.status:<9} {doc.chunks:>4} chunks"
        if doc.pii_found:
            line += f"  PII {doc.pii_found} ({doc.pii_action})"
        if doc.status_reason:
            line += f"  — {doc.status_reason}"
        print(line)
    print(
        f"Version {outcome.version}: {outcome.chunks} chunks from this upload, "
        f"{outcome.embedded} embedded, {outcome.reused} reused, {outcome.seconds:.1f} s."
    )
    return 0


def _kb_documents(settings: Settings, args: argparse.Namespace) -> int:
    documents = _run_with_service(settings, lambda s: s.list_documents(args.tenant, args.kb))
    if args.json:
        _print([asdict(d) for d in documents], True)
        return 0
    for doc in documents:
        print(f"{doc.doc_id:<40} {doc.status:<9} {doc.chunks:>4} chunks  {doc.title}")
    return 0


def _kb_delete_document(settings: Settings, args: argparse.Namespace) -> int:
    _run_with_service(settings, lambda s: s.delete_document(args.tenant, args.kb, args.doc_id))
    print(f"Deleted {args.doc_id!r} from {args.kb!r}.")
    return 0


def _kb_reindex(settings: Settings, args: argparse.Namespace) -> int:
    outcome = _run_with_service(settings, lambda s: s.reindex(args.tenant, args.kb))
    print(
        f"Re-indexed {args.kb!r}: version {outcome.version}, {outcome.chunks} chunks, "
        f"{outcome.embedded} embedded, {outcome.reused} reused."
    )
    return 0


def _kb_delete(settings: Settings, args: argparse.Namespace) -> int:
    _run_with_service(settings, lambda s: s.delete_base(args.tenant, args.kb))
    print(f"Deleted knowledge base {args.kb!r}.")
    return 0


def _kb_places(settings: Settings, args: argparse.Namespace) -> int:
    from serving.ops.places_cli import kb_places

    return kb_places(settings, args, _run_with_service)


def _guarded(handler: Callable[[Settings, argparse.Namespace], int]) -> Any:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return handler(settings, args)
        except (EnclaveError, FileNotFoundError) as exc:
            detail = exc.detail if isinstance(exc, EnclaveError) else str(exc)
            print(f"enclave: {detail}")
            return 2

    return run


def add_db_commands(commands: Any) -> None:
    """``enclave db upgrade|current``."""
    db = commands.add_parser("db", help="the SQL store's schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="migrate the schema to this version").set_defaults(
        handler=_db_upgrade
    )
    db.add_parser("current", help="show the schema revision").set_defaults(handler=_db_current)


def add_kb_commands(commands: Any) -> None:
    """``enclave kb list|create|ingest|documents|delete-document|reindex|delete|places``."""
    kb = commands.add_parser("kb", help="knowledge bases").add_subparsers(
        dest="kb_command", required=True
    )

    def command(name: str, help_text: str, handler: Any, *, needs_kb: bool = True) -> Any:
        parser = kb.add_parser(name, help=help_text)
        parser.add_argument("--tenant", default="default", help="owning tenant")
        parser.add_argument("--json", action="store_true", help="print JSON")
        if needs_kb:
            parser.add_argument("--kb", required=True, help="knowledge-base name")
        parser.set_defaults(handler=_guarded(handler))
        return parser

    command("list", "list the tenant's knowledge bases", _kb_list, needs_kb=False)
    create = command("create", "create an empty knowledge base", _kb_create)
    create.add_argument("--description", default="")
    create.add_argument("--pii-policy", choices=["keep", "redact", "reject"], default=None)
    ingest = command("ingest", "ingest a file or a folder of documents", _kb_ingest)
    ingest.add_argument("path", help="a document, or a folder searched recursively")
    command("documents", "list documents with their status", _kb_documents)
    delete_doc = command(
        "delete-document", "remove a document and its vectors", _kb_delete_document
    )
    delete_doc.add_argument("doc_id")
    command("reindex", "rebuild the index (new version, swapped atomically)", _kb_reindex)
    command("delete", "delete a knowledge base and everything in it", _kb_delete)
    places = command(
        "places", "the places a knowledge base names (the tenant's PII allow-list)", _kb_places
    )
    places.add_argument(
        "--apply",
        action="store_true",
        help="add them to the tenant's runtime configuration (pii.allow_places), a new version",
    )
    places.add_argument(
        "--min-documents",
        type=int,
        default=1,
        help="only places named in at least this many documents",
    )
