"""CLI defaults are the config dataclasses' defaults; one vocabulary, old spellings kept as hidden aliases."""

from __future__ import annotations

import argparse

import pytest

from muqkit.cli.main import build_parser
from muqkit.cli.options import field_default, field_option, resolve_field


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _bound_options():
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if hasattr(action, "config_field"):
                yield " ".join(path), action


def test_every_bound_option_has_its_fields_default():
    pytest.importorskip("lightning")
    bound = list(_bound_options())
    commands = {command for command, _ in bound}
    assert {"tokenizer train", "mulan train", "refine"} <= commands
    assert len(bound) >= 25
    wrong = []
    for command, action in bound:
        config, name = resolve_field(action.config_field)
        assert action.dest == name, f"{command} {action.option_strings[0]}: dest {action.dest} is not {name}"
        if action.default != field_default(config, name):
            wrong.append(f"{command} {action.option_strings[0]}: {action.default!r} on the command line, "
                         f"{field_default(config, name)!r} in {config.__name__}.{name}")  # fmt: skip
    assert not wrong, "CLI defaults differ from their dataclass fields:\n" + "\n".join(wrong)


def test_the_check_catches_a_drifted_default():
    pytest.importorskip("lightning")
    parser = argparse.ArgumentParser()
    action = field_option(parser, "--max-steps", "muqkit.train.tokenizer:TokenizerTrainingConfig.max_steps", 999)
    config, name = resolve_field(action.config_field)
    assert action.default != field_default(config, name) == 2000


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["tokenizer", "train", "d", "o", "--steps", "7"], "max_steps", 7),
        (["tokenizer", "train", "d", "--out", "o", "--max-steps", "7"], "max_steps", 7),
        (["tokenizer", "train", "d", "o", "--workers", "2"], "num_workers", 2),
        (["pretrain", "m.jsonl", "--out", "o", "--steps", "5"], "max_steps", 5),
        (["pretrain", "m.jsonl", "--out", "o", "--num-workers", "3"], "num_workers", 3),
        (["mulan", "train", "--manifest", "m", "--out", "o", "--steps", "4"], "max_steps", 4),
        (["mulan", "train", "--manifest", "m", "--out", "o", "--clip-secs", "2.5"], "clip_seconds", 2.5),
        (["mulan", "train", "--manifest", "m", "--out", "o", "--clip-seconds", "3"], "clip_seconds", 3.0),
    ],
)
def test_one_vocabulary_with_the_old_spellings_hidden(argv, dest, value):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value


def test_hidden_aliases_stay_out_of_the_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["tokenizer"]._actions[-1].choices["train"].format_help()
    assert "--max-steps" in text and "--num-workers" in text and "--out" in text
    assert "--steps" not in text.replace("--max-steps", "") and "--workers" not in text.replace("--num-workers", "")


def test_configs_are_built_from_the_options_of_their_fields():
    pytest.importorskip("lightning")
    from muqkit.cli.options import config_from_args
    from muqkit.train.mulan import MuLanTrainConfig

    argv = ["mulan", "train", "--manifest", "m", "--out", "o", "--lr", "0.5", "--seed", "3", "--preset", "test"]
    args = build_parser().parse_args(argv)
    config = config_from_args(MuLanTrainConfig, args, manifests=("m",), resume=False)
    assert (config.out, config.lr, config.seed, config.preset, config.resume) == ("o", 0.5, 3, "test", False)
    assert config.max_steps == 1000 and config.train_split == MuLanTrainConfig.train_split  # defaults kept
    with pytest.raises(TypeError, match="no fields"):
        config_from_args(MuLanTrainConfig, args, manifests=("m",), resumed=True)
