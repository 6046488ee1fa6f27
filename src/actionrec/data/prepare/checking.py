"""Decode a few frames of every entry of an annotation list and report the ones that fail.

Each video is opened with the training decoder and its first, middle and last frames are read;
each frame folder is checked for every frame its line promises, then the same three frames are
decoded. What fails is reported with the list's line number, and a cleaned list keeps the raw
text of the good lines only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from actionrec.data.annotations import VideoRecord, load_annotations
from actionrec.data.formats import MediaFormat, Videos
from actionrec.data.prepare.jobs import run_jobs, write_lines_atomic


@dataclass(frozen=True)
class BadEntry:
    """A list line whose video or frames cannot be read."""

    line: int
    path: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.path}: {self.reason}"


def probe_indices(num_frames: int) -> np.ndarray:
    """First, middle and last frame (0-based, distinct)."""
    return np.unique(np.array([0, num_frames // 2, num_frames - 1], dtype=np.int64))


def check_record(record: VideoRecord, media: MediaFormat) -> str | None:
    """Why ``record`` cannot be read (``"ExceptionType: message"``), or ``None`` when it can."""
    try:
        if record.total_frames == 0:
            return "total_frames=0: no frames to sample"
        media.check(record)
        with media.open(record) as reader:
            reader.read(probe_indices(reader.num_frames) + media.start_index)
    except Exception as error:  # any failure makes the entry bad; the reason says which
        return f"{type(error).__name__}: {error}"
    return None


def _check(record: VideoRecord, media: MediaFormat) -> str | None:
    return check_record(record, media)


def check_annotations(
    ann_file: str | os.PathLike,
    data_root: str | os.PathLike = "",
    media: MediaFormat | None = None,
    multi_class: bool = False,
    num_classes: int | None = None,
    num_workers: int = 1,
    show_progress: bool | None = None,
) -> tuple[list[VideoRecord], list[BadEntry]]:
    """Check every entry of a list of ``media`` (None: videos); arguments as in the data config.

    Returns:
        ``(records, bad)``: all records of the list, and the bad ones in list order.

    Raises:
        ValueError: When this machine cannot read the format (a decoder that is missing).
        AnnotationError: When the list itself cannot be parsed (the message names the line).
    """
    media = Videos() if media is None else media
    reason = media.unavailable()
    if reason is not None:  # else every entry would be reported bad for it
        raise ValueError(f"{reason}; or use the default decoder, pyav")
    records = load_annotations(ann_file, data_root, media, multi_class, num_classes)
    results = run_jobs(
        partial(_check, media=media),
        records,
        num_workers,
        f"checking {Path(ann_file).name}",
        show_progress,
    )
    bad = [
        BadEntry(r.item.line, r.item.path, r.value or r.error)
        for r in results
        if r.value is not None or not r.ok
    ]
    return records, bad


def write_clean_list(
    ann_file: str | os.PathLike, out: str | os.PathLike, bad: Sequence[BadEntry]
) -> int:
    """Copy ``ann_file`` to ``out`` without the bad lines (and blank lines); return lines kept."""
    drop = {entry.line for entry in bad}
    lines = Path(ann_file).read_text(encoding="utf-8").splitlines()
    kept = [
        line for number, line in enumerate(lines, start=1) if line.strip() and number not in drop
    ]
    write_lines_atomic(out, kept)
    return len(kept)
