"""Shared fixtures of the app's tests: a small generated collection indexed with the ``mulan_small`` fixture
model (official format, random weights) and with the ``muq_small`` MuQ, and the app over each."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from muqkit.serve.testing import write_collection

    folder = tmp_path_factory.mktemp("collection")
    write_collection(folder)
    return folder


@pytest.fixture(scope="session")
def mulan_dir(parity_dir: Path) -> Path:
    folder = parity_dir / "mulan_small" / "mulan"
    if not (folder / "config.json").is_file():
        pytest.skip(f"the mulan_small parity fixture is missing ({folder})")
    return folder


@pytest.fixture(scope="session")
def mulan_embedder(mulan_dir: Path):
    """The fixture model, loaded once."""
    from muqkit.serve.embedder import load_embedder

    return load_embedder(mulan_dir)


@pytest.fixture(scope="session")
def mulan_index(tmp_path_factory: pytest.TempPathFactory, collection: Path, mulan_dir: Path, mulan_embedder) -> Path:
    """An index of the collection made as ``muqkit mulan index`` makes it."""
    from muqkit.mulan.index import build_index

    index = build_index(mulan_embedder.model, [collection], model_name=str(mulan_dir))
    return index.save(tmp_path_factory.mktemp("index") / "index")


@pytest.fixture(scope="session")
def mulan_backend(mulan_index: Path, mulan_embedder):
    from muqkit.mulan.index import AudioIndex
    from muqkit.serve.backend import IndexBackend

    return IndexBackend(AudioIndex.load(mulan_index), mulan_embedder)


@pytest.fixture(scope="session")
def muq_backend(tmp_path_factory: pytest.TempPathFactory, collection: Path, parity_dir: Path):
    """The collection indexed with MuQ latents (no text tower)."""
    from muqkit.mulan.index import AudioIndex
    from muqkit.serve.backend import IndexBackend
    from muqkit.serve.embedder import build_muq_index, load_embedder
    from muqkit.ssl.muq import MuQ

    model_dir = parity_dir / "muq_small" / "model"
    index, failures = build_muq_index(MuQ.from_pretrained(model_dir), [collection], model_name=str(model_dir))
    assert not failures
    folder = index.save(tmp_path_factory.mktemp("muq-index") / "index")
    return IndexBackend(AudioIndex.load(folder), load_embedder(model_dir))
