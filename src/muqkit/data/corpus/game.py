"""Real recordings from Debian's game-music packages, as an unlabeled pretraining pool.

Packages are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into a cache folder; they
are never installed. Tracks are decoded, resampled to the corpus rate and cut into fixed-length
segments; the split is assigned per track, so segments of one recording never straddle two splits.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muqkit.data.corpus.fluidsynth import SystemRequirementError
from muqkit.data.files import scan_folder

if TYPE_CHECKING:
    from muqkit.data.corpus.sizes import CorpusSize
    from muqkit.data.manifest import AudioRecord

logger = logging.getLogger(__name__)

_TAG_FIELDS: tuple[str, ...] = ("title", "artist", "album", "genre")


@dataclass(frozen=True)
class GameTrack:
    """One audio file of an unpacked package.

    Attributes:
        package: Debian package name.
        path: absolute path of the file.
        name: path inside the package (stable across machines).
        description: the package's one-line description.
        tags: any of title, artist, album, genre found in the file's metadata.
    """

    package: str
    path: Path
    name: str
    description: str
    tags: dict[str, str]


def fetch_packages(packages: tuple[str, ...], cache_dir: str | Path) -> dict[str, Path]:
    """Download and unpack Debian packages (cached: a package unpacked before is not fetched again).

    Args:
        packages: Debian package names.
        cache_dir: folder for the ``.deb`` files and the unpacked trees.

    Returns:
        Package name -> folder it was unpacked into.

    Raises:
        SystemRequirementError: ``apt-get``/``dpkg`` is missing or a download fails.
    """
    cache = Path(cache_dir)
    out: dict[str, Path] = {}
    for package in packages:
        target = cache / "unpacked" / package
        if (target / ".complete").is_file():
            out[package] = target
            continue
        for tool in ("apt-get", "dpkg"):
            if shutil.which(tool) is None:
                raise SystemRequirementError(
                    f"game music needs Debian's {tool} to fetch {package}; build with --no-game-music elsewhere"
                )
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        existing = sorted(debs.glob(f"{package}_*.deb"))
        if not existing:
            logger.info("apt-get download %s", package)
            proc = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
            existing = sorted(debs.glob(f"{package}_*.deb"))
            if proc.returncode != 0 or not existing:
                raise SystemRequirementError(
                    f"`apt-get download {package}` failed: {proc.stderr.strip()[-300:]}. "
                    "Run `apt-get update` first (Debian package lists are needed), "
                    "or build without game music (--no-game-music)"
                )
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(existing[-1]), str(target)], check=True)
        proc = subprocess.run(["dpkg-deb", "-f", str(existing[-1]), "Description"], capture_output=True, text=True)
        (target / ".description").write_text(proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "")
        (target / ".complete").write_text("ok\n")
        out[package] = target
    return out


def list_tracks(unpacked: dict[str, Path]) -> list[GameTrack]:
    """Audio files of unpacked packages, sorted by package and path."""
    import soundfile as sf

    tracks: list[GameTrack] = []
    for package in sorted(unpacked):
        root = unpacked[package]
        desc_file = root / ".description"
        description = desc_file.read_text().strip() if desc_file.is_file() else ""
        for path in scan_folder(root):
            tags: dict[str, str] = {}
            try:
                with sf.SoundFile(path) as f:
                    for name in _TAG_FIELDS:
                        value = getattr(f, name, "") or ""
                        if value.strip():
                            tags[name] = value.strip()
            except (RuntimeError, sf.LibsndfileError):
                logger.warning("skipping %s: libsndfile cannot read it", path)
                continue
            tracks.append(GameTrack(package, path, path.relative_to(root).as_posix(), description, tags))
    return tracks


def game_records(size: CorpusSize, seed: int, out: Path, deb_cache: Path) -> list[AudioRecord]:
    """Fetch the size's game-music packages into ``deb_cache`` and cut them into segments under ``out``."""
    unpacked = fetch_packages(size.game_packages, deb_cache)
    return segment_tracks(unpacked, out, size=size, seed=seed, list_tracks=list_tracks)


_default_list_tracks = list_tracks  # segment_tracks' argument shadows the name


def segment_tracks(
    unpacked: dict[str, Path],
    out: Path,
    *,
    size: CorpusSize,
    seed: int,
    list_tracks: Callable[[dict[str, Path]], list[Any]] | None = None,
) -> list[AudioRecord]:
    """Cut the tracks of unpacked game-music packages into corpus segments.

    Segments are spread evenly over each track; splits (90 % train, 10 % valid) are assigned per track.

    Args:
        unpacked: package name -> unpacked folder (as :func:`muqkit.data.corpus.game.fetch_packages` returns).
        out: the corpus folder.
        size: the corpus size (segment length and count).
        seed: split seed.
        list_tracks: track lister (defaults to :func:`muqkit.data.corpus.game.list_tracks`).

    Returns:
        Records of the segments, sorted by id.
    """
    import numpy as np

    from muqkit.audio.io import AudioError, load_audio
    from muqkit.data.corpus.render import write_wav
    from muqkit.data.corpus.sizes import SAMPLE_RATE
    from muqkit.data.manifest import AudioRecord, assign_splits

    tracks = (list_tracks or _default_list_tracks)(unpacked)
    audio_dir = out / "audio" / "game"
    audio_dir.mkdir(parents=True, exist_ok=True)
    groups = {t.path: f"game.{t.package}.{_slug(t.name)}" for t in tracks}
    splits = assign_splits(list(groups.values()), seed=seed, fractions=(0.9, 0.1, 0.0))
    seg = round(size.game_segment_seconds * SAMPLE_RATE)
    records: list[AudioRecord] = []
    for track in tracks:
        group = groups[track.path]
        index_file = out / "cache" / "game" / f"{group}.json"
        if index_file.is_file():
            ids = json.loads(index_file.read_text())
            if all((audio_dir / f"{i}.wav").is_file() for i in ids):
                starts = None
            else:
                ids = None
        else:
            ids = None
        if ids is None:
            try:
                audio = load_audio(track.path, sample_rate=SAMPLE_RATE).numpy()
            except AudioError as exc:
                logger.warning("skipping %s", exc)
                continue
            available = len(audio) // seg
            if available == 0:
                continue
            count = available if size.game_segments_per_track is None else min(available, size.game_segments_per_track)
            starts = [round(k * (available - 1) / max(count - 1, 1)) * seg for k in range(count)] if count > 1 else [0]
            ids = []
            for k, s in enumerate(starts):
                item_id = f"{group}.s{k:03d}"
                piece = audio[s : s + seg]
                peak = float(np.abs(piece).max())
                write_wav(audio_dir / f"{item_id}.wav", piece * (0.99 / peak) if peak > 0.99 else piece)
                ids.append(item_id)
            index_file.parent.mkdir(parents=True, exist_ok=True)
            index_file.write_text(json.dumps(ids))
        for item_id in ids:
            records.append(
                AudioRecord(
                    id=item_id,
                    path=f"audio/game/{item_id}.wav",
                    duration=seg / SAMPLE_RATE,
                    sample_rate=SAMPLE_RATE,
                    num_samples=seg,
                    split=splits[group],
                    group=group,
                    source="game",
                    labels={"package": track.package, "track": track.name, "album": track.description, **track.tags},
                )
            )
    return sorted(records, key=lambda r: r.id)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in Path(text).with_suffix("").as_posix()).strip("-")
