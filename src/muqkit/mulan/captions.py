"""Captions from corpus metadata, and the tag vocabulary used for zero-shot tagging.

Training captions are drawn from varied templates so that the text tower learns the attributes, not
one sentence shape. The metadata keys are those of the corpus builder (:mod:`muqkit.data.corpus`):
``key`` ("Eb minor"), ``mode``, ``metre`` ("6/8"), ``tempo_bpm`` (felt beats a minute; else ``tempo_qpm``),
``families`` (GM instrument families), ``family`` (single notes), ``dance``, ``origin``, ``tags``,
``collection``; a ``caption`` field, when present, is used as is.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Tempo words by beats per minute (upper bounds).
TEMPO_WORDS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (76.0, ("slow", "calm", "unhurried")),
    (108.0, ("moderate", "medium-tempo", "steady")),
    (140.0, ("lively", "brisk", "upbeat")),
    (float("inf"), ("fast", "very fast", "rapid")),
)

METRE_WORDS: dict[str, tuple[str, ...]] = {
    "2/4": ("duple", "two-four"),
    "2/2": ("duple", "cut-time"),
    "4/4": ("common-time", "four-four"),
    "3/4": ("triple", "three-four"),
    "3/8": ("triple", "three-eight"),
    "6/8": ("compound duple", "six-eight"),
    "9/8": ("compound triple", "nine-eight"),
    "12/8": ("compound", "twelve-eight"),
}

ORIGIN_WORDS: dict[str, str] = {
    "ireland": "Irish",
    "scotland": "Scottish",
    "england": "English",
    "germany": "German",
    "china": "Chinese",
    "europa": "European",
}

SUBJECTS = ("piece", "tune", "track", "recording", "song", "melody")


def instrument_words(family: str) -> str:
    """Readable name of a GM family (``synth_lead`` -> ``synth lead``)."""
    return family.replace("_", " ")


def tempo_word(qpm: float, rng: random.Random | None = None) -> str:
    """A word for a tempo in beats (or quarter notes) per minute."""
    for upper, words in TEMPO_WORDS:
        if qpm < upper:
            return words[0] if rng is None else rng.choice(words)
    raise AssertionError("unreachable")


def _origin(value: str) -> str:
    return ORIGIN_WORDS.get(value.strip().lower(), value.strip().title())


def _join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def caption_from_metadata(labels: Mapping[str, Any], rng: random.Random | None = None) -> str:
    """One caption of an item from its metadata (a random template, or the first with ``rng=None``).

    Example:
        >>> caption_from_metadata({"key": "A minor", "mode": "minor", "metre": "6/8", "dance": "jig",
        ...                        "families": ["reed"], "tempo_qpm": 150})
        'a fast jig in A minor, in 6/8 time, played on reed'
    """
    caption = labels.get("caption")
    if isinstance(caption, str) and caption.strip():
        return caption.strip()
    pick = (lambda xs: xs[0]) if rng is None else rng.choice

    families = labels.get("families") or ([labels["family"]] if labels.get("family") else [])
    instruments = [instrument_words(f) for f in families]
    beats = labels.get("tempo_bpm") or labels.get("tempo_qpm")  # the felt beat, when the corpus gives it
    tempo = tempo_word(float(beats), rng) if beats else ""
    dance = str(labels.get("dance") or "")
    origin = _origin(str(labels["origin"])) if labels.get("origin") else ""
    key = str(labels.get("key") or "")
    mode = str(labels.get("mode") or "")
    metre = str(labels.get("metre") or "")

    noun = dance or pick(SUBJECTS)
    head = " ".join(w for w in (tempo, origin, noun) if w)
    phrases: list[str] = []
    if key and mode:  # the mode alone as often as the key: "a minor key" describes every minor tonic
        phrases.append(pick((f"in {key}", f"in the key of {key}", f"in a {mode} key", f"in {mode} mode")))
    elif key:
        phrases.append(pick((f"in {key}", f"in the key of {key}")))
    elif mode:
        phrases.append(pick((f"in a {mode} key", f"in {mode} mode")))
    if metre:
        words = METRE_WORDS.get(metre)
        phrases.append(
            pick((f"in {metre} time", f"in {metre}"))
            if words is None or rng is None
            else rng.choice((f"in {metre} time", f"in {metre}", f"in {words[0]} metre"))
        )
    if instruments:
        phrases.append(
            pick(
                (
                    f"played on {_join(instruments)}",
                    f"performed by {_join(instruments)}",
                    f"featuring {_join(instruments)}",
                )
            )
        )
    elif labels.get("tags"):
        phrases.append("with " + _join([str(t).replace("_", " ") for t in labels["tags"]][:3]) + " sounds")
    if rng is not None:
        rng.shuffle(phrases)
        if phrases and rng.random() < 0.3:
            phrases = phrases[: max(1, len(phrases) - 1)]  # sometimes leave one attribute out
    article = "an" if head[:1] in "aeiouAEIOU" else "a"
    text = f"{article} {head}"
    if phrases:
        text += " " + phrases[0]
        if len(phrases) > 1:
            text += ", " + ", ".join(phrases[1:])
    return text


# --------------------------------------------------------------------------------------------------
# Tag vocabulary for zero-shot tagging
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TagGroup:
    """A group of mutually comparable tags, how to read them from metadata and how to prompt for them.

    Attributes:
        name: group name (``instrument``, ``mode``, ``metre``, ``dance``).
        field: metadata key holding the value (a string or a list of strings).
        prompts: templates with ``{tag}``; a tag's text latent is the mean of its prompts' latents.
        exclusive: an item holds one value of the group (mode, metre, dance type), so zero-shot tagging
            compares the group's tags with each other for each item (a softmax over them, CLIP's zero-shot
            classification); otherwise (instrument families) each tag is scored by its own similarity.
    """

    name: str
    field: str
    prompts: tuple[str, ...]
    exclusive: bool = False

    def values(self, labels: Mapping[str, Any]) -> list[str]:
        """The tags of one item in this group."""
        value = labels.get(self.field)
        if value is None and self.field == "families" and labels.get("family"):
            value = [labels["family"]]
        if value is None or value == "":
            return []
        items = value if isinstance(value, (list, tuple)) else [value]
        return [self.display(str(v)) for v in items if str(v)]

    def display(self, value: str) -> str:
        if self.field == "families":
            return instrument_words(value)
        if self.field == "origin":
            return _origin(value)
        return value


TAG_GROUPS: tuple[TagGroup, ...] = (
    TagGroup("instrument", "families", ("{tag}", "music played on {tag}", "a piece featuring {tag}")),
    TagGroup("mode", "mode", ("music in a {tag} key", "a piece in {tag} mode", "{tag}"), exclusive=True),
    TagGroup("metre", "metre", ("music in {tag} time", "a tune in {tag}", "{tag} metre"), exclusive=True),
    TagGroup("dance", "dance", ("a {tag}", "a {tag} tune", "{tag} dance music"), exclusive=True),
)


def tag_vocabulary(
    items: Sequence[Mapping[str, Any]], groups: Sequence[TagGroup] = TAG_GROUPS, *, min_count: int = 1
) -> dict[str, list[str]]:
    """Tags of each group seen at least ``min_count`` times in ``items`` (metadata dicts), sorted."""
    out: dict[str, list[str]] = {}
    for group in groups:
        counts: dict[str, int] = {}
        for labels in items:
            for tag in set(group.values(labels)):
                counts[tag] = counts.get(tag, 0) + 1
        tags = sorted(t for t, c in counts.items() if c >= min_count)
        if tags:
            out[group.name] = tags
    return out
