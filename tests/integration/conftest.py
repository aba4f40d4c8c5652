"""Integration fixtures: the real model store, prepared by `make models`."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from models.store import ModelStore


@pytest.fixture(scope="session")
def llm_dir(test_settings: Settings, offline_env: dict[str, str]) -> Path:
    """The verified SmolLM2 folder from the model store."""
    store = ModelStore(test_settings.paths.model_store)
    name = test_settings.llm.primary.store_name
    return store.verify([name])[name].folder(store.root)
