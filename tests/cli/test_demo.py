"""``muqkit demo --quick``: the whole pipeline at toy sizes (needs fluidsynth and a GM soundfont)."""

from __future__ import annotations

import json

import pytest

from muqkit.recipes.demo import QUICK, plan_for


def test_verdict_is_computed_from_the_table():
    from muqkit.eval.suite import ResultRow
    from muqkit.recipes.demo import RANDOM_START, verdict

    def row(model, task, mean):
        return ResultRow(model, task, "linear", "best:0", "accuracy", mean, 0.0, mean, {})

    rows = [row("muq-melrvq-iter1", "key", 0.6), row(RANDOM_START, "key", 0.5), row("mel", "key", 0.7),
            row("muq-melrvq-iter1", "pitch", 0.4), row(RANDOM_START, "pitch", 0.6), row("mel", "pitch", 0.8)]
    text = verdict(rows, ["key", "pitch"], 600, test_items=40)
    assert "below its random-weight start on average (0.500 vs 0.550 over 2 tasks; higher on 1 of 2)" in text
    assert "has not yet added" in text
    assert "too few" in verdict(rows, ["key", "pitch"], 600, test_items=12)


def test_official_comparison_reads_the_record():
    from muqkit.recipes.demo import official_comparison

    record = {"steps": 800, "seeds": [0, 1, 2], "official": {"mean": 0.45, "start": 0.35, "spread": 0.01},
              "muqkit": {"mean": 0.40, "start": 0.35, "spread": 0.01}}
    text = official_comparison(record)
    assert "official MuQ code ends above its random-weight start (0.450 vs 0.350" in text
    assert "muqkit's trainer at 0.400" in text and "learns more" in text
    record["muqkit"]["mean"] = 0.445
    assert "within the seed spread" in official_comparison(record)


def test_plan_scales_with_the_budget():
    assert plan_for(15, quick=False).pretrain_steps == 600
    assert plan_for(30, quick=False).pretrain_steps == 1200
    assert plan_for(15, quick=True) == QUICK


def test_quick_demo_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MUQKIT_HOME", str(tmp_path / "home"))  # the demo installs its model as the default
    from muqkit.data.corpus.fluidsynth import SystemRequirementError, require_fluidsynth

    try:
        require_fluidsynth()
    except SystemRequirementError as exc:
        pytest.skip(str(exc))
    from muqkit.cli.main import main
    from muqkit.ssl.muq import MuQ

    assert main(["demo", "--out", str(tmp_path / "demo"), "--quick", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "muq-melrvq-iter2" in out and "random-start" in out
    assert "too few to tell the models apart" in out  # the quick corpus's test sets are tiny
    assert (tmp_path / "demo" / "curve" / "curve.json").is_file()
    model = MuQ.from_pretrained(tmp_path / "demo" / "model")
    assert model.config.encoder_depth == 2
    assert (tmp_path / "demo" / "report" / "results.json").is_file()
    from muqkit.hub.defaults import default_muq_model

    assert default_muq_model() == str(tmp_path / "home" / "default-model")
    from muqkit.data.loader import load_records
    from muqkit.embed.api import model_fingerprint
    from muqkit.search import open_index

    # the demo's last step: a FAISS index of MuQ latents that `muqkit serve --index` reads
    index = open_index(tmp_path / "demo" / "index", model_sha256=model_fingerprint(model))
    pieces = load_records([next((tmp_path / "demo" / "corpus").rglob("scores.jsonl"))], splits=None)
    assert sorted(index.absolute_paths) == sorted(str(p.absolute()) for _, p in pieces)
    assert index.vectors().shape == (len(pieces), model.config.encoder_dim)
    assert index.meta.source == f"muq-mean:layer_{model.config.encoder_depth}"
    assert index.meta.model_id == str((tmp_path / "demo" / "model").absolute())

    # a demo made with other settings is not resumed (its finished steps would be reused as they are)
    plan_file = tmp_path / "demo" / "plan.json"
    plan = json.loads(plan_file.read_text())
    plan_file.write_text(json.dumps({**plan, "pretrain_preset": {**plan["pretrain_preset"], "lr": 0.002}}))
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quick", "--no-plots", "--resume"]) == 2
    assert "(pretrain_preset.lr 0.002 -> 0.0002); pass --overwrite" in capsys.readouterr().err
