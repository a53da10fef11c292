"""Shared fixtures: the official-implementation parity fixtures in ../shared/parity."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PARITY_DIR = REPO_ROOT.parent / "shared" / "parity"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that reads the official fixtures (``parity_dir``, directly or through another
    fixture) is marked ``parity``: tests/test_cpu_capabilities.py replays them under other CPUs'
    vector code."""
    for item in items:
        if "parity_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.parity)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """``../shared/parity`` relative to the repository root; tests that need it skip without it."""
    if not PARITY_DIR.is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY_DIR} (see the README: ../shared/parity)")
    return PARITY_DIR


def one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """The captured stderr, asserted to be one line without a traceback that holds every needle."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny MuQ (seed 0) saved in the official format."""
    from muqkit.ssl.muq import MuQ

    folder = tmp_path_factory.mktemp("tiny")
    MuQ.from_preset("tiny", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture
def default_sigint():
    """Python's own Ctrl-C handler for the test: a suite started in the background of a non-interactive
    shell (``cmd &``) inherits SIGINT ignored, and Python then leaves it ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
