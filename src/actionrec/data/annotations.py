"""Annotation lists in mmaction2's plain-text formats, parsed into records.

Three line formats, one sample per line, fields split on whitespace (or ``delimiter``):

- ``video``:                      ``path label [label ...]``
- ``rawframes``:                  ``frame_dir total_frames label [label ...]``
- ``rawframes`` + ``with_offset``: ``frame_dir offset total_frames label [label ...]``

Labels may be left out (inference lists); several labels need ``multi_class=True``. Every
problem is reported with the file, the 1-based line number, the line itself and the format.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

DATASET_TYPES = ("video", "rawframes")

_FORMATS = {
    ("video", False): "`path label [label ...]` (labels optional in inference lists)",
    ("rawframes", False): "`frame_dir total_frames label [label ...]` (labels optional)",
    ("rawframes", True): "`frame_dir offset total_frames label [label ...]` (labels optional)",
}


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
    dataset_type: str = "video",
    multi_class: bool = False,
    num_classes: int | None = None,
    with_offset: bool = False,
    delimiter: str | None = None,
    key: str | None = None,
) -> list[VideoRecord]:
    """Parse an mmaction2 annotation list.

    Args:
        ann_file: The list file.
        data_root: Prefix joined to every path in the list (absolute paths stay as they are).
        dataset_type: ``"video"`` or ``"rawframes"``.
        multi_class: Allow several labels per line; labels become tuples.
        num_classes: When given, every label must lie in ``[0, num_classes)``. Required with
            ``multi_class``.
        with_offset: Rawframes lines carry an ``offset`` before ``total_frames``.
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
    _check_arguments(dataset_type, multi_class, num_classes, with_offset, delimiter)
    path = Path(ann_file)
    if not path.is_file():
        raise AnnotationFileNotFoundError(_missing_file_message(path, key))
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            record = _parse_line(
                raw.rstrip("\r\n"), dataset_type, with_offset, delimiter, multi_class
            )
            where = f"{path}:{number}"
            if record is None or isinstance(record, str):
                raise AnnotationError(_line_message(where, raw, record, dataset_type, with_offset))
            _check_labels(record[1], num_classes, where, raw)
            name, label, total, offset = record
            records.append(VideoRecord(os.path.join(data_root, name), label, total, offset, number))
    return records


def _check_arguments(
    dataset_type: str,
    multi_class: bool,
    num_classes: int | None,
    with_offset: bool,
    delimiter: str | None,
) -> None:
    if dataset_type not in DATASET_TYPES:
        raise ValueError(f"dataset_type={dataset_type!r} is not one of {DATASET_TYPES}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be a positive integer or None")
    if multi_class and num_classes is None:
        raise ValueError("multi_class=True needs num_classes (labels become K-hot vectors)")
    if with_offset and dataset_type != "rawframes":
        raise ValueError(
            f"with_offset=True is only valid with dataset_type='rawframes', "
            f"got dataset_type={dataset_type!r}"
        )
    if delimiter == "":
        raise ValueError("delimiter='' is not allowed; use None for whitespace")


def _parse_line(
    raw: str, dataset_type: str, with_offset: bool, delimiter: str | None, multi_class: bool
) -> tuple[str, int | tuple[int, ...] | None, int | None, int] | str:
    """Split one line into (path, label, total_frames, offset), or return what is wrong."""
    fields = [f.strip() for f in raw.strip().split(delimiter)]
    name, rest = fields[0], fields[1:]
    if not name:
        return "the path is empty"
    total, offset = None, 0
    if dataset_type == "rawframes":
        counts = 2 if with_offset else 1
        if len(rest) < counts:
            return "too few fields"
        numbers = [_to_int(f) for f in rest[:counts]]
        if None in numbers or min(numbers) < 0:
            return "offset and total_frames must be non-negative integers"
        offset, total = numbers if with_offset else (0, numbers[0])
        rest = rest[counts:]
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


def _line_message(
    where: str, raw: str, problem: str | None, dataset_type: str, with_offset: bool
) -> str:
    fmt = _FORMATS[(dataset_type, with_offset)]
    return (
        f"{where}: cannot parse this line as dataset_type={dataset_type!r}"
        f"{' with_offset=true' if with_offset else ''}: {problem}\n"
        f"  line: {raw.rstrip()!r}\n"
        f"  expected: {fmt}"
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


def check_rawframes(
    record: VideoRecord, filename_tmpl: str = "img_{:05}.jpg", start_index: int = 1
) -> None:
    """Check that a frame folder holds the frames its record promises, with one listdir.

    Frames ``start_index + offset ... start_index + offset + total_frames - 1`` must exist
    under ``filename_tmpl``. When they do not, the message says whether another
    ``start_index`` or another ``filename_tmpl`` (guessed from the files present) would match.

    Args:
        record: A rawframes record (``total_frames`` set).
        filename_tmpl: Python format string turning a frame number into a file name.
        start_index: Number of the first frame (1 for mmaction2's extracted frames).

    Raises:
        ValueError: When ``record.total_frames`` is ``None``.
        FileNotFoundError: When the folder or some frames are missing.
    """
    if record.total_frames is None:
        raise ValueError(f"record for {record.path} has total_frames=None; not a rawframes record")
    where = f"{record.path} (line {record.line} of the list)"
    try:
        present = set(os.listdir(record.path))
    except FileNotFoundError:
        raise FileNotFoundError(f"frame folder not found: {where}; check data.data_root") from None
    first = start_index + record.offset
    missing = _missing_frames(present, filename_tmpl, first, record.total_frames)
    if not missing:
        return
    message = (
        f"{where}: {len(missing)} of total_frames={record.total_frames} frames are missing "
        f"with filename_tmpl={filename_tmpl!r} start_index={start_index}, e.g. {missing[0]!r}"
    )
    raise FileNotFoundError(message + _rawframes_hint(record, present, filename_tmpl, start_index))


def _missing_frames(present: set[str], filename_tmpl: str, first: int, total: int) -> list[str]:
    names = (filename_tmpl.format(first + i) for i in range(total))
    return [name for name in names if name not in present]


def _rawframes_hint(
    record: VideoRecord, present: set[str], filename_tmpl: str, start_index: int
) -> str:
    """Suggest the start_index or filename_tmpl that would match the files actually present."""
    total, offset = record.total_frames or 0, record.offset
    other = 1 - start_index if start_index in (0, 1) else None
    if other is not None and not _missing_frames(present, filename_tmpl, other + offset, total):
        return f"; start_index={other} matches the files present"
    guess = _guess_template(present)
    if guess is None:
        return f"; the folder holds {len(present)} files, none named like '<prefix><number>.<ext>'"
    tmpl, lowest, count = guess
    if tmpl == filename_tmpl and count < total:
        return f"; the folder holds only {count} such frames (from {lowest}): check the list"
    return f"; the files present look like filename_tmpl={tmpl!r} ({count} files from {lowest})"


_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")


def _guess_template(names: set[str]) -> tuple[str, int, int] | None:
    """Most common numbered-file pattern as (filename_tmpl, lowest number, file count)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in names:
        match = _NUMBERED.match(name)
        if match is not None:
            prefix, digits, suffix = match.groups()
            groups[(prefix, suffix)].append(digits)
    if not groups:
        return None
    (prefix, suffix), numbers = max(groups.items(), key=lambda item: len(item[1]))
    # A leading zero anywhere means zero-padding to that width; otherwise plain numbers.
    padded = [len(d) for d in numbers if d.startswith("0") and len(d) > 1]
    number = f"{{:0{max(padded)}}}" if padded else "{}"
    return f"{prefix}{number}{suffix}", min(int(d) for d in numbers), len(numbers)


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
