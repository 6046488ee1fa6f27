"""Frame folders: one image per frame (mmaction2's rawframes), read as a video.

Frames decode as mmcv decodes them (OpenCV), so pixels equal mmaction2's; given a box, only
that region of each JPEG is decoded (:mod:`actionrec.data.jpeg`), to the same pixels.
:class:`FrameFolderReader` puts a listed folder behind the :class:`VideoReader` interface;
:func:`check_rawframes` says why a folder does not hold the frames its list line promises.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict

import numpy as np
import torch

from actionrec.data import jpeg
from actionrec.data.annotations import VideoRecord
from actionrec.data.readers import Box, ReaderBase, decode_error


class FrameFolderReader(ReaderBase):
    """A listed frame folder as a reader (mmaction2's ``RawFrameDecode``).

    Indices are the frame numbers of the file names, as the sampler gives them (its
    ``start_index`` added); the record's ``offset`` is added before formatting a name.

    Args:
        record: The folder's list line (``total_frames`` is :attr:`num_frames`).
        filename_tmpl: Python format string turning a frame number into a file name.
        start_index: Number of the first frame, for the message when frames are missing.
    """

    backend = "rawframes"

    def __init__(
        self, record: VideoRecord, filename_tmpl: str = "img_{:05}.jpg", start_index: int = 1
    ) -> None:
        self.record = record
        self.path = record.path
        self.num_frames = record.total_frames
        self.filename_tmpl = filename_tmpl
        self.start_index = start_index
        self._files: dict[str, np.ndarray] = {}  # read by region_size, kept for read

    def region_size(self, indices: np.ndarray) -> tuple[int, int] | None:
        """The frames' ``(height, width)`` from the first file's header when it is a JPEG that
        :func:`~actionrec.data.jpeg.decode_region` decodes by region; None otherwise."""
        path = self._paths([int(np.min(indices))])[0]
        self._files[path] = self._load([path])[0]
        return jpeg.region_size(self._files[path])

    def read(self, indices: np.ndarray, box: Box | None = None) -> torch.Tensor:
        """Decode frames by number; see :func:`read_rawframes` and :class:`VideoReader`.

        Raises:
            FileNotFoundError: When a frame file is missing; the message says whether another
                ``start_index`` or ``filename_tmpl`` would match the files present.
        """
        unique, order = _distinct(indices)
        paths = self._paths(unique)
        return _decode(self._load(paths), paths, box, order, self.path)

    def _paths(self, numbers: list[int]) -> list[str]:
        offset = self.record.offset
        return [os.path.join(self.path, self.filename_tmpl.format(i + offset)) for i in numbers]

    def _load(self, paths: list[str]) -> list[np.ndarray]:
        try:
            return [
                self._files.pop(p) if p in self._files else _read_bytes(p, self.filename_tmpl)
                for p in paths
            ]
        except FileNotFoundError:
            check_rawframes(self.record, self.filename_tmpl, self.start_index)  # says why
            raise


def read_rawframes(
    frame_dir: str | os.PathLike,
    indices: np.ndarray,
    filename_tmpl: str = "img_{:05}.jpg",
    *,
    offset: int = 0,
    box: Box | None = None,
) -> torch.Tensor:
    """Read frames stored one image per file, decoding each distinct frame once.

    Args:
        frame_dir: Folder holding the frames.
        indices: 1-D integer array of frame numbers as they appear in file names (the
            sampler's ``start_index`` already added); may repeat and be unsorted.
        filename_tmpl: Python format string turning a frame number into a file name.
        offset: Added to every index before formatting (rawframes lists ``with_offset``).
        box: Keep only this ``(x1, y1, x2, y2)`` of every frame (None: whole frames). A JPEG
            that :func:`~actionrec.data.jpeg.region_size` accepts is decoded only there (see
            :mod:`actionrec.data.jpeg`); others are decoded whole and cropped. Same pixels.

    Returns:
        uint8 ``(T, 3, H, W)`` RGB frames in the order of ``indices`` (H, W: the box's when
        given), laid out channels-last (grayscale files are expanded to 3 channels).

    Raises:
        FileNotFoundError: When a frame file is missing.
        DecodeError: When a frame cannot be decoded, frames differ in size or the box does
            not fit in them.
    """
    unique, order = _distinct(indices)
    paths = [os.path.join(frame_dir, filename_tmpl.format(i + offset)) for i in unique]
    datas = [_read_bytes(p, filename_tmpl) for p in paths]
    return _decode(datas, paths, box, order, str(frame_dir))


def _distinct(indices: np.ndarray) -> tuple[list[int], np.ndarray | None]:
    """The distinct frame numbers, and where each index's frame is among them (None: in order)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if np.all(indices[1:] > indices[:-1]):  # sampled frames usually are: no repeats to share
        return indices.tolist(), None
    unique, inverse = np.unique(indices, return_inverse=True)
    return unique.tolist(), inverse.reshape(-1)


def _decode(
    datas: list[np.ndarray],
    paths: list[str],
    box: Box | None,
    order: np.ndarray | None,
    frame_dir: str,
) -> torch.Tensor:
    """Decode the files (the box of each, when given) to ``(T, 3, H, W)`` in ``order``."""
    if not datas:
        return torch.empty((0, 3, 0, 0), dtype=torch.uint8)
    if box is not None and jpeg.region_size(datas[0]) is not None:
        x1, y1, x2, y2 = box
        frames = np.empty((len(datas), y2 - y1, x2 - x1, 3), dtype=np.uint8)
        sizes = [
            jpeg.decode_region(data, box, out, path)
            for data, out, path in zip(datas, frames, paths, strict=True)
        ]
        _check_sizes(sizes, frame_dir)
    else:
        images = [jpeg.decode(data, path) for data, path in zip(datas, paths, strict=True)]
        _check_sizes([image.shape[:2] for image in images], frame_dir)
        frames = np.stack(images)  # (T, H, W, C)
        if box is not None:
            frames = _crop(frames, box, frame_dir)  # a view: rows stay packed for OpenCV
    if order is not None:
        frames = frames[order]
    return torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W), channels-last


def _crop(frames: np.ndarray, box: Box, frame_dir: str) -> np.ndarray:
    x1, y1, x2, y2 = box
    height, width = frames.shape[1:3]
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise decode_error(frame_dir, "rawframes", f"box {box} outside the {width}x{height} frames")
    return frames[:, y1:y2, x1:x2]


def _check_sizes(sizes: list[tuple[int, int]], frame_dir: str | os.PathLike) -> None:
    if len(set(sizes)) > 1:
        raise decode_error(str(frame_dir), "rawframes", "frames differ in size")


def _read_bytes(path: str, filename_tmpl: str) -> np.ndarray:
    try:
        # Unbuffered: one read of the whole file, no copy through a buffer (half np.fromfile's
        # cost, and 10-30% below a buffered read for 50 kB frames).
        with open(path, "rb", buffering=0) as file:
            return np.frombuffer(file.read(), dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"frame file not found: {path}; check data.filename_tmpl={filename_tmpl!r}, "
            "data.start_index (1 for mmaction2's extracted frames) and total_frames in the list"
        ) from None
    except OSError as error:
        raise decode_error(path, "rawframes", error) from error


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
