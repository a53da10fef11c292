"""The corpus format: an older corpus is refused with the way out, or upgraded in place."""

from __future__ import annotations

import json

import pytest

from muqkit.data.corpus import CorpusMismatchError
from muqkit.data.corpus.format import check_upgradable, require_frame_labels


def test_format_2_corpora_are_refused_with_the_way_out(tmp_path):
    with pytest.raises(CorpusMismatchError, match="format 2.*--upgrade"):
        check_upgradable(tmp_path, {"format": 2, "complete": True}, 3, upgrade=False)
    with pytest.raises(CorpusMismatchError, match="unfinished"):
        check_upgradable(tmp_path, {"format": 2, "complete": False}, 3, upgrade=True)
    assert check_upgradable(tmp_path, {"format": 2, "complete": True}, 3, upgrade=True)["format"] == 3
    (tmp_path / "corpus.json").write_text(json.dumps({"format": 2}))
    with pytest.raises(ValueError, match="format 2, which has no frame labels"):
        require_frame_labels(tmp_path)
