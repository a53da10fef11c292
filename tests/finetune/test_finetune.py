"""Fine-tuning on a fabricated frame task: modes, layer-wise learning rates, saved outputs, predict, CLI."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("lightning")
pytest.importorskip("mir_eval")

from muqkit import MuQ  # noqa: E402
from muqkit.eval.dummies import make_frame_corpus  # noqa: E402
from muqkit.eval.frames import load_frame_task  # noqa: E402
from muqkit.finetune.lora import LoRAConfig  # noqa: E402
from muqkit.finetune.model import HeadSpec, TaskHead, TaskModel  # noqa: E402
from muqkit.finetune.predict import load_finetuned, predict_files  # noqa: E402
from muqkit.finetune.train import FineTuneConfig, finetune, layerwise_groups  # noqa: E402


def test_layerwise_learning_rates():
    muq = MuQ.from_preset("tiny", seed=0)
    head = TaskHead(HeadSpec("key", "key", 24, 3, 64))
    groups = layerwise_groups(TaskModel(muq, head), FineTuneConfig(mode="full", lr=1e-4, head_lr=1e-2, layer_decay=0.5))
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs == {"head": 1e-2, "layer0": 1e-4 * 0.25, "layer1": 1e-4 * 0.5, "layer2": 1e-4}
    assert sum(len(g["params"]) for g in groups) == len(list(muq.parameters())) + len(list(head.parameters()))


@pytest.mark.parametrize("mode", ["freeze", "lora", "full"])
def test_finetune_saves_a_loadable_model_and_head(tmp_path, mode):
    make_frame_corpus(tmp_path)
    task = load_frame_task("beat", tmp_path)
    original = MuQ.from_preset("tiny", seed=0)
    reference = {k: v.clone() for k, v in original.state_dict().items()}
    config = FineTuneConfig(
        mode=mode, max_epochs=2, batch_size=2, lr=1e-3, lora=LoRAConfig(targets=("attention", "conv"))
    )
    result = finetune(original, task, tmp_path / "run", config)
    report = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert report["trainable_parameters"] == result.trainable and set(result.test) == {"beat_f", "downbeat_f"}
    head_params = 3 + 64 * 2 + 2
    if mode == "freeze":
        assert result.trainable == head_params
    elif mode == "lora":
        assert head_params < result.trainable < sum(v.numel() for v in reference.values()) / 4
        assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    # the saved backbone is a plain MuQ: unchanged when frozen, changed otherwise
    saved = MuQ.from_pretrained(tmp_path / "run" / "model")
    changed = any(not torch.equal(saved.state_dict()[k], reference[k]) for k in reference if "num_batches" not in k)
    assert changed == (mode != "freeze")
    # predict runs the saved backbone and head
    model = load_finetuned(tmp_path / "run")
    (prediction,) = predict_files(model, [tmp_path / "c4.wav"])
    assert prediction["task"] == "beat" and isinstance(prediction["beats"], list)


def test_cli_finetune_then_predict(tmp_path, capsys):
    from muqkit.cli.main import main

    make_frame_corpus(tmp_path)
    out = tmp_path / "run"
    args = ["finetune", "--model", "random:tiny", "--task", "onset", "--corpus", str(tmp_path), "--mode", "lora",
            "--out", str(out), "--max-epochs", "1", "--batch-size", "3", "--lora-targets", "linear_q,ffn"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mode"] == "lora"
    assert main(args) == 2  # a finished run is not overwritten
    assert main(["predict", str(out), str(tmp_path / "c0.wav"), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert "onsets" in json.loads((tmp_path / "p.jsonl").read_text())
    bad = [*args[:-1], "q_proj", "--overwrite"]
    assert main(bad) == 2
    assert "unknown LoRA target 'q_proj'" in capsys.readouterr().err
    assert (out / "finetune.json").is_file()  # a refused command replaces nothing
    (out / "finetune.json").unlink()  # as if interrupted: checkpoints, no finished run
    assert main(args) == 2
    assert "pass --resume to continue it or --overwrite" in capsys.readouterr().err
    (out / "checkpoints" / "stale.ckpt").write_bytes(b"")
    assert main([*args, "--overwrite"]) == 0
    assert not (out / "checkpoints" / "stale.ckpt").exists() and (out / "finetune.json").is_file()


def test_a_batch_without_labelled_frames_has_zero_loss(tmp_path):
    import dataclasses

    from muqkit.eval.frames import FRAME_TASKS
    from muqkit.finetune.train import _as_task, _FineTuneTask

    make_frame_corpus(tmp_path)
    task = dataclasses.replace(load_frame_task("onset", tmp_path), spec=FRAME_TASKS["chord"])  # no chords: all IGNORE
    spec = HeadSpec("chord", "classes", 25, 3, 64)
    loss = _FineTuneTask(TaskModel(MuQ.from_preset("tiny", seed=0), TaskHead(spec)), _as_task(task)).loss(
        {"wavs": torch.randn(2, 24000), "lengths": torch.tensor([24000, 24000]), "ids": ["c0", "c1"]}
    )
    assert float(loss) == 0.0


@pytest.mark.parametrize(("option", "value"), [("--lr", "nan"), ("--lr", "inf"), ("--head-lr", "nan"),
                                               ("--layer-decay", "nan"), ("--max-seconds", "-inf")])  # fmt: skip
def test_non_finite_learning_rates_are_refused_by_name(tmp_path, capsys, option, value):
    from muqkit.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["finetune", "--model", "random:tiny", "--task", "onset", "--corpus", str(tmp_path), "--out",
              str(tmp_path / "run"), f"{option}={value}"])  # fmt: skip
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be a finite number > 0, got '{value}'" in err and "Traceback" not in err
    with pytest.raises(ValueError, match=r"FineTuneConfig.head_lr must be a finite number > 0, got nan"):
        FineTuneConfig(head_lr=float("nan"))
    with pytest.raises(ValueError, match=r"FineTuneConfig.lr must be a finite number > 0, got inf"):
        FineTuneConfig(lr=float("inf"))


def test_resume_names_the_setting_that_differs(tmp_path, capsys):
    """Once a state-dict dump from Lightning; now one line naming the option, before the model loads."""
    from muqkit.cli.main import main

    make_frame_corpus(tmp_path)
    out = tmp_path / "run"
    args = ["finetune", "--model", "random:tiny", "--task", "onset", "--corpus", str(tmp_path), "--out", str(out),
            "--max-epochs", "1", "--batch-size", "3", "--lora-rank", "2", "--lora-targets", "linear_q"]  # fmt: skip
    assert main(args) == 0
    (out / "finetune.json").unlink()  # as if interrupted after its checkpoints
    capsys.readouterr()
    for change, needle in [
        (["--mode", "full"], "--mode lora, not --mode full"),
        (["--task", "beat"], "--task onset, not --task beat"),
        (["--head", "mlp"], "--head linear, not --head mlp"),
        (["--lora-rank", "4"], "--lora-rank 2, not --lora-rank 4"),
        (["--lora-targets", "linear_q,ffn"], "--lora-targets linear_q, not --lora-targets linear_q,ffn"),
        (["--model", "random:small"], "a --model of 2 Conformer layers of width 64, not one of 8"),
    ]:
        assert main([*args, *change, "--resume"]) == 2, change
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err and "state_dict" not in err, err
        assert f"the run in {out} was made with {needle}" in err, err
    # a run from before the settings were recorded: the checkpoint's weights are compared
    (out / "run_config.json").unlink()
    assert main([*args, "--mode", "full", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "last.ckpt was made with other settings" in err, err
    assert main([*args, "--resume"]) == 0  # the same settings resume


def test_ctrl_c_during_finetune_exits_130(tmp_path, monkeypatch, capsys, default_sigint):
    """Lightning catches Ctrl-C and exits 1; the command reports the interrupt (130), as `tokenizer train`."""
    import signal

    from muqkit.cli.main import main
    from muqkit.finetune import train as train_module

    make_frame_corpus(tmp_path)

    def interrupted(self, batch):
        # to this thread, before raise_signal returns; the handler's KeyboardInterrupt comes next
        signal.raise_signal(signal.SIGINT)
        return {"loss": self.loss(batch)}

    monkeypatch.setattr(train_module._FineTuneTask, "training_step", interrupted)
    before = signal.getsignal(signal.SIGINT)
    args = ["finetune", "--model", "random:tiny", "--task", "onset", "--corpus", str(tmp_path), "--out",
            str(tmp_path / "run"), "--max-epochs", "1", "--batch-size", "3"]  # fmt: skip
    assert main(args) == 130
    assert "muqkit finetune: interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before


def test_predict_lab_dir_needs_a_chord_model_before_predicting(tmp_path, capsys):
    from muqkit.cli.main import main
    from muqkit.finetune.model import save_head

    save_head(TaskHead(HeadSpec("key", "key", 24, 3, 64, classes=tuple(f"k{i}" for i in range(24)))), tmp_path)
    # no model folder: a check after loading it (or after predicting) would fail otherwise
    assert main(["predict", str(tmp_path), str(tmp_path / "a.wav"), "--lab-dir", str(tmp_path / "labs")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--lab-dir: " in captured.err and "is a key model" in captured.err
