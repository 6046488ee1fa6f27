"""The dataset: one annotation record in, one sampled, decoded, augmented uint8 clip out."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from actionrec.data.annotations import VideoRecord, check_rawframes
from actionrec.data.decoding import DecodeError, open_video, read_rawframes
from actionrec.data.isolation import DecoderCrash, DecoderProcess
from actionrec.data.rawframes import RegionFn
from actionrec.data.sampling import SampleFrames

log = logging.getLogger(__name__)

DATASET_TYPES = ("video", "rawframes")
# The number of a format's first frame, as mmaction2's datasets default it: extracted frames
# are named from 1, a video's frames counted from 0.
START_INDEX = {"video": 0, "rawframes": 1}
ON_ERROR = ("skip", "raise")
Pipeline = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]


class MediaError(RuntimeError):
    """A video or frame folder that could not be read (``on_error=raise``)."""


class VideoDataset(Dataset):
    """Samples frame indices, decodes only those frames, and applies a transform pipeline.

    A sample is ``{"imgs": uint8 (T, C, H, W), "label": int64 (), "skipped": str}`` (see
    :meth:`__getitem__` for ``skipped``), T being every sampled frame (clips x clip_len, in
    order); a multi-crop pipeline (ThreeCrop, TenCrop) makes it ``(crops, T, C, H, W)``. How
    those frames form the network's views is the model's business
    (:meth:`actionrec.module.Recognizer.to_views`), not the data's. With
    ``multi_class`` the label is a multi-hot float ``(K,)``; a record without label gives -1.

    Args:
        records: the parsed annotation list.
        sampler: draws the frame indices (start_index is added by it).
        pipeline: callable ``(imgs, rng) -> imgs`` on uint8 frames.
        dataset_type: ``"video"`` (decoded by ``decoder``) or ``"rawframes"`` (JPEG folders).
        filename_tmpl: frame file names of a rawframes folder, formatted with the frame index.
        start_index: index of the first frame (mmaction2: 1 for rawframes, 0 for videos).
        decoder: video backend name, see :func:`actionrec.data.decoding.open_video`.
        num_classes: K, needed for ``multi_class`` targets.
        multi_class: several labels per video, multi-hot targets.
        on_error: ``"skip"`` replaces an unreadable sample by another (counted, logged);
            ``"raise"`` stops with the file named.
        max_retries: give up after this many unreadable samples in a row.
        decode_timeout: seconds one sample's decoding may take before it counts as unreadable
            (None: no limit).
        isolate_decoder: decode in a child process (see :mod:`actionrec.data.isolation`), so
            a decoder that crashes or hangs in native code costs one sample, not the run.
            Without it the timeout only interrupts Python-level decode loops.
        seed: with the epoch and the index, what every random draw of a sample comes from.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampler: SampleFrames,
        pipeline: Pipeline,
        dataset_type: str = "video",
        filename_tmpl: str = "img_{:05}.jpg",
        start_index: int | None = None,
        decoder: str = "pyav",
        num_classes: int | None = None,
        multi_class: bool = False,
        on_error: str = "skip",
        max_retries: int = 10,
        decode_timeout: float | None = 60.0,
        isolate_decoder: bool = True,
        seed: int = 0,
    ) -> None:
        if dataset_type not in DATASET_TYPES:
            raise ValueError(f"dataset_type={dataset_type!r} is not one of {DATASET_TYPES}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r} is not one of {ON_ERROR}")
        if multi_class and not num_classes:
            raise ValueError("multi_class=true needs num_classes")
        self.records = list(records)
        self.sampler = sampler
        self.pipeline = pipeline
        self.dataset_type = dataset_type
        self.filename_tmpl = filename_tmpl
        self.start_index = START_INDEX[dataset_type] if start_index is None else start_index
        self.decoder = decoder
        self.num_classes = num_classes
        self.multi_class = multi_class
        self.on_error = on_error
        self.max_retries = max_retries
        self.decode_timeout = decode_timeout
        # One child process per DataLoader worker (created on first use in that worker).
        self._decoder_process = DecoderProcess(decode_timeout) if isolate_decoder else None
        self.seed = seed

    def close(self) -> None:
        """Stop this process's decoder child, if any (a later sample starts a new one)."""
        if self._decoder_process is not None:
            self._decoder_process.close()

    def __len__(self) -> int:
        return len(self.records)

    def sample_rng(self, idx: int, epoch: int = 0) -> np.random.Generator:
        """The generator of every random draw for sample ``idx`` in ``epoch``.

        A pure function of ``(seed, epoch, idx)``, not of the process that draws: no two
        workers or epochs repeat a draw, the number of workers or devices changes nothing, and
        a resumed run draws what the uninterrupted one would have (worker states cannot be
        saved in a checkpoint).
        """
        return np.random.default_rng([self.seed, epoch, idx])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """The sample at ``key``, or under ``on_error=skip`` a replacement for an unreadable one.

        ``key`` is an index, or ``(index, epoch)`` from a sampler that knows the epoch
        (:class:`~actionrec.data.datamodule.EpochShuffleSampler`); a bare index draws as in
        epoch 0. ``"skipped"`` lists the ``path: reason`` of each unreadable record replaced on
        the way (one per line, empty when none), so the main process can count and report them.
        """
        idx, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), 0)
        rng = self.sample_rng(idx, epoch)  # replacements draw on from it: deterministic too
        skipped: list[str] = []
        requested = idx
        for _ in range(self.max_retries + 1):
            record = self.records[idx]
            try:
                imgs, pipeline = self._read(record, rng)
            except Exception as err:  # any failure to produce this sample, a reader's bug too
                reason = err if isinstance(err, DecodeError | OSError) else repr(err)
                if self.on_error == "raise":
                    raise MediaError(
                        f"cannot load {record.path} (list line {record.line}): {reason}; "
                        "data.on_error=skip replaces unreadable samples instead"
                    ) from err
                skipped.append(f"{record.path} (list line {record.line}): {reason}")
                log.debug("skipped unreadable sample %s", skipped[-1])
                idx = int(rng.integers(len(self.records)))
                continue
            imgs = pipeline(imgs, rng)
            return {
                "imgs": imgs,
                "label": self.target(record),
                "index": requested,  # the list line asked for, even when it was replaced
                "skipped": "\n".join(skipped),
            }
        raise MediaError(
            f"{len(skipped)} samples in a row could not be loaded, e.g. {skipped[0]}. "
            "Check the data with scripts/check_dataset.py."
        )

    def _read(self, record: VideoRecord, rng: np.random.Generator) -> tuple[torch.Tensor, Pipeline]:
        """Decode one record's frames; returns them with the transforms still to run.

        Frame folders decode in-process only the box the pipeline's leading crop keeps (see
        :meth:`~actionrec.data.transforms.Compose.split_crop`): the same draws and pixels as
        decoding whole frames and running the whole pipeline, for less decoding.
        """
        split_crop = getattr(self.pipeline, "split_crop", None)
        if self.dataset_type != "rawframes" or self._decoder_process is not None or not split_crop:
            return self.read_frames(record, rng), self.pipeline
        rest = self.pipeline

        def region(height: int, width: int) -> tuple[int, int, int, int] | None:
            nonlocal rest
            box, rest = split_crop(height, width, rng)
            return box

        imgs = self.read_frames(record, rng, region=region)
        return imgs, rest

    def read_frames(
        self,
        record: VideoRecord,
        rng: np.random.Generator,
        region: RegionFn | None = None,
    ) -> torch.Tensor:
        """Sample one record's frame indices and decode those frames, uint8 ``(T, C, H, W)``.

        ``region`` (frame folders decoded in-process only): see
        :func:`~actionrec.data.rawframes.read_rawframes`.
        """
        job = (
            record,
            self.sampler,
            self.dataset_type,
            self.decoder,
            self.start_index,
            self.filename_tmpl,
            int(rng.integers(2**63)),
        )
        if self._decoder_process is not None:
            try:
                return self._decoder_process.call(decode_record, *job)
            except DecoderCrash as err:
                raise DecodeError(f"{record.path}: {err}", path=record.path) from err
        with decode_deadline(self.decode_timeout, record.path):
            return decode_record(*job, region=region)

    def target(self, record: VideoRecord) -> torch.Tensor:
        label = record.label
        if self.multi_class:
            onehot = torch.zeros(self.num_classes)
            if label is not None:
                onehot[list(label) if isinstance(label, tuple) else [label]] = 1.0
            return onehot
        if isinstance(label, tuple):
            label = label[0]
        return torch.tensor(-1 if label is None else label, dtype=torch.long)


@contextlib.contextmanager
def decode_deadline(seconds: float | None, path: str) -> Iterator[None]:
    """Raise :class:`DecodeError` in the block once ``seconds`` have passed (main thread only)."""
    usable = seconds and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise DecodeError(f"decoding took longer than {seconds} s (data.decode_timeout)", path=path)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def decode_record(
    record: VideoRecord,
    sampler: SampleFrames,
    dataset_type: str,
    decoder: str,
    start_index: int,
    filename_tmpl: str,
    seed: int,
    region: RegionFn | None = None,
) -> torch.Tensor:
    """Sample a record's frame indices (drawn from ``seed``) and decode only those frames.

    A module-level function so that a decoder process can run it. Returns uint8
    ``(T, C, H, W)``; ``region`` applies to frame folders (see
    :func:`~actionrec.data.rawframes.read_rawframes`).
    """
    rng = np.random.default_rng(seed)
    if dataset_type == "video":
        with open_video(record.path, backend=decoder) as video:
            return video.read(sampler(video.num_frames, start_index, rng, fps=video.fps))
    inds = sampler(record.total_frames, start_index, rng) + record.offset
    try:
        return read_rawframes(record.path, inds, filename_tmpl, region=region)
    except FileNotFoundError:
        # Say why: a short folder, or names that another start_index/template matches.
        check_rawframes(record, filename_tmpl, start_index)
        raise
