"""The default video backend: PyAV, exact and the fastest we measured at one thread.

Frame ``i`` is the frame a full sequential decode yields ``i``-th. Opening demuxes the packet
index (no decoding); reading seeks once per keyframe that precedes wanted frames and decodes
forward to them. Most of that decoding serves only to rebuild the reference pictures the wanted
frames predict from, so pictures nothing references (most B-frames) are not reconstructed
unless wanted: FFmpeg's ``skip_frame="NONREF"``, set packet by packet. A span ends by draining
the decoder once the last wanted packet is in, instead of feeding the packets its reorder delay
would otherwise need. Both change which pictures are decoded, never a decoded picture, and
both are used only where the container's pts are presentation times (they arrive out of order,
as B-frames make them), since the check that pts give frame order relies on seeing every frame.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from actionrec.data.readers import (
    ReaderBase,
    check_indices,
    check_video_path,
    decode_error,
    to_tensor,
)

# Decoders whose skip_frame="NONREF" drops only pictures that no other picture predicts from
# (H.264/HEVC: nal_ref_idc / NAL type; MPEG-2/4: B-frames); each is checked frame for frame
# against a sequential decode in tests/data/test_decoding.py. VP8/VP9/AV1 never reorder.
SKIPS_NONREF_EXACTLY = frozenset({"h264", "hevc", "mpeg4", "mpeg2video"})


class PyAVReader(ReaderBase):
    """PyAV backend, exact: frame ``i`` is the ``i``-th frame in presentation order.

    Frame ``i`` is the packet with the ``i``-th smallest pts. Each group of pictures holding
    wanted frames is walked once. A file whose decoded pts do not match its packets (AVI with
    B-frames, MPEG-TS, raw streams) falls back to a sequential decode that counts frames.

    Args:
        path: Video file.
        num_threads: FFmpeg decoder threads (0: FFmpeg chooses).
        skip_nonref: Skip the pictures nothing references on the way to wanted frames (for
            the decoders in :data:`SKIPS_NONREF_EXACTLY`; others decode every picture).
    """

    backend = "pyav"

    def __init__(
        self, path: str | os.PathLike, *, num_threads: int = 1, skip_nonref: bool = True
    ) -> None:
        self.path = check_video_path(path, num_threads)
        self._num_threads = num_threads
        self._container = None
        self._reformatter = VideoReformatter()  # one colour converter for all frames
        try:
            self._open()
            self._pts, self._key_pts, reordered = index_packets(self._container, self._stream)
            # Seeking needs one pts per frame and a keyframe to start from.
            self._seekable = len(self._key_pts) > 0 and len(np.unique(self._pts)) == len(self._pts)
            self.num_frames = len(self._pts) if self._seekable else self._count_frames()
        except (av.FFmpegError, OSError, ValueError, IndexError) as error:
            self.close()
            raise decode_error(self.path, self.backend, error) from error
        if self.num_frames == 0:
            self.close()
            raise decode_error(self.path, self.backend, "no decodable video frames")
        # AVI stores decode-order counters as pts: skipping or draining would hide that.
        self._drain = reordered
        codec = self._stream.codec_context.name
        self._skip_nonref = skip_nonref and reordered and codec in SKIPS_NONREF_EXACTLY

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Decode frames by index; see :meth:`actionrec.data.readers.VideoReader.read`."""
        if self._container is None:
            raise ValueError(f"read() on a closed reader of {self.path}")
        wanted = check_indices(indices, self.num_frames, self.path)
        unique = np.unique(wanted)
        try:
            frames = self._read_seeking(unique) if self._seekable else None
            if frames is None:
                frames = self._read_sequential(unique)
            return to_tensor(frames, wanted)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise decode_error(self.path, self.backend, error) from error

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
            decoded = self._decode_span(int(self._key_pts[group]), self._pts[members])
            if decoded is None:
                self._seekable = False  # this file's pts are unreliable; stop trying
                return None
            frames.update(zip(members.tolist(), decoded, strict=True))
        return frames

    def _decode_span(self, key_pts: int, targets: np.ndarray) -> list[np.ndarray] | None:
        """Seek to a keyframe and decode forward to the sorted target pts.

        Returns None unless, from the keyframe on, the decoder delivers the packets' pts in
        sorted order, missing only pictures sent for skipping: only then is the i-th smallest
        pts the i-th frame a sequential decode yields (AVI and MPEG-TS can break this; seeking
        can land elsewhere).
        """
        container, codec = self._container, self._stream.codec_context
        container.seek(key_pts, stream=self._stream, backward=True, any_frame=False)
        wanted = set(targets.tolist())
        sent: set[int | None] = set()
        skipped: set[int | None] = set()
        expected = int(np.searchsorted(self._pts, key_pts))
        found: list[np.ndarray] = []
        for packet in container.demux(self._stream):
            if self._skip_nonref:
                # Read per packet by the decoder: wanted pictures always decode in full.
                skip = packet.pts not in wanted
                codec.skip_frame = "NONREF" if skip else "DEFAULT"
                if skip:
                    skipped.add(packet.pts)
            sent.add(packet.pts)
            frames = codec.decode(packet)
            drained = self._drain and wanted <= sent
            if drained:
                frames += codec.decode(None)  # the next seek resets the decoder
            for frame in frames:
                if frame.pts is not None and frame.pts < key_pts:
                    continue  # an earlier keyframe's span, or leading pictures owned by one
                expected = self._advance(expected, frame.pts, skipped, sent, drained)
                if expected is None:
                    return None
                if frame.pts == targets[len(found)]:
                    found.append(self._rgb(frame))
                    if len(found) == len(targets):
                        return found
            if drained:
                return None  # the decoder is empty and a wanted frame never came
        return None

    def _advance(
        self, expected: int, pts: int | None, skipped: set, sent: set, drained: bool
    ) -> int | None:
        """Position after ``pts`` in the sorted pts, or None when a frame before it is missing
        that was not skipped (nor, once the decoder is drained, never sent to it)."""
        while expected < len(self._pts) and self._pts[expected] != pts:
            missing = int(self._pts[expected])
            if missing not in skipped and not (drained and missing not in sent):
                return None
            expected += 1
        return expected + 1 if expected < len(self._pts) else None

    def _read_sequential(self, unique: np.ndarray) -> dict[int, np.ndarray]:
        """Decode from the start, counting frames; the reference for what index i means."""
        self._open()
        wanted, last = set(unique.tolist()), int(unique[-1])
        frames: dict[int, np.ndarray] = {}
        for index, frame in enumerate(self._container.decode(self._stream)):
            if index in wanted:
                frames[index] = self._rgb(frame)
            if index == last:
                return frames
        raise ValueError(
            f"only {len(frames)} of the wanted frames decode; index {last} is past "
            "the last decodable frame"
        )

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """uint8 (H, W, C) RGB, as ``frame.to_ndarray(format="rgb24")`` without setting up a
        converter per frame."""
        return self._reformatter.reformat(frame, format="rgb24").to_ndarray()

    def _count_frames(self) -> int:
        self._open()
        count = sum(1 for _ in self._container.decode(self._stream))
        self._open()
        return count


class PacketIndex(NamedTuple):
    """What demuxing tells about a video stream's frames."""

    pts: np.ndarray  # sorted pts of every frame the decoder delivers
    key_pts: np.ndarray  # sorted pts of the keyframes
    reordered: bool  # whether pts ever decrease in decoding order (B-frames with real pts)


def index_packets(container: av.container.InputContainer, stream: av.VideoStream) -> PacketIndex:
    """Demux without decoding.

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
    in_order = np.asarray(pts, dtype=np.int64)
    return PacketIndex(
        np.sort(in_order),
        np.sort(np.asarray(key_pts, dtype=np.int64)),
        bool(np.any(np.diff(in_order) < 0)),
    )


def count_delivered_frames(path: str) -> int:
    """Frames a decoder delivers by the packet index (0 when the container gives no pts)."""
    try:
        with av.open(path) as container:
            return len(index_packets(container, container.streams.video[0]).pts)
    except (av.FFmpegError, IndexError):
        return 0
