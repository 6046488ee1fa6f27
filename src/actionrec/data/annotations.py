"""Annotation lists in mmaction2's plain-text formats, parsed into records.

One sample per line, fields split on whitespace (or ``delimiter``): the path, what the media
format puts next (:meth:`~actionrec.data.formats.MediaFormat.split_line`), then the labels:

- videos:                         ``path label [label ...]``
- frame folders:                  ``frame_dir total_frames label [label ...]``
- frame folders + ``with_offset``: ``frame_dir offset total_frames label [label ...]``

Labels may be left out (inference lists); several labels need ``multi_class=True``. Every
problem is reported with the file, the 1-based line number, the line itself and the format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # formats reads records: importing it here at run time would be circular
    from actionrec.data.formats import MediaFormat


class AnnotationError(ValueError):
    """A list file that cannot be read: a bad line, a label out of range or a missing file."""


class AnnotationFileNotFoundError(AnnotationError, FileNotFoundError):
    """The list file itself does not exist (caught by both ``except`` clauses)."""


@dataclass(frozen=True)
class VideoRecord:
    """One line of an annotation list.

    Attributes:
        path: Video file or frame folder, already joined with ``data_root``.
        label: Class index, a tuple of class indices (``multi_class``), or ``None`` when the
            line has no label (inference lists).
        total_frames: Number of frames in the folder (rawframes only; ``None`` for videos,
            whose frame count comes from the decoder).
        offset: Added to every frame number before it is turned into a file name (rawframes
            lists ``with_offset``).
        line: 1-based line number in the list, for error messages (0 when not from a file).
    """

    path: str
    label: int | tuple[int, ...] | None
    total_frames: int | None = None
    offset: int = 0
    line: int = 0


def load_annotations(
    ann_file: str | os.PathLike,
    data_root: str | os.PathLike = "",
    media: MediaFormat | None = None,
    multi_class: bool = False,
    num_classes: int | None = None,
    delimiter: str | None = None,
    key: str | None = None,
) -> list[VideoRecord]:
    """Parse an mmaction2 annotation list.

    Args:
        ann_file: The list file.
        data_root: Prefix joined to every path in the list (absolute paths stay as they are).
        media: The list's media format (:mod:`actionrec.data.formats`); None: videos.
        multi_class: Allow several labels per line; labels become tuples.
        num_classes: When given, every label must lie in ``[0, num_classes)``. Required with
            ``multi_class``.
        delimiter: Field separator; ``None`` splits on any whitespace.
        key: Config key that sets ``ann_file`` (e.g. ``"data.ann_file_train"``), named in the
            message when the file is missing.

    Returns:
        One record per non-blank line, in file order.

    Raises:
        ValueError: On an invalid argument.
        AnnotationFileNotFoundError: When ``ann_file`` does not exist.
        AnnotationError: On a malformed line or a label outside ``[0, num_classes)``.
    """
    if media is None:
        from actionrec.data.formats import Videos  # see the import at the top

        media = Videos()
    _check_arguments(multi_class, num_classes, delimiter)
    path = Path(ann_file)
    if not path.is_file():
        raise AnnotationFileNotFoundError(_missing_file_message(path, key))
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            record = _parse_line(raw.rstrip("\r\n"), media, delimiter, multi_class)
            where = f"{path}:{number}"
            if isinstance(record, str):
                raise AnnotationError(_line_message(where, raw, record, media))
            _check_labels(record[1], num_classes, where, raw)
            name, label, total, offset = record
            records.append(VideoRecord(os.path.join(data_root, name), label, total, offset, number))
    return records


def _check_arguments(multi_class: bool, num_classes: int | None, delimiter: str | None) -> None:
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be a positive integer or None")
    if multi_class and num_classes is None:
        raise ValueError("multi_class=True needs num_classes (labels become K-hot vectors)")
    if delimiter == "":
        raise ValueError("delimiter='' is not allowed; use None for whitespace")


def _parse_line(
    raw: str, media: MediaFormat, delimiter: str | None, multi_class: bool
) -> tuple[str, int | tuple[int, ...] | None, int | None, int] | str:
    """Split one line into (path, label, total_frames, offset), or return what is wrong."""
    fields = [f.strip() for f in raw.strip().split(delimiter)]
    name = fields[0]
    if not name:
        return "the path is empty"
    counts = media.split_line(fields[1:])
    if isinstance(counts, str):
        return counts
    total, offset, rest = counts
    labels = [_to_int(f) for f in rest]
    if None in labels:
        return "labels must be integers"
    if len(labels) > 1 and not multi_class:
        return f"{len(labels)} labels on one line; set multi_class=true for multi-label lists"
    if not labels:
        return name, None, total, offset
    label = tuple(labels) if multi_class else labels[0]
    return name, label, total, offset


def _to_int(field: str) -> int | None:
    try:
        return int(field)
    except ValueError:
        return None


def _check_labels(
    label: int | tuple[int, ...] | None, num_classes: int | None, where: str, raw: str
) -> None:
    labels = (label,) if isinstance(label, int) else label or ()
    for value in labels:
        if value < 0 or (num_classes is not None and value >= num_classes):
            allowed = f"outside [0, {num_classes})" if num_classes else "negative"
            raise AnnotationError(
                f"{where}: label {value} is {allowed} (num_classes={num_classes})\n"
                f"  line: {raw.rstrip()!r}"
            )


def _line_message(where: str, raw: str, problem: str, media: MediaFormat) -> str:
    return (
        f"{where}: cannot parse this line as {media.settings}: {problem}\n"
        f"  line: {raw.rstrip()!r}\n"
        f"  expected: {media.line_format}"
    )


def _missing_file_message(path: Path, key: str | None) -> str:
    hint = (
        f"set {key}=/path/to/list.txt"
        if key
        else "set the list in the data config, e.g. data.ann_file_train=/path/to/list.txt"
    )
    return (
        f"annotation list not found: {path.absolute()}; {hint} "
        f"(paths inside the list are joined with data.data_root=...)"
    )


def read_label_map(path: str | Path, num_classes: int, key: str = "labels") -> list[str]:
    """Class names from a label map: one name per line, line i names class i.

    Trailing blank lines are ignored; any other count than ``num_classes`` is an error that
    names ``key``, the option the path came from.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label map not found: {key}={path}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    if len(names) != num_classes:
        raise ValueError(
            f"{key}={path} has {len(names)} lines, but there are {num_classes} classes "
            "(one name per line, line i names class i)"
        )
    return names
