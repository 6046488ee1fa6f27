"""Videos to frame folders (mmaction2's rawframes): ``img_00001.jpg``, ``img_00002.jpg`` ...

Every frame a sequential PyAV decode yields is written, so a folder holds as many frames as the
``pyav`` decoder counts in the video. Frames are resized with :func:`actionrec.data.functional.
resize` (the training pipeline's kernel) to a short side, then JPEG-encoded by torchvision.
A folder is complete when its ``.done`` marker exists; it is built under a temporary name and
renamed, so an interrupted run leaves no half folder that looks finished.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from torchvision.io import encode_jpeg

from actionrec.data.decoding import DecodeError
from actionrec.data.functional import rescale_size, resize

DONE = ".done"
_CHUNK = 16  # frames resized and encoded together


@dataclass(frozen=True)
class FrameFolder:
    """Result of one extraction: the folder, its frame count, and whether it was already done."""

    path: Path
    frames: int
    skipped: bool = False


def read_done(frame_dir: str | os.PathLike) -> int | None:
    """Frame count recorded in a finished folder's ``.done`` marker, else ``None``."""
    try:
        return int((Path(frame_dir) / DONE).read_text().strip())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def short_side_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the short side set to ``short_side`` (0: unchanged), as mmcv."""
    if short_side < 0:
        raise ValueError(f"short_side={short_side} must be >= 0 (0 keeps the size)")
    if short_side == 0:
        return width, height
    return rescale_size(width, height, (math.inf, short_side))


def extract_frames(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    short_side: int = 256,
    filename_tmpl: str = "img_{:05}.jpg",
    start_index: int = 1,
    quality: int = 95,
    threads: int = 1,
    overwrite: bool = False,
) -> FrameFolder:
    """Decode every frame of ``video`` into ``out_dir`` as JPEG files.

    Args:
        video: Video file.
        out_dir: Frame folder to create; skipped when it holds a ``.done`` marker.
        short_side: Resize so the short side has this length, keeping the aspect ratio
            (0: keep the size).
        filename_tmpl: Frame file names; the first frame is ``filename_tmpl.format(start_index)``.
        start_index: Number of the first frame (1 in mmaction2's rawframes).
        quality: JPEG quality, 1 to 100.
        threads: FFmpeg decoder threads (0: FFmpeg chooses).
        overwrite: Extract again even when the folder is complete.

    Raises:
        FileNotFoundError: When ``video`` does not exist.
        DecodeError: When it cannot be decoded or has no frames.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"quality={quality} must be in [1, 100]")
    video, out_dir = Path(video), Path(out_dir)
    done = read_done(out_dir)
    if done is not None and not overwrite:
        return FrameFolder(out_dir, done, skipped=True)
    if not video.is_file():
        raise FileNotFoundError(f"video file not found: {video}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted run
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    tmp.mkdir()
    try:
        count = _write_frames(video, tmp, short_side, filename_tmpl, start_index, quality, threads)
        (tmp / DONE).write_text(f"{count}\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FrameFolder(out_dir, count)


def _write_frames(
    video: Path,
    out: Path,
    short_side: int,
    filename_tmpl: str,
    start_index: int,
    quality: int,
    threads: int,
) -> int:
    count = 0
    for chunk in _decode_chunks(video, threads):
        height, width = chunk.shape[-2:]
        new_w, new_h = short_side_size(width, height, short_side)
        chunk = resize(chunk, (new_h, new_w))  # (T, 3, new_h, new_w)
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its codecs in favour of torchcodec; they stay exact.
            warnings.simplefilter("ignore", DeprecationWarning)
            encoded = encode_jpeg(list(chunk), quality=quality)
        for data in encoded:
            data.numpy().tofile(out / filename_tmpl.format(start_index + count))
            count += 1
    if count == 0:
        raise DecodeError(f"pyav cannot decode {video}: no video frames", path=str(video))
    return count


def _decode_chunks(video: Path, threads: int) -> Iterator[torch.Tensor]:
    """uint8 ``(T, 3, H, W)`` RGB chunks of every frame, in decoding order."""
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise DecodeError(f"pyav cannot decode {video}: no video stream", path=str(video))
            stream = container.streams.video[0]
            stream.codec_context.thread_count = threads
            if threads != 1:
                stream.thread_type = "AUTO"
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3)
                if len(frames) == _CHUNK:
                    yield _stack(frames)
                    frames = []
            if frames:
                yield _stack(frames)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DecodeError(f"pyav cannot decode {video}: {error}", path=str(video)) from error


def _stack(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)


def extract_pair(pair: tuple[Path, Path], **kwargs: object) -> FrameFolder:
    """:func:`extract_frames` on a ``(video, out_dir)`` pair, for :func:`run_jobs`."""
    return extract_frames(*pair, **kwargs)
