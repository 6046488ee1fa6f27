"""What every video backend shares: the :class:`VideoReader` interface, :class:`DecodeError`
and the argument checks, so the backends (:mod:`actionrec.data.decoding`,
:mod:`actionrec.data.pyav_reader`) agree on errors and tensor layout."""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class VideoReader(Protocol):
    """An open video that decodes frames by index.

    Attributes:
        num_frames: Number of frames ``read`` can return (valid indices are ``0..num_frames-1``).
        fps: The stream's average frame rate as its container states it (FFmpeg's
            ``avg_frame_rate``: what decord's ``get_avg_fps``, and so mmaction2's ``avg_fps``,
            reports); None when the container states none.
    """

    num_frames: int
    fps: float | None

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Decode frames by 0-based index.

        Args:
            indices: 1-D integer array; may repeat and be unsorted.

        Returns:
            uint8 ``(T, C, H, W)`` RGB frames, ``T = len(indices)``, in the order of ``indices``;
            the built-in backends lay them out channels-last (strides of ``(T, H, W, C)``).

        Raises:
            DecodeError: When the file cannot be decoded.
            IndexError: When an index is outside ``[0, num_frames)``.
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


def to_tensor(frames: dict[int, np.ndarray], wanted: np.ndarray) -> torch.Tensor:
    """Stack decoded (H, W, C) frames in the order of ``wanted`` into (T, C, H, W), laid out
    channels-last (a view, no copy): torchvision's uint8 resize is ~3x faster on it."""
    stacked = np.stack([frames[int(i)] for i in wanted])  # (T, H, W, C)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2)  # (T, C, H, W)
