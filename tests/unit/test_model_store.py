"""The model store: manifest, checksums, idempotent prepare, clear refusal of bad models."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ModelStoreError
from models.store import ModelStore, PackagedModel, sha256_file

BUILDS: list[str] = []


def _build(model: PackagedModel, store_root: Path, target: Path) -> Path:
    BUILDS.append(model.name)
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.json").write_text('{"layers": 2}')
    (target / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (target / "sub").mkdir(exist_ok=True)
    (target / "sub" / "vocab.txt").write_text("a\nb\n")
    return target


# A real installed package stands in as the "source" so that version lookup is real.
FAKE = PackagedModel(
    name="tiny", kind="llm", package="pyyaml", module="yaml", recipe="test-v1", build=_build
)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    BUILDS.clear()
    return ModelStore(tmp_path / "models")


def test_prepare_writes_a_manifest_with_every_file_hashed(store: ModelStore) -> None:
    assert store.prepare([FAKE]) == ["tiny"]
    entry = store.entries()["tiny"]
    assert entry.source_package == "pyyaml"
    assert entry.version.endswith("+test-v1")
    assert set(entry.files) == {"config.json", "weights.bin", "sub/vocab.txt"}
    folder = entry.folder(store.root)
    assert entry.files["weights.bin"] == sha256_file(folder / "weights.bin")
    assert entry.path == "llm/tiny"  # inside the store: stored relative


def test_prepare_is_idempotent(store: ModelStore) -> None:
    store.prepare([FAKE])
    assert store.prepare([FAKE]) == []
    assert BUILDS == ["tiny"]


def test_prepare_rebuilds_a_corrupt_model(store: ModelStore) -> None:
    store.prepare([FAKE])
    (store.path_of("tiny") / "weights.bin").write_bytes(b"tampered")
    assert store.prepare([FAKE]) == ["tiny"]
    store.verify(["tiny"])


def test_verify_names_the_corrupt_file_and_the_fix(store: ModelStore) -> None:
    store.prepare([FAKE])
    target = store.path_of("tiny") / "sub" / "vocab.txt"
    target.write_text("changed")
    with pytest.raises(ModelStoreError) as caught:
        store.verify(["tiny"])
    assert str(target) in caught.value.detail
    assert "corrupt" in caught.value.detail
    assert "enclave models prepare" in caught.value.detail


def test_verify_names_a_missing_file(store: ModelStore) -> None:
    store.prepare([FAKE])
    target = store.path_of("tiny") / "config.json"
    target.unlink()
    with pytest.raises(ModelStoreError, match="missing") as caught:
        store.verify(["tiny"])
    assert str(target) in caught.value.detail


def test_verify_refuses_a_model_that_was_never_prepared(store: ModelStore) -> None:
    with pytest.raises(ModelStoreError, match="'smollm2' is not in the model store"):
        store.verify(["smollm2"])


def test_unreadable_manifest_is_reported(store: ModelStore) -> None:
    store.root.mkdir(parents=True)
    store.manifest_path.write_text("{not json")
    with pytest.raises(ModelStoreError, match="unreadable"):
        store.entries()
