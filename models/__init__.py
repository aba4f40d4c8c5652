"""Models: the local model store and the engines that run models (heavy imports stay lazy)."""

from __future__ import annotations

from models.store import PACKAGED_MODELS, ModelEntry, ModelStore, PackagedModel, sha256_file

__all__ = ["PACKAGED_MODELS", "ModelEntry", "ModelStore", "PackagedModel", "sha256_file"]
