"""``GET /v1/evals``: the tenant's evaluation runs over time (``enclave eval run`` writes
them), newest first, with the score steps that point at a regression."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.params import Parameter

from api.security import Principal
from api.services import Services
from api.stores.evals import MAX_LIMIT, EvalStore, run_document

__all__ = ["EvalController"]


class EvalController(Controller):
    """Evaluation runs of the caller's tenant (role ``tenant_admin``)."""

    path = "/v1/evals"
    tags = ["quality"]  # noqa: RUF012 - Litestar reads this class attribute

    @get("/", summary="Evaluation runs of your tenant, newest first, with score steps")
    async def list_runs(
        self,
        principal: Principal,
        services: Services,
        dataset: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 20,
    ) -> dict[str, Any]:
        """Each run's versions, score and cases; ``step`` is set where the score moved by
        0.05 or more from the previous run of that dataset, naming the versions that
        changed between the two."""
        store = EvalStore(services.database)
        history = await store.history(tenant=principal.tenant, dataset=dataset, limit=limit)
        return {"data": [run_document(run, step) for run, step in history]}
