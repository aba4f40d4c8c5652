"""Suite-wide set-up: the test profile, offline environment, and the prepared model store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]

# Forced for every test: its own data dir and port, never a developer's running stack.
os.environ["ENCLAVE_PROFILE"] = "test"


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    """The effective settings of the test profile."""
    return load_settings(config_dir=ROOT, profile="test")


@pytest.fixture(scope="session")
def offline_env(test_settings: Settings) -> dict[str, str]:
    """Apply the stack's offline environment to this process (models load from disk only)."""
    from serving.runtime_env import offline_environment

    env = offline_environment(test_settings)
    os.environ.update(env)
    return env
