"""The media sets the benchmark measures: generated Kinetics-like clips, frame folders
extracted from them, mmaction2's sample media; generated once into a cache folder, read once
before timing so that no side pays for the disk."""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from actionrec.data.prepare.frames import extract_frames

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "data" / "mmaction2-samples"
FILENAME_TMPL = "img_{:05}.jpg"
# Kinetics-like clips: 10 s at 30 fps, 340x256 (mmaction2's resized Kinetics).
WIDTH, HEIGHT, FPS, SECONDS = 340, 256, 30, 10
GENERATED = {
    "h264_g250": dict(codec="libx264", gop=250, suffix=".mp4", about="H.264, keyframe every 250"),
    "h264_g30": dict(codec="libx264", gop=30, suffix=".mp4", about="H.264, keyframe every 30"),
    # FFmpeg's own MPEG-4 defaults (a keyframe every 12 frames, no B-frames), as most AVIs.
    "mpeg4": dict(
        codec="mpeg4", gop=12, suffix=".avi", about="MPEG-4 Part 2 AVI, keyframe every 12"
    ),
}
NOISE = 5.0  # sensor noise sigma in grey levels: ~0.6 Mbit/s at crf 23, as real 340x256 clips
SETS = ("h264_g250", "h264_g30", "mpeg4", "frames", "samples", "sample_frames")


@dataclass
class MediaSet:
    """Files of one kind and what they are."""

    name: str
    kind: str  # "video" or "rawframes"
    about: str
    items: list[dict]  # {"path"}, and "total_frames" for frame folders


def _render_clip(seed: int, seconds: float = SECONDS, noise: float = NOISE) -> np.ndarray:
    """A Kinetics-like clip: a textured scene panning, objects moving, sensor noise.

    Returns uint8 (T, H, W, 3) RGB. Enough texture and motion that the encoder spends bits as
    on real footage (a flat synthetic clip would make decoding unrealistically cheap).
    """
    rng = np.random.default_rng(seed)
    frames = round(seconds * FPS)
    pan = rng.uniform(-1.5, 1.5, size=2)
    scene_w, scene_h = WIDTH + int(abs(pan[0]) * frames) + 2, HEIGHT + int(abs(pan[1]) * frames) + 2
    coarse = rng.uniform(0, 255, size=(scene_h // 16 + 1, scene_w // 16 + 1, 3)).astype(np.float32)
    scene = cv2.resize(coarse, (scene_w, scene_h), interpolation=cv2.INTER_CUBIC)
    fine = rng.uniform(-40, 40, size=(scene_h // 2 + 1, scene_w // 2 + 1, 1)).astype(np.float32)
    scene += cv2.resize(fine, (scene_w, scene_h), interpolation=cv2.INTER_LINEAR)[..., None]
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    blobs = [
        (rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), *rng.uniform(-3, 3, 2), rng.uniform(15, 45))
        for _ in range(4)
    ]
    colours = rng.uniform(0, 255, size=(len(blobs), 3)).astype(np.float32)
    out = np.empty((frames, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(frames):
        x0 = int(t * pan[0]) if pan[0] >= 0 else scene_w - WIDTH - 1 + int(t * pan[0])
        y0 = int(t * pan[1]) if pan[1] >= 0 else scene_h - HEIGHT - 1 + int(t * pan[1])
        frame = scene[y0 : y0 + HEIGHT, x0 : x0 + WIDTH].copy()
        for (bx, by, vx, vy, r), colour in zip(blobs, colours, strict=True):
            cx, cy = (bx + vx * t) % WIDTH, (by + vy * t) % HEIGHT
            mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
            frame[mask] = 0.3 * frame[mask] + 0.7 * colour
        frame += rng.normal(0, noise, size=(*frame.shape[:2], 1)).astype(np.float32)
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def _encode(frames: np.ndarray, path: Path, codec: str, gop: int) -> None:
    """Write frames as x264's defaults do (B-frames, scene cuts) or as FFmpeg's MPEG-4."""
    tmp = path.with_name(f".{path.name}.partial")
    with av.open(str(tmp), mode="w", format="avi" if path.suffix == ".avi" else "mp4") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "medium", "threads": "1"}
        else:
            stream.codec_context.bit_rate = 1_000_000
        for array in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode())
    os.replace(tmp, path)


def prepare_media(
    cache: Path, names: Sequence[str], videos: int, seconds: float = SECONDS
) -> dict[str, MediaSet]:
    """Generate (once) and list the media sets."""
    cache.mkdir(parents=True, exist_ok=True)
    sets: dict[str, MediaSet] = {}
    need_g250 = "frames" in names and "h264_g250" not in names
    for name, spec in GENERATED.items():
        if name not in names and not (name == "h264_g250" and need_g250):
            continue
        items = []
        for i in range(videos):
            # Every parameter in the folder name: a changed one never reuses stale files.
            folder = f"{spec['codec']}_g{spec['gop']}_{seconds:g}s_noise{NOISE:g}"
            path = cache / folder / f"clip_{i:02d}{spec['suffix']}"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                print(f"generating {path}", file=sys.stderr)
                _encode(_render_clip(i, seconds), path, spec["codec"], spec["gop"])
            items.append({"path": str(path)})
        about = (
            f"{videos} generated {seconds:g} s {WIDTH}x{HEIGHT} {FPS} fps clips, {spec['about']}"
        )
        sets[name] = MediaSet(name, "video", about, items)
    if "frames" in names:
        items = []
        for video in sets["h264_g250"].items:
            out = cache / f"frames_of_{Path(video['path']).parent.name}" / Path(video["path"]).stem
            folder = extract_frames(video["path"], out, short_side=0, filename_tmpl=FILENAME_TMPL)
            items.append({"path": str(folder.path), "total_frames": folder.frames})
        about = f"frame folders (JPEG quality 95, {FILENAME_TMPL}) of the h264_g250 clips"
        sets["frames"] = MediaSet("frames", "rawframes", about, items)
    if need_g250:
        del sets["h264_g250"]
    # The sample media are listed several times, as many lines as a generated set has videos:
    # a pass then times several draws, not one sample right after the other pipelines ran.
    if "samples" in names and SAMPLES.is_dir():
        items = [{"path": str(SAMPLES / f)} for f in ("test.mp4", "demo.mp4")]
        items = items * max(1, videos // len(items))
        about = f"mmaction2's test.mp4 and demo.mp4, each listed {len(items) // 2} times"
        sets["samples"] = MediaSet("samples", "video", about, items)
    if "sample_frames" in names and SAMPLES.is_dir():
        items = [{"path": str(SAMPLES / "imgs"), "total_frames": 10}] * max(1, videos)
        about = f"mmaction2's imgs/ (10 frames, 320x240), listed {len(items)} times"
        sets["sample_frames"] = MediaSet("sample_frames", "rawframes", about, items)
    missing = [n for n in names if n not in sets]
    if missing:
        print(f"skipped {missing}: mmaction2 sample media not found at {SAMPLES}", file=sys.stderr)
    return sets


def item_files(item: dict) -> list[Path]:
    """A video, or a folder's frames (not other files in the folder)."""
    path = Path(item["path"])
    prefix = FILENAME_TMPL.split("{")[0]
    return sorted(path.glob(f"{prefix}*")) if path.is_dir() else [path]


def warm_page_cache(media: MediaSet) -> None:
    """Read every file of a set once, so that no side pays for reading it from disk.

    Ours reads each pass's frames first; on a cold cache (after a large install, say) it alone
    waited for the disk: 1.9 ms CPU and 2.4 ms wall per frame-folder sample against 1.6 warm.
    """
    files = [f for item in media.items for f in item_files(item)]
    for path in dict.fromkeys(files):  # sample sets list a file several times
        with open(path, "rb", buffering=0) as file:
            while file.read(1 << 20):
                pass


def media_size_mb(media: MediaSet) -> float:
    """Mean size on disk per video (a frame folder's files added up)."""
    sizes = [sum(f.stat().st_size for f in item_files(item)) / 1e6 for item in media.items]
    return statistics.mean(sizes)
