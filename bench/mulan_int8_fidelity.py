"""Where MuQ-MuLan's int8 evaluation moves from float32: each tower's latents against float32's, the MuQ backbone's
hidden state per frame, and ``muqkit mulan evaluate``'s figures with one tower in int8 at a time (and both in
bfloat16, a smaller perturbation, for the size of the figures' own sensitivity).

    python bench/mulan_int8_fidelity.py runs/int8-mulan/run/model --manifest runs/small/scores.jsonl \\
        --manifest runs/small/notes.jsonl --source scores --min-positives 10
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch


def cosines(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    cos = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)
    return {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5), "count": cos.numel()}


def figures(result: Any) -> dict[str, float]:
    """ROC-AUC per tag group and text-to-music R@1/5/10 of a :class:`muqkit.mulan.evaluate.MuLanEvaluation`."""
    out = {f"{name} ROC-AUC": roc for name, (roc, _, _) in result.tagging.groups.items()}
    t2m = result.retrieval.text_to_music
    out.update({"text-to-music R@1": t2m.r1, "R@5": t2m.r5, "R@10": t2m.r10})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a MuQ-MuLan folder")
    parser.add_argument("--manifest", action="append", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--source", default=None)
    parser.add_argument("--min-positives", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from muqkit.audio.io import load_audio
    from muqkit.data.loader import absolute_records
    from muqkit.embed.int8 import quantize_muq
    from muqkit.embed.precision import read_cpu_features
    from muqkit.export.int8 import quantize_mulan
    from muqkit.mulan import MuQMuLan
    from muqkit.mulan.captions import caption_from_metadata
    from muqkit.mulan.evaluate import evaluate_items
    from muqkit.mulan.index import embed_files

    print(f"CPU: {read_cpu_features().describe()}; load average {os.getloadavg()[0]:.2f}")
    records = [r for r in absolute_records(args.manifest, split=args.split) if args.source in (None, r.source)]
    paths = [r.path for r in records]
    items = [dict(r.labels) for r in records]
    fp32 = MuQMuLan.from_pretrained(args.model).eval()
    int8 = quantize_mulan(fp32)  # both towers
    text_int8 = quantize_mulan(fp32, audio=False)  # the text tower alone
    bf16 = MuQMuLan.from_pretrained(args.model).to(torch.bfloat16).eval()
    with torch.inference_mode():
        audio = {"float32": embed_files(fp32, paths), "int8": embed_files(int8, paths),
                 "bfloat16": embed_files(bf16, paths).float()}  # fmt: skip
        captions = [caption_from_metadata(labels) for labels in items]
        text = {"float32": fp32.extract_text_latents(captions), "int8": text_int8.extract_text_latents(captions),
                "bfloat16": bf16.extract_text_latents(captions).float()}  # fmt: skip
    other = ("int8", "bfloat16")
    record: dict[str, Any] = {"model": args.model, "items": len(records)}
    record["audio_latent_cosine"] = {k: cosines(audio[k], audio["float32"]) for k in other}
    record["caption_latent_cosine"] = {k: cosines(text[k], text["float32"]) for k in other}

    # The backbone's hidden state that feeds the audio tower, per frame, MuQ alone in int8 (as `muqkit embed`).
    tower = fp32.audio
    layer = int(tower.layer)
    muq8 = quantize_muq(tower.backbone, layers=[layer], batch_size=1, pad_samples=int(fp32.config.clip_samples))
    per_frame = []
    with torch.inference_mode():
        for path in paths:
            wav = load_audio(path, sample_rate=fp32.sample_rate)[: int(fp32.config.clip_samples)]
            out = tower.backbone(wav[None], output_hidden_states=True)
            ref = out.hidden_states[layer][0]
            got = muq8.encode_batch([wav], layers=(layer,))[0][0]
            per_frame.append(torch.nn.functional.cosine_similarity(got.double(), ref.double(), dim=-1))
    frames = torch.cat(per_frame)
    record["backbone_layer"] = layer
    record["backbone_frame_cosine"] = {"min": round(float(frames.min()), 5), "mean": round(float(frames.mean()), 5),
                                       "frames": frames.numel()}  # fmt: skip

    runs = {"float32": (fp32, audio["float32"]), "audio int8, text float32": (fp32, audio["int8"]),
            "audio float32, text int8": (text_int8, audio["float32"]), "both int8": (int8, audio["int8"]),
            "both bfloat16": (bf16, audio["bfloat16"])}  # fmt: skip
    table = {}
    with torch.inference_mode():
        for name, (model, latents) in runs.items():
            table[name] = figures(evaluate_items(model, latents, items, min_positives=args.min_positives))
    record["evaluation"] = table
    print(json.dumps({k: v for k, v in record.items() if k != "evaluation"}, indent=1))
    names = list(table["float32"])
    print("| towers | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in names) + " |")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
