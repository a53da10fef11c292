"""Layers point one way: the model packages know nothing of checkpoint formats, training, the CLI or Lightning.

Every module under ``audio/``, ``encoder/``, ``tokenizer/``, ``ssl/`` and ``mulan/`` is parsed with ``ast``
(imports inside functions included). The single allowed exception: a ``from_pretrained`` /
``save_pretrained`` method may import ``muqkit.hub.loaders`` lazily, in its body, to delegate loading and
saving to the hub (which builds models, never the reverse).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "muqkit"
MODEL_PACKAGES = ("audio", "encoder", "tokenizer", "ssl", "mulan")
FORBIDDEN = ("muqkit.hub", "muqkit.train", "muqkit.cli", "lightning", "pytorch_lightning")
DELEGATORS = frozenset({"from_pretrained", "save_pretrained"})
DELEGATE_TO = "muqkit.hub.loaders"


def _import_nodes(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, str | None]]:
    """Every absolute import statement in ``tree`` with its enclosing function (``None`` at module level)."""
    found: list[tuple[ast.Import | ast.ImportFrom, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
                continue
            absolute_from = isinstance(child, ast.ImportFrom) and child.module and not child.level
            if isinstance(child, ast.Import) or absolute_from:
                found.append((child, function))
            visit(child, function)

    visit(tree, None)
    return found


def _imports(tree: ast.AST) -> list[tuple[str, int, str | None]]:
    """``(module, line, enclosing function)`` of every absolute import in ``tree``."""
    found: list[tuple[str, int, str | None]] = []
    for node, function in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, function) for alias in node.names)
        else:
            found.append((str(node.module), node.lineno, function))
    return found


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(path: Path, source: str | None = None) -> list[str]:
    bad = []
    text = path.read_text() if source is None else source
    for module, line, function in _imports(ast.parse(text, filename=str(path))):
        if not any(_is(module, p) for p in FORBIDDEN):
            continue
        if function in DELEGATORS and module == DELEGATE_TO:
            continue  # the one allowed exception: a thin delegator
        where = f"in {function}()" if function else "at module level"
        bad.append(f"{path.relative_to(SRC.parent)}:{line} imports {module} {where}")
    return bad


def _model_modules() -> list[Path]:
    return sorted(p for package in MODEL_PACKAGES for p in (SRC / package).rglob("*.py"))


def test_model_packages_import_no_format_training_cli_or_lightning():
    modules = _model_modules()
    assert len(modules) > 20, "the model packages were not found"
    problems = [v for path in modules for v in _violations(path)]
    assert not problems, "imports against the layer direction:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from muqkit.hub.official.muq import x\n", "at module level"),
        ("def f():\n    import lightning\n", "in f()"),
        ("def from_pretrained():\n    from muqkit.hub.official.muq import x\n", "in from_pretrained()"),
        ("def g():\n    from muqkit.hub.loaders import load_muq\n", "in g()"),
        ("class A:\n    def m(self):\n        from muqkit.train.pretrain import y\n", "in m()"),
        ("import muqkit.cli.main\n", "at module level"),
    ],
)
def test_the_check_catches_what_it_should(source, expected):
    problems = _violations(SRC / "ssl" / "probe.py", source)
    assert len(problems) == 1 and expected in problems[0]


def test_the_delegator_exception_is_narrow():
    ok = "class M:\n    def save_pretrained(self, folder):\n        from muqkit.hub.loaders import save_muq\n"
    assert [(m, f) for m, _, f in _imports(ast.parse(ok))] == [("muqkit.hub.loaders", "save_pretrained")]
    assert _violations(SRC / "ssl" / "probe.py", ok) == []


# Training sits below the experiments: ``train/`` composes models and data, never evaluation, the recipes
# (demo, claims) or the CLI; and nothing in the library but the CLI reaches up into the recipes.
TRAIN_FORBIDDEN = ("muqkit.eval", "muqkit.recipes", "muqkit.cli")
LIBRARY_PACKAGES = (
    "audio", "encoder", "tokenizer", "ssl", "mulan", "data", "train", "eval", "embed", "hub", "integrations"
)  # fmt: skip


def _imports_of(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        for module, line, function in _imports(ast.parse(path.read_text(), filename=str(path))):
            if any(_is(module, p) for p in forbidden):
                where = f"in {function}()" if function else "at module level"
                bad.append(f"{path.relative_to(SRC.parent)}:{line} imports {module} {where}")
    return bad


def test_train_imports_no_eval_recipes_or_cli():
    assert len(list((SRC / "train").rglob("*.py"))) >= 4, "train/ was not found"
    problems = _imports_of("train", TRAIN_FORBIDDEN)
    assert not problems, "train/ reaches up:\n" + "\n".join(problems)


def test_only_the_cli_imports_the_recipes():
    assert (SRC / "recipes" / "demo.py").is_file() and (SRC / "recipes" / "claims.py").is_file()
    problems = [v for package in LIBRARY_PACKAGES for v in _imports_of(package, ("muqkit.recipes",))]
    assert not problems, "the library imports an experiment:\n" + "\n".join(problems)


def _module_name(path: Path) -> str:
    return "muqkit." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(SRC.rglob("*.py"))}


Edge = tuple[str, int, str | None]  # (imported module, line, enclosing function)


def _edges(tree: ast.AST, modules: dict[str, Path] | set[str]) -> tuple[list[Edge], list[tuple[str, str, int]]]:
    """Every muqkit module ``tree`` imports (``from package import module`` names the module, type-checking
    and function-level imports included), and every private name it takes: ``(module, name, line)``."""
    edges: list[Edge] = []
    private: list[tuple[str, str, int]] = []
    for node, function in _import_nodes(tree):
        if isinstance(node, ast.Import):
            edges.extend((a.name, node.lineno, function) for a in node.names if _is(a.name, "muqkit"))
            continue
        module = str(node.module)
        if not _is(module, "muqkit"):
            continue
        for alias in node.names:
            if f"{module}.{alias.name}" in modules:
                edges.append((f"{module}.{alias.name}", node.lineno, function))
                continue
            edges.append((module, node.lineno, function))
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                private.append((module, alias.name, node.lineno))
    return edges, private


def _allowed(importer: str, edge: Edge) -> bool:
    """The two documented exceptions: a ``from_pretrained`` / ``save_pretrained`` body delegating to the hub,
    and a function importing its own package (which registers the package's classes)."""
    module, _, function = edge
    if function in DELEGATORS and module == DELEGATE_TO:
        return True
    return function is not None and importer.rpartition(".")[0] == module


def _graph(sources: dict[str, str]) -> dict[str, dict[str, int]]:
    """``importer -> {imported module: first line}`` over ``sources`` (module name -> text), exceptions left out."""
    graph: dict[str, dict[str, int]] = {}
    for name, text in sources.items():
        edges, _ = _edges(ast.parse(text), set(sources))
        targets = graph.setdefault(name, {})
        for module, line, function in edges:
            if module in sources and module != name and not _allowed(name, (module, line, function)):
                targets.setdefault(module, line)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle through each strongly connected set of modules (Tarjan), as ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for component in components:  # a shortest way back to the start, inside the component
        start = min(component)
        paths = {start: [start]}
        frontier = [start]
        while frontier and start not in [t for n in frontier for t in graph[n]]:
            nxt = []
            for node in frontier:
                for target in sorted(graph[node]):
                    if target in component and target not in paths:
                        paths[target] = paths[node] + [target]
                        nxt.append(target)
            frontier = nxt
        last = next(n for n in frontier if start in graph[n])
        cycles.append(paths[last] + [start])
    return cycles


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(cycle[:-1], cycle[1:], strict=True)]
    return " -> ".join(steps) + f" -> {cycle[-1]}"


def _sources() -> dict[str, str]:
    return {name: path.read_text() for name, path in _modules().items()}


def test_no_import_cycles():
    """No cycle of any length, type-checking and function-level imports included (the former
    ``data.labels -> data.corpus_plan -> data.scores -> data.labels`` and ``cli.index <-> cli.mulan``)."""
    graph = _graph(_sources())
    assert len(graph) > 100, "src/muqkit was not found"
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(c, graph) for c in cycles)
    assert "muqkit.train.refine" not in graph["muqkit.train.pretrain"]


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    problems = []
    for name, path in modules.items():
        _, private = _edges(ast.parse(path.read_text()), set(modules))
        problems += [f"{path.relative_to(SRC.parent)}:{line} imports {module}.{attr}"
                     for module, attr, line in private if module != name]  # fmt: skip
    assert not problems, "private names imported from another module:\n" + "\n".join(problems)


def test_the_cycle_check_finds_long_cycles_and_knows_the_exceptions():
    sources = {
        "muqkit.a": "from muqkit.b import x\n",
        "muqkit.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from muqkit.c import y\n",
        "muqkit.c": "def f():\n    from muqkit import a\n",
        "muqkit": "",
        "muqkit.hub.loaders": "from muqkit.m import M\n",
        "muqkit.m": "class M:\n    def from_pretrained(self):\n        from muqkit.hub.loaders import load\n",
        "muqkit.p": "from muqkit.p.q import Q\n",
        "muqkit.p.q": "def registry():\n    import muqkit.p\n",
    }
    graph = _graph(sources)
    cycles = _cycles(graph)
    assert cycles == [["muqkit.a", "muqkit.b", "muqkit.c", "muqkit.a"]]
    assert "muqkit.c (line 2) -> muqkit.a" in _describe(cycles[0], graph)
    sources["muqkit.m"] = "from muqkit.hub.loaders import load\n"  # a module-level import is no delegator
    assert ["muqkit.hub.loaders", "muqkit.m", "muqkit.hub.loaders"] in _cycles(_graph(sources))


def test_the_private_check_names_the_import():
    edges, private = _edges(ast.parse("from muqkit.eval.probes import _Head, Probe\nfrom muqkit import __version__\n"),
                            {"muqkit.eval.probes"})  # fmt: skip
    assert private == [("muqkit.eval.probes", "_Head", 1)]
    assert [e[0] for e in edges] == ["muqkit.eval.probes", "muqkit.eval.probes", "muqkit"]


def test_inference_and_data_import_no_training_module():
    """Embedding, evaluation, HEAR and the data layer read files through ``data/``, never through ``train/``."""
    inference = [p for package in ("embed", "eval", "data") for p in sorted((SRC / package).rglob("*.py"))]
    inference += [SRC / "hear.py", SRC / "cli" / "embed.py", SRC / "cli" / "probe.py"]
    problems = []
    for path in inference:
        for module, line, _ in _imports(ast.parse(path.read_text())):
            if _is(module, "muqkit.train") or _is(module, "lightning"):
                problems.append(f"{path.relative_to(SRC.parent)}:{line} imports {module}")
    assert len(inference) > 20 and not problems, "\n".join(problems)


def test_benchmark_integrations_sit_above_the_library():
    """``integrations/`` (MTEB, hear-eval-kit) composes inference and the hub; nothing in the library imports it,
    and it imports no training, CLI or Lightning."""
    assert (SRC / "integrations" / "mteb_encoder.py").is_file() and (SRC / "integrations" / "hear_eval.py").is_file()
    below = [p for p in LIBRARY_PACKAGES if p != "integrations"]
    problems = [v for package in below for v in _imports_of(package, ("muqkit.integrations",))]
    problems += _imports_of("integrations", ("muqkit.train", "muqkit.cli", "muqkit.recipes", "lightning"))
    assert not problems, "\n".join(problems)
