"""The package's import edges between its top-level parts (audio, tokenizer, encoder, ssl, mulan, data,
train, eval, embed, hub, cli, recipes, ...), read from the source with ``ast`` (lazy imports inside
functions included; ``TYPE_CHECKING`` blocks left out). Prints one line per edge with the modules that
make it, then the cycles between parts.

    .venv/bin/python bench/import_edges.py                 # src/muqkit
    .venv/bin/python bench/import_edges.py --json edges.json
"""

from __future__ import annotations

import argparse
import ast
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "muqkit"


def part_of(module: str) -> str:
    """``muqkit.hub.official.muq`` -> ``hub.official``; ``muqkit.ssl.muq`` -> ``ssl``; top-level files by name."""
    parts = module.split(".")[1:]
    if not parts:
        return "muqkit"
    if parts[0] == "hub" and len(parts) > 1 and parts[1] == "official":
        return "hub.official"
    return parts[0]


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def edges(root: Path = ROOT) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(root.rglob("*.py")):
        module = "muqkit." + ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        skip = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if node.lineno in skip if hasattr(node, "lineno") else False:
                continue
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("muqkit.") or name == "muqkit":
                    a, b = part_of(module), part_of(name)
                    if a != b:
                        found[(a, b)].add(module.removeprefix("muqkit."))
    return found


def cycles(found: dict[tuple[str, str], set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for (a, b) in found if a < b and (b, a) in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the edges to this file")
    args = parser.parse_args()
    found = edges()
    for (a, b), modules in sorted(found.items()):
        print(f"{a:>13} -> {b:<13} {', '.join(sorted(modules))}")
    both = cycles(found)
    print(f"\n{len(found)} edges between parts; {len(both)} two-way: " + ", ".join(f"{a} <-> {b}" for a, b in both))
    if args.json:
        Path(args.json).write_text(json.dumps({f"{a} -> {b}": sorted(m) for (a, b), m in sorted(found.items())},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
