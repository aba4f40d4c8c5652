"""Settings: layering, validation that lists every problem, the config version."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.settings import Settings, config_version, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ENCLAVE_"):
            monkeypatch.delenv(key)


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_defaults_apply_without_any_file(tmp_path: Path) -> None:
    settings = load_settings(config_dir=tmp_path)
    assert settings.api.port == 8000
    assert settings.llm.primary.engine == "vllm"
    assert settings.llm.fallback is not None
    assert settings.llm.fallback.engine == "transformers"
    assert settings.paths.data_dir == (tmp_path / ".enclave").resolve()


def test_profile_overlay_is_deep_merged_and_env_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "settings.yaml",
        "api:\n  port: 9000\n  max_messages: 10\n"
        "llm:\n  primary:\n    max_model_len: 4096\n  fallback:\n    max_model_len: 4096\n",
    )
    write(tmp_path / "settings-staging.yaml", "api:\n  port: 9100\n")
    monkeypatch.setenv("ENCLAVE_API__MAX_MESSAGES", "12")
    settings = load_settings(config_dir=tmp_path, profile="staging")
    assert settings.profile == "staging"
    assert settings.api.port == 9100  # overlay beats the base file
    assert settings.api.max_messages == 12  # env beats both
    assert settings.llm.primary.max_model_len == 4096  # untouched keys survive the merge
    assert settings.llm.primary.engine == "vllm"


def test_profile_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "settings-test.yaml", "api:\n  port: 8765\n")
    monkeypatch.setenv("ENCLAVE_PROFILE", "test")
    assert load_settings(config_dir=tmp_path).api.port == 8765


def test_missing_profile_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"settings-nope\.yaml"):
        load_settings(config_dir=tmp_path, profile="nope")


def test_every_problem_is_listed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "settings.yaml",
        "api:\n  port: 70000\n  max_mesages: 3\nllm:\n  primary:\n    engine: llama\n",
    )
    monkeypatch.setenv("ENCLAVE_TELEMETRY__LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config_dir=tmp_path)
    message = caught.value.detail
    assert "api.port" in message
    assert "api.max_mesages" in message
    assert "llm.primary.engine" in message
    assert "telemetry.log_level" in message
    assert "4 problem(s)" in message


def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    write(tmp_path / "settings.yaml", "- a list\n")
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        load_settings(config_dir=tmp_path)


def test_fallback_window_smaller_than_primary_is_rejected(tmp_path: Path) -> None:
    write(
        tmp_path / "settings.yaml",
        "llm:\n  primary:\n    max_model_len: 4096\n  fallback:\n    max_model_len: 2048\n",
    )
    with pytest.raises(ConfigurationError, match="fallback"):
        load_settings(config_dir=tmp_path)


def test_config_version_is_stable_and_tracks_content(tmp_path: Path) -> None:
    first = load_settings(config_dir=tmp_path)
    again = load_settings(config_dir=tmp_path)
    assert config_version(first) == config_version(again)
    assert config_version(first).startswith("cfg_")
    write(tmp_path / "settings.yaml", "api:\n  max_messages: 99\n")
    changed = load_settings(config_dir=tmp_path)
    assert config_version(changed) != config_version(first)


def test_every_field_is_described() -> None:
    def walk(model: type, prefix: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if not field.description:
                missing.append(prefix + name)
            annotation = field.annotation
            for candidate in getattr(annotation, "__args__", (annotation,)):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    missing += walk(candidate, f"{prefix}{name}.")
        return missing

    assert walk(Settings, "") == []
