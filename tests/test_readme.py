"""The Python examples of the README and docs/ run, and every documented muqkit command parses. Hub
downloads are replaced by local stand-ins: a tiny random MuQ, a random Mel-RVQ,
and the official-format MuQ-MuLan fixture in ../shared/parity (the MuLan example skips without it)."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    """The Python examples of the README and of docs/ (each distinct block once)."""
    texts = [README.read_text(), *(p.read_text() for p in sorted((README.parent / "docs").glob("*.md")))]
    blocks = [b for t in texts for b in re.findall(r"```python\n(.*?)```", t, flags=re.S) if "muqkit" in b]
    return list(dict.fromkeys(blocks))


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(index, monkeypatch):
    from muqkit import MuQ

    block = python_blocks()[index]
    real = MuQ.from_pretrained.__func__

    def offline(cls, id_or_folder, **kwargs):
        if Path(str(id_or_folder)).is_dir():
            return real(cls, id_or_folder, **kwargs)
        return MuQ.from_preset("tiny").eval()

    monkeypatch.setattr(MuQ, "from_pretrained", classmethod(offline))
    from muqkit.tokenizer.mel_rvq import MelRVQ, MelRVQConfig

    monkeypatch.setattr(MelRVQ, "from_pretrained", classmethod(lambda cls, _id, **kw: MelRVQ(MelRVQConfig()).eval()))
    parity = README.parent.parent / "shared" / "parity"
    if "../shared/parity" in block or "MuQMuLan" in block:
        if not parity.is_dir():
            pytest.skip("needs ../shared/parity")
        monkeypatch.chdir(README.parent)
    if "MuQMuLan" in block:
        from muqkit import MuQMuLan

        fixture = parity / "mulan_small" / "mulan"
        real_mulan = MuQMuLan.from_pretrained.__func__
        monkeypatch.setattr(MuQMuLan, "from_pretrained",
                            classmethod(lambda cls, _id, **kw: real_mulan(cls, fixture, **kw)))
    namespace = {"wavs": torch.randn(2, 24000 * 5)}
    with torch.no_grad():
        exec(compile(block, f"README block {index}", "exec"), namespace)


DOCS = sorted((README.parent / "docs").glob("*.md"))


def shell_commands() -> list[tuple[str, str]]:
    """Every ``muqkit ...`` command line of the bash blocks of the README and docs/ (continuations joined)."""
    found = []
    for path in [README, *DOCS]:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    command = part.split("  #")[0].strip()
                    if command.startswith("muqkit "):
                        found.append((path.name, command))
    return found


@pytest.mark.parametrize(("doc", "command"), shell_commands())
def test_documented_command_parses(doc, command, monkeypatch):
    """The command, its sub-command and every option exist (argparse exits 2 on anything unknown)."""
    import shlex

    from muqkit.cli.main import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{command}` does not parse (exit {exc.code})")
    assert hasattr(args, "func"), f"{doc}: `{command}` names no command"

