"""``enclave kb places``: the places a knowledge base names, into the tenant's PII allow-list.

The PII scanner reads every document of the base; the places it finds (``index.places``)
are printed, and with ``--apply`` added to the tenant's runtime configuration
(``pii.allow_places``) as a new version: visible (``GET /v1/admin/config``), versioned (roll
back like any version) and overridable (``pii.protect_places`` keeps a place protected;
edit ``allow_places`` to drop one). Places already allowed stay allowed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from core.settings import Settings

__all__ = ["kb_places"]


def _scan_places(settings: Settings, texts: list[str]) -> list[Any]:
    from index.places import places_named
    from models.pii.presidio_scanner import PresidioScanner
    from models.store import ModelStore
    from serving.runtime_env import offline_environment

    os.environ.update(offline_environment(settings))
    store = ModelStore(settings.paths.model_store)
    name = settings.pii.spacy_store_name
    scanner = PresidioScanner(store.verify([name])[name].folder(store.root), settings.pii)
    results = scanner.scan(texts) if texts else []
    spans = [[(s.start, s.end, s.entity_type) for s in result.pii] for result in results]
    return places_named(texts, spans)


async def _apply(settings: Settings, tenant: str, kb: str, places: list[str]) -> tuple[int, int]:
    from api.stores.runtime_config import RuntimeConfigStore
    from core.db import Database

    db = Database.from_settings(settings)
    try:
        store = RuntimeConfigStore(db, settings)
        _, document = await store.active_document(tenant)
        pii = dict(document.get("pii") or {})
        before = list(pii.get("allow_places") or [])
        known = {p.casefold() for p in before}
        added = [p for p in places if p.casefold() not in known]
        pii["allow_places"] = before + added
        note = f"places named by knowledge base {kb!r}: {len(added)} added (enclave kb places)"
        number = await store.create_version(
            tenant, {**document, "pii": pii}, note=note[:200], actor="cli:kb-places"
        )
        return number, len(added)
    finally:
        await db.dispose()


def kb_places(settings: Settings, args: argparse.Namespace, run_with_service: Any) -> int:
    """Print the places ``args.kb`` names; with ``args.apply``, allow them for the tenant."""
    texts: list[str] = run_with_service(settings, lambda s: s.document_texts(args.tenant, args.kb))
    named = _scan_places(settings, texts)
    names = [p.name for p in named if p.documents >= args.min_documents]
    if args.json:
        print(json.dumps([{"name": p.name, "documents": p.documents} for p in named], indent=2))
    else:
        for place in named:
            mark = "" if place.documents >= args.min_documents else "  (below --min-documents)"
            print(f"{place.name:<32} {place.documents:>4} documents{mark}")
        print(f"{len(names)} places named by {args.kb!r} ({len(texts)} documents).")
    if not args.apply:
        if not args.json:
            print("Add them to the tenant's PII allow-list with --apply.")
        return 0
    number, added = asyncio.run(_apply(settings, args.tenant, args.kb, names))
    if not args.json:
        print(
            f"Tenant {args.tenant!r}: configuration version {number} is active, with {added} "
            "places added to pii.allow_places."
        )
    return 0
