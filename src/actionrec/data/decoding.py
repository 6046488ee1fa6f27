"""Decode only the frames a sampler asked for, as uint8 ``(T, C, H, W)`` RGB tensors.

Videos go through one small interface, :class:`VideoReader`, with three backends:

- ``"pyav"`` (default, exact): frame ``i`` is the frame a full sequential decode yields ``i``-th.
  Checked on MP4 (with edit lists), MKV, WebM, AVI, MPEG-TS/PS and raw H.264; files whose
  timestamps do not give that order (AVI with B-frames, TS, raw streams) decode sequentially.
- ``"decord"``: fast random access; counts frames that an MP4 edit list hides, so indices near
  the end of such files return wrong frames.
- ``"torchcodec"``: optional; needs ``pip install torchcodec`` and a system FFmpeg.

Rawframes (one JPEG per frame) are read by :func:`read_rawframes`. A file that cannot be decoded
raises :class:`DecodeError` (the dataset catches it to skip the sample); a missing file raises
:class:`FileNotFoundError`.
"""

from __future__ import annotations

import os
import warnings
from typing import Protocol, runtime_checkable

import av
import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

__all__ = [
    "BACKENDS",
    "DecodeError",
    "DecordReader",
    "PyAVReader",
    "TorchCodecReader",
    "VideoReader",
    "open_video",
    "read_rawframes",
]

BACKENDS = ("pyav", "decord", "torchcodec")
_TORCHVISION_CODECS_DEPRECATED = "The image decoding and encoding capabilities of TorchVision"


@runtime_checkable
class VideoReader(Protocol):
    """An open video that decodes frames by index.

    Attributes:
        num_frames: Number of frames ``read`` can return (valid indices are ``0..num_frames-1``).
    """

    num_frames: int

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Decode frames by 0-based index.

        Args:
            indices: 1-D integer array; may repeat and be unsorted.

        Returns:
            uint8 ``(T, C, H, W)`` RGB frames, ``T = len(indices)``, in the order of ``indices``.

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
        ImportError: When the backend's package is not installed.
    """
    readers = {"pyav": PyAVReader, "decord": DecordReader, "torchcodec": TorchCodecReader}
    if backend not in readers:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    return readers[backend](path, num_threads=num_threads)


class _ReaderBase:
    """Context-manager plumbing shared by the third-party backends."""

    num_frames: int

    def close(self) -> None:
        """Nothing to release by default; the wrapped object goes with garbage collection."""

    def __enter__(self) -> _ReaderBase:
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


def _decode_error(path: str, backend: str, reason: object) -> DecodeError:
    return DecodeError(f"{backend} cannot decode {path}: {reason}", path=path, backend=backend)


def _check_video_path(path: str | os.PathLike, num_threads: int) -> str:
    if num_threads < 0:
        raise ValueError(f"num_threads={num_threads} must be >= 0 (0: the decoder chooses)")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}; check data.data_root and the list")
    return path


def _check_indices(indices: np.ndarray, num_frames: int, path: str) -> np.ndarray:
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


def _to_tensor(frames: dict[int, np.ndarray], wanted: np.ndarray) -> torch.Tensor:
    """Stack decoded (H, W, C) frames in the order of ``wanted`` into (T, C, H, W)."""
    stacked = np.stack([frames[int(i)] for i in wanted])  # (T, H, W, C)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()  # (T, C, H, W)


class PyAVReader(_ReaderBase):
    """PyAV backend, exact: frame ``i`` is the ``i``-th frame in presentation order.

    Opening demuxes every packet without decoding (cheap) to learn each frame's pts and the
    keyframes; frame ``i`` is the packet with the ``i``-th smallest pts. Reading seeks once per
    keyframe that precedes wanted frames and decodes forward to them, so each group of
    pictures is walked once. A file whose decoded pts do not match its packets falls back to
    a sequential decode that counts frames.

    Args:
        path: Video file.
        num_threads: FFmpeg decoder threads (0: FFmpeg chooses).
    """

    backend = "pyav"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        self.path = _check_video_path(path, num_threads)
        self._num_threads = num_threads
        self._container = None
        try:
            self._open()
            self._pts, self._key_pts = _index_packets(self._container, self._stream)
            # Seeking needs one pts per frame and a keyframe to start from.
            self._seekable = len(self._key_pts) > 0 and len(np.unique(self._pts)) == len(self._pts)
            self.num_frames = len(self._pts) if self._seekable else self._count_frames()
        except (av.FFmpegError, OSError, ValueError, IndexError) as error:
            self.close()
            raise _decode_error(self.path, self.backend, error) from error
        if self.num_frames == 0:
            self.close()
            raise _decode_error(self.path, self.backend, "no decodable video frames")

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Decode frames by index; see :meth:`VideoReader.read`."""
        if self._container is None:
            raise ValueError(f"read() on a closed reader of {self.path}")
        wanted = _check_indices(indices, self.num_frames, self.path)
        unique = np.unique(wanted)
        try:
            frames = self._read_seeking(unique) if self._seekable else None
            if frames is None:
                frames = self._read_sequential(unique)
            return _to_tensor(frames, wanted)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise _decode_error(self.path, self.backend, error) from error

    def close(self) -> None:
        """Close the container."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def _open(self) -> None:
        self.close()
        self._container = av.open(self.path)
        if not self._container.streams.video:
            raise ValueError("no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = self._num_threads
        if self._num_threads != 1:
            self._stream.thread_type = "AUTO"

    def _read_seeking(self, unique: np.ndarray) -> dict[int, np.ndarray] | None:
        """Decode sorted distinct indices group by group; None when pts do not line up."""
        targets = self._pts[unique]
        # Each frame belongs to the last keyframe at or before it; decoding starts there.
        groups = np.searchsorted(self._key_pts, targets, side="right") - 1
        groups = np.maximum(groups, 0)
        frames: dict[int, np.ndarray] = {}
        for group in np.unique(groups):
            members = unique[groups == group]
            decoded = self._decode_from_keyframe(int(self._key_pts[group]), self._pts[members])
            if decoded is None:
                self._seekable = False  # this file's pts are unreliable; stop trying
                return None
            frames.update(zip(members.tolist(), decoded, strict=True))
        return frames

    def _decode_from_keyframe(self, key_pts: int, targets: np.ndarray) -> list[np.ndarray] | None:
        """Seek to a keyframe and decode forward to the sorted target pts.

        Returns None unless, from the keyframe on, the decoder delivers exactly the packets'
        pts in sorted order: only then is the i-th smallest pts the i-th frame a sequential
        decode yields (AVI and MPEG-TS can break this; seeking can land elsewhere).
        """
        self._container.seek(key_pts, stream=self._stream, backward=True, any_frame=False)
        expected = int(np.searchsorted(self._pts, key_pts))
        found: list[np.ndarray] = []
        for frame in self._container.decode(self._stream):
            if frame.pts is not None and frame.pts < key_pts:
                continue  # an earlier keyframe's span, or leading pictures owned by one
            if expected == len(self._pts) or frame.pts != self._pts[expected]:
                return None
            expected += 1
            if frame.pts == targets[len(found)]:
                found.append(frame.to_ndarray(format="rgb24"))  # (H, W, C)
                if len(found) == len(targets):
                    return found
        return None

    def _read_sequential(self, unique: np.ndarray) -> dict[int, np.ndarray]:
        """Decode from the start, counting frames; the reference for what index i means."""
        self._open()
        wanted, last = set(unique.tolist()), int(unique[-1])
        frames: dict[int, np.ndarray] = {}
        for index, frame in enumerate(self._container.decode(self._stream)):
            if index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24")  # (H, W, C)
            if index == last:
                return frames
        raise ValueError(
            f"only {len(frames)} of the wanted frames decode; index {last} is past "
            "the last decodable frame"
        )

    def _count_frames(self) -> int:
        self._open()
        count = sum(1 for _ in self._container.decode(self._stream))
        self._open()
        return count


def _index_packets(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[np.ndarray, np.ndarray]:
    """Demux without decoding: sorted pts of every frame and sorted pts of the keyframes.

    Packets without pts or data, packets the container marks for discarding (edit lists), and
    packets before the first keyframe (undecodable) are not frames the decoder delivers.
    """
    pts, key_pts = [], []
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        if packet.is_keyframe:
            key_pts.append(packet.pts)  # a discarded keyframe still starts decoding
        elif not key_pts:
            continue
        if not packet.is_discard:
            pts.append(packet.pts)
    return np.sort(np.asarray(pts, dtype=np.int64)), np.sort(np.asarray(key_pts, dtype=np.int64))


def _count_delivered_frames(path: str) -> int:
    """Frames a decoder delivers by the packet index (0 when the container gives no pts)."""
    try:
        with av.open(path) as container:
            return len(_index_packets(container, container.streams.video[0])[0])
    except (av.FFmpegError, IndexError):
        return 0


class DecordReader(_ReaderBase):
    """decord backend: ``decord.VideoReader(...).get_batch(indices)``.

    Args:
        path: Video file.
        num_threads: Decoder threads (0: decord chooses).
    """

    backend = "decord"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        self.path = _check_video_path(path, num_threads)
        import decord  # lazily: importing decord costs time and is not needed by other backends

        try:
            self._reader = decord.VideoReader(self.path, num_threads=num_threads)
            self.num_frames = len(self._reader)
        except (decord.DECORDError, RuntimeError, ValueError) as error:
            raise _decode_error(self.path, self.backend, error) from error
        # decord counts frames an MP4 edit list hides and returns wrong pictures for the last
        # indices; the demuxed packet count (a few ms, no decoding) is what it can deliver.
        delivered = _count_delivered_frames(self.path)
        if delivered:
            self.num_frames = min(self.num_frames, delivered)
        if self.num_frames == 0:
            raise _decode_error(self.path, self.backend, "no video frames")

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Decode frames by index; see :meth:`VideoReader.read`."""
        wanted = _check_indices(indices, self.num_frames, self.path)
        import decord

        # Ask in ascending order, each frame once: decord's backward seeks return wrong
        # pictures on some files (measured on an edit-list MP4).
        unique, order = np.unique(wanted, return_inverse=True)
        try:
            frames = self._reader.get_batch(unique.tolist()).asnumpy()  # (U, H, W, C)
        except (decord.DECORDError, RuntimeError, ValueError) as error:
            raise _decode_error(self.path, self.backend, error) from error
        frames = torch.from_numpy(frames[order.reshape(-1)])  # (T, H, W, C)
        return frames.permute(0, 3, 1, 2).contiguous()  # (T, C, H, W)


class TorchCodecReader(_ReaderBase):
    """torchcodec backend with exact seeking (``seek_mode="exact"``).

    Args:
        path: Video file.
        num_threads: FFmpeg decoder threads (0: FFmpeg chooses).
    """

    backend = "torchcodec"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        self.path = _check_video_path(path, num_threads)
        try:
            from torchcodec.decoders import VideoDecoder
        except (ImportError, RuntimeError, OSError) as error:
            raise ImportError(
                "backend='torchcodec' needs `pip install torchcodec` and a system FFmpeg "
                f"(libavcodec shared libraries) that torchcodec can load: {error}; "
                "or use backend='pyav' (default) or backend='decord'"
            ) from error
        try:
            self._decoder = VideoDecoder(
                self.path, seek_mode="exact", num_ffmpeg_threads=num_threads
            )
            self.num_frames = int(self._decoder.metadata.num_frames)
        except (RuntimeError, ValueError) as error:
            raise _decode_error(self.path, self.backend, error) from error

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Decode frames by index; see :meth:`VideoReader.read`."""
        wanted = _check_indices(indices, self.num_frames, self.path)
        try:
            return self._decoder.get_frames_at(indices=wanted.tolist()).data  # (T, C, H, W)
        except (RuntimeError, ValueError, IndexError) as error:
            raise _decode_error(self.path, self.backend, error) from error


def read_rawframes(
    frame_dir: str | os.PathLike,
    indices: np.ndarray,
    filename_tmpl: str = "img_{:05}.jpg",
    *,
    offset: int = 0,
) -> torch.Tensor:
    """Read frames stored one image per file, decoding each distinct frame once.

    Args:
        frame_dir: Folder holding the frames.
        indices: 1-D integer array of frame numbers as they appear in file names (the
            sampler's ``start_index`` already added); may repeat and be unsorted.
        filename_tmpl: Python format string turning a frame number into a file name.
        offset: Added to every index before formatting (rawframes lists ``with_offset``).

    Returns:
        uint8 ``(T, 3, H, W)`` RGB frames in the order of ``indices`` (grayscale files are
        expanded to 3 channels).

    Raises:
        FileNotFoundError: When a frame file is missing.
        DecodeError: When a frame cannot be decoded or frames differ in size.
    """
    unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    paths = [os.path.join(frame_dir, filename_tmpl.format(int(i) + offset)) for i in unique]
    images = _decode_images([_read_bytes(p, filename_tmpl) for p in paths], paths)
    if len({tuple(image.shape) for image in images}) > 1:
        raise _decode_error(str(frame_dir), "rawframes", "frames differ in size")
    frames = torch.stack(images) if images else torch.empty((0, 3, 0, 0), dtype=torch.uint8)
    return frames[torch.from_numpy(inverse.reshape(-1))]  # (T, 3, H, W)


def _read_bytes(path: str, filename_tmpl: str) -> torch.Tensor:
    try:
        return torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"frame file not found: {path}; check data.filename_tmpl={filename_tmpl!r}, "
            "data.start_index (1 for mmaction2's extracted frames) and total_frames in the list"
        ) from None
    except OSError as error:
        raise _decode_error(path, "rawframes", error) from error


def _decode_images(data: list[torch.Tensor], paths: list[str]) -> list[torch.Tensor]:
    """Decode encoded images to uint8 (3, H, W); JPEGs in one batched libjpeg-turbo call."""
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its codecs for torchcodec, which needs a system FFmpeg;
        # these stay exact and fast, so only that notice is muted.
        warnings.filterwarnings("ignore", _TORCHVISION_CODECS_DEPRECATED, DeprecationWarning)
        if all(p.lower().endswith((".jpg", ".jpeg")) for p in paths):
            try:
                return decode_jpeg(data, mode=ImageReadMode.RGB)
            except RuntimeError:
                pass  # one bad file fails the batch; decode one by one below to name it
        images = []
        for encoded, path in zip(data, paths, strict=True):
            try:
                images.append(decode_image(encoded, mode=ImageReadMode.RGB))
            except RuntimeError as error:
                raise _decode_error(path, "rawframes", error) from error
        return images
