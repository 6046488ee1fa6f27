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

from actionrec.data.annotations import VideoRecord, check_rawframes, load_annotations
from actionrec.data.decoding import BACKENDS, backend_unavailable, open_video, read_rawframes
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


def check_record(
    record: VideoRecord,
    dataset_type: str = "video",
    filename_tmpl: str = "img_{:05}.jpg",
    start_index: int | None = None,
    decoder: str = "pyav",
) -> str | None:
    """Why ``record`` cannot be read (``"ExceptionType: message"``), or ``None`` when it can."""
    try:
        if dataset_type == "video":
            with open_video(record.path, decoder) as video:
                video.read(probe_indices(video.num_frames))
        else:
            first = 1 if start_index is None else start_index
            if not record.total_frames:
                return f"total_frames={record.total_frames}: no frames to sample"
            check_rawframes(record, filename_tmpl, first)
            indices = probe_indices(record.total_frames) + first
            read_rawframes(record.path, indices, filename_tmpl, offset=record.offset)
    except Exception as error:  # any failure makes the entry bad; the reason says which
        return f"{type(error).__name__}: {error}"
    return None


def _check(record: VideoRecord, **kwargs: object) -> str | None:
    return check_record(record, **kwargs)


def check_annotations(
    ann_file: str | os.PathLike,
    data_root: str | os.PathLike = "",
    dataset_type: str = "video",
    filename_tmpl: str = "img_{:05}.jpg",
    start_index: int | None = None,
    decoder: str = "pyav",
    with_offset: bool = False,
    multi_class: bool = False,
    num_classes: int | None = None,
    num_workers: int = 1,
    show_progress: bool | None = None,
) -> tuple[list[VideoRecord], list[BadEntry]]:
    """Check every entry of a list; arguments as in the data config.

    Returns:
        ``(records, bad)``: all records of the list, and the bad ones in list order.

    Raises:
        AnnotationError: When the list itself cannot be parsed (the message names the line).
    """
    if decoder not in BACKENDS:
        raise ValueError(f"decoder={decoder!r} is not one of {BACKENDS}")
    reason = backend_unavailable(decoder) if dataset_type == "video" else None
    if reason is not None:  # else every video would be reported bad for it
        raise ValueError(f"decoder={decoder}: {reason}; or use the default decoder, pyav")
    records = load_annotations(
        ann_file, data_root, dataset_type, multi_class, num_classes, with_offset
    )
    check = partial(
        _check,
        dataset_type=dataset_type,
        filename_tmpl=filename_tmpl,
        start_index=start_index,
        decoder=decoder,
    )
    results = run_jobs(
        check, records, num_workers, f"checking {Path(ann_file).name}", show_progress
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
