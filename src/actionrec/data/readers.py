"""What every reader shares: the :class:`VideoReader` interface, :class:`DecodeError` and the
argument checks, so the video backends (:mod:`actionrec.data.decoding`,
:mod:`actionrec.data.pyav_reader`) and frame folders (:mod:`actionrec.data.rawframes`) agree on
errors and tensor layout."""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np
import torch

# A crop ``(x1, y1, x2, y2)`` in pixels, right/bottom exclusive, the same for every frame.
Box = tuple[int, int, int, int]


@runtime_checkable
class VideoReader(Protocol):
    """An open video (or frame folder) that decodes frames by index, optionally one region.

    Attributes:
        num_frames: Number of frames ``read`` can return. A video's valid indices are
            ``0..num_frames-1``; a frame folder's are the numbers in its file names (from its
            ``start_index``), as mmaction2's decoders take the sampler's indices as they are.
        fps: The stream's average frame rate as its container states it (FFmpeg's
            ``avg_frame_rate``: what decord's ``get_avg_fps``, and so mmaction2's ``avg_fps``,
            reports); None when the container states none, and for frame folders.
    """

    num_frames: int
    fps: float | None

    def region_size(self, indices: np.ndarray) -> tuple[int, int] | None:
        """``(height, width)`` of the frames when ``read(indices, box)`` decodes only the box.

        Known before decoding, so that the box to keep can be chosen first. None when a box
        would save nothing (videos decode whole pictures): read whole frames then.
        """
        ...

    def read(self, indices: np.ndarray, box: Box | None = None) -> torch.Tensor:
        """Decode frames by index.

        Args:
            indices: 1-D integer array; may repeat and be unsorted.
            box: Keep only this region of every frame (None: whole frames). The pixels equal
                whole frames cropped; a reader whose :meth:`region_size` is not None decodes
                only the region.

        Returns:
            uint8 ``(T, C, H, W)`` RGB frames, ``T = len(indices)``, in the order of ``indices``
            (H, W: the box's when given); the built-in readers lay them out channels-last
            (strides of ``(T, H, W, C)``).

        Raises:
            DecodeError: When the file cannot be decoded.
            IndexError: When an index is outside the valid range.
        """
        ...

    def close(self) -> None:
        """Release the file and decoder."""
        ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(self, *exc_info: object) -> None: ...


class ReaderBase:
    """Context-manager plumbing shared by the backends."""

    num_frames: int
    fps: float | None = None

    def region_size(self, indices: np.ndarray) -> tuple[int, int] | None:
        """None: whole pictures are decoded, a box is cut afterwards (see :class:`VideoReader`)."""
        return None

    def close(self) -> None:
        """Nothing to release by default; the wrapped object goes with garbage collection."""

    def __enter__(self) -> ReaderBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DecodeError(RuntimeError):
    """A file that is not a decodable video or image: corrupt, truncated, empty, wrong format.

    Attributes:
        path: The file.
        backend: The decoder that failed (``"pyav"``, ``"decord"``, ``"torchcodec"``,
            ``"rawframes"``).
    """

    def __init__(self, message: str, *, path: str = "", backend: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.backend = backend


def decode_error(path: str, backend: str, reason: object) -> DecodeError:
    """A :class:`DecodeError` whose message names the backend, the file and the reason."""
    return DecodeError(f"{backend} cannot decode {path}: {reason}", path=path, backend=backend)


def check_video_path(path: str | os.PathLike, num_threads: int) -> str:
    """``path`` as a string once it names a file and ``num_threads`` is valid."""
    if num_threads < 0:
        raise ValueError(f"num_threads={num_threads} must be >= 0 (0: the decoder chooses)")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}; check data.data_root and the list")
    return path


def check_indices(indices: np.ndarray, num_frames: int, path: str) -> np.ndarray:
    """Validate frame indices and return them as a 1-D int64 array."""
    wanted = np.asarray(indices)
    if wanted.ndim != 1 or wanted.size == 0 or wanted.dtype.kind not in "iu":
        raise ValueError(
            f"indices must be a non-empty 1-D integer array, got shape {wanted.shape} "
            f"dtype {wanted.dtype}"
        )
    wanted = wanted.astype(np.int64)
    if wanted.min() < 0 or wanted.max() >= num_frames:
        raise IndexError(
            f"frame indices {wanted.min()}..{wanted.max()} outside [0, {num_frames}) for {path}"
        )
    return wanted


def crop(frames: torch.Tensor, box: Box | None) -> torch.Tensor:
    """``box`` of every decoded ``(T, C, H, W)`` frame (a view), or all of them for None."""
    if box is None:
        return frames
    x1, y1, x2, y2 = box
    height, width = frames.shape[-2:]
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ValueError(f"box {box!r} does not fit in frames of {height}x{width} (HxW)")
    return frames[..., y1:y2, x1:x2]


def to_tensor(frames: dict[int, np.ndarray], wanted: np.ndarray) -> torch.Tensor:
    """Stack decoded (H, W, C) frames in the order of ``wanted`` into (T, C, H, W), laid out
    channels-last (a view, no copy): torchvision's uint8 resize is ~3x faster on it."""
    stacked = np.stack([frames[int(i)] for i in wanted])  # (T, H, W, C)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2)  # (T, C, H, W)
