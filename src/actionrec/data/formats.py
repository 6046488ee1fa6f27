"""Media formats: videos and frame folders, each a type that owns what differs between them.

A format knows how its annotation lines read (what comes between the path and the labels), how
to open a listed item as a :class:`~actionrec.data.readers.VideoReader`, how to check a list
before training starts, its ``start_index`` default, whether it decodes in a child process by
default, and what it is called in messages. The data config chooses one by mmaction2's keys
(:func:`media_format`); everything downstream receives the object, not the keys. A new format
is one class here and one entry in :data:`FORMATS`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from actionrec.data.annotations import VideoRecord
from actionrec.data.decoding import BACKENDS, backend_unavailable, open_video
from actionrec.data.prepare.filelists import count_frames
from actionrec.data.rawframes import FrameFolderReader, check_rawframes
from actionrec.data.readers import VideoReader

# What a list line holds after its path: total_frames, offset, and the label fields left.
LineCounts = tuple[int | None, int, list[str]]


class MediaFormat:
    """What a format provides; see the module docstring.

    Attributes:
        name: Its ``data.dataset_type`` value.
        noun: What its items are called in messages (plural).
        default_start_index: The number of its first frame when ``start_index`` is not set, as
            mmaction2's datasets default it.
        isolate_by_default: Whether its decoding runs in a child process unless
            ``data.isolate_decoder`` says otherwise (:mod:`actionrec.data.isolation`).
        start_index: The number of the first frame, added to every sampled index.
    """

    name: str = ""
    noun: str = ""
    default_start_index: int = 0
    isolate_by_default: bool = False

    def __init__(self, start_index: int | None = None) -> None:
        self.start_index = self.default_start_index if start_index is None else int(start_index)

    @property
    def settings(self) -> str:
        """The keys that choose this format, as a message names them."""
        return f"dataset_type={self.name!r}"

    @property
    def line_format(self) -> str:
        """One list line of this format, for messages about lines that do not parse."""
        raise NotImplementedError

    def split_line(self, fields: list[str]) -> LineCounts | str:
        """``(total_frames, offset, label fields)`` from a line's fields after the path, or
        what is wrong with them."""
        raise NotImplementedError

    def open(self, record: VideoRecord) -> VideoReader:
        """The listed item, ready to ``read`` (use it as a context manager)."""
        raise NotImplementedError

    def check(self, record: VideoRecord) -> None:
        """Raise, saying why, when a cheap look shows that ``record`` cannot be read."""

    def check_list(self, records: Sequence[VideoRecord]) -> None:
        """Stop early when the first records all fail :meth:`check`.

        One bad item is the skip policy's business; the first three all failing is a setting
        (``filename_tmpl``, ``start_index``) that would skip every sample.
        """
        errors = []
        for record in records[:3]:
            try:
                self.check(record)
            except FileNotFoundError as err:
                errors.append(err)
        if errors and len(errors) == len(records[:3]):
            raise errors[0]

    def unavailable(self) -> str | None:
        """Why this machine cannot read this format (the key and the reason); None when it can."""
        return None

    @classmethod
    def from_keys(
        cls, *, filename_tmpl: str, start_index: int | None, with_offset: bool, decoder: str
    ) -> MediaFormat:
        """This format from the data config's keys, taking those it needs (see
        :func:`media_format`)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Videos(MediaFormat):
    """Video files, decoded by ``decoder`` (see :func:`actionrec.data.decoding.open_video`).

    List lines: ``path label [label ...]``. Frames count from 0; decoding runs in a child
    process by default: native decoders can crash or hang.
    """

    name = "video"
    noun = "videos"
    default_start_index = 0
    isolate_by_default = True

    def __init__(self, decoder: str = "pyav", start_index: int | None = None) -> None:
        if decoder not in BACKENDS:
            raise ValueError(f"decoder={decoder!r} is not one of {BACKENDS}")
        super().__init__(start_index)
        self.decoder = decoder

    @property
    def line_format(self) -> str:
        return "`path label [label ...]` (labels optional in inference lists)"

    def split_line(self, fields: list[str]) -> LineCounts | str:
        return None, 0, fields

    def open(self, record: VideoRecord) -> VideoReader:
        return open_video(record.path, backend=self.decoder)

    def unavailable(self) -> str | None:
        reason = backend_unavailable(self.decoder)
        return None if reason is None else f"decoder={self.decoder}: {reason}"

    @classmethod
    def from_keys(
        cls, *, filename_tmpl: str, start_index: int | None, with_offset: bool, decoder: str
    ) -> Videos:
        if with_offset:
            raise ValueError(
                "with_offset=True is only valid with dataset_type='rawframes', "
                f"got dataset_type={cls.name!r}"
            )
        return cls(decoder, start_index)


class FrameFolders(MediaFormat):
    """Folders of one image per frame (mmaction2's rawframes), named by ``filename_tmpl``.

    List lines: ``frame_dir total_frames label [label ...]``, with ``with_offset``
    ``frame_dir offset total_frames label [label ...]``. Frames count from 1. JPEG errors are
    caught by libjpeg-turbo or OpenCV, so no child process by default: it would buy nothing for
    its cost (``docs/benchmarks.md``).

    Args:
        filename_tmpl: Python format string turning a frame number into a file name.
        start_index: The number of the first frame (None: 1).
        with_offset: List lines carry an offset added to every frame number.
    """

    name = "rawframes"
    noun = "frame folders"
    default_start_index = 1
    isolate_by_default = False

    def __init__(
        self,
        filename_tmpl: str = "img_{:05}.jpg",
        start_index: int | None = None,
        with_offset: bool = False,
    ) -> None:
        super().__init__(start_index)
        self.filename_tmpl = filename_tmpl
        self.with_offset = bool(with_offset)

    @property
    def settings(self) -> str:
        return super().settings + (" with_offset=true" if self.with_offset else "")

    @property
    def line_format(self) -> str:
        offset = "offset " if self.with_offset else ""
        return f"`frame_dir {offset}total_frames label [label ...]` (labels optional)"

    def split_line(self, fields: list[str]) -> LineCounts | str:
        counts = 2 if self.with_offset else 1
        if len(fields) < counts:
            return "too few fields"
        try:
            numbers = [int(f) for f in fields[:counts]]
        except ValueError:
            numbers = []
        if not numbers or min(numbers) < 0:
            return "offset and total_frames must be non-negative integers"
        offset, total = numbers if self.with_offset else (0, numbers[0])
        return total, offset, fields[counts:]

    def open(self, record: VideoRecord) -> VideoReader:
        return FrameFolderReader(record, self.filename_tmpl, self.start_index)

    def check(self, record: VideoRecord) -> None:
        """Every frame the record promises exists (see :func:`check_rawframes`)."""
        check_rawframes(record, self.filename_tmpl, self.start_index)

    def count_frames(self, folder: str | os.PathLike) -> int:
        """The number of consecutive frames from ``start_index`` in a folder that no list
        describes.

        Raises:
            FileNotFoundError: When there are none, naming the settings to change.
        """
        count = count_frames(folder, self.filename_tmpl, self.start_index)
        if count == 0:
            raise FileNotFoundError(
                f"{folder} holds no frames named like "
                f"{self.filename_tmpl.format(self.start_index)!r} "
                "(set data.filename_tmpl=... and data.start_index=...)"
            )
        return count

    @classmethod
    def from_keys(
        cls, *, filename_tmpl: str, start_index: int | None, with_offset: bool, decoder: str
    ) -> FrameFolders:
        return cls(filename_tmpl, start_index, with_offset)


# data.dataset_type -> the format it names.
FORMATS: dict[str, type[MediaFormat]] = {"video": Videos, "rawframes": FrameFolders}


def media_format(
    dataset_type: str = "video",
    *,
    filename_tmpl: str = "img_{:05}.jpg",
    start_index: int | None = None,
    with_offset: bool = False,
    decoder: str = "pyav",
) -> MediaFormat:
    """The format that mmaction2's data keys name, built from the keys it takes.

    ``start_index`` None is the format's own; an explicit value wins. Errors name the key and
    the value (callers add their prefix, e.g. ``data.``).

    Raises:
        ValueError: On an unknown ``dataset_type`` or ``decoder`` (a typo in either stops
            every format), or ``with_offset`` with videos.
    """
    if dataset_type not in FORMATS:
        raise ValueError(f"dataset_type={dataset_type!r} is not one of {tuple(FORMATS)}")
    if decoder not in BACKENDS:
        raise ValueError(f"decoder={decoder!r} is not one of {BACKENDS}")
    return FORMATS[dataset_type].from_keys(
        filename_tmpl=filename_tmpl,
        start_index=start_index,
        with_offset=with_offset,
        decoder=decoder,
    )
