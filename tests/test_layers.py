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


def _imports(tree: ast.AST) -> list[tuple[str, int, str | None]]:
    """``(module, line, enclosing function)`` of every absolute import in ``tree``."""
    found: list[tuple[str, int, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, function))
            visit(child, function)

    visit(tree, None)
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


def _module_imports(packages: tuple[str, ...]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for package in packages:
        for path in sorted((SRC / package).rglob("*.py")):
            name = "muqkit." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
            found[name] = {m for m, _, _ in _imports(ast.parse(path.read_text())) if _is(m, "muqkit")}
    return found


def test_no_two_modules_of_data_or_train_import_each_other():
    """The former ``train.pretrain <-> train.refine`` (labels) and ``data.files <-> data.loader`` kind of cycle."""
    imports = _module_imports(("data", "train"))
    assert "muqkit.train.pretrain" in imports and "muqkit.data.labels" in imports
    pairs = sorted({tuple(sorted((a, b))) for a, targets in imports.items() for b in targets
                    if b != a and a in imports.get(b, set())})  # fmt: skip
    assert not pairs, f"modules importing each other: {pairs}"
    assert "muqkit.train.refine" not in imports["muqkit.train.pretrain"]


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
