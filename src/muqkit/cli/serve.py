"""``muqkit serve --index IDX``: the search app in the browser (see :mod:`muqkit.serve`)."""

from __future__ import annotations

import argparse
import errno
import ipaddress

from muqkit.cli.errors import device, positive_int
from muqkit.cli.options import DTYPE_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``serve``."""
    p = subparsers.add_parser(
        "serve",
        help="a local web app over an index: search by text or by example, listen, tags, map",
        description="Serves a page and a JSON API (/api/) over an index built by `muqkit mulan index` or "
        "`muqkit index embeddings` (an index of MuQ latents, like the demo's: music search and the map, no text). "
        "Binds 127.0.0.1 unless --host says otherwise; no asset comes from the network.",
    )
    p.add_argument("--index", required=True, metavar="DIR", help="index folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--model", default=None, help="model (default: the one that built the index)")
    p.add_argument("--device", type=device, default="cpu")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="float32",
                   help="compute precision (int8: text queries in int8 on onnxruntime, queries by example in int8 as "
                        "`muqkit embed --dtype int8`; auto: from the CPU's features)")
    p.add_argument("--projection", choices=("pca", "umap"), default="pca",
                   help="the map's projection (umap needs umap-learn)")  # fmt: skip
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest audio for search by example")
    p.add_argument("--max-upload-seconds", type=float, default=60.0, help="longest audio for search by example")
    p.add_argument("--max-k", type=positive_int, default=100, help="most results per search")
    p.add_argument("--tags", default=None, help="the page's default tag list: comma-separated, or @FILE")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"muqkit serve needs {exc.name}: pip install 'muqkit[serve]'") from None
    from muqkit.search import open_index
    from muqkit.serve.app import DEFAULT_TAGS, ServeConfig, create_app
    from muqkit.serve.backend import IndexBackend
    from muqkit.serve.embedder import index_embedder

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: give a port between 0 and 65535")
    tags = DEFAULT_TAGS
    if args.tags is not None:
        text = open(args.tags[1:], encoding="utf-8").read() if args.tags.startswith("@") else args.tags
        tags = tuple(t.strip() for t in text.replace("\n", ",").split(",") if t.strip())
        if not tags:
            raise ValueError(f"--tags {args.tags!r}: no tag names")
    config = ServeConfig(max_k=args.max_k, max_upload_mb=args.max_upload_mb,
                         max_upload_seconds=args.max_upload_seconds, default_tags=tags)  # fmt: skip
    index = open_index(args.index)
    _check_port(args.host, args.port)  # before the model loads, not after
    embedder = index_embedder(index, model=args.model, device=args.device, dtype=args.dtype)
    backend = IndexBackend(index, embedder, projection=args.projection)
    backend.map_coordinates()  # computed once now, not on the first page load
    app = create_app(backend, config)
    if not _is_loopback(args.host):
        print(f"muqkit serve: warning: --host {args.host} makes the app reachable from other machines")
    print(f"muqkit serve: {len(index)} tracks ({index.kind} index), model {embedder.name} "
          f"({'text and music search' if embedder.can_embed_text else 'music search only: MuQ latents'})")  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)  # prints the URL
    return 0


def _check_port(host: str, port: int) -> None:
    """Raise ``ValueError`` unless ``host:port`` can be bound now (as uvicorn binds it: ``SO_REUSEADDR``, so a
    port left in TIME_WAIT by a stopped server counts as free)."""
    import socket

    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]  # fmt: skip
    except socket.gaierror as exc:
        raise ValueError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            problem = "is already in use (another server?); stop it or give another --port" if (
                exc.errno == errno.EADDRINUSE) else f"cannot be used ({exc.strerror})"  # fmt: skip
            raise ValueError(f"--port {port}: {host}:{port} {problem}") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
