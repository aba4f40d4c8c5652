"""Bring your own model: check a Hugging Face folder (or a GGUF file) and add it to the store.

``enclave models add PATH --name NAME`` runs :func:`add_model`. A folder is accepted when
everything an engine needs at start-up is there and readable — ``config.json``, a
tokenizer, a chat template, safetensors weights whose headers cover their files — so that a
bad folder is refused here, naming what is missing, instead of failing a replica's start on
the cluster. Pickled weights (``*.bin``) are refused: loading them runs code from the file.
A GGUF file is converted to a bf16 folder first, as the packaged SmolLM2 is.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelStoreError
from models.store import ModelEntry, ModelStore, convert_gguf

__all__ = ["FolderCheck", "add_model", "check_model_folder"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")
_PROBE = [{"role": "user", "content": "Hello"}]


@dataclass(frozen=True, slots=True)
class FolderCheck:
    """What the check of a model folder found (all of it loadable)."""

    architecture: str
    model_type: str
    max_position_embeddings: int | None
    weight_files: tuple[str, ...]
    parameters: int


def _problem(folder: Path, what: str) -> ModelStoreError:
    return ModelStoreError(f"{folder} is not a usable model folder: {what}")


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise _problem(folder, "no config.json (the model's architecture and sizes).")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _problem(folder, f"config.json is not valid JSON ({exc}).") from exc
    if not isinstance(config, dict) or not config.get("model_type"):
        raise _problem(folder, "config.json names no model_type.")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(str(folder))
    except (ValueError, KeyError, OSError) as exc:
        raise _problem(folder, f"config.json does not load ({exc}).") from exc
    return config


def _tokenizer_and_template(folder: Path) -> None:
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        files = ", ".join(_TOKENIZER_FILES)
        raise _problem(folder, f"no tokenizer (none of {files}).")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (ValueError, OSError, TypeError) as exc:
        raise _problem(folder, f"the tokenizer does not load ({exc}).") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise _problem(
            folder,
            "no chat template (chat_template.jinja, or chat_template in "
            "tokenizer_config.json): Enclave sends chats, and a base model without a template "
            "cannot take them. Use the instruct/chat variant of the model.",
        )
    try:
        tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # a Jinja error of any kind: the template cannot render a chat
        raise _problem(folder, f"the chat template does not render a chat ({exc}).") from exc


def _weights(folder: Path) -> tuple[tuple[str, ...], int]:
    from safetensors import SafetensorError, safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(
                set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _problem(folder, f"model.safetensors.index.json is unreadable ({exc}).") from exc
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise _problem(folder, f"weight shards named by the index are missing: {missing}.")
        files = [folder / s for s in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        if pickled:
            raise _problem(
                folder,
                f"only pickled weights ({', '.join(pickled)}); loading them runs code from the "
                "file. Convert them to safetensors (save_pretrained(..., safe_serialization="
                "True)) and add the folder again.",
            )
        raise _problem(folder, "no weights (*.safetensors).")
    parameters = 0
    for path in files:
        try:
            # Reads only the header; safetensors checks that it covers the whole file, so a
            # truncated copy is caught without loading gigabytes.
            with safe_open(str(path), "pt") as weights:
                for key in weights.keys():  # noqa: SIM118 (a safe_open handle is no dict)
                    shape = weights.get_slice(key).get_shape()
                    count = 1
                    for dim in shape:
                        count *= int(dim)
                    parameters += count
        except (SafetensorError, OSError) as exc:
            raise _problem(folder, f"weights file {path.name} is unreadable ({exc}).") from exc
    return tuple(p.name for p in files), parameters


def check_model_folder(folder: Path) -> FolderCheck:
    """Check that an engine can load ``folder``; raise naming the first thing missing."""
    if not folder.is_dir():
        raise ModelStoreError(f"{folder} is not a folder (nor a .gguf file).")
    config = _config(folder)
    _tokenizer_and_template(folder)
    weight_files, parameters = _weights(folder)
    architectures = config.get("architectures") or [str(config["model_type"])]
    max_positions = config.get("max_position_embeddings")
    return FolderCheck(
        architecture=str(architectures[0]),
        model_type=str(config["model_type"]),
        max_position_embeddings=int(max_positions) if isinstance(max_positions, int) else None,
        weight_files=weight_files,
        parameters=parameters,
    )


def add_model(
    store: ModelStore, source: Path, name: str, *, in_place: bool = False, force: bool = False
) -> tuple[ModelEntry, FolderCheck]:
    """Check ``source`` and record it in the store as LLM ``name`` with every file's sha256.

    A folder is copied into ``<store>/llm/<name>`` (``in_place``: recorded where it is, e.g.
    on a volume too large to copy); a GGUF file is converted into that folder.
    """
    if not _NAME.match(name):
        msg = f"Model name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-'."
        raise ModelStoreError(msg)
    if name in store.entries() and not force:
        msg = f"Model {name!r} is already in the store at {store.root}; pass --force to replace it."
        raise ModelStoreError(msg)
    source = source.expanduser().resolve()
    if not source.exists():
        raise ModelStoreError(f"{source} does not exist.")
    target = store.root / "llm" / name
    if source.is_file():
        if source.suffix != ".gguf":
            raise ModelStoreError(f"{source} is a file but not a .gguf; pass a model folder.")
        if in_place:
            raise ModelStoreError("A GGUF file is converted into the store; drop --in-place.")
        target.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(source, target)
        recipe = "gguf-to-hf-bf16-v1"
    else:
        check_model_folder(source)
        recipe = "hf-folder-v1"
        if in_place:
            target = source
        elif source != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
            try:
                shutil.copytree(source, staging, dirs_exist_ok=True)
                if target.exists():
                    shutil.rmtree(target)
                staging.rename(target)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
    check = check_model_folder(target)
    entry = store.register(
        name=name, kind="llm", version=f"local+{recipe}", source=str(source), folder=target
    )
    return entry, check
