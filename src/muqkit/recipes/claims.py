"""The paper's claims at small scale (``muqkit claims``).

Every arm is pretrained with the same preset and the same budget (:class:`~muqkit.recipes.demo.DemoPlan`)
once per training seed: MuQ on Mel-RVQ codes (iteration 1), MuQ on random-projection (BEST-RQ) codes,
and one refinement iteration of the first (iteration 2). They are probed with the evaluation suite
next to a random-weight MuQ (one per seed) and the handcrafted baselines, and three claims are checked
on the numbers:

1. MuQ with Mel-RVQ targets beats a random-weight MuQ and the handcrafted baselines;
2. Mel-RVQ targets do at least as well as BEST-RQ targets, with a smaller spread across seeds;
3. the refined (iteration 2) model does at least as well as iteration 1 on average.

A claim's verdict is computed, never asserted: :func:`check_claims` compares the means over tasks of
the per-task means over seeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from muqkit.atomic import atomic_path
from muqkit.eval.suite import ResultRow
from muqkit.recipes.demo import DemoPlan, train_arms

log = logging.getLogger(__name__)

CLAIMS_PLAN = dataclasses.replace(
    DemoPlan(),
    corpus="small",
    rvq_steps=400,
    pretrain_steps=800,
    refine_rvq_steps=400,
    crop_seconds=4.0,
    batch_size=8,
    num_codebooks=8,
    codebook_size=1024,
    tasks=("key", "collection", "dance", "tags", "instrument", "pitch"),
    probe_seeds=(0,),
    latent_seconds=3600.0,
    tokenizer_seconds=7200.0,
)
"""The default plan: the paper's 8 x 1024 codebooks, a tiny MuQ, 800 steps of 8 x 4 s crops per arm."""

HANDCRAFTED: tuple[str, ...] = ("mel", "mfcc", "chroma")
TRAINED: tuple[str, ...] = ("muq-melrvq-iter1", "muq-bestrq", "muq-melrvq-iter2")
RANDOM = "random-muq"
PRETRAIN_MANIFESTS: tuple[str, ...] = ("scores.jsonl", "notes.jsonl", "game.jsonl")


@dataclass(frozen=True)
class ArmScore:
    """One arm on one task: mean and sample standard deviation over its runs.

    ``runs`` are the per-seed test scores (training seeds for MuQ arms; probe seeds for the
    deterministic handcrafted features, whose spread is the probe's only).
    """

    mean: float
    std: float
    runs: tuple[float, ...]


@dataclass(frozen=True)
class Claim:
    """A claim, whether it holds on the measured numbers, and the numbers."""

    name: str
    holds: bool
    detail: str


def arm_of(model: str) -> str:
    """The arm of a model spec: ``muq-bestrq:s1`` -> ``muq-bestrq``; handcrafted specs are their own arm."""
    return model.split(":s")[0]


def summarise(rows: Sequence[ResultRow], *, head: str = "linear") -> dict[str, dict[str, ArmScore]]:
    """Per arm and task, the mean and spread of the test score over seeds.

    A multi-layer model contributes its best-on-validation layer (``best:K`` rows); a handcrafted
    feature its single row, whose runs are its probe seeds.
    """
    runs: dict[str, dict[str, list[float]]] = {}
    out: dict[str, dict[str, ArmScore]] = {}
    for row in rows:
        if row.head != head or not (row.layer == "-" or row.layer.startswith("best")):
            continue
        arm = arm_of(row.model)
        if arm in HANDCRAFTED:  # deterministic features: the spread is the probe seeds'
            out.setdefault(arm, {})[row.task] = ArmScore(row.mean, row.std, ())
        else:
            runs.setdefault(arm, {}).setdefault(row.task, []).append(row.mean)
    for arm, tasks in runs.items():
        for task, values in tasks.items():
            v = np.asarray(values, dtype=np.float64)
            std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            out.setdefault(arm, {})[task] = ArmScore(float(v.mean()), std, tuple(float(x) for x in values))
    return out


def _average(scores: Mapping[str, ArmScore], tasks: Sequence[str]) -> float:
    return float(np.mean([scores[t].mean for t in tasks]))


def _spread(scores: Mapping[str, ArmScore], tasks: Sequence[str]) -> float:
    return float(np.mean([scores[t].std for t in tasks]))


def check_claims(summary: Mapping[str, Mapping[str, ArmScore]], tasks: Sequence[str]) -> list[Claim]:
    """Check the three claims on a :func:`summarise` table (only tasks every arm has count)."""
    needed = [RANDOM, *TRAINED, *HANDCRAFTED]
    missing = [a for a in needed if a not in summary]
    if missing:
        raise ValueError(f"claims need every arm; missing {missing}")
    tasks = [t for t in tasks if all(t in summary[a] for a in needed)]
    if not tasks:
        raise ValueError("no task was measured for every arm")
    mel, bestrq, iter2, rand = (summary[a] for a in (*TRAINED[:1], TRAINED[1], TRAINED[2], RANDOM))

    def wins(a: Mapping[str, ArmScore], b: Mapping[str, ArmScore]) -> int:
        return sum(a[t].mean > b[t].mean for t in tasks)

    n = len(tasks)
    claims = []
    avg = {a: _average(summary[a], tasks) for a in needed}
    claims.append(Claim(
        "Mel-RVQ MuQ beats a random-weight MuQ",
        avg[TRAINED[0]] > avg[RANDOM],
        f"mean over {n} tasks {avg[TRAINED[0]]:.3f} vs {avg[RANDOM]:.3f}; higher on {wins(mel, rand)} of {n} tasks",
    ))  # fmt: skip
    best_hand = max(HANDCRAFTED, key=lambda a: avg[a])
    per_task_best = {t: max(summary[a][t].mean for a in HANDCRAFTED) for t in tasks}
    beats_best = sum(mel[t].mean > per_task_best[t] for t in tasks)
    claims.append(Claim(
        "Mel-RVQ MuQ beats the handcrafted baselines",
        all(avg[TRAINED[0]] > avg[a] for a in HANDCRAFTED),
        f"mean over tasks {avg[TRAINED[0]]:.3f} vs " + ", ".join(f"{a} {avg[a]:.3f}" for a in HANDCRAFTED)
        + f" (best: {best_hand}); above the best handcrafted feature of each task on {beats_best} of {n} tasks",
    ))  # fmt: skip
    claims.append(Claim(
        "Mel-RVQ targets do at least as well as BEST-RQ targets",
        avg[TRAINED[0]] >= avg[TRAINED[1]],
        f"mean over tasks {avg[TRAINED[0]]:.3f} vs {avg[TRAINED[1]]:.3f}; higher on {wins(mel, bestrq)} of {n} tasks",
    ))  # fmt: skip
    s_mel, s_rq = _spread(mel, tasks), _spread(bestrq, tasks)
    claims.append(Claim(
        "Mel-RVQ has a smaller spread across seeds than BEST-RQ",
        s_mel < s_rq,
        f"mean over tasks of the std across training seeds {s_mel:.4f} vs {s_rq:.4f}",
    ))  # fmt: skip
    claims.append(Claim(
        "iteration 2 does at least as well as iteration 1 on average",
        avg[TRAINED[2]] >= avg[TRAINED[0]],
        f"mean over tasks {avg[TRAINED[2]]:.3f} vs {avg[TRAINED[0]]:.3f}; higher on {wins(iter2, mel)} of {n} tasks",
    ))  # fmt: skip
    return claims


def claims_markdown(
    summary: Mapping[str, Mapping[str, ArmScore]],
    claims: Sequence[Claim],
    tasks: Sequence[str],
    metrics: Mapping[str, str],
    *,
    command: str = "",
) -> str:
    """The results table (mean ± std per arm and task) and the verdicts."""
    arms = [a for a in (*HANDCRAFTED, RANDOM, TRAINED[1], TRAINED[0], TRAINED[2]) if a in summary]
    lines = ["# The paper's claims at small scale", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["| task | metric | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
    for task in tasks:
        cells = [f"{summary[a][task].mean:.3f} ± {summary[a][task].std:.3f}" if task in summary[a] else ""
                 for a in arms]  # fmt: skip
        lines.append(f"| {task} | {metrics.get(task, '')} | " + " | ".join(cells) + " |")
    shared = [t for t in tasks if all(t in summary[a] for a in arms)]
    lines.append("| mean | | " + " | ".join(f"{_average(summary[a], shared):.3f}" for a in arms) + " |")
    lines += ["", "| claim | holds | measured |", "|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.holds else 'no'} | {c.detail} |" for c in claims]
    return "\n".join(lines) + "\n"


def run_claims(
    corpus: str | Path,
    out: str | Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    plan: DemoPlan = CLAIMS_PLAN,
    command: str = "",
) -> list[Claim]:
    """Train every arm for every seed into ``out`` (resumable), probe, and write ``claims.md`` / ``claims.json``.

    Args:
        corpus: a built corpus (``muqkit data build-corpus --size small``); its ``scores``, ``notes``
            and unlabeled ``game`` manifests (train and pool splits) are the pretraining audio.
        out: experiment folder.
        seeds: training seeds (each seeds the tokenizers, the model, the crops and the masks).
        plan: sizes, shared by every arm.
    """
    from muqkit.data.loader import load_records
    from muqkit.eval.features import MuQExtractor, make_extractor
    from muqkit.eval.probes import ProbeConfig
    from muqkit.eval.suite import SuiteConfig, default_cache_dir, run_suite
    from muqkit.eval.tasks import load_corpus_task
    from muqkit.ssl.muq import MuQ
    from muqkit.train.pretrain import snapshot_dir

    corpus, out = Path(corpus), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifests = [corpus / m for m in PRETRAIN_MANIFESTS if (corpus / m).is_file()]
    if not manifests:
        raise FileNotFoundError(f"{corpus}: no corpus manifests ({', '.join(PRETRAIN_MANIFESTS)})")
    train_files = out / "pretrain-audio.txt"
    with atomic_path(train_files) as tmp:
        tmp.write_text("".join(f"{p.resolve()}\n" for _, p in load_records(manifests)))
    timings: dict[str, dict[str, float]] = {}
    models: dict[str, Path] = {}
    for seed in seeds:
        timings[str(seed)] = {}
        arms = train_arms(out / f"seed{seed}", plan, manifests, train_files, seed=seed, timings=timings[str(seed)])
        models.update({f"{arm}:s{seed}": path for arm, path in arms.items()})

    tasks = [load_corpus_task(name, corpus) for name in plan.tasks]
    probe = ProbeConfig(max_epochs=plan.probe_epochs, patience=max(5, plan.probe_epochs // 5))

    def factory(spec: str):  # noqa: ANN202
        if spec in models:
            return MuQExtractor(MuQ.from_pretrained(models[spec]), spec)
        if arm_of(spec) == RANDOM:
            # The Mel-RVQ run's own start: the same seed, architecture and corpus statistics.
            seed = int(spec.split(":s")[1])
            start = snapshot_dir(out / f"seed{seed}" / "iter1", 0)
            return MuQExtractor(MuQ.from_pretrained(start), f"random-{plan.preset}-s{seed}")
        return make_extractor(spec)

    start = time.perf_counter()
    cache = default_cache_dir(corpus)
    hand = SuiteConfig(heads=("linear",), seeds=(0, 1, 2), layer_modes=("sweep",), probe=probe)
    rows = run_suite(HANDCRAFTED, tasks, config=hand, cache_dir=cache, extractor_factory=factory)
    learned = [f"{RANDOM}:s{s}" for s in seeds] + sorted(models)
    trained = dataclasses.replace(hand, seeds=plan.probe_seeds)
    rows += run_suite(learned, tasks, config=trained, cache_dir=cache, extractor_factory=factory)
    probe_seconds = round(time.perf_counter() - start, 1)

    summary = summarise(rows)
    names = [t.name for t in tasks]
    claims = check_claims(summary, names)
    metrics = {t.name: t.metric for t in tasks}
    with atomic_path(out / "claims.md") as tmp:
        tmp.write_text(claims_markdown(summary, claims, names, metrics, command=command))
    record = {
        "command": command, "plan": dataclasses.asdict(plan), "seeds": list(seeds),
        "timings": {"train": timings, "probes": probe_seconds},
        "summary": {a: {t: dataclasses.asdict(s) for t, s in v.items()} for a, v in summary.items()},
        "claims": [dataclasses.asdict(c) for c in claims], "rows": [dataclasses.asdict(r) for r in rows],
    }  # fmt: skip
    with atomic_path(out / "claims.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print((out / "claims.md").read_text())
    return claims
