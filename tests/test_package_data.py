"""The training presets ship inside the package: importlib.resources finds them, and pyproject's package data
covers every one, so a non-editable install (a wheel) carries them too."""

from __future__ import annotations

import fnmatch
import sys
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_presets_are_package_resources():
    folder = files("muqkit.configs") / "pretrain"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))
    assert names == ["base.yaml", "large.yaml", "small.yaml", "tiny-official.yaml", "tiny.yaml"]
    assert "max_steps" in (folder / "tiny.yaml").read_text()
    assert not (ROOT / "configs").exists(), "presets outside the package are not installed"


def test_pyproject_package_data_covers_every_preset():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["muqkit"]
    package = ROOT / "src" / "muqkit"
    shipped = [p.relative_to(package).as_posix() for p in [*package.rglob("*.yaml"), *package.rglob("recipes/*.json")]]
    assert "recipes/side_by_side.json" in shipped
    assert shipped and all(any(fnmatch.fnmatch(s, pattern) for pattern in patterns) for s in shipped)


def test_load_preset_reads_the_packaged_files(tmp_path):
    pytest.importorskip("yaml")
    from muqkit.train.pretrain import load_preset, preset_names

    assert preset_names() == ["base", "large", "small", "tiny", "tiny-official"]
    assert load_preset("large")["crop_seconds"] == 30.0
    own = tmp_path / "mine.yaml"
    own.write_text("max_steps: 7\ndescription: mine\n")
    assert load_preset(own) == {"max_steps": 7}
    with pytest.raises(ValueError, match="known: \\['base', 'large', 'small', 'tiny', 'tiny-official'\\]"):
        load_preset("huge")
