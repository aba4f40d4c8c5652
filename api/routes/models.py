"""``GET /v1/models``."""

from __future__ import annotations

from litestar import get

from api.chat.openai_types import ModelCard, ModelList
from api.chat.pipeline import ChatPipeline

__all__ = ["list_models"]


@get("/v1/models", tags=["models"], summary="List the models clients may request")
async def list_models(pipeline: ChatPipeline, started_at: int) -> ModelList:
    """The models this deployment serves (OpenAI format)."""
    return ModelList(
        data=[ModelCard(id=name, created=started_at) for name in pipeline.served_models]
    )
