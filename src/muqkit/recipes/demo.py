"""The end-to-end demo (``muqkit demo --out DIR``): MuQ end to end, offline, on CPU.

Builds the offline corpus (rendered scores and single notes), trains a Mel-RVQ, pretrains a tiny MuQ
on its codes, runs one refinement iteration, probes everything against the baselines (handcrafted
features and a random-weight MuQ), prints the table, writes the plots, and saves the refined model
to ``DIR/model`` (official format), usable as ``muqkit embed --model DIR/model``. About 10 minutes
on 2 cores; ``--quick`` runs the same pipeline at toy sizes in about two minutes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of a demo run.

    Attributes:
        corpus: corpus size name (``ci``, ``small``) or ``quick`` (a handful of items).
        rvq_steps: Mel-RVQ training steps.
        pretrain_steps: pretraining steps of each model.
        refine_rvq_steps: latent RVQ steps.
        crop_seconds, batch_size: pretraining crops.
        crop_sampling, pad_short: which file a crop comes from and how short files are given (see
            :class:`~muqkit.train.pretrain.PretrainTrainingConfig`); every file alike and short files
            padded with silence trained the demo's MuQ furthest above its start (docs/results.md).
        num_codebooks, codebook_size: Mel-RVQ and latent RVQ size.
        tasks: probing tasks.
        probe_seeds: probe seeds.
        probe_epochs: probe epochs (early stopping on validation).
        preset: MuQ preset of every pretrained model.
        latent_seconds: audio whose latents train the refinement RVQ (``None``: all).
        snapshots: encoder snapshots per pretraining run (learning curves; step 0, the run's
            random-weight start, is always one).
        tokenizer_seconds: the tokenizers (Mel-RVQ, random projection) learn from a seeded sample of
            this much of the pretraining audio (``None``: all of it; the statistics pass reads every
            second of it, a quarter of an hour for the small corpus's 7.6 h on 2 cores).
    """

    corpus: str = "demo"
    rvq_steps: int = 300
    pretrain_steps: int = 600
    refine_rvq_steps: int = 300
    crop_seconds: float = 3.0
    batch_size: int = 8
    crop_sampling: str = "file"
    pad_short: bool = True
    num_codebooks: int = 4
    codebook_size: int = 256
    tasks: tuple[str, ...] = ("key", "collection", "instrument", "pitch")
    probe_seeds: tuple[int, ...] = (0, 1, 2)
    probe_epochs: int = 100
    preset: str = "tiny"
    latent_seconds: float | None = None
    snapshots: int = 4
    tokenizer_seconds: float | None = None


# What the demo writes in its folder (``overwrite`` deletes these, nothing else).
DEMO_ENTRIES = ("plan.json", "corpus", "pretrain-audio.txt", "tokenizer-audio.txt", "mel_rvq", "iter1",
                "random_projection", "bestrq", "curve",
                "iter2", "cache", "model", "report", "index")  # fmt: skip

QUICK = DemoPlan(
    corpus="quick", rvq_steps=10, pretrain_steps=6, refine_rvq_steps=5, crop_seconds=2.0, batch_size=4,
    num_codebooks=2, codebook_size=64, tasks=("instrument", "pitch"), probe_seeds=(0,), probe_epochs=10,
    snapshots=2,
)


def plan_for(budget_minutes: float, quick: bool) -> DemoPlan:
    """The plan for a time budget: training steps scale with it (the default plan is 15 minutes)."""
    if quick:
        return QUICK
    scale = max(0.1, budget_minutes / 15.0)
    base = DemoPlan()
    return dataclasses.replace(
        base,
        rvq_steps=max(20, int(base.rvq_steps * scale)),
        pretrain_steps=max(20, int(base.pretrain_steps * scale)),
        refine_rvq_steps=max(20, int(base.refine_rvq_steps * scale)),
    )


def plan_record(plan: DemoPlan) -> dict[str, Any]:
    """What ``plan.json`` holds: the plan and the pretraining preset's settings it was run with."""
    from muqkit.configs.presets import load_preset

    record = {**dataclasses.asdict(plan), "pretrain_preset": load_preset(plan.preset)}
    return json.loads(json.dumps(record))  # as read back from the file (tuples become lists)


def check_same_plan(stored: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    """Refuse to resume a demo made with other settings: its finished steps would be reused as they are.

    Raises:
        ValueError: the settings differ (named with their old and new values).
    """
    if stored == current:
        return
    flat_old = {**stored, **{f"pretrain_preset.{k}": v for k, v in stored.get("pretrain_preset", {}).items()}}
    flat_new = {**current, **{f"pretrain_preset.{k}": v for k, v in current["pretrain_preset"].items()}}
    changed = [f"{k} {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in sorted(set(flat_old) | set(flat_new))
               if k != "pretrain_preset" and flat_old.get(k) != flat_new.get(k)]  # fmt: skip
    raise ValueError(
        f"--out {out}: its demo was made with other settings ({'; '.join(changed[:4])}); pass --overwrite to "
        "start again"
    )


def _corpus(out: Path, plan: DemoPlan, seed: int, jobs: int) -> Path:
    from muqkit.data.corpus import SIZES, build_corpus

    size = SIZES["ci"]
    if plan.corpus == "quick":
        size = dataclasses.replace(size, name="ci", scores_per_collection=3, clip_seconds=3.0, pitches_per_instrument=2)
    elif plan.corpus in SIZES:
        size = SIZES[plan.corpus]
    summary = build_corpus(out, size=size, seed=seed, game_music=False, sources=("scores", "notes"), jobs=jobs)
    log.info("corpus: %s (%s h)", summary.counts, summary.hours)
    return out


def _manifest(corpus: Path, name: str) -> Path:
    for path in (corpus / name, corpus / "manifests" / name):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{corpus}: no {name}")


def audio_sample(files: Path, manifests: list[Path], out: Path, seconds: float, seed: int) -> Path:
    """A seeded sample of the files listed in ``files``, about ``seconds`` long, as a path list."""
    if out.is_file():
        return out
    import numpy as np

    from muqkit.atomic import atomic_path
    from muqkit.data.loader import load_records

    paths = files.read_text().split()
    durations = {str(p.resolve()): r.duration for r, p in load_records(manifests)}
    chosen, total = [], 0.0
    for i in np.random.default_rng(seed).permutation(len(paths)):
        if total >= seconds:
            break
        chosen.append(paths[i])
        total += durations.get(paths[i], 0.0)
    with atomic_path(out) as tmp:
        tmp.write_text("".join(f"{p}\n" for p in chosen))
    return out


def train_arms(
    out: Path,
    plan: DemoPlan,
    manifests: list[Path],
    train_files: Path,
    *,
    seed: int,
    bestrq: bool = True,
    timings: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Train the pretraining arms of one seed into ``out`` (finished steps are skipped on a rerun).

    A Mel-RVQ, MuQ pretrained on its codes (iteration 1), MuQ pretrained on random-projection
    (BEST-RQ) codes with the same budget, and one refinement iteration of the first (iteration 2).

    Returns:
        Model folders by arm name: ``muq-melrvq-iter1``, ``muq-bestrq`` (when ``bestrq``),
        ``muq-melrvq-iter2``.
    """
    from muqkit.configs.presets import load_preset
    from muqkit.train.pretrain import PretrainTrainingConfig, train_pretrain
    from muqkit.train.refine import RefineConfig, refine
    from muqkit.train.tokenizer import TokenizerTrainingConfig, fit_baseline, train_tokenizer

    timings = {} if timings is None else timings
    if plan.tokenizer_seconds is not None:
        train_files = audio_sample(train_files, manifests, out / "tokenizer-audio.txt", plan.tokenizer_seconds, seed)

    def lap(name: str, start: float) -> None:
        timings[name] = round(time.perf_counter() - start, 1)
        log.info("seed %d: %s done in %.1f s", seed, name, timings[name])

    start = time.perf_counter()
    mel_rvq = out / "mel_rvq" / "tokenizer"
    if not (mel_rvq / "config.json").is_file():
        config = TokenizerTrainingConfig(
            kind="mel_rvq", crop_seconds=plan.crop_seconds, batch_size=16, max_steps=plan.rvq_steps, lr=1e-3,
            cache_frames=True, seed=seed, checkpoint_every=max(plan.rvq_steps, 1),
            model={"num_codebooks": plan.num_codebooks, "codebook_size": plan.codebook_size, "codebook_dim": 16},
        )  # fmt: skip
        run = train_tokenizer(train_files, out / "mel_rvq", config, overwrite=True, progress=False)  # redone whole
        mel_rvq = run.tokenizer_dir
    lap("mel_rvq", start)

    settings = {
        **load_preset(plan.preset), "crop_seconds": plan.crop_seconds, "batch_size": plan.batch_size,
        "crop_sampling": plan.crop_sampling, "pad_short": plan.pad_short,
        "max_steps": plan.pretrain_steps, "warmup_steps": max(1, plan.pretrain_steps // 10),
        "checkpoint_every": max(1, plan.pretrain_steps), "seed": seed, "progress": False,
        "log_every": max(1, min(10, plan.pretrain_steps)),
        "snapshot_every": max(1, plan.pretrain_steps // max(1, plan.snapshots)),
    }  # fmt: skip
    arms: dict[str, Path] = {}
    start = time.perf_counter()
    iter1 = out / "iter1"
    if not (iter1 / "model" / "config.json").is_file():
        train_pretrain(manifests, iter1, PretrainTrainingConfig.from_dict({**settings, "tokenizer": str(mel_rvq)}),
                       overwrite=True)  # an unfinished step is redone whole
    arms["muq-melrvq-iter1"] = iter1 / "model"
    lap("pretrain_iter1", start)

    if bestrq:
        start = time.perf_counter()
        rp = out / "random_projection"
        if not (rp / "config.json").is_file():
            fit_baseline(train_files, rp, kind="random_projection", seed=seed,
                         model={"num_codebooks": plan.num_codebooks, "codebook_size": plan.codebook_size})  # fmt: skip
        bestrq_dir = out / "bestrq"
        if not (bestrq_dir / "model" / "config.json").is_file():
            train_pretrain(manifests, bestrq_dir, PretrainTrainingConfig.from_dict({**settings, "tokenizer": str(rp)}),
                           overwrite=True)
        arms["muq-bestrq"] = bestrq_dir / "model"
        lap("pretrain_bestrq", start)

    start = time.perf_counter()
    refined = refine(
        iter1 / "model", manifests, out / "iter2",
        RefineConfig(num_codebooks=plan.num_codebooks, codebook_size=plan.codebook_size, codebook_dim=16,
                     rvq_steps=plan.refine_rvq_steps, rvq_batch_size=16, rvq_lr=1e-3,
                     latent_seconds=plan.latent_seconds, pretrain=settings),
        progress=False,
    )  # fmt: skip
    arms["muq-melrvq-iter2"] = refined.model_dir
    lap("refine", start)
    return arms


RANDOM_START = "random-start"
"""The demo's random-weight MuQ: step 0 of the Mel-RVQ run (its own initialisation)."""


def verdict(
    rows: list, tasks: list[str], steps: int, *, model: str = "muq-melrvq-iter1", test_items: int | None = None
) -> str:
    """One sentence, computed from the table: the pretrained model against its random-weight start
    and the mel baseline (best-layer linear probes, test split); ``test_items``, the smallest test
    set, below 30 says the figures cannot tell the models apart."""
    if test_items is not None and test_items < 30:
        return (f"The smallest test set has {test_items} items: too few to tell the models apart, so this "
                "table shows that the pipeline runs, not what the model learned.")
    def score(name: str, task: str) -> float | None:
        found = [r.mean for r in rows if r.model == name and r.task == task and r.head == "linear"
                 and not r.layer.startswith("weighted")]
        return found[0] if found else None

    shared = [t for t in tasks if None not in (score(model, t), score(RANDOM_START, t), score("mel", t))]
    if not shared:
        return "No task could be scored for every model, so nothing can be said about what the model learned."
    ours = [score(model, t) or 0.0 for t in shared]
    start = [score(RANDOM_START, t) or 0.0 for t in shared]
    mel = [score("mel", t) or 0.0 for t in shared]
    above = sum(a > b for a, b in zip(ours, start, strict=True))
    mean = sum(ours) / len(ours)
    mean_start, mean_mel = sum(start) / len(start), sum(mel) / len(mel)
    relation = "above" if mean > mean_start else "below"
    return (f"After {steps} steps the pretrained model ({model}) is {relation} its random-weight start on average "
            f"({mean:.3f} vs {mean_start:.3f} over {len(shared)} tasks; higher on {above} of {len(shared)}) and "
            f"{'above' if mean > mean_mel else 'below'} the mel baseline ({mean_mel:.3f}): at this budget, "
            + ("pretraining added to what the random network already encodes."
               if mean > mean_start else "pretraining has not yet added to what the random network encodes."))


SIDE_BY_SIDE = "side_by_side.json"
"""The measured comparison with the official trainer that the demo's closing lines quote (written by
``bench/side_by_side.py`` as ``OUT/summary.json``; docs/results.md has its table and command)."""


def official_comparison(record: dict[str, Any] | None = None) -> str:
    """A sentence on where the official code stands at the demo's budget, from the side-by-side record
    shipped with the package (``record`` given: from it); empty when there is none."""
    if record is None:
        from importlib import resources

        path = resources.files("muqkit.recipes").joinpath(SIDE_BY_SIDE)
        if not path.is_file():
            return ""
        record = json.loads(path.read_text())
    official, ours = record["official"], record["muqkit"]
    seeds = len(record["seeds"])
    side = "above" if official["mean"] > official["start"] else "below"
    return (f"Side by side at {record['steps']} steps ({seeds} seeds, the same start, crops and optimiser; "
            f"docs/results.md), the official MuQ code ends {side} "
            f"its random-weight start ({official['mean']:.3f} vs {official['start']:.3f} on these four tasks) and "
            f"muqkit's trainer at {ours['mean']:.3f}"
            + (", so at this budget the official code learns more than muqkit's does; the cause is not yet found."
               if official["mean"] - ours["mean"] > max(official["spread"], ours["spread"]) else
               ", within the seed spread of each other."))


def run_demo(
    out: str | Path,
    *,
    budget_minutes: float = 15.0,
    quick: bool = False,
    seed: int = 0,
    jobs: int = 2,
    plots: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Run the whole pipeline into ``out``; print the table.

    A folder holding a demo is continued with ``resume`` (finished steps are skipped), replaced with
    ``overwrite``, and refused otherwise.

    Returns:
        The folder of the final model (``out/model``, official format), also installed as muqkit's
        offline default model.
    """
    import torch

    from muqkit.data.loader import load_records
    from muqkit.eval.probes import ProbeConfig
    from muqkit.eval.report import markdown_table, write_report
    from muqkit.eval.suite import SuiteConfig, run_suite
    from muqkit.eval.tasks import load_corpus_task
    from muqkit.ssl.muq import MuQ

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    plan = plan_for(budget_minutes, quick)
    command = f"muqkit demo --out {out}" + (" --quick" if quick else "")
    from muqkit.runfolder import prepare_run_folder

    out = prepare_run_folder(out, resume=resume, overwrite=overwrite, owned=DEMO_ENTRIES)
    record = plan_record(plan)
    if resume and (out / "plan.json").is_file():
        check_same_plan(json.loads((out / "plan.json").read_text()), record, out)
    (out / "plan.json").write_text(json.dumps(record, indent=2) + "\n")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    def lap(name: str, start: float) -> None:
        timings[name] = round(time.perf_counter() - start, 1)
        log.info("demo: %s done in %.1f s", name, timings[name])

    # 1. corpus ------------------------------------------------------------------------------------
    start = time.perf_counter()
    corpus = _corpus(out / "corpus", plan, seed, jobs)
    manifests = [_manifest(corpus, "scores.jsonl"), _manifest(corpus, "notes.jsonl")]
    train_files = out / "pretrain-audio.txt"  # plain path list (the tokenizer trainer's manifest format)
    train_files.write_text("".join(f"{p.resolve()}\n" for _, p in load_records(manifests)))
    lap("corpus", start)

    # 2-4. Mel-RVQ, pretraining, the BEST-RQ arm, refinement --------------------------------------
    arms = train_arms(out, plan, manifests, train_files, seed=seed, bestrq=not quick, timings=timings)
    refined_dir = arms["muq-melrvq-iter2"]

    # 5. probes ------------------------------------------------------------------------------------
    start = time.perf_counter()
    tasks = []
    for name in plan.tasks:
        try:
            tasks.append(load_corpus_task(name, corpus))
        except ValueError as exc:
            log.warning("skipping task %s: %s", name, exc)
    from muqkit.eval.features import MuQExtractor, make_extractor

    # The random-weight baseline is the Mel-RVQ run's own start: same seed, same corpus statistics.
    from muqkit.train.pretrain import snapshot_dir

    models_by_name = {RANDOM_START: snapshot_dir(out / "iter1", 0), **arms}

    def factory(spec: str):  # noqa: ANN202
        if spec in models_by_name:
            return MuQExtractor(MuQ.from_pretrained(models_by_name[spec]), spec)
        return make_extractor(spec)

    models = ["mel", "mfcc", "chroma", RANDOM_START, *arms]
    suite = SuiteConfig(
        heads=("linear",), seeds=plan.probe_seeds, layer_modes=("sweep", "weighted"),
        probe=ProbeConfig(max_epochs=plan.probe_epochs, patience=max(5, plan.probe_epochs // 5)),
    )  # fmt: skip
    cache = out / "corpus" / "cache" / "features"  # where `muqkit curve` looks too
    rows = run_suite(models, tasks, config=suite, cache_dir=cache, extractor_factory=factory)
    lap("probes", start)

    # 6. the learning curve of the Mel-RVQ model (same probes, every snapshot) ----------------------
    start = time.perf_counter()
    from muqkit.eval.curves import learning_curve

    curve_config = dataclasses.replace(suite, layer_modes=("sweep",))
    curve = learning_curve(out / "iter1", corpus, out / "curve", tasks=[t.name for t in tasks], config=curve_config)
    log.info("learning curve: %s", curve.summary())
    lap("curve", start)

    # 6. report and the embedding model -------------------------------------------------------------
    final = MuQ.from_pretrained(refined_dir)
    final.save_pretrained(out / "model")
    meta = {"command": command,
            "plan": dataclasses.asdict(plan), "arms": {k: str(v) for k, v in arms.items()},
            "seconds": timings, "total_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    written = write_report(rows, out / "report", meta=meta, plots=plots)
    print(markdown_table(rows, head="linear"))
    print("\ntest items per task: " + ", ".join(f"{t.name} {len(t.records['test'])}" for t in tasks))
    print(f"learning curve of muq-melrvq-iter1: {out / 'curve' / 'curve.png'}")
    smallest = min((len(t.records["test"]) for t in tasks), default=0)
    print(f"\n{verdict(rows, [t.name for t in tasks], plan.pretrain_steps, test_items=smallest)}")
    if not quick:
        comparison = official_comparison()
        if comparison:
            print(comparison)
    print(f"\nreport: {written['markdown']}; timings (s): {timings}")
    from muqkit.hub.defaults import install_default_model

    installed = install_default_model(out / "model")
    print(f"embedding model: {out / 'model'}, installed as muqkit's offline default ({installed}): "
          f"muqkit embed AUDIO --out EMB")
    # 7. the search app's index: MuQ latents of every piece of the corpus (music search and the map)
    # (the FAISS index `muqkit mulan index --model outputs/demo/model` writes; needs the search extra)
    import importlib.util

    if importlib.util.find_spec("faiss") is None:
        print("search app: no index (install the search extra: pip install 'muqkit[search]')")
        return out / "model"
    if not (out / "index" / "meta.json").is_file():
        from muqkit.hub.weights import model_fingerprint
        from muqkit.search.build import MuQAudioLatents, index_audio

        pieces = [p for _, p in load_records(manifests[:1], splits=None)]
        index, _ = index_audio(MuQAudioLatents(final), pieces, model_id=str((out / "model").absolute()),
                               model_sha256=model_fingerprint(final))  # fmt: skip
        index.save(out / "index")
    print(f"search app: muqkit serve --index {out / 'index'}")
    return out / "model"
