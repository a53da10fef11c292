"""Ways to run MuQ-MuLan's text tower in int8, against float32: each text's latent cosine to float32's and, with
``--rounds``, the time of one text query (tokenisation included), the candidates taking turns on each text.

Candidates: onnxruntime's ``quantize_dynamic`` with per-channel weights (one activation scale per call) as is,
without the matrices that narrow (the feed-forward output projections) or without the first and last six weight
matrix products; torchao's ``Int8DynamicActivationInt8WeightConfig`` (per-token activation scales, per-channel
weights) on the tower's ``nn.Linear`` layers in eager PyTorch; onnxruntime's ``MatMulNBits`` at 8 bits with
weights and activations scaled per block of 16, 32 or 64 input channels (``accuracy_level`` 4: int8 products),
and with 32 and float products (level 0).

    # the corpus captions on a trained model (cosines only)
    python bench/text_int8_candidates.py --model runs/int8-mulan/run/model --manifest runs/small/scores.jsonl \\
        --manifest runs/small/notes.jsonl
    # the MuQ-MuLan-large-sized text side (cosines and times on bench_serve's queries)
    OMP_NUM_THREADS=1 python bench/text_int8_candidates.py --model large-text --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import QUERIES, build_model, millis  # noqa: E402

ALL = ["channel", "channel-narrowing-float", "channel-ends-float", "torchao", "block16", "block32", "block64",
       "block32-float-products"]  # fmt: skip


class TorchaoText:
    """The text tower's ``nn.Linear`` layers through torchao's dynamic int8, one text per call."""

    def __init__(self, mulan: Any) -> None:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        self.model = copy.deepcopy(mulan)
        quantize_(self.model.text, Int8DynamicActivationInt8WeightConfig())

    def extract_text_latents(self, texts: list[str]) -> torch.Tensor:
        return torch.cat([self.model.extract_text_latents([t]) for t in texts])


def build(name: str, mulan: Any, graph: Path, tmp: Path, threads: int) -> Any:
    import onnx
    import onnxruntime as ort

    from muqkit.export.int8 import Int8MuLan, _quiet_root_logger

    if name == "torchao":
        return TorchaoText(mulan)
    model = onnx.load(str(graph))
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    out = tmp / f"{name}.onnx"
    with _quiet_root_logger():
        if name.startswith("channel"):
            from onnxruntime.quantization import QuantType, quantize_dynamic

            exclude = []
            if name == "channel-narrowing-float":
                exclude = [n.name for n in matmuls if weights[n.input[1]][0] > weights[n.input[1]][1]]
            elif name == "channel-ends-float":
                exclude = [n.name for n in matmuls[:6] + matmuls[-6:]]
            quantize_dynamic(str(graph), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             per_channel=True, nodes_to_exclude=exclude)  # fmt: skip
        else:
            from onnxruntime.quantization.matmul_nbits_quantizer import (
                DefaultWeightOnlyQuantConfig,
                MatMulNBitsQuantizer,
            )

            block = int(name[5:7])
            level = 0 if name.endswith("float-products") else 4
            config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=level, bits=8)
            quantizer = MatMulNBitsQuantizer(model, algo_config=config)
            quantizer.process()
            quantizer.model.save_model_to_file(str(out), False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    return Int8MuLan(mulan, session, audio=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="large-text", help="as bench/bench_serve.py, or a MuQ-MuLan folder")
    parser.add_argument("--manifest", action="append", default=[], help="texts: the captions of these items")
    parser.add_argument("--split", default="test")
    parser.add_argument("--rounds", type=int, default=0, help="timed passes over bench_serve's queries")
    parser.add_argument("--candidates", nargs="+", default=ALL, choices=ALL)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from muqkit.export.onnx import MuLanTextGraph, export_graph

    print(f"load {os.getloadavg()[0]:.2f}; threads {torch.get_num_threads()}")
    mulan = build_model(args.model).float().eval()
    if args.manifest:
        from muqkit.data.loader import absolute_records
        from muqkit.mulan.captions import caption_from_metadata

        texts = [caption_from_metadata(dict(r.labels)) for r in absolute_records(args.manifest, split=args.split)]
    else:
        texts = [f"{q} ({i})" for i in range(args.rounds + 1) for q in QUERIES]  # new texts each round
    warm = len(QUERIES) if args.rounds else len(texts)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        tmp = Path(folder)
        batch = mulan.text.tokenize(["a calm piano piece in a minor key", "drums"])
        dims = torch.export.Dim("texts", min=1), torch.export.Dim("tokens", min=2, max=int(mulan.text.max_length))
        export_graph(MuLanTextGraph(mulan).eval(), (batch.input_ids, batch.attention_mask), tmp / "text.onnx",
                     dynamic={"input_ids": dict(enumerate(dims)), "attention_mask": dict(enumerate(dims))},
                     inputs=["input_ids", "attention_mask"], outputs=["latents"])  # fmt: skip
        candidates = {"float32": mulan}
        candidates.update({name: build(name, mulan, tmp / "text.onnx", tmp, threads) for name in args.candidates})
        times: dict[str, list[float]] = {name: [] for name in candidates}
        latents: dict[str, list[torch.Tensor]] = {name: [] for name in candidates}
        for i, text in enumerate(texts):
            for name, candidate in candidates.items():
                start = time.perf_counter()
                latent = candidate.extract_text_latents([text])
                if i >= warm:
                    times[name].append(time.perf_counter() - start)
                latents[name].append(latent[0].float())
    ref = torch.stack(latents["float32"])
    record: dict[str, Any] = {"model": args.model, "texts": len(texts), "load_after": os.getloadavg()[0]}
    print(f"{len(texts)} texts ({len(set(texts))} distinct)")
    print("| text tower | lowest cosine to float32 | mean cosine | median ms | p90 ms |\n|---|---|---|---|---|")
    for name in candidates:
        cos = torch.nn.functional.cosine_similarity(torch.stack(latents[name]).double(), ref.double(), dim=-1)
        row: dict[str, Any] = {"min_cosine": round(float(cos.min()), 5), "mean_cosine": round(float(cos.mean()), 5)}
        row.update(millis(times[name]) if times[name] else {})
        record[name] = row
        print(f"| {name} | {row['min_cosine']:.5f} | {row['mean_cosine']:.5f} | {row.get('median_ms', '')} | "
              f"{row.get('p90_ms', '')} |")  # fmt: skip
    print(f"load average after: {record['load_after']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
