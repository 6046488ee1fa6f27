"""Re-encode videos smaller and with dense keyframes, so that reading a few frames is cheap.

Decoding frame ``i`` costs decoding from the keyframe before it; with a keyframe at least every
``gop`` frames, :class:`actionrec.data.decoding.PyAVReader` decodes at most ``gop`` frames per
sampled segment. The output is H.264 (yuv420p) without audio, every input frame kept with its
timestamp. Files are written under a temporary name and renamed, so a file that exists is done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from actionrec.data.decoding import DecodeError
from actionrec.data.prepare.frames import short_side_size
from actionrec.data.prepare.jobs import temp_path


@dataclass(frozen=True)
class ResizedVideo:
    """Result of one re-encode: the file, its frame count (0 when skipped), whether skipped."""

    path: Path
    frames: int
    skipped: bool = False


def even_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Short-side resize rounded to even sides, which yuv420p needs."""
    new_w, new_h = short_side_size(width, height, short_side)
    return max(2, new_w // 2 * 2), max(2, new_h // 2 * 2)


def resize_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    short_side: int = 256,
    gop: int = 16,
    crf: int = 23,
    preset: str = "veryfast",
    threads: int = 1,
    overwrite: bool = False,
) -> ResizedVideo:
    """Re-encode ``src`` to ``dst`` (H.264, short side ``short_side``, keyframe every ``gop``).

    Args:
        src: Input video.
        dst: Output file (its suffix picks the container: ``.mp4``, ``.mkv``); skipped when it
            exists unless ``overwrite``.
        short_side: Short side of the output, aspect ratio kept, sides rounded down to even
            (0: keep the size, rounded to even).
        gop: Largest distance between keyframes, in frames.
        crf: x264 constant rate factor (lower: better and larger; 18 is visually lossless).
        preset: x264 speed preset (``ultrafast`` ... ``veryslow``).
        threads: Encoder and decoder threads (0: FFmpeg chooses).
        overwrite: Re-encode even when ``dst`` exists.

    Raises:
        FileNotFoundError: When ``src`` does not exist.
        DecodeError: When ``src`` cannot be decoded or has no video frames.
    """
    if gop < 1:
        raise ValueError(f"gop={gop} must be >= 1")
    src, dst = Path(src), Path(dst)
    if dst.exists() and not overwrite:
        return ResizedVideo(dst, 0, skipped=True)
    if not src.is_file():
        raise FileNotFoundError(f"video file not found: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    try:
        frames = _reencode(src, tmp, short_side, gop, crf, preset, threads)
        os.replace(tmp, dst)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DecodeError(f"pyav cannot re-encode {src}: {error}", path=str(src)) from error
    finally:
        tmp.unlink(missing_ok=True)
    return ResizedVideo(dst, frames)


def _reencode(
    src: Path, dst: Path, short_side: int, gop: int, crf: int, preset: str, threads: int
) -> int:
    with av.open(str(src)) as inp:
        if not inp.streams.video:
            raise DecodeError(f"pyav cannot decode {src}: no video stream", path=str(src))
        in_stream = inp.streams.video[0]
        in_stream.codec_context.thread_count = threads
        if threads != 1:
            in_stream.thread_type = "AUTO"
        rate = in_stream.average_rate or in_stream.guessed_rate or Fraction(30)
        with av.open(str(dst), mode="w") as out:
            out_stream = None
            count, last_pts = 0, None
            for frame in inp.decode(in_stream):
                if out_stream is None:
                    out_stream = _add_stream(out, frame, rate, short_side, gop, crf, preset)
                    out_stream.codec_context.thread_count = threads
                    time_base = in_stream.time_base or Fraction(1, 1) / rate
                    out_stream.codec_context.time_base = time_base
                pts = frame.pts
                if pts is None or (last_pts is not None and pts <= last_pts):
                    pts = 0 if last_pts is None else last_pts + 1  # keep every frame, in order
                new = frame.reformat(out_stream.width, out_stream.height, format="yuv420p")
                new.pts, new.time_base, last_pts = pts, time_base, pts
                out.mux(out_stream.encode(new))
                count += 1
            if out_stream is None:
                raise DecodeError(f"pyav cannot decode {src}: no video frames", path=str(src))
            out.mux(out_stream.encode())
    return count


def _add_stream(
    out: av.container.OutputContainer,
    frame: av.VideoFrame,
    rate: Fraction,
    short_side: int,
    gop: int,
    crf: int,
    preset: str,
) -> av.VideoStream:
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height = even_size(frame.width, frame.height, short_side)
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop
    # x264 may add scene-cut keyframes in between; keyint caps the distance between two.
    stream.options = {"crf": str(crf), "preset": preset, "x264-params": f"keyint={gop}"}
    return stream


def resize_pair(pair: tuple[Path, Path], **kwargs: object) -> ResizedVideo:
    """:func:`resize_video` on a ``(src, dst)`` pair, for :func:`run_jobs`."""
    return resize_video(*pair, **kwargs)
