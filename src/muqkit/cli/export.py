"""``muqkit export onnx``: MuQ (chosen hidden states) as an ONNX graph for onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

from muqkit.cli.options import layer_list


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``export`` (onnx)."""
    export = subparsers.add_parser("export", help="export models for deployment (ONNX)")
    sub = export.add_subparsers(dest="export_command", metavar="FORMAT")
    export.set_defaults(func=lambda args: (export.print_help(), 2)[1])
    onnx = sub.add_parser(
        "onnx",
        help="MuQ as an ONNX graph (waveform in, hidden states out; dynamic batch and length)",
        description="Write MuQ as ONNX (opset 18) with a .json description beside it. Run it with "
        "`muqkit embed --backend onnxruntime --model FILE.onnx`.",
    )
    onnx.add_argument("--model", default=None, help="MuQ Hub id or checkpoint folder (default: as `muqkit embed`)")
    onnx.add_argument(
        "--mulan",
        action="store_true",
        help="--model is a MuQ-MuLan model: write its audio and text towers (and tokenizer) into the folder --out, "
        "for `muqkit search --backend onnxruntime --model FOLDER`",
    )
    onnx.add_argument(
        "--layers",
        default="-1",
        type=layer_list,
        help="comma-separated hidden-state indices to output (0 = conv front end, i = Conformer layer i, negative "
        "from the end; 'all'); the graph stops at the deepest (default: -1)",
    )
    onnx.add_argument("--out", required=True, metavar="PATH", help="the .onnx file to write (a folder with --mulan)")
    onnx.add_argument("--overwrite", action="store_true", help="replace an existing file")
    onnx.set_defaults(func=run_onnx)


def run_onnx(args: argparse.Namespace) -> int:
    from muqkit.atomic import check_writable
    from muqkit.embed.api import load_muq
    from muqkit.embed.chunks import resolve_layers
    from muqkit.export.onnx import export_muq

    out = Path(args.out)
    if args.mulan:
        return _export_mulan(args, out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out {out}: the file name must end in .onnx")
    if out.exists() and not out.is_dir() and not args.overwrite:
        raise ValueError(f"--out {out}: exists; pass --overwrite to replace it")
    check_writable(out)
    muq = load_muq(args.model)
    layers = resolve_layers(args.layers, int(muq.config.encoder_depth) + 1)
    graph = export_muq(muq, out, layers=layers, model_id=args.model)
    print(f"wrote {graph.path} (hidden states {list(layers)}) and {graph.meta_path}")
    return 0


def _export_mulan(args: argparse.Namespace, out: Path) -> int:
    from muqkit.atomic import check_writable
    from muqkit.export.onnx import export_mulan
    from muqkit.mulan import MuQMuLan

    if not args.model:
        raise ValueError("--mulan needs --model (a MuQ-MuLan Hub id or folder)")
    if (out / "mulan.json").exists() and not args.overwrite:
        raise ValueError(f"--out {out}: holds an exported model; pass --overwrite to replace it")
    check_writable(out, folder=True)
    model_id = str(Path(args.model).absolute()) if Path(args.model).is_dir() else args.model
    graphs = export_mulan(MuQMuLan.from_pretrained(args.model), out, model_id=model_id)
    print(f"wrote {', '.join(g.path for g in graphs)} and {graphs[0].meta_path}")
    return 0
