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

Fixed costs matter as much on short clips: the packets demuxed for the index are kept (up to
:data:`KEEP_PACKETS_BYTES`) and fed to the decoder from the keyframe on, instead of seeking and
demuxing the file a second time; an AVI without B-frames takes its index from the container's
own (``idx1``) instead of demuxing at all.
"""

from __future__ import annotations

import itertools
import os
from typing import NamedTuple

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from actionrec.data.readers import (
    Box,
    ReaderBase,
    check_indices,
    check_video_path,
    crop,
    decode_error,
    to_tensor,
)

# Decoders whose skip_frame="NONREF" drops only pictures that no other picture predicts from
# (H.264/HEVC: nal_ref_idc / NAL type; MPEG-2/4: B-frames); each is checked frame for frame
# against a sequential decode in tests/data/test_decoding.py. VP8/VP9/AV1 never reorder.
SKIPS_NONREF_EXACTLY = frozenset({"h264", "hevc", "mpeg4", "mpeg2video"})

# Demuxed packets kept in memory per open video, so that decoding need not demux again; a
# larger file is decoded by seeking instead (a long 1080p video is hundreds of MB).
KEEP_PACKETS_BYTES = 64 << 20

# Opened without decoding while probing (see open_container): H.264 in these containers.
CHEAP_PROBE_CODECS = frozenset({"h264"})
CHEAP_PROBE_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".3gp"})


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
            self._packets: list[av.Packet] | None = None  # demuxed, in decoding order
            self._key_pos: dict[int, int] = {}  # keyframe pts -> its position in _packets
            index = index_from_container(self._container, self._stream)
            if index is None:
                index, self._packets, self._key_pos = demux_index(
                    self._container, self._stream, keep_bytes=KEEP_PACKETS_BYTES
                )
            self._pts, self._key_pts, reordered = index
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

    def read(self, indices: np.ndarray, box: Box | None = None) -> torch.Tensor:
        """Decode frames by index; see :meth:`actionrec.data.readers.VideoReader.read`."""
        if self._container is None:
            raise ValueError(f"read() on a closed reader of {self.path}")
        wanted = check_indices(indices, self.num_frames, self.path)
        unique = np.unique(wanted)
        try:
            frames = self._read_seeking(unique) if self._seekable else None
            if frames is None:
                frames = self._read_sequential(unique)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise decode_error(self.path, self.backend, error) from error
        return crop(to_tensor(frames, wanted), box)

    def close(self) -> None:
        """Close the container and drop the kept packets."""
        self._packets = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def _open(self, probe: bool = False) -> None:
        """Open the container; ``probe`` decodes pictures while probing, as FFmpeg does by
        default (see :func:`open_container`)."""
        self.close()
        self._container = open_container(self.path, probe=probe)
        if not self._container.streams.video:
            raise ValueError("no video stream")
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate  # avg_frame_rate: decord's get_avg_fps
        self.fps = float(rate) if rate else None
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
        """Decode forward from a keyframe to the sorted target pts.

        Returns None unless, from the keyframe on, the decoder delivers the packets' pts in
        sorted order, missing only pictures sent for skipping: only then is the i-th smallest
        pts the i-th frame a sequential decode yields (AVI and MPEG-TS can break this; seeking
        can land elsewhere).
        """
        codec = self._stream.codec_context
        if self._packets is not None and key_pts in self._key_pos:
            codec.flush_buffers()  # what a seek does: a span starts from an empty decoder
            packets = itertools.islice(self._packets, self._key_pos[key_pts], None)
        else:
            self._container.seek(key_pts, stream=self._stream, backward=True, any_frame=False)
            packets = self._container.demux(self._stream)
        wanted = set(targets.tolist())
        remaining = len(wanted)  # wanted packets not sent yet
        sent: set[int | None] = set()
        skipped: set[int | None] = set()
        skipping = False  # what codec.skip_frame is set to; set only when it changes
        expected = int(np.searchsorted(self._pts, key_pts))
        found: list[np.ndarray] = []
        try:
            for packet in packets:
                pts = packet.pts
                if pts in wanted and pts not in sent:
                    remaining -= 1
                    skip = False
                else:
                    skip = self._skip_nonref
                if skip != skipping:  # read per packet by the decoder: wanted ones decode in full
                    codec.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
                if skip:
                    skipped.add(pts)
                sent.add(pts)
                frames = codec.decode(packet)
                drained = self._drain and remaining == 0
                if drained:
                    frames += codec.decode(None)  # the next span resets the decoder
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
        finally:
            if skipping:
                codec.skip_frame = "DEFAULT"

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
        self._open(probe=True)  # FFmpeg's own defaults: this is the fallback, trust nothing
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
        """uint8 (H, W, C) RGB, as ``frame.to_ndarray(format="rgb24")`` converts it, on this
        thread only: swscale's default is a pool of a thread per CPU, which breaks "one thread
        per worker" and cost 0.25 ms a 340x256 frame (mean, in a worker) against 0.09."""
        return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()

    def _count_frames(self) -> int:
        self._open(probe=True)
        count = sum(1 for _ in self._container.decode(self._stream))
        self._open(probe=True)
        return count


def open_container(path: str, probe: bool = False) -> av.container.InputContainer:
    """``av.open``, without decoding a picture to probe an H.264 stream unless ``probe``.

    Opening a file makes FFmpeg probe its streams (``avformat_find_stream_info``), which
    decodes the first picture in full to learn the pixel format and aspect ratio; for an
    H.264 keyframe that is 1.5 ms of the 2 ms an MP4 takes to open. Frames do not need it:
    the decoder reads both from the bitstream. What stops that decode is a value the probe's
    decoder refuses: ``skip_frame`` has no constant ``nonref`` (FFmpeg's name is ``noref``),
    so that decoder does not open and the probe keeps what the container header says. Valid
    values do not do it: ``noref`` still decodes the keyframe, and ``all`` makes the probe read
    on for a picture it never gets (measured). FFmpeg logs the refusal; PyAV keeps its log
    quiet unless ``av.logging.set_level`` is called. The decoder used afterwards has its own,
    default, settings; frames are the same, picture for picture (tests/data/test_decoding.py).
    Any other codec may leave fields unset when probed that way (MPEG-4 in MP4 lost its size,
    HEVC its reorder delay), so it is reopened with FFmpeg's default probing, as is any
    container when ``probe`` is true. A container that lists its streams only once probed
    (MPEG-TS) gets no stream options, so is probed FFmpeg's default way anyway.
    """
    if not probe and os.path.splitext(path)[1].lower() in CHEAP_PROBE_SUFFIXES:
        # ``options`` reach the probe of every stream the header lists, in every PyAV we
        # support; PyAV 19 removed the per-stream ``stream_options``.
        container = av.open(path, options={"skip_frame": "nonref"})
        video = container.streams.video
        if video and video[0].codec_context.name in CHEAP_PROBE_CODECS:
            return container
        container.close()
    return av.open(path)


class PacketIndex(NamedTuple):
    """What demuxing tells about a video stream's frames."""

    pts: np.ndarray  # sorted pts of every frame the decoder delivers
    key_pts: np.ndarray  # sorted pts of the keyframes
    reordered: bool  # whether pts ever decrease in decoding order (B-frames with real pts)


def index_packets(container: av.container.InputContainer, stream: av.VideoStream) -> PacketIndex:
    """Demux without decoding (see :func:`demux_index`)."""
    return demux_index(container, stream)[0]


def demux_index(
    container: av.container.InputContainer, stream: av.VideoStream, keep_bytes: int = 0
) -> tuple[PacketIndex, list[av.Packet] | None, dict[int, int]]:
    """Demux without decoding; also the packets themselves when they fit in ``keep_bytes``.

    Packets without pts or data, packets the container marks for discarding (edit lists), and
    packets before the first keyframe (undecodable) are not frames the decoder delivers.

    Returns:
        The index; every demuxed packet in decoding order (None when they add up to more than
        ``keep_bytes``); each keyframe's position among them by pts.
    """
    pts, key_pts = [], []
    packets: list[av.Packet] | None = [] if keep_bytes > 0 else None
    key_pos: dict[int, int] = {}
    kept = 0
    for packet in container.demux(stream):
        if packets is not None:
            kept += packet.size
            if kept > keep_bytes:
                packets, key_pos = None, {}
            else:
                packets.append(packet)
        if packet.pts is None or packet.size == 0:
            continue
        if packet.is_keyframe:
            key_pts.append(packet.pts)  # a discarded keyframe still starts decoding
            if packets is not None:
                key_pos.setdefault(packet.pts, len(packets) - 1)
        elif not key_pts:
            continue
        if not packet.is_discard:
            pts.append(packet.pts)
    return _index(pts, key_pts), packets, key_pos


def index_from_container(
    container: av.container.InputContainer, stream: av.VideoStream
) -> PacketIndex | None:
    """The index :func:`index_packets` would demux, read from the container's own index.

    Only for AVI without B-frames, where a packet's pts is its position in the file's index
    (``idx1``) and the index lists every packet; None for anything else, or when the index is
    incomplete (an unindexed or truncated file): demux it then.
    """
    if "avi" not in container.format.name.split(",") or stream.codec_context.has_b_frames:
        return None
    entries = getattr(stream, "index_entries", None)  # absent from older PyAV
    if entries is None or len(entries) == 0 or len(entries) != stream.frames:
        return None
    table = np.array([(e.timestamp, e.flags, e.size) for e in entries], dtype=np.int64)
    timestamps, flags, sizes = table.T
    keyframe = (flags & 1).astype(bool)  # AVINDEX_KEYFRAME
    discard = (flags & 2).astype(bool)  # AVINDEX_DISCARD_FRAME
    if not np.array_equal(timestamps, np.arange(len(entries))) or not keyframe[0]:
        return None
    real = sizes > 0
    return _index(timestamps[real & ~discard].tolist(), timestamps[real & keyframe].tolist())


def _index(pts: list[int], key_pts: list[int]) -> PacketIndex:
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
