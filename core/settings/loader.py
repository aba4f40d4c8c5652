"""Loading the settings tree: defaults, ``settings.yaml``, the profile's overlay, then the
environment; and the config version of what was loaded.

Precedence, lowest first: field defaults → ``settings.yaml`` → ``settings-<profile>.yaml``
→ ``ENCLAVE_*`` environment variables (nested with ``__``, e.g.
``ENCLAVE_API__PORT=9000``). The YAML files are deep-merged. Invalid settings raise
:class:`core.errors.ConfigurationError` listing every problem at once.

The *config version* is the sha256 of the canonical JSON of the effective settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.errors import ConfigurationError
from core.settings.tree import ENV_PREFIX, Settings

__all__ = [
    "config_version",
    "load_settings",
]


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise ConfigurationError(msg) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        msg = f"{path}: the top level must be a mapping, got {type(loaded).__name__}"
        raise ConfigurationError(msg)
    return loaded


def _format_errors(exc: ValidationError, sources: list[str]) -> str:
    lines = [f"Invalid settings ({exc.error_count()} problem(s)); read from {', '.join(sources)}:"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"  - {location}: {error['msg']} (got {error.get('input')!r})")
    lines.append(
        f"Environment variables use the prefix {ENV_PREFIX} and '__' between levels, "
        f"e.g. {ENV_PREFIX}API__PORT=9000."
    )
    return "\n".join(lines)


def load_settings(
    config_dir: Path | None = None,
    profile: str | None = None,
) -> Settings:
    """Load the effective settings: defaults, YAML files, profile overlay, then env vars."""
    env = os.environ
    config_dir = Path(env.get("ENCLAVE_CONFIG_DIR", ".")) if config_dir is None else config_dir
    profile = profile or env.get(f"{ENV_PREFIX}PROFILE") or "default"
    files = [config_dir / "settings.yaml"]
    if profile != "default":
        overlay = config_dir / f"settings-{profile}.yaml"
        if not overlay.is_file():
            msg = f"Profile {profile!r} selected but {overlay} does not exist."
            raise ConfigurationError(msg)
        files.append(overlay)
    merged: dict[str, Any] = {}
    read: list[str] = []
    for path in files:
        if path.is_file():
            merged = _deep_merge(merged, _read_yaml(path))
            read.append(str(path))
    merged["profile"] = profile
    read.append(f"{ENV_PREFIX}* environment")
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigurationError(_format_errors(exc, read)) from exc
    return settings.with_paths_resolved(config_dir.resolve())


def config_version(settings: Settings) -> str:
    """The canonical content hash of the effective settings (``cfg_`` + 16 hex)."""
    canonical = json.dumps(
        settings.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return "cfg_" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
