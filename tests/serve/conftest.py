"""Shared fixtures of the app's tests: a small generated collection indexed (``muqkit mulan index``, a FAISS
index) with the ``mulan_small`` fixture model (official format, random weights) and with the ``muq_small``
MuQ, and the app over each."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("faiss")


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


def _index(tmp_path_factory: pytest.TempPathFactory, collection: Path, model: Path, name: str) -> Path:
    """The collection indexed by ``muqkit mulan index --model MODEL`` into a fresh folder."""
    from muqkit.cli.main import main

    folder = tmp_path_factory.mktemp(name) / "index"
    assert main(["mulan", "index", str(collection), "--model", str(model), "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="session")
def mulan_index(tmp_path_factory: pytest.TempPathFactory, collection: Path, mulan_dir: Path) -> Path:
    """An index of the collection made by ``muqkit mulan index``."""
    return _index(tmp_path_factory, collection, mulan_dir, "index")


@pytest.fixture(scope="session")
def mulan_backend(mulan_index: Path, mulan_embedder):
    from muqkit.search import open_index
    from muqkit.serve.backend import IndexBackend

    return IndexBackend(open_index(mulan_index), mulan_embedder)


@pytest.fixture(scope="session")
def muq_dir(parity_dir: Path) -> Path:
    return parity_dir / "muq_small" / "model"


@pytest.fixture(scope="session")
def muq_index(tmp_path_factory: pytest.TempPathFactory, collection: Path, muq_dir: Path) -> Path:
    """The collection indexed with MuQ latents (no text tower) by ``muqkit mulan index --model MUQ``."""
    return _index(tmp_path_factory, collection, muq_dir, "muq-index")


@pytest.fixture(scope="session")
def muq_backend(muq_index: Path):
    from muqkit.search import open_index
    from muqkit.serve.backend import IndexBackend
    from muqkit.serve.embedder import index_embedder

    index = open_index(muq_index)
    return IndexBackend(index, index_embedder(index))
