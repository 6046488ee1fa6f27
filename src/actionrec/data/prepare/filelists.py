"""Annotation lists from a folder tree: scan, split, and write mmaction2's list files.

A tree is scanned into :class:`Entry` objects (one per video file or frame folder), entries get
labels and a split (a seeded random split per class, or a dataset's official split files), and
each split is written as an mmaction2 list: ``path label`` for videos, ``frame_dir total_frames
label`` for rawframes, paths relative to the scanned root (that root is ``data.data_root``).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from actionrec.data.prepare.jobs import write_lines_atomic
from actionrec.data.prepare.splits import (
    read_hmdb51_split,
    read_sthv2_split,
    read_ucf101_split,
)

FORMATS = ("videos", "rawframes")
SPLIT_STYLES = ("random", "ucf101", "hmdb51", "sthv2")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg")


@dataclass(frozen=True)
class Entry:
    """One video file or frame folder found in a tree.

    Attributes:
        key: Relative path without extension (``class/video``, or ``video`` in a flat tree); what
            official split files name.
        path: Relative path written to the list (with the extension for videos).
        class_name: The parent folder in a class-per-folder tree, else ``None``.
        total_frames: Frames in the folder (rawframes), ``None`` for videos.
    """

    key: str
    path: str
    class_name: str | None
    total_frames: int | None = None


def count_frames(frame_dir: str | os.PathLike, filename_tmpl: str, start_index: int = 1) -> int:
    """Number of consecutive frames ``filename_tmpl.format(start_index + i)`` in a folder."""
    present = set(os.listdir(frame_dir))
    count = 0
    while filename_tmpl.format(start_index + count) in present:
        count += 1
    return count


def scan_tree(
    root: str | os.PathLike,
    format: str = "videos",
    level: int = 2,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    filename_tmpl: str = "img_{:05}.jpg",
    start_index: int = 1,
) -> list[Entry]:
    """Find the videos (or frame folders) of a tree, sorted by key.

    Args:
        root: ``root/class/video.mp4`` (``level=2``) or ``root/video.mp4`` (``level=1``); for
            rawframes, ``root/class/video/img_00001.jpg`` and ``root/video/...``.
        format: ``"videos"`` or ``"rawframes"``.
        level: 2 for a class-per-folder tree, 1 for a flat one.
        extensions: Video file suffixes to take (case-insensitive).
        filename_tmpl, start_index: How frames are named (rawframes only); frame folders
            holding no frame under this template are skipped.

    Raises:
        ValueError: On a bad argument, or a path with whitespace (lists split on whitespace).
        FileNotFoundError: When ``root`` is not a folder.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {FORMATS}")
    if level not in (1, 2):
        raise ValueError(f"level={level} must be 1 (flat tree) or 2 (class-per-folder tree)")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder not found: {root}")
    suffixes = {s.lower() if s.startswith(".") else f".{s.lower()}" for s in extensions}
    folders = [root] if level == 1 else sorted(p for p in root.iterdir() if p.is_dir())
    entries = []
    for folder in folders:
        class_name = None if level == 1 else folder.name
        for child in sorted(folder.iterdir()):
            if child.name.startswith("."):
                continue  # partial outputs and markers of our own scripts
            if format == "videos" and child.is_file() and child.suffix.lower() in suffixes:
                key = child.relative_to(root).with_suffix("").as_posix()
                entries.append(Entry(key, child.relative_to(root).as_posix(), class_name))
            elif format == "rawframes" and child.is_dir():
                total = count_frames(child, filename_tmpl, start_index)
                if total > 0:
                    rel = child.relative_to(root).as_posix()
                    entries.append(Entry(rel, rel, class_name, total))
    for entry in entries:
        if any(c.isspace() for c in entry.path):
            raise ValueError(
                f"{root / entry.path}: the path holds whitespace, which mmaction2 lists cannot "
                "hold; rename it (e.g. spaces to underscores) and run again"
            )
    return sorted(entries, key=lambda e: e.key)


def split_random(
    labelled: Sequence[tuple[Entry, int]], val_ratio: float, seed: int = 0
) -> tuple[list[tuple[Entry, int]], list[tuple[Entry, int]]]:
    """Split per class: ``round(n * val_ratio)`` of each class's n entries go to val.

    The draw depends only on the seed and the entry keys, not on the order of ``labelled``.
    Both parts are returned sorted by key.
    """
    if not 0 <= val_ratio < 1:
        raise ValueError(f"val_ratio={val_ratio} must be in [0, 1)")
    by_label: dict[int, list[tuple[Entry, int]]] = defaultdict(list)
    for item in sorted(labelled, key=lambda pair: pair[0].key):
        by_label[item[1]].append(item)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        n_val = round(len(members) * val_ratio)
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train, key=lambda p: p[0].key), sorted(val, key=lambda p: p[0].key)


def format_line(entry: Entry, label: int | None) -> str:
    """One list line: ``path label`` (videos) or ``frame_dir total_frames label`` (rawframes)."""
    fields = [entry.path]
    if entry.total_frames is not None:
        fields.append(str(entry.total_frames))
    if label is not None:
        fields.append(str(label))
    return " ".join(fields)


def read_classes(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (line ``i`` is label ``i - 1``); ``classes.txt`` format."""
    names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n]


def label_by_folder(
    entries: Iterable[Entry], classes: Sequence[str] | None = None
) -> tuple[list[tuple[Entry, int]], list[str]]:
    """Label entries by their class folder; classes sorted by name unless given.

    Raises:
        ValueError: When an entry has no class folder or its folder is not in ``classes``.
    """
    entries = list(entries)
    if any(e.class_name is None for e in entries):
        raise ValueError("a flat tree (level=1) has no class folders: use official split files")
    classes = list(classes) if classes is not None else sorted({e.class_name for e in entries})
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({e.class_name for e in entries} - index.keys())
    if unknown:
        raise ValueError(f"class folders not in the class list: {unknown[:5]} ({len(unknown)})")
    return [(e, index[e.class_name]) for e in entries], classes


def match_split(entries: Sequence[Entry], split: dict[str, int]) -> tuple[list, list[str]]:
    """Pair the listed keys with the entries found; also return the listed keys not found.

    A key matches an entry's key, or, in a flat tree, its last component.
    """
    by_key = {e.key: e for e in entries}
    by_key.update({e.key.rsplit("/", 1)[-1]: e for e in entries if "/" not in e.key})
    found, missing = [], []
    for key, label in sorted(split.items()):
        entry = by_key.get(key) or by_key.get(key.rsplit("/", 1)[-1])
        if entry is None:
            missing.append(key)
        else:
            found.append((entry, label))
    return found, missing


def write_list(path: str | os.PathLike, labelled: Iterable[tuple[Entry, int | None]]) -> Path:
    """Write an mmaction2 list (atomically)."""
    return write_lines_atomic(path, (format_line(e, label) for e, label in labelled))


def write_classes(path: str | os.PathLike, classes: Sequence[str]) -> Path:
    """Write ``classes.txt``: line ``i`` holds the name of label ``i - 1``."""
    return write_lines_atomic(path, classes)


@dataclass(frozen=True)
class WrittenList:
    """A list file written: where, how many lines, and the listed videos not found."""

    path: Path
    lines: int
    missing: tuple[str, ...] = ()


def build_file_lists(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    format: str = "videos",
    split_style: str = "random",
    val_ratio: float = 0.2,
    seed: int = 0,
    name: str = "",
    subset: str = "train",
    ann_dir: str | os.PathLike | None = None,
    splits: Sequence[int] = (1, 2, 3),
    classes_file: str | os.PathLike | None = None,
    level: int = 2,
    filename_tmpl: str = "img_{:05}.jpg",
    start_index: int = 1,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> list[WrittenList]:
    """Scan ``src`` and write its lists and ``classes.txt`` into ``out_dir``.

    ``split_style="random"`` labels by class folder (sorted names, or ``classes_file``) and
    writes ``{name}_train_list_{format}.txt`` and ``{name}_val_list_{format}.txt``, or with
    ``val_ratio=0`` only ``{name}_{subset}_list_{format}.txt``. ``"ucf101"`` and ``"hmdb51"``
    read the official split files in ``ann_dir`` and write ``{name}_{train,val}_split_{k}_
    {format}.txt`` for each k in ``splits``; ``"sthv2"`` writes ``{name}_{train,val}_list_
    {format}.txt`` from its JSON files. ``name`` defaults to the split style (none for random).

    Returns:
        The files written, ``classes.txt`` last.
    """
    if split_style not in SPLIT_STYLES:
        raise ValueError(f"split_style={split_style!r} is not one of {SPLIT_STYLES}")
    if split_style != "random" and ann_dir is None:
        raise ValueError(f"split_style={split_style!r} needs ann_dir (its split files)")
    entries = scan_tree(src, format, level, extensions, filename_tmpl, start_index)
    if not entries:
        raise FileNotFoundError(f"no {format} found under {src} (level={level})")
    out_dir = Path(out_dir)
    if split_style != "random" and not name:
        name = split_style
    prefix = f"{name}_" if name else ""
    if split_style == "random":
        classes = read_classes(classes_file) if classes_file else None
        labelled, classes = label_by_folder(entries, classes)
        if val_ratio == 0:
            parts = {f"{prefix}{subset}_list_{format}.txt": (labelled, [])}
        else:
            train, val = split_random(labelled, val_ratio, seed)
            parts = {
                f"{prefix}train_list_{format}.txt": (train, []),
                f"{prefix}val_list_{format}.txt": (val, []),
            }
    else:
        classes, parts = _official_parts(entries, split_style, ann_dir, splits, prefix, format)
    written = [
        WrittenList(write_list(out_dir / file, items), len(items), tuple(missing))
        for file, (items, missing) in parts.items()
    ]
    written.append(WrittenList(write_classes(out_dir / "classes.txt", classes), len(classes)))
    return written


def _official_parts(
    entries: Sequence[Entry],
    split_style: str,
    ann_dir: str | os.PathLike,
    splits: Sequence[int],
    prefix: str,
    format: str,
) -> tuple[list[str], dict[str, tuple[list, list[str]]]]:
    parts: dict[str, tuple[list, list[str]]] = {}
    if split_style == "sthv2":
        classes, train, val = read_sthv2_split(ann_dir)
        named = {f"{prefix}train_list_{format}.txt": train, f"{prefix}val_list_{format}.txt": val}
    else:
        reader = read_ucf101_split if split_style == "ucf101" else read_hmdb51_split
        named = {}
        for k in splits:
            classes, train, val = reader(ann_dir, k)
            named[f"{prefix}train_split_{k}_{format}.txt"] = train
            named[f"{prefix}val_split_{k}_{format}.txt"] = val
    for file, split in named.items():
        found, missing = match_split(entries, split)
        if split and not found:
            raise FileNotFoundError(
                f"none of the {len(split)} videos of {file} were found in the scanned tree "
                f"(e.g. {next(iter(split))!r}); check the source folder and --level"
            )
        parts[file] = (found, missing)
    return classes, parts


def pair_outputs(
    src: str | os.PathLike,
    out: str | os.PathLike,
    level: int = 2,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    suffix: str = "",
) -> list[tuple[Path, Path]]:
    """``(video, output)`` pairs mirroring a tree: ``src/a/b.mp4`` -> ``out/a/b{suffix}``.

    A single video file ``src`` gives ``[(src, out/<stem>{suffix})]``.
    """
    src, out = Path(src), Path(out)
    if src.is_file():
        return [(src, out / f"{src.stem}{suffix}")]
    entries = scan_tree(src, "videos", level, extensions)
    return [(src / e.path, out / f"{e.key}{suffix}") for e in entries]
