"""A corrupt, truncated or empty ``.onnx`` file is one line naming the file and exit status 2 (once onnxruntime's
``InvalidProtobuf`` / ``InvalidArgument`` tracebacks), for ``muqkit embed`` and ``muqkit search``; no real export
is needed: the description beside the graph is written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("onnxruntime")

from muqkit.cli.main import main  # noqa: E402
from tests.conftest import one_line_error  # noqa: E402

# empty, random bytes (a protobuf parse error), the start of a real protobuf (truncated)
BROKEN = {"empty": b"", "garbage": bytes(range(256)) * 4, "truncated": b"\x08\x09\x12\x07pytorch\x1a\x032.0:\x8a"}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_embed_with_a_broken_graph(tmp_path: Path, capsys, kind: str) -> None:
    graph = tmp_path / "muq.onnx"
    graph.write_bytes(BROKEN[kind])
    meta = {"kind": "muq", "sample_rate": 24000, "frame_rate": 25.0, "encoder_depth": 2, "dim": 64, "layers": [2],
            "min_samples": 1920, "model_id": "x", "model_sha256": "0" * 64}  # fmt: skip
    graph.with_suffix(".json").write_text(json.dumps(meta))
    sf.write(tmp_path / "a.wav", np.zeros(24000, dtype=np.float32), 24000)
    args = ["embed", str(tmp_path / "a.wav"), "--out", str(tmp_path / "emb"), "--model", str(graph),
            "--backend", "onnxruntime", "--no-progress"]  # fmt: skip
    assert main(args) == 2
    one_line_error(capsys, f"{graph}: not a loadable ONNX graph")


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_search_with_a_broken_graph(tmp_path: Path, capsys, kind: str) -> None:
    from muqkit.search import VectorIndex

    index = VectorIndex.create(8, model_id="m", model_sha256="0" * 64)
    index.add(["a.wav"], np.eye(8, dtype=np.float32)[:1])
    index.save(tmp_path / "idx")
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "mulan.json").write_text(json.dumps({"kind": "mulan", "model_sha256": "0" * 64, "dim_latent": 8,
                                                   "sample_rate": 24000, "clip_samples": 96000}))  # fmt: skip
    (folder / "audio.onnx").write_bytes(BROKEN[kind])
    (folder / "text.onnx").write_bytes(BROKEN[kind])
    args = ["search", "piano", "--index", str(tmp_path / "idx"), "--backend", "onnxruntime", "--model", str(folder)]
    assert main(args) == 2
    one_line_error(capsys, f"{folder / 'audio.onnx'}: not a loadable ONNX graph")
    (folder / "mulan.json").write_text("{")
    assert main(args) == 2
    one_line_error(capsys, "mulan.json: corrupt description")
