"""Decode only the frames a sampler asked for, as uint8 ``(T, C, H, W)`` RGB tensors.

Videos go through one small interface, :class:`VideoReader`, with three backends:

- ``"pyav"`` (default, exact, fastest at one thread): frame ``i`` is the frame a full sequential
  decode yields ``i``-th; see :mod:`actionrec.data.pyav_reader`. Checked on MP4 (with edit
  lists), MKV, WebM, AVI, MPEG-TS/PS and raw H.264; files whose timestamps do not give that
  order (AVI with B-frames, TS, raw streams) decode sequentially.
- ``"decord"``: optional (``pip install decord``: wheels for x86-64 Linux and Windows only);
  counts frames that an MP4 edit list hides, so indices near the end of such files return wrong
  frames; slower than PyAV on H.264 and 2x slower on MPEG-4 AVI (measured).
- ``"torchcodec"``: optional; needs ``pip install torchcodec`` and a system FFmpeg.

:func:`backend_unavailable` says whether an optional backend works on this machine, and why not;
the data module, the tests and the benchmark scripts all ask it.

Rawframes (one JPEG per frame) are read by :func:`read_rawframes`. A file that cannot be decoded
raises :class:`DecodeError` (the dataset catches it to skip the sample); a missing file raises
:class:`FileNotFoundError`.
"""

from __future__ import annotations

import functools
import importlib
import os

import numpy as np
import torch

from actionrec.data.pyav_reader import PyAVReader, count_delivered_frames
from actionrec.data.rawframes import read_rawframes
from actionrec.data.readers import (
    Box,
    DecodeError,
    ReaderBase,
    VideoReader,
    check_indices,
    check_video_path,
    crop,
    decode_error,
)

__all__ = [
    "BACKENDS",
    "DecodeError",
    "DecordReader",
    "PyAVReader",
    "TorchCodecReader",
    "VideoReader",
    "backend_unavailable",
    "open_video",
    "read_rawframes",
]

BACKENDS = ("pyav", "decord", "torchcodec")

# How to get each optional backend, for the messages of backend_unavailable().
INSTALL = {
    "decord": "pip install decord (wheels for x86-64 Linux and Windows only)",
    "torchcodec": "pip install torchcodec, and FFmpeg's shared libraries (e.g. apt install ffmpeg)",
}


@functools.cache
def backend_unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot decode on this machine, with the fix; None when it can.

    Importing the package is the check. torchcodec also needs the system's FFmpeg libraries:
    older releases fail the import without them; newer ones (0.17) import, set
    ``torchcodec.ffmpeg_major_version`` to None and fail only when a decoder is built.

    Raises:
        ValueError: On an unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    if backend == "pyav":
        return None  # a dependency of actionrec
    try:
        module = importlib.import_module(backend)
    except ModuleNotFoundError as error:
        if error.name == backend:
            return f"{backend} is not installed: {INSTALL[backend]}"
        return _import_failed(backend, error)
    except (ImportError, OSError, RuntimeError) as error:  # e.g. its native libraries are missing
        return _import_failed(backend, error)
    # Releases that fail the import without FFmpeg have no None to report: 0 stands for "has it".
    if backend == "torchcodec" and getattr(module, "ffmpeg_major_version", 0) is None:
        return (
            "torchcodec cannot load FFmpeg's shared libraries (libavutil, libavcodec, ...): "
            "install FFmpeg (e.g. apt install ffmpeg, brew install ffmpeg)"
        )
    return None


def _import_failed(backend: str, error: Exception) -> str:
    # The first line only: older torchcodec appends a traceback per FFmpeg version it tried.
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{backend} cannot be imported ({reason}): {INSTALL[backend]}"


def check_backend(backend: str) -> None:
    """Raise ImportError, saying why and what to install, unless ``backend`` works here."""
    reason = backend_unavailable(backend)
    if reason is not None:
        raise ImportError(f"backend={backend!r}: {reason}; or use backend='pyav' (the default)")


def open_video(
    path: str | os.PathLike, backend: str = "pyav", *, num_threads: int = 1
) -> VideoReader:
    """Open a video file with the chosen backend.

    Args:
        path: Video file.
        backend: One of ``"pyav"``, ``"decord"``, ``"torchcodec"``.
        num_threads: Decoder threads; 1 suits data loader workers (one process per worker),
            0 lets the backend choose.

    Returns:
        An open reader; use it as a context manager or call ``close()``.

    Raises:
        ValueError: On an unknown backend or a negative ``num_threads``.
        FileNotFoundError: When ``path`` does not exist.
        DecodeError: When the file is not a decodable video.
        ImportError: When the backend cannot work here (see :func:`backend_unavailable`).
    """
    readers = {"pyav": PyAVReader, "decord": DecordReader, "torchcodec": TorchCodecReader}
    if backend not in readers:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    return readers[backend](path, num_threads=num_threads)


class DecordReader(ReaderBase):
    """decord backend: ``decord.VideoReader(...).get_batch(indices)``.

    Args:
        path: Video file.
        num_threads: Decoder threads (0: decord chooses).
    """

    backend = "decord"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        self.path = check_video_path(path, num_threads)
        check_backend(self.backend)
        import decord  # lazily: an optional package that only this backend needs

        try:
            self._reader = decord.VideoReader(self.path, num_threads=num_threads)
            self.num_frames = len(self._reader)
            fps = float(self._reader.get_avg_fps())  # NaN for a stream that states none
            self.fps = fps if fps > 0 else None
        except (decord.DECORDError, RuntimeError, ValueError) as error:
            raise decode_error(self.path, self.backend, error) from error
        # decord counts frames an MP4 edit list hides and returns wrong pictures for the last
        # indices; the demuxed packet count (a few ms, no decoding) is what it can deliver.
        delivered = count_delivered_frames(self.path)
        if delivered:
            self.num_frames = min(self.num_frames, delivered)
        if self.num_frames == 0:
            raise decode_error(self.path, self.backend, "no video frames")

    def read(self, indices: np.ndarray, box: Box | None = None) -> torch.Tensor:
        """Decode frames by index; see :meth:`VideoReader.read`."""
        wanted = check_indices(indices, self.num_frames, self.path)
        import decord

        # Ask in ascending order, each frame once: decord's backward seeks return wrong
        # pictures on some files (measured on an edit-list MP4).
        unique, order = np.unique(wanted, return_inverse=True)
        try:
            frames = self._reader.get_batch(unique.tolist()).asnumpy()  # (U, H, W, C)
        except (decord.DECORDError, RuntimeError, ValueError) as error:
            raise decode_error(self.path, self.backend, error) from error
        frames = torch.from_numpy(frames[order.reshape(-1)])  # (T, H, W, C)
        return crop(frames.permute(0, 3, 1, 2), box)  # (T, C, H, W), channels-last as PyAV's


class TorchCodecReader(ReaderBase):
    """torchcodec backend with exact seeking (``seek_mode="exact"``).

    Args:
        path: Video file.
        num_threads: FFmpeg decoder threads (0: FFmpeg chooses).
    """

    backend = "torchcodec"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        self.path = check_video_path(path, num_threads)
        check_backend(self.backend)
        from torchcodec.decoders import VideoDecoder

        try:
            self._decoder = VideoDecoder(
                self.path, seek_mode="exact", num_ffmpeg_threads=num_threads
            )
            self.num_frames = int(self._decoder.metadata.num_frames)
            # The header's rate, as decord reports it (``average_fps`` may be measured).
            self.fps = self._decoder.metadata.average_fps_from_header or None
        except (RuntimeError, ValueError) as error:
            raise decode_error(self.path, self.backend, error) from error

    def read(self, indices: np.ndarray, box: Box | None = None) -> torch.Tensor:
        """Decode frames by index; see :meth:`VideoReader.read`."""
        wanted = check_indices(indices, self.num_frames, self.path)
        try:
            frames = self._decoder.get_frames_at(indices=wanted.tolist()).data  # (T, C, H, W)
        except (RuntimeError, ValueError, IndexError) as error:
            raise decode_error(self.path, self.backend, error) from error
        return crop(frames, box)
