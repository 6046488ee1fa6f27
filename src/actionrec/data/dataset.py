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

from actionrec.data.annotations import VideoRecord
from actionrec.data.formats import MediaFormat, Videos
from actionrec.data.isolation import DecoderCrash, DecoderProcess
from actionrec.data.readers import DecodeError
from actionrec.data.sampling import SampleFrames
from actionrec.data.transforms import Compose

log = logging.getLogger(__name__)

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
        sampler: draws the frame indices (it adds the format's ``start_index``).
        pipeline: the transforms on uint8 frames, a :class:`~actionrec.data.transforms.Compose`
            (read in process, a reader that decodes regions is asked for only the box its
            leading crop keeps: :meth:`~actionrec.data.transforms.Compose.split_crop`), or any
            callable ``(imgs, rng) -> imgs``, run as one step on whole frames.
        media: the records' format (:mod:`actionrec.data.formats`); None: videos.
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
        media: MediaFormat | None = None,
        num_classes: int | None = None,
        multi_class: bool = False,
        on_error: str = "skip",
        max_retries: int = 10,
        decode_timeout: float | None = 60.0,
        isolate_decoder: bool = True,
        seed: int = 0,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r} is not one of {ON_ERROR}")
        if multi_class and not num_classes:
            raise ValueError("multi_class=true needs num_classes")
        self.records = list(records)
        self.sampler = sampler
        self.pipeline = pipeline if isinstance(pipeline, Compose) else Compose([pipeline])
        self.media = Videos() if media is None else media
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

    def _read(self, record: VideoRecord, rng: np.random.Generator) -> tuple[torch.Tensor, Compose]:
        """Decode one record's sampled frames; returns them with the transforms still to run.

        In process, a reader that decodes regions (frame folders) is asked for only the box
        the pipeline's leading crop keeps (:meth:`~actionrec.data.transforms.Compose.split_crop`):
        the same draws and pixels as decoding whole frames and running the whole pipeline, for
        less decoding. A decoder process returns whole frames.
        """
        seed = int(rng.integers(2**63))
        if self._decoder_process is not None:
            try:
                job = (self.media, record, self.sampler, seed)
                return self._decoder_process.call(decode_clip, *job), self.pipeline
            except DecoderCrash as err:
                raise DecodeError(f"{record.path}: {err}", path=record.path) from err
        with decode_deadline(self.decode_timeout, record.path), self.media.open(record) as reader:
            draws = np.random.default_rng(seed)
            indices = self.sampler(reader.num_frames, self.media.start_index, draws, fps=reader.fps)
            size = reader.region_size(indices)  # known before decoding: choose the box first
            box, rest = None, self.pipeline
            if size is not None:
                box, rest = self.pipeline.split_crop(*size, rng)
            return reader.read(indices, box), rest

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


def decode_clip(
    media: MediaFormat, record: VideoRecord, sampler: SampleFrames, seed: int
) -> torch.Tensor:
    """Sample a record's frame indices (drawn from ``seed``) and decode only those frames.

    Whole frames, uint8 ``(T, C, H, W)``; a module-level function, so that a decoder process
    can run it.
    """
    with media.open(record) as reader:
        rng = np.random.default_rng(seed)
        return reader.read(sampler(reader.num_frames, media.start_index, rng, fps=reader.fps))
