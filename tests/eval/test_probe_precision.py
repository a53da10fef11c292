"""``muqkit probe --dtype``: a MuQ probed in int8 (or bfloat16) through the embedding path of ``muqkit embed``,
its features cached apart from float32's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mir_eval")

from muqkit.cli.main import main  # noqa: E402
from muqkit.embed.int8 import int8_problem  # noqa: E402
from muqkit.eval.dummies import make_frame_corpus  # noqa: E402
from muqkit.eval.features import make_extractor  # noqa: E402
from muqkit.eval.frame_features import make_frame_extractor  # noqa: E402

# The bound the int8 frame features of a random tiny MuQ are held to (cosine of each frame of each hidden
# state to float32's; the features are cached in float16).
INT8_MIN_COSINE = 0.98


def test_each_precision_has_its_own_cache_id() -> None:
    clip = {dtype: make_extractor("random:tiny", dtype=dtype) for dtype in ("float32", "bfloat16")}
    frames = {dtype: make_frame_extractor("random:tiny", dtype=dtype) for dtype in ("float32", "bfloat16")}
    for extractors in (clip, frames):
        assert extractors["bfloat16"].id == extractors["float32"].id + "-bfloat16"  # same weights, another precision
    assert not clip["float32"].id.endswith("float32")  # float32 ids are those of caches made before precisions
    wav = 0.1 * torch.randn(24000, generator=torch.Generator().manual_seed(0))
    a, b = clip["float32"].embed([wav])[0], clip["bfloat16"].embed([wav])[0]
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    cosine = torch.nn.functional.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=-1)
    assert float(cosine.min()) > 0.99 and not np.array_equal(a, b)  # bfloat16 really ran
    assert make_extractor("mel", dtype="int8").id == make_extractor("mel").id  # handcrafted: always float32


def _cached(cache: Path, model_id: str) -> np.ndarray:
    from safetensors.numpy import load_file

    (entry,) = (cache / model_id).glob("*.safetensors")
    return load_file(str(entry))["features"].astype(np.float32)  # (frames, layers, dim)


@pytest.mark.skipif(int8_problem() is not None, reason=str(int8_problem()))
def test_probe_in_int8_runs_and_keeps_its_features_apart(tmp_path: Path) -> None:
    make_frame_corpus(tmp_path / "corpus")
    cache = tmp_path / "cache"
    common = ["probe", "--corpus", str(tmp_path / "corpus"), "--task", "onset", "--model", "random:tiny", "--model",
              "mel", "--heads", "linear", "--seeds", "0", "--layers", "sweep", "--frame-max-epochs", "2",
              "--cache-dir", str(cache), "--no-plots"]  # fmt: skip
    for dtype in ("float32", "int8"):
        assert main([*common, "--dtype", dtype, "--out", str(tmp_path / dtype)]) == 0
        results = json.loads((tmp_path / dtype / "results.json").read_text())
        assert results["meta"]["config"]["dtype"] == dtype
        assert {r["model"] for r in results["rows"]} == {"random:tiny", "mel"}

    folders = sorted(p.name for p in cache.iterdir())
    muq = [name for name in folders if name.startswith("frames-random-tiny-")]
    assert len(muq) == 2 and muq[1] == muq[0] + "-int8", folders  # one entry per precision
    assert len([name for name in folders if name.startswith("frames-mel")]) == 1  # handcrafted: one entry
    ref, got = _cached(cache, muq[0]), _cached(cache, muq[1])
    assert ref.shape == got.shape
    cosine = torch.nn.functional.cosine_similarity(torch.from_numpy(ref), torch.from_numpy(got), dim=-1)
    assert float(cosine.min()) >= INT8_MIN_COSINE, float(cosine.min())
    assert not np.array_equal(ref, got)  # int8 really ran

    # float32 again: its features come from its own cache entry (not embedded again, not int8's)
    assert main([*common, "--dtype", "float32", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())["rows"]
    assert [r["embed_seconds"] for r in again if r["model"] == "random:tiny"] == [0.0]
    assert sorted(p.name for p in cache.iterdir()) == folders


def test_muq_frame_features_read_back_from_the_cache_as_computed(tmp_path: Path) -> None:
    from muqkit.eval.frame_features import embed_frames
    from muqkit.eval.frames import load_frame_task

    make_frame_corpus(tmp_path / "corpus")
    task = load_frame_task("onset", tmp_path / "corpus")
    records = sorted(task.manifest, key=lambda r: r.id)
    extractor = make_frame_extractor("random:tiny")
    fresh = embed_frames(records, task.root, extractor, cache_dir=tmp_path / "cache")
    cached = embed_frames(records, task.root, extractor, cache_dir=tmp_path / "cache")
    assert cached.seconds == 0.0 and cached.values.shape == fresh.values.shape
    np.testing.assert_allclose(cached.values, fresh.values, rtol=1e-2, atol=1e-2)  # float16 in the cache
