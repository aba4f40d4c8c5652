"""``/v1/knowledge-bases``: create, list and delete knowledge bases; upload, list and delete
documents; re-index; open a cited passage. The work happens in the retriever deployment."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import UploadFile

from api.security import Principal
from api.services import Services
from api.stores.audit_trail import AuditTrail
from core.errors import ServiceUnavailable, UnsupportedMediaType
from index.base import KnowledgeService, PiiPolicy, UploadedFile

__all__ = ["KnowledgeBaseController", "KnowledgeBaseCreate"]

# The body limit of uploads: the largest upload retrieval accepts, plus multipart framing.
_MULTIPART_SLACK = 64 * 1024
_UPLOAD_LIMIT = 10_000_000 + _MULTIPART_SLACK


class KnowledgeBaseCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/knowledge-bases`` body."""

    name: str
    description: str = ""
    pii_policy: PiiPolicy | None = None


def _service(services: Services) -> KnowledgeService:
    if services.knowledge is None:
        msg = "Knowledge bases are turned off on this deployment (retrieval.enabled is false)."
        raise ServiceUnavailable(msg, retry_after=3600)
    return services.knowledge


class KnowledgeBaseController(Controller):
    """Knowledge-base administration (the tenant-admin role, once roles exist)."""

    path = "/v1/knowledge-bases"
    tags = ["knowledge bases"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="List the tenant's knowledge bases")
    async def list_bases(self, services: Services, principal: Principal) -> dict[str, Any]:
        """Every knowledge base of the caller's tenant, with document and chunk counts."""
        bases = await _service(services).list_bases(principal.tenant)
        return {"data": [asdict(b) for b in bases]}

    @post("/", status_code=201, summary="Create a knowledge base")
    async def create_base(
        self,
        data: KnowledgeBaseCreate,
        services: Services,
        principal: Principal,
        audit_trail: AuditTrail,
    ) -> dict[str, Any]:
        """An empty knowledge base; its PII policy defaults to the settings'."""
        base = await _service(services).create_base(
            principal.tenant,
            data.name,
            description=data.description,
            pii_policy=data.pii_policy,
            actor=principal.subject,
        )
        await audit_trail.action(
            principal, "kb.created", knowledge_base=base.name, pii_policy=base.pii_policy
        )
        return asdict(base)

    @get("/{name:str}", summary="Show a knowledge base")
    async def get_base(self, name: str, services: Services, principal: Principal) -> dict[str, Any]:
        """One knowledge base with its counts and live index version."""
        return asdict(await _service(services).get_base(principal.tenant, name))

    @delete("/{name:str}", status_code=204, summary="Delete a knowledge base")
    async def delete_base(
        self, name: str, services: Services, principal: Principal, audit_trail: AuditTrail
    ) -> None:
        """The knowledge base, its documents, chunks and index files."""
        await _service(services).delete_base(principal.tenant, name)
        await audit_trail.action(principal, "kb.deleted", knowledge_base=name)

    @post(
        "/{name:str}/documents",
        status_code=201,
        summary="Upload documents (multipart/form-data, one part per file)",
        request_max_body_size=_UPLOAD_LIMIT,
    )
    async def upload(
        self,
        name: str,
        services: Services,
        principal: Principal,
        audit_trail: AuditTrail,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        """Markdown, text, HTML or PDF files, ingested all or nothing.

        A file that cannot be read fails the whole upload with a 4xx naming it; documents
        with personal data are kept, redacted or rejected by the knowledge base's policy,
        and each document's outcome is in the response.
        """
        # The form is read here rather than declared as the body: Litestar's multipart
        # extractor fails with a 500 on an empty body.
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            msg = "Upload documents as multipart/form-data, one file part per document."
            raise UnsupportedMediaType(msg)
        form = await request.form()
        files = [
            UploadedFile(value.filename or "", await value.read())
            for _, value in form.multi_items()
            if isinstance(value, UploadFile)
        ]
        outcome = await _service(services).upload(
            principal.tenant, name, files, actor=principal.subject
        )
        return asdict(outcome)

    @get("/{name:str}/documents", summary="List documents with their status")
    async def list_documents(
        self, name: str, services: Services, principal: Principal
    ) -> dict[str, Any]:
        """Every document with its status (indexed or rejected, and why)."""
        documents = await _service(services).list_documents(principal.tenant, name)
        return {"data": [asdict(d) for d in documents]}

    @delete("/{name:str}/documents/{doc_id:str}", status_code=200, summary="Delete a document")
    async def delete_document(
        self,
        name: str,
        doc_id: str,
        services: Services,
        principal: Principal,
        audit_trail: AuditTrail,
    ) -> dict[str, Any]:
        """Remove a document and its vectors (a new index version without them)."""
        outcome = await _service(services).delete_document(principal.tenant, name, doc_id)
        await audit_trail.action(
            principal,
            "kb.document_deleted",
            knowledge_base=name,
            doc_id=doc_id,
            version=outcome.version,
        )
        return asdict(outcome)

    @post("/{name:str}/reindex", status_code=200, summary="Re-index a knowledge base")
    async def reindex(
        self, name: str, services: Services, principal: Principal, audit_trail: AuditTrail
    ) -> dict[str, Any]:
        """Rebuild the index beside the live one and swap it in atomically."""
        outcome = await _service(services).reindex(principal.tenant, name)
        await audit_trail.action(
            principal, "kb.reindexed", knowledge_base=name, version=outcome.version
        )
        return asdict(outcome)

    @get("/{name:str}/passages/{chunk_id:str}", summary="Open a cited passage")
    async def passage(
        self, name: str, chunk_id: str, services: Services, principal: Principal
    ) -> Response[Any]:
        """The text of a chunk an answer cited, with its document and heading."""
        passage = await _service(services).passage(principal.tenant, name, chunk_id)
        return Response(asdict(passage))
