"""User errors across the commands: one line on stderr, exit status 2, no traceback (``--debug`` shows it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.cli.main import main
from muqkit.runfolder import RunFolderError, prepare_run_folder
from tests.conftest import one_line_error  # noqa: E402

SR = 24000


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from muqkit.tokenizer import MelRVQ, MelRVQConfig

    folder = tmp_path_factory.mktemp("tok") / "tokenizer"
    MelRVQ(MelRVQConfig(num_codebooks=2, codebook_size=32)).save_pretrained(folder)
    return folder


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    return path


def test_a_truncated_model_file_is_named(tmp_path: Path, checkpoint: Path, song: Path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    (broken / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes()[:5000])
    assert main(["embed", str(song), "--out", str(tmp_path / "emb"), "--model", str(broken), "--no-progress"]) == 2
    one_line_error(capsys, "broken/model.safetensors: corrupt or truncated safetensors file")
    (broken / "model.safetensors").write_bytes(b"\xff" * 16)  # "header too large"
    assert main(["embed", str(song), "--out", str(tmp_path / "emb"), "--model", str(broken), "--no-progress"]) == 2
    one_line_error(capsys, "model.safetensors: corrupt or truncated")


def test_out_pointing_at_a_file(tmp_path: Path, checkpoint: Path, song: Path, capsys) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["embed", str(song), "--out", str(target), "--model", str(checkpoint), "--no-progress"]) == 2
    one_line_error(capsys, "a-file: exists and is not a folder")
    assert main(["probe", "--model", "mel", "--task", "key", "--out", str(target)]) == 2
    one_line_error(capsys, "a-file: exists and is not a folder")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--chunk-seconds", "inf"], "must be a finite number > 0"),
        (["--chunk-seconds", "nan"], "must be a finite number > 0"),
        (["--batch-size", "-1"], "must be at least 1"),
        (["--device", "nonsense"], "not a torch device"),
    ],
)
def test_bad_options_name_the_option(tmp_path, checkpoint, song, capsys, option, message) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", str(song), "--out", str(tmp_path / "emb"), "--model", str(checkpoint), *option])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option[0] in err and message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda(tmp_path: Path, checkpoint: Path, song: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", str(song), "--out", str(tmp_path / "emb"), "--model", str(checkpoint), "--device", "cuda"])
    assert exit_info.value.code == 2 and "CUDA is not available" in capsys.readouterr().err


def test_bad_manifest_lines_name_the_file_and_line(tmp_path: Path, song: Path, tokenizer: Path, capsys) -> None:
    manifest = tmp_path / "corpus.jsonl"
    manifest.write_text('{"not": "a record"}\n{broken\n')
    assert main(["pretrain", str(manifest), "--out", str(tmp_path / "run"), "--tokenizer", str(tokenizer)]) == 2
    one_line_error(capsys, "corpus.jsonl:1: not an AudioRecord")
    listing = tmp_path / "files.txt"
    listing.write_text(f"{song}\n{{broken json\n")
    assert main(["tokenizer", "train", str(listing), str(tmp_path / "tok"), "--steps", "1"]) == 2
    one_line_error(capsys, "files.txt:2: not a JSON object")


def test_missing_and_corrupt_audio_are_named(tmp_path: Path, tokenizer: Path, capsys) -> None:
    tok = tokenizer
    assert main(["tokenizer", "encode", str(tok), str(tmp_path / "missing.wav"), "--out", str(tmp_path / "c")]) == 2
    one_line_error(capsys, "missing.wav: file not found")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\x00" * 100)
    assert main(["tokenizer", "encode", str(tok), str(bad), "--out", str(tmp_path / "c.safetensors")]) == 2
    one_line_error(capsys, "bad.wav: unreadable or corrupt audio")


def test_debug_shows_the_traceback(tmp_path: Path, tokenizer: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    args = ["tokenizer", "encode", str(tokenizer), str(tmp_path / "missing.wav"), "--out", str(tmp_path / "x")]
    assert main(args) == 2
    one_line_error(capsys, "missing.wav: file not found")
    from muqkit.audio.io import AudioError

    with pytest.raises(AudioError, match="file not found"):
        main(["--debug", *args])
    monkeypatch.setenv("MUQKIT_DEBUG", "1")
    with pytest.raises(AudioError):
        main(args)


def test_run_folder_rule(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert prepare_run_folder(run, owned=("model",)) == run and run.is_dir()  # new: created
    (run / "model").mkdir()
    (run / "model" / "w.bin").write_bytes(b"1")
    (run / "notes.txt").write_text("the user's own file")
    with pytest.raises(RunFolderError, match="already holds a run \\(model\\); pass --resume .* or --overwrite"):
        prepare_run_folder(run, owned=("model",))
    prepare_run_folder(run, resume=True, owned=("model",))
    assert (run / "model" / "w.bin").exists()
    prepare_run_folder(run, overwrite=True, owned=("model",))
    assert not (run / "model").exists() and (run / "notes.txt").exists()  # only what the command writes
    (run / "file").write_text("x")
    with pytest.raises(RunFolderError, match="not a folder"):
        prepare_run_folder(run / "file")


def test_an_interrupt_a_library_turned_into_an_exit_is_130(capsys, default_sigint) -> None:  # noqa: ANN001
    """Lightning's ``Trainer.fit`` catches Ctrl-C, shuts down, then calls ``sys.exit(1)``: still 130."""
    import argparse
    import signal
    import sys

    from muqkit.cli.errors import run_command

    def like_lightning(args: argparse.Namespace) -> int:
        try:
            signal.raise_signal(signal.SIGINT)  # to this thread, before raise_signal returns
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # as Lightning leaves it
            sys.exit(1)
        return 0

    before = signal.getsignal(signal.SIGINT)
    assert run_command(like_lightning, argparse.Namespace(), "muqkit finetune") == 130
    assert capsys.readouterr().err.strip() == "muqkit finetune: interrupted"
    assert signal.getsignal(signal.SIGINT) is before  # restored
    with pytest.raises(SystemExit):  # an exit without Ctrl-C is left alone
        run_command(lambda args: sys.exit(1), argparse.Namespace(), "muqkit x")


def test_faiss_import_lines_do_not_open_the_output(tmp_path: Path) -> None:
    import subprocess
    import sys

    pytest.importorskip("faiss")
    code = "from muqkit.cli.main import main; main(['index', 'info', '--index', '/nonexistent']); import faiss"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert "faiss.loader" not in result.stderr, result.stderr
    assert "not a muqkit search index" in result.stderr
    assert "index build" not in result.stderr and "`muqkit mulan index` or `muqkit index embeddings`" in result.stderr


def _unwritable_out_commands(missing: str, song: Path, folder: Path, file: Path) -> list[tuple[list[str], str, Path]]:
    """(arguments, option, path) of commands writing ``folder`` or ``file``; the ``missing`` model does not
    exist, so an error about it means the output was checked too late."""
    onnx, codes = file.with_suffix(".onnx"), file.with_suffix(".safetensors")
    return [
        (["predict", missing, str(song), "--out", str(file)], "--out", file),
        (["predict", missing, str(song), "--lab-dir", str(folder)], "--lab-dir", folder),
        (["tokenizer", "encode", missing, str(song), "--out", str(codes)], "--out", codes),
        (["mulan", "evaluate", "--manifest", missing, "--json", str(file)], "--json", file),
        (["export", "onnx", "--model", missing, "--out", str(onnx)], "--out", onnx),
        (["embed", str(song), "--out", str(folder), "--model", missing], "--out", folder),
        (["mulan", "index", str(song), "--out", str(folder), "--model", missing], "--out", folder),
        (["index", "embeddings", missing, "--layer", "1", "--out", str(folder)], "--out", folder),
        (["finetune", "--model", missing, "--task", "key", "--out", str(folder)], "--out", folder),
    ]


@pytest.mark.parametrize("where", ["proc", "under-a-file", "read-only"])
def test_an_unwritable_out_is_refused_before_any_work(tmp_path: Path, song: Path, capsys, where: str) -> None:  # noqa: ANN001
    """Named as the option and the path given (once a hidden temporary file, after the work ran)."""
    if where == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        parent = tmp_path / "locked"
        parent.mkdir()
        parent.chmod(0o555)
    elif where == "proc":
        parent = Path("/proc")
    else:
        parent = tmp_path / "a-file"
        parent.write_text("x")
    for args, option, path in _unwritable_out_commands(str(tmp_path / "no-model"), song, parent / "out",
                                                       parent / "out.jsonl"):  # fmt: skip
        assert main(args) == 2, args
        err = one_line_error(capsys, f"{option} {path}: ")
        assert "no-model" not in err and ".muqkit-tmp-" not in err, err


def test_a_folder_where_a_file_is_written_is_refused_before_any_work(tmp_path: Path, song: Path, capsys) -> None:  # noqa: ANN001
    onnx, jsonl = tmp_path / "taken.onnx", tmp_path / "taken.jsonl"
    onnx.mkdir()
    jsonl.mkdir()
    missing = str(tmp_path / "no-model")
    for args, option, path in [
        (["predict", missing, str(song), "--out", str(jsonl)], "--out", jsonl),
        (["mulan", "evaluate", "--manifest", missing, "--json", str(tmp_path)], "--json", tmp_path),
        (["export", "onnx", "--model", missing, "--out", str(onnx)], "--out", onnx),
    ]:
        assert main(args) == 2, args
        one_line_error(capsys, f"{option} {path}: is a folder")


def test_a_file_written_atomically_over_a_folder_names_the_folder(tmp_path: Path) -> None:
    from muqkit.atomic import atomic_path

    (tmp_path / "out.json").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder") as info, atomic_path(tmp_path / "out.json"):
        pass
    assert info.value.filename == str(tmp_path / "out.json")


def test_commands_without_resume_do_not_suggest_it(tmp_path: Path, song: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "idx"
    out.mkdir()
    (out / "meta.json").write_text("{}")
    assert main(["mulan", "index", str(song), "--out", str(out), "--model", str(tmp_path / "no-model")]) == 2
    err = one_line_error(capsys, "already holds a run (meta.json); pass --overwrite to replace it")
    assert "--resume" not in err
    with pytest.raises(RunFolderError, match=r"pass --overwrite to replace it, or choose another folder"):
        prepare_run_folder(out, owned=("meta.json",), resumable=False)


def test_export_layers_are_checked_before_the_model_loads(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    import muqkit.embed.api as api

    monkeypatch.setattr(api, "load_muq", lambda *a, **kw: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as info:
        main(["export", "onnx", "--layers", "abc", "--out", str(tmp_path / "m.onnx")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--layers" in err and "expected 'all' or comma-separated integers" in err and "Traceback" not in err
