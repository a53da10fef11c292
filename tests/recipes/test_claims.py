"""The claims checker reads verdicts off the numbers (it can say no)."""

from __future__ import annotations

import pytest

from muqkit.eval.suite import ResultRow
from muqkit.recipes.claims import HANDCRAFTED, RANDOM, TRAINED, arm_of, check_claims, claims_markdown, summarise


def _row(model: str, task: str, mean: float, *, layer: str = "best:1", std: float = 0.0) -> ResultRow:
    return ResultRow(model, task, "linear", layer, "accuracy", mean, std, mean, {"accuracy": mean})


def _rows(scores: dict[str, list[float]], tasks=("key", "pitch")) -> list[ResultRow]:
    rows = []
    for arm, per_seed in scores.items():
        for task in tasks:
            if arm in HANDCRAFTED:
                rows.append(_row(arm, task, per_seed[0], layer="-", std=0.01))
            else:
                rows += [_row(f"{arm}:s{s}", task, v) for s, v in enumerate(per_seed)]
    # rows the summary must ignore: another head and a weighted-layer probe
    rows.append(ResultRow(f"{TRAINED[0]}:s0", "key", "mlp", "best:0", "accuracy", 0.0, 0.0, 0.0, {}))
    rows.append(_row(f"{TRAINED[0]}:s0", "key", 0.0, layer="weighted"))
    return rows


def test_arm_of():
    assert arm_of("muq-bestrq:s2") == "muq-bestrq"
    assert arm_of("chroma") == "chroma"


def test_summary_is_mean_and_sample_std_over_seeds():
    summary = summarise(_rows({TRAINED[0]: [0.5, 0.6, 0.7], "mel": [0.4]}))
    score = summary[TRAINED[0]]["key"]
    assert score.mean == pytest.approx(0.6) and score.std == pytest.approx(0.1)
    assert score.runs == pytest.approx((0.5, 0.6, 0.7))
    assert summary["mel"]["pitch"].std == pytest.approx(0.01)  # a handcrafted feature keeps its probe spread


def test_claims_hold_or_fail_on_the_numbers():
    good = {
        TRAINED[0]: [0.70, 0.71, 0.72], TRAINED[1]: [0.60, 0.70, 0.50], TRAINED[2]: [0.75, 0.75, 0.76],
        RANDOM: [0.4, 0.41, 0.42], "mel": [0.5], "mfcc": [0.3], "chroma": [0.6],
    }  # fmt: skip
    claims = check_claims(summarise(_rows(good)), ["key", "pitch"])
    assert [c.holds for c in claims] == [True] * 5
    bad = {**good, TRAINED[0]: [0.30, 0.60, 0.45], TRAINED[2]: [0.2, 0.2, 0.2]}
    claims = {c.name: c for c in check_claims(summarise(_rows(bad)), ["key", "pitch"])}
    assert not claims["Mel-RVQ MuQ beats the handcrafted baselines"].holds
    assert not claims["Mel-RVQ has a smaller spread across seeds than BEST-RQ"].holds
    assert not claims["iteration 2 does at least as well as iteration 1 on average"].holds
    assert claims["Mel-RVQ MuQ beats a random-weight MuQ"].holds
    text = claims_markdown(summarise(_rows(bad)), list(claims.values()), ["key", "pitch"], {"key": "accuracy"})
    assert "| iteration 2 does at least as well as iteration 1 on average | no |" in text


def test_missing_arm_is_an_error():
    with pytest.raises(ValueError, match="missing"):
        check_claims(summarise(_rows({TRAINED[0]: [0.5]})), ["key"])
