"""Benchmark the data pipeline: CPU and wall time per video, against two baselines.

    python scripts/bench_pipeline.py                 # every media set, prints the tables
    python scripts/bench_pipeline.py --update-docs   # and rewrites them in docs/benchmarks.md
    python scripts/bench_pipeline.py --quick         # one video, one repeat (a smoke run)
    make bench-env                                   # once: the throwaway mmaction2 environment

For each media set it times actionrec's TSN 1x1x3 train, val and test pipelines, built from the
real classes and conf/data/kinetics400_video.yaml (kinetics400.yaml for frame folders), one
video at a time at one thread. In the same run it times two baselines on the same files and the
same frame indices: the decode floor (the fastest exact way to decode only the sampled frames,
no transforms) and mmaction2's own pipeline (in the environment of ``make bench-env``, run as a
subprocess; skipped with a note when that environment is missing). It also checks exactness
(our frames against a full sequential decode, our val pixels against mmaction2's), breaks the
train and test pipelines down by stage, and measures videos/s with N DataLoader workers.

Media are generated once into ``--cache``: Kinetics-like clips (10 s, 340x256, 30 fps) as H.264
with a keyframe every 250 and every 30 frames and as MPEG-4 AVI (a keyframe every 12), frame
folders extracted from the first ones, plus mmaction2's sample media when ../shared has them.
"""

from __future__ import annotations

import os

# One thread for every library, set before they are imported: workers are the parallelism.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from actionrec.data.datamodule import VideoDataModule  # noqa: E402
from actionrec.data.decoding import backend_unavailable, open_video, read_rawframes  # noqa: E402
from actionrec.data.prepare.frames import extract_frames  # noqa: E402
from actionrec.data.pyav_reader import index_packets, open_container  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "mmaction2-samples"
MMACTION2_PYTHON = ROOT / ".bench" / "mmaction2-venv" / "bin" / "python"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_pipeline:begin -->", "<!-- bench_pipeline:end -->"
SPLITS = ("train", "val", "test")
FILENAME_TMPL = "img_{:05}.jpg"
# A frame-folder sample costs ~1.5 ms against 5-80 ms for a video: its sets get this many times
# the passes (still well under a second each), so their medians settle on a noisy machine.
FRAME_PASSES = 5
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
# Targets of the issue, CPU time per video at one thread.
TARGET_VS_MMACTION2_VIDEO = 1 / 1.5
TARGET_VS_FLOOR = 1.15
TARGET_VS_MMACTION2_FRAMES = 1.0


@dataclass
class MediaSet:
    """Files of one kind and what they are."""

    name: str
    kind: str  # "video" or "rawframes"
    about: str
    items: list[dict]  # {"path"}, and "total_frames" for frame folders


@dataclass
class Timing:
    """Per-call CPU and wall milliseconds."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    def time(self, fn: Callable[[], object]) -> object:
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        self.cpu.append((time.process_time() - c0) * 1e3)
        self.wall.append((time.perf_counter() - w0) * 1e3)
        return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench" / "media", help="media dir")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma list of {SETS}")
    parser.add_argument(
        "--pipelines", default=",".join(SPLITS), help="comma list of train,val,test"
    )
    parser.add_argument("--videos", type=int, default=4, help="generated videos per set")
    parser.add_argument("--repeats", type=int, default=3, help="passes over each set")
    parser.add_argument(
        "--seconds", type=float, default=SECONDS, help="length of the generated clips"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="DataLoader workers for the throughput figure (0: skip it)",
    )
    parser.add_argument(
        "--mmaction2-python",
        type=Path,
        default=MMACTION2_PYTHON,
        help="python of the throwaway mmaction2 environment (make bench-env)",
    )
    parser.add_argument("--no-mmaction2", action="store_true", help="skip the mmaction2 baseline")
    parser.add_argument(
        "--quick", action="store_true", help="1 video per set, 1 repeat, no isolation figure"
    )
    parser.add_argument("--markdown", type=Path, help="write the tables into this file")
    parser.add_argument("--update-docs", action="store_true", help=f"--markdown {DOCS}")
    parser.add_argument("--json", type=Path, help="write the raw results as JSON")
    args = parser.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    args.pipelines = [p for p in args.pipelines.split(",") if p]
    for name, given, allowed in [
        ("--sets", args.sets, SETS),
        ("--pipelines", args.pipelines, SPLITS),
    ]:
        unknown = set(given) - set(allowed)
        if unknown or not given:
            parser.error(
                f"{name} must be a comma list of {allowed}, got {sorted(unknown) or given}"
            )
    if args.quick:
        args.videos, args.repeats = 1, 1
    if args.videos < 1 or args.repeats < 1 or args.seconds * FPS < 3:
        parser.error("--videos and --repeats must be >= 1, --seconds long enough for 3 frames")
    if args.update_docs:
        args.markdown = DOCS
    return args


# --------------------------------------------------------------------------------------------
# Media


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


# --------------------------------------------------------------------------------------------
# Our pipeline


class RecordingSampler:
    """Wraps the dataset's sampler and keeps the indices it drew, for the baselines."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler
        self.drawn: list[np.ndarray] = []

    def __call__(self, *args, **kwargs) -> np.ndarray:
        inds = self.sampler(*args, **kwargs)
        self.drawn.append(np.asarray(inds).copy())
        return inds

    def __getattr__(self, name: str):
        return getattr(self.sampler, name)


def build_datamodule(media: MediaSet, workdir: Path, **overrides) -> VideoDataModule:
    """The data config the recipe uses, pointed at this set through a generated list."""
    conf = "kinetics400_video.yaml" if media.kind == "video" else "kinetics400.yaml"
    cfg = OmegaConf.load(ROOT / "conf" / "data" / conf)
    lines = [
        f"{item['path']} 0" if media.kind == "video" else f"{item['path']} {item['total_frames']} 0"
        for item in media.items
    ]
    ann = workdir / f"{media.name}_list.txt"
    ann.write_text("\n".join(lines) + "\n")
    paths = {f"ann_file_{split}": str(ann) for split in SPLITS}
    return instantiate(cfg, data_root="", data_root_val="", **paths, **overrides)


def measure(
    media: MediaSet, split: str, repeats: int, workdir: Path, decoders: dict, mm: MMAction2 | None
) -> tuple[Timing, dict[str, Timing], Timing, list]:
    """Ours, each floor candidate and mmaction2, alternating pass by pass on the same frames.

    Ours is the dataset's ``__getitem__`` with the decoder in-process; the baselines then
    decode the indices it drew in that pass, so a change of load on the machine hits all
    alike. Each side runs one untimed sample before its pass, as a worker that loads samples
    back to back has its code warm (the others' passes evict it). Returns the timings and
    the drawn indices (per pass, per video).
    """
    dm = build_datamodule(media, workdir, isolate_decoder=False, decode_timeout=None)
    dataset = dm.build_dataset(split)
    recorder = RecordingSampler(dataset.sampler)
    dataset.sampler = recorder
    torch.manual_seed(0)
    dataset[0]  # warm-up
    n, drawn = len(dataset), []
    ours, theirs = Timing(), Timing()
    floors = {name: Timing() for name in decoders}
    for rep in range(repeats):
        dataset[(n - 1, repeats + rep)]  # warm-up: an epoch no pass times, other frames
        recorder.drawn.clear()
        for i in range(n):
            # Pass ``rep`` as the epoch: training draws new frames and crops every epoch.
            ours.time(lambda i=i, rep=rep: dataset[(i, rep)])
        drawn.append(list(recorder.drawn))
        for name, fn in decoders.items():
            fn(media.items[-1]["path"], drawn[-1][-1])  # warm-up
            for i, inds in enumerate(drawn[-1]):
                floors[name].time(lambda fn=fn, i=i, inds=inds: fn(media.items[i]["path"], inds))
        if mm is not None:
            reply = mm.run(media, split, drawn[-1])
            theirs.cpu += reply["cpu_ms"]
            theirs.wall += reply["wall_ms"]
    return ours, floors, theirs, drawn


def time_ours_isolated(media: MediaSet, split: str, repeats: int, workdir: Path) -> Timing | None:
    """Decoding in a child process (``data.isolate_decoder=true``); CPU counts the child's too.

    None when the dataset no longer exposes its decoder child (the figure is then left out).
    """
    dm = build_datamodule(media, workdir, isolate_decoder=True)
    dataset = dm.build_dataset(split)
    torch.manual_seed(0)
    dataset[0]  # starts the child
    try:
        child = dataset._decoder_process._proc.pid
    except AttributeError:
        print("no decoder child found: the isolation figure is left out", file=sys.stderr)
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def child_cpu_ms() -> float:
        fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick * 1e3  # utime + stime

    # The child's CPU clock ticks every 10 ms or so: pass until a second has gone by.
    n, passes = 0, 0
    c0, w0, k0 = time.process_time(), time.perf_counter(), child_cpu_ms()
    while passes < repeats or time.perf_counter() - w0 < 1.0:
        for i in range(len(dataset)):
            dataset[(i, passes)]
        n, passes = n + len(dataset), passes + 1
    cpu = (time.process_time() - c0) * 1e3 + child_cpu_ms() - k0
    wall = (time.perf_counter() - w0) * 1e3
    dataset.close()
    # A mean over the passes, not a median: the child's clock is read once.
    return Timing([cpu / n], [wall / n])


# --------------------------------------------------------------------------------------------
# Decode floor: candidate decoders, each decoding only what the sampled frames need.


def pyav_seek(path: str, inds: np.ndarray, skip_nonref: bool = False, clock=None) -> np.ndarray:
    """Seek to the keyframe before each group of wanted frames and decode up to them.

    With ``skip_nonref`` the decoder skips pictures that no other picture references (FFmpeg's
    ``skip_frame=NONREF``) unless they are wanted: the least work an exact decode needs.
    ``clock`` (a dict) receives CPU ms per stage: index, decode, convert.
    """
    tick = time.process_time
    t0 = tick()
    with open_container(path) as container:  # H.264: probed without decoding a picture
        stream = container.streams.video[0]
        codec = stream.codec_context
        codec.thread_count = 1
        pts, key_pts, _ = index_packets(container, stream)  # what our reader calls frame i
        unique = np.unique(inds)
        targets = pts[unique]
        groups = np.maximum(np.searchsorted(key_pts, targets, side="right") - 1, 0)
        t1 = tick()
        convert = 0.0
        found: dict[int, np.ndarray] = {}
        for group in np.unique(groups):
            want = set(targets[groups == group].tolist())
            container.seek(int(key_pts[group]), stream=stream, backward=True, any_frame=False)
            done = False
            for packet in container.demux(stream):
                if skip_nonref:
                    codec.skip_frame = "DEFAULT" if packet.pts in want else "NONREF"
                for frame in codec.decode(packet if packet.size else None):
                    if frame.pts in want and frame.pts not in found:
                        c = tick()
                        found[frame.pts] = frame.to_ndarray(format="rgb24", threads=1)  # (H, W, 3)
                        convert += tick() - c
                done = want <= found.keys()
                if done:
                    break
            if not done:
                raise RuntimeError(
                    f"{path}: frames at pts {sorted(want - found.keys())} not decoded"
                )
        codec.skip_frame = "DEFAULT"
    if clock is not None:
        total = tick() - t0
        clock["index"] = clock.get("index", 0.0) + (t1 - t0) * 1e3
        clock["decode"] = clock.get("decode", 0.0) + (total - (t1 - t0) - convert) * 1e3
        clock["convert"] = clock.get("convert", 0.0) + convert * 1e3
    return np.stack([found[int(p)] for p in pts[inds]])  # (T, H, W, 3)


def pyav_skip(path: str, inds: np.ndarray) -> np.ndarray:
    return pyav_seek(path, inds, skip_nonref=True)


def torchcodec_exact(path: str, inds: np.ndarray) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=1)
    unique, inverse = np.unique(inds, return_inverse=True)
    frames = decoder.get_frames_at(indices=unique.tolist()).data  # (U, 3, H, W)
    return frames.permute(0, 2, 3, 1).numpy()[inverse.reshape(-1)]


def decord_batch(path: str, inds: np.ndarray) -> np.ndarray:
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    unique, inverse = np.unique(inds, return_inverse=True)
    return reader.get_batch(unique.tolist()).asnumpy()[inverse.reshape(-1)]


def jpeg_torchvision(folder: str, inds: np.ndarray) -> np.ndarray:
    """File reads and one batched libjpeg-turbo call (torchvision's ``decode_jpeg``)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    unique, inverse = np.unique(inds, return_inverse=True)
    data = [
        torch.from_numpy(np.fromfile(os.path.join(folder, FILENAME_TMPL.format(i)), np.uint8))
        for i in unique.tolist()
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's codec notice
        frames = torch.stack(decode_jpeg(data, mode=ImageReadMode.RGB))  # (U, 3, H, W)
    return frames.permute(0, 2, 3, 1).numpy()[inverse.reshape(-1)]


def jpeg_opencv(folder: str, inds: np.ndarray) -> np.ndarray:
    """What mmcv does: cv2.imdecode, then BGR to RGB."""
    unique, inverse = np.unique(inds, return_inverse=True)
    frames = []
    for i in unique.tolist():
        data = np.fromfile(os.path.join(folder, FILENAME_TMPL.format(i)), dtype=np.uint8)
        frames.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(frames)[inverse.reshape(-1)]


VIDEO_DECODERS = {
    "pyav seek": pyav_seek,
    "pyav seek + skip non-ref": pyav_skip,
    "torchcodec exact": torchcodec_exact,
    "decord": decord_batch,
}
# The optional candidates, by the actionrec backend whose package (and libraries) each needs.
OPTIONAL_BACKEND = {"torchcodec exact": "torchcodec", "decord": "decord"}


def usable_video_decoders() -> dict[str, Callable[[str, np.ndarray], np.ndarray]]:
    """The candidates that work here; each one skipped is named on stderr with the reason."""
    usable = {}
    for name, decode in VIDEO_DECODERS.items():
        reason = backend_unavailable(OPTIONAL_BACKEND[name]) if name in OPTIONAL_BACKEND else None
        if reason is None:
            usable[name] = decode
        else:
            print(f"{name}: skipped (not measured): {reason}", file=sys.stderr)
    return usable


def _version(backend: str) -> str:
    """The optional ``backend``'s version, or why it was not measured."""
    if backend_unavailable(backend) is not None:
        return "not usable here (not measured)"
    return importlib.import_module(backend).__version__


FRAME_DECODERS = {"jpeg torchvision": jpeg_torchvision, "jpeg opencv": jpeg_opencv}


def reference_frames(media: MediaSet, item: dict, inds: np.ndarray) -> np.ndarray:
    """What index i means: the i-th frame of a full sequential decode (videos), cv2 (JPEG)."""
    if media.kind == "rawframes":
        return jpeg_opencv(item["path"], inds)
    wanted = set(np.unique(inds).tolist())
    frames = {}
    with av.open(item["path"]) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames[i] = frame.to_ndarray(format="rgb24", threads=1)
            if len(frames) == len(wanted):
                break
    return np.stack([frames[int(i)] for i in inds])


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    if a.shape != b.shape:
        return 255
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def check_exactness(media: MediaSet, drawn: dict[str, list], decoders: dict) -> dict:
    """Max abs difference to the reference frames, for ours and each candidate decoder."""
    diffs: dict[str, int] = {}
    for split, per_repeat in drawn.items():
        if split == "test":
            continue  # the same frames as val, more of them
        for i, inds in enumerate(per_repeat[0]):
            item = media.items[i]
            ref = reference_frames(media, item, inds)
            if media.kind == "video":
                with open_video(item["path"], backend=our_decoder()) as video:
                    ours = video.read(inds).permute(0, 2, 3, 1).numpy()
            else:
                ours = read_rawframes(item["path"], inds, FILENAME_TMPL).permute(0, 2, 3, 1).numpy()
            diffs["ours"] = max(diffs.get("ours", 0), _max_diff(ours, ref))
            for name, fn in decoders.items():
                diffs[name] = max(diffs.get(name, 0), _max_diff(fn(item["path"], inds), ref))
    return diffs


@functools.cache
def our_decoder() -> str:
    """The video backend the recipe's data config picks (``data.decoder``)."""
    return OmegaConf.load(ROOT / "conf" / "data" / "kinetics400_video.yaml").decoder


def frames_to_decode(media: MediaSet, path: str, inds: np.ndarray) -> int:
    """Frames an exact seek-and-decode walks: from each keyframe to the last frame wanted after it.

    Display order, so B-frames that follow the last wanted frame in decode order are not counted.
    A frame folder decodes only the distinct frames asked for.
    """
    unique = np.unique(inds)
    if media.kind == "rawframes":
        return len(unique)
    with av.open(path) as container:
        pts, key_pts, _ = index_packets(container, container.streams.video[0])
    keys = np.searchsorted(pts, key_pts)  # display index of each keyframe
    groups = np.maximum(np.searchsorted(keys, unique, side="right") - 1, 0)
    return int(sum(unique[groups == g].max() - keys[g] + 1 for g in np.unique(groups)))


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


# --------------------------------------------------------------------------------------------
# mmaction2 baseline


class MMAction2:
    """scripts/mmaction2_baseline.py in the throwaway environment, answering one pass a call."""

    def __init__(self, python: Path, seed: int = 0) -> None:
        self.python = python
        script = ROOT / "scripts" / "mmaction2_baseline.py"
        self.proc = subprocess.Popen(
            [str(python), str(script), str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},  # its own packages only
        )
        self.versions = self._reply()["versions"]

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(
                f"the mmaction2 baseline ({self.python}) stopped with exit code {code}; its "
                "error is printed above. Recreate the environment with `make bench-env`, or "
                "pass --no-mmaction2."
            )
        return json.loads(line)

    def run(self, media: MediaSet, split: str, inds: list, dump_dir: Path | None = None) -> dict:
        """Time one pass over ``media`` (or save the outputs into ``dump_dir``)."""
        job = {
            "name": media.name,
            "kind": media.kind,
            "split": split,
            "items": [dict(item, filename_tmpl=FILENAME_TMPL) for item in media.items],
            "inds": [np.asarray(x).tolist() for x in inds],
            "dump_dir": str(dump_dir) if dump_dir else None,
        }
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def open_mmaction2(args: argparse.Namespace) -> tuple[MMAction2 | None, dict]:
    """The running baseline and where its numbers go, or None and why there are none."""
    if args.no_mmaction2:
        return None, {"skipped": "--no-mmaction2"}
    if not args.mmaction2_python.exists():
        note = (
            f"{args.mmaction2_python} not found: create the throwaway environment with "
            "`make bench-env` (or pass --mmaction2-python)"
        )
        print(f"mmaction2 baseline skipped: {note}", file=sys.stderr)
        return None, {"skipped": note}
    mm = MMAction2(args.mmaction2_python)
    return mm, {"versions": mm.versions, "results": {}}


def compare_val(mm: MMAction2, media: MediaSet, drawn: list, workdir: Path) -> dict:
    """mmaction2's val output against ours on the same indices, pixel by pixel."""
    files = mm.run(media, "val", drawn[0], dump_dir=workdir)["files"]
    dm = build_datamodule(media, workdir, isolate_decoder=False, decode_timeout=None)
    dataset = dm.build_dataset("val")
    diff, frac = 0, 0.0
    for i, path in enumerate(files):
        theirs = np.load(path)
        ours = dataset[i]["imgs"].numpy()
        diff = max(diff, _max_diff(ours, theirs))
        if ours.shape == theirs.shape:
            frac = max(frac, float((ours != theirs).mean()))
    return {
        "val pixels vs mmaction2": diff,
        "val pixels differing from mmaction2 (%)": frac * 100,
    }


# --------------------------------------------------------------------------------------------
# Stage breakdown and throughput


def breakdown(media: MediaSet, split: str, drawn: list, workdir: Path) -> dict[str, float]:
    """Median CPU ms per stage of a pipeline (decoding split by the pyav floor's loop)."""
    dm = build_datamodule(media, workdir, isolate_decoder=False, decode_timeout=None)
    dataset = dm.build_dataset(split)
    transforms = dataset.pipeline.transforms
    stages: dict[str, list[float]] = {}

    def add(name: str, ms: float) -> None:
        stages.setdefault(name, []).append(ms)

    rng = np.random.default_rng(0)
    backend = our_decoder()  # read once: a YAML load inside the timed stage cost ~5 ms
    samples = []
    for repeat in drawn:
        for i, inds in enumerate(repeat):
            item = media.items[i]
            if media.kind == "video":
                clock: dict[str, float] = {}
                pyav_seek(item["path"], inds, skip_nonref=True, clock=clock)
                add("floor: demux the packet index", clock["index"])
                add("floor: seek + decode (skipping non-ref)", clock["decode"])
                add("floor: YUV to RGB", clock["convert"])
                c0 = time.process_time()
                video = open_video(item["path"], backend=backend)
                add("ours: open + index", (time.process_time() - c0) * 1e3)
                c0 = time.process_time()
                imgs = video.read(inds)
                add("ours: read (seek, decode, RGB)", (time.process_time() - c0) * 1e3)
                video.close()
            else:
                # As the dataset does: the leading crop drawn first, only its box decoded.
                plan: list = []

                def region(height: int, width: int, plan: list = plan) -> tuple | None:
                    plan[:] = dataset.pipeline.split_crop(height, width, rng)
                    return plan[0]

                c0 = time.process_time()
                imgs = read_rawframes(item["path"], inds, FILENAME_TMPL, region=region)
                box = plan and plan[0] is not None
                what = "read + JPEG decode of the crop box" if box else "read + JPEG decode"
                add(f"ours: {what}", (time.process_time() - c0) * 1e3)
            rest = transforms
            if media.kind == "video" and dataset.pipeline.lazy:
                c0 = time.process_time()
                box, tail = dataset.pipeline.split_crop(*imgs.shape[-2:], rng)
                if box is not None:
                    imgs, rest = imgs[..., box[1] : box[3], box[0] : box[2]], tail.transforms
                    add("ours: lazy crop box", (time.process_time() - c0) * 1e3)
            elif media.kind != "video" and plan and plan[0] is not None:
                rest = plan[1].transforms
            for t in rest:
                c0 = time.process_time()
                imgs = t(imgs, rng=rng)
                ms = _ms_since(c0)
                add(f"ours: {type(t).__name__}{_args(t)}", ms)
            samples.append({"imgs": imgs, "label": torch.tensor(0), "skipped": ""})
    batch = dm.batch_sizes[split]
    batches = [samples[i : i + 1] * batch for i in range(len(samples))]
    for b in batches:
        c0 = time.process_time()
        default_collate(b)
        ms = _ms_since(c0) / batch
        add(f"collate (batch of {batch}), per video", ms)
    return {name: statistics.median(v) for name, v in stages.items()}


def _ms_since(cpu_start: float) -> float:
    return (time.process_time() - cpu_start) * 1e3


def _args(t) -> str:
    """A Resize's scale, to tell the two apart in the stage table."""
    scale = getattr(t, "scale", None)
    if type(t).__name__ != "Resize" or not isinstance(scale, tuple):
        return ""
    return f" {tuple(-1 if s == float('inf') else int(s) for s in scale)}"


def throughput(media: MediaSet, workers: int, workdir: Path, videos: int = 64) -> dict:
    """Videos/s of the train DataLoader as configured (decoder isolated), after one batch."""
    per_epoch = len(media.items)
    copies = max(1, videos // per_epoch)
    media = MediaSet(media.name, media.kind, media.about, media.items * copies)
    out = {}
    for n in sorted({0, workers}):
        dm = build_datamodule(media, workdir, videos_per_gpu=8, workers_per_gpu=n)
        dm.setup("fit")
        loader = dm.train_dataloader()
        it = iter(loader)
        next(it)  # worker start-up and imports are not throughput
        t0, count = time.perf_counter(), 0
        for batch in it:
            count += len(batch["label"])
        elapsed = time.perf_counter() - t0
        out[n] = count / elapsed if count else float("nan")
        del it, loader
        dm.teardown("fit")
    return out


# --------------------------------------------------------------------------------------------
# Report


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torchvision

    libavcodec = av.library_versions["libavcodec"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{model}, {os.cpu_count()} cores visible",
        "load average at start": f"{os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "av (PyAV)": f"{av.__version__}, libavcodec {'.'.join(map(str, libavcodec))}",
        "torchcodec": _version("torchcodec"),
        "decord": _version("decord"),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"


def _ms(x: float | None) -> str:
    """Milliseconds with 3 significant digits or so: 0.83, 4.81, 61.3."""
    return _fmt(x, 2 if x is not None and x < 10 else 1)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def build_results(args: argparse.Namespace) -> dict:
    sets = prepare_media(args.cache, args.sets, args.videos, args.seconds)
    if not sets:
        raise SystemExit("no media set to measure")
    results: dict = {"machine": machine(), "sets": {}, "args": vars(args).copy()}
    results["args"] = {k: str(v) for k, v in results["args"].items()}
    drawn_all: dict[str, dict] = {}
    video_decoders = usable_video_decoders()
    mm, results["mmaction2"] = open_mmaction2(args)
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        workdir = Path(tmp)
        for name, media in sets.items():
            print(f"[{name}] {media.about}", file=sys.stderr)
            decoders = video_decoders if media.kind == "video" else FRAME_DECODERS
            entry: dict = {"about": media.about, "kind": media.kind, "pipelines": {}}
            entry["mb_per_video"] = media_size_mb(media)
            warm_page_cache(media)
            drawn_all[name] = {}
            passes = args.repeats * (1 if media.kind == "video" else FRAME_PASSES)
            for split in args.pipelines:
                ours, floors, theirs, drawn = measure(media, split, passes, workdir, decoders, mm)
                drawn_all[name][split] = drawn
                entry["pipelines"][split] = {
                    "frames_returned": len(drawn[0][0]),
                    "frames_decoded": [
                        frames_to_decode(media, media.items[i]["path"], inds)
                        for repeat in drawn
                        for i, inds in enumerate(repeat)
                    ],
                    "ours": {"cpu": ours.cpu, "wall": ours.wall},
                    "decoders": {k: {"cpu": v.cpu, "wall": v.wall} for k, v in floors.items()},
                }
                if mm is not None:
                    timed = {"cpu_ms": theirs.cpu, "wall_ms": theirs.wall}
                    results["mmaction2"]["results"].setdefault(name, {})[split] = timed
                if split == "train" and not args.quick:  # a child start costs seconds
                    iso = time_ours_isolated(media, split, passes, workdir)
                    if iso is not None:
                        timed = {"cpu": iso.cpu, "wall": iso.wall}
                        entry["pipelines"][split]["ours_isolated"] = timed
            entry["exactness"] = check_exactness(media, drawn_all[name], decoders)
            if mm is not None and "val" in drawn_all[name]:
                entry["exactness"].update(compare_val(mm, media, drawn_all[name]["val"], workdir))
            results["sets"][name] = entry
        if mm is not None:
            mm.close()
        first_video = next((n for n in ("h264_g250", "samples") if n in sets), None)
        first_frames = next((n for n in ("frames", "sample_frames") if n in sets), None)
        detailed = [n for n in (first_video, first_frames) if n]
        results["breakdown"] = {
            name: {
                split: breakdown(sets[name], split, drawn_all[name][split], workdir)
                for split in ("train", "test")
                if split in args.pipelines
            }
            for name in detailed
        }
        if args.workers > 0 and "train" in args.pipelines:
            results["throughput"] = {}
            for name in detailed:
                print(f"[{name}] DataLoader throughput", file=sys.stderr)
                results["throughput"][name] = throughput(sets[name], args.workers, workdir)
    results["machine"]["load average at end"] = f"{os.getloadavg()[0]:.2f}"
    summarize(results)
    return results


def summarize(results: dict) -> None:
    """Medians and ratios per set and pipeline (what the tables show)."""
    mm = results["mmaction2"].get("results", {})
    for name, entry in results["sets"].items():
        exact = entry["exactness"]
        for split, p in entry["pipelines"].items():
            dec = {k: statistics.median(v["cpu"]) for k, v in p["decoders"].items()}
            exact_dec = {k: v for k, v in dec.items() if exact.get(k, 255) == 0}
            floor_name = min(exact_dec, key=exact_dec.get) if exact_dec else None
            theirs = mm.get(name, {}).get(split)
            s = {
                "ours_cpu_ms": statistics.median(p["ours"]["cpu"]),
                "ours_wall_ms": statistics.median(p["ours"]["wall"]),
                "floor_cpu_ms": exact_dec.get(floor_name),
                "floor_decoder": floor_name,
                "decoders_cpu_ms": dec,
                "mmaction2_cpu_ms": statistics.median(theirs["cpu_ms"]) if theirs else None,
                "mmaction2_wall_ms": statistics.median(theirs["wall_ms"]) if theirs else None,
                "samples": len(p["ours"]["cpu"]),
                "frames_decoded": statistics.median(p["frames_decoded"]),
                "frames_returned": p["frames_returned"],
            }
            if "ours_isolated" in p:
                s["ours_isolated_cpu_ms"] = p["ours_isolated"]["cpu"][0]
                s["ours_isolated_wall_ms"] = p["ours_isolated"]["wall"][0]
            s["ours_vs_floor"] = _ratio(s["ours_cpu_ms"], s["floor_cpu_ms"])
            s["ours_vs_mmaction2"] = _ratio(s["ours_cpu_ms"], s["mmaction2_cpu_ms"])
            p["summary"] = s


def _target(kind: str, split: str, s: dict) -> str:
    if split != "train":
        return ""
    checks = []
    if kind == "video":
        if s["ours_vs_mmaction2"] is not None:
            ok = s["ours_vs_mmaction2"] <= TARGET_VS_MMACTION2_VIDEO
            checks.append(f"{'met' if ok else 'MISSED'} vs mm2 (<= 0.667)")
        if s["ours_vs_floor"] is not None:
            ok = s["ours_vs_floor"] <= TARGET_VS_FLOOR
            checks.append(f"{'met' if ok else 'MISSED'} vs floor (<= {TARGET_VS_FLOOR})")
    elif s["ours_vs_mmaction2"] is not None:
        ok = s["ours_vs_mmaction2"] <= TARGET_VS_MMACTION2_FRAMES
        checks.append(f"{'met' if ok else 'MISSED'} vs mm2 (<= 1)")
    return "; ".join(checks)


def render_markdown(results: dict) -> str:
    m = results["machine"]
    args = results["args"]
    lines = [
        f"_Generated by `python scripts/bench_pipeline.py` on {m['date']}; "
        f"{args['videos']} videos per generated set, {args['repeats']} passes "
        f"({int(args['repeats']) * FRAME_PASSES} over frame folders), medians over videos x "
        "passes. Regenerate with `python scripts/bench_pipeline.py --update-docs`._",
        *_targets_summary(results),
        "",
        "### Per video, one thread",
        "",
        "CPU ms per video (`time.process_time`, one process, every library at one thread); wall "
        "ms beside ours. *floor*: the fastest exact decoder on the same frames, no transforms. "
        "*mm2*: mmaction2's own pipeline on the same files and frame indices. *floor / mm2* "
        "bounds what any exact pipeline can reach against mmaction2.",
        "",
        "| media | pipeline | ours CPU | ours wall | floor CPU (decoder) | mm2 CPU | "
        "ours / floor | ours / mm2 | floor / mm2 | targets (train) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, entry in results["sets"].items():
        for split, p in entry["pipelines"].items():
            s = p["summary"]
            floor = f"{_ms(s['floor_cpu_ms'])} ({s['floor_decoder'] or 'none exact'})"
            floor_vs_mm2 = _ratio(s["floor_cpu_ms"], s["mmaction2_cpu_ms"])
            lines.append(
                f"| {name} | {split} | {_ms(s['ours_cpu_ms'])} | {_ms(s['ours_wall_ms'])} | "
                f"{floor} | {_ms(s['mmaction2_cpu_ms'])} | {_fmt(s['ours_vs_floor'], 2)} | "
                f"{_fmt(s['ours_vs_mmaction2'], 2)} | {_fmt(floor_vs_mm2, 2)} | "
                f"{_target(entry['kind'], split, s)} |"
            )
    lines += ["", "Media sets:", ""]
    lines += [
        f"- `{name}`: {entry['about']}; {entry['mb_per_video']:.2f} MB per video on disk"
        for name, entry in results["sets"].items()
    ]
    lines += _decoder_table(results) + _isolation_table(results)
    lines += _breakdown_table(results) + _throughput_table(results) + _exactness_table(results)
    lines += ["", "### Machine and versions", ""]
    versions = dict(m)
    versions.update(results["mmaction2"].get("versions", {}))
    if "skipped" in results["mmaction2"]:
        versions["mmaction2"] = f"not measured ({results['mmaction2']['skipped']})"
    lines += [f"- {k}: {v}" for k, v in versions.items()]
    return "\n".join(lines) + "\n"


def _targets_summary(results: dict) -> list[str]:
    """The issue's targets, one line each, with the measured ratio of every media set."""
    checks = [
        ("video", "ours_vs_mmaction2", TARGET_VS_MMACTION2_VIDEO, "train on videos, ours / mm2"),
        ("video", "ours_vs_floor", TARGET_VS_FLOOR, "train on videos, ours / floor"),
        (
            "rawframes",
            "ours_vs_mmaction2",
            TARGET_VS_MMACTION2_FRAMES,
            "train on frames, ours / mm2",
        ),
    ]
    lines = ["", "Targets (CPU per video at one thread):", ""]
    for kind, key, limit, what in checks:
        cells = []
        for name, entry in results["sets"].items():
            s = entry["pipelines"].get("train", {}).get("summary", {})
            if entry["kind"] != kind or s.get(key) is None:
                continue
            cell = f"{name} {s[key]:.3f} ({'met' if s[key] <= limit else 'missed'}"
            if key == "ours_vs_mmaction2" and s["floor_cpu_ms"] is not None:
                cell += f"; the floor's: {s['floor_cpu_ms'] / s['mmaction2_cpu_ms']:.3f}"
            cells.append(cell + ")")
        if cells:
            lines.append(f"- {what} <= {limit:.3g}: {', '.join(cells)}")
    diffs = [
        (name, entry["exactness"]["val pixels vs mmaction2"])
        for name, entry in results["sets"].items()
        if "val pixels vs mmaction2" in entry["exactness"]
    ]
    if diffs:
        cells = ", ".join(f"{name} {d}" for name, d in diffs)
        lines.append(f"- val pixels equal mmaction2's (max abs difference 0): {cells}")
    return lines


def _decoder_table(results: dict) -> list[str]:
    names: list[str] = []
    for entry in results["sets"].values():
        for p in entry["pipelines"].values():
            names += [k for k in p["summary"]["decoders_cpu_ms"] if k not in names]
    lines = [
        "",
        "### Decoders on the sampled frames",
        "",
        "CPU ms per video to decode only the frames each pipeline samples (file open and index "
        "included, no transforms); `*` marks a decoder whose frames differ from a full "
        "sequential decode on this set (not exact, so not a floor). *decoded / returned*: "
        "frames an exact seek-and-decode walks (keyframe to last wanted frame, display order; "
        "median) for the frames the pipeline returns.",
        "",
        "| media | pipeline | decoded / returned | " + " | ".join(names) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    for name, entry in results["sets"].items():
        exact = entry["exactness"]
        for split, p in entry["pipelines"].items():
            dec = p["summary"]["decoders_cpu_ms"]
            cells = [
                _ms(dec.get(k)) + ("" if k not in dec or exact.get(k, 255) == 0 else "*")
                for k in names
            ]
            walked = f"{p['summary']['frames_decoded']:g} / {p['summary']['frames_returned']}"
            lines.append(f"| {name} | {split} | {walked} | " + " | ".join(cells) + " |")
    return lines


def _isolation_table(results: dict) -> list[str]:
    rows = [
        (name, p["summary"])
        for name, entry in results["sets"].items()
        for split, p in entry["pipelines"].items()
        if split == "train" and "ours_isolated_cpu_ms" in p["summary"]
    ]
    if not rows:
        return []
    lines = [
        "",
        "### Decoder isolation (`data.isolate_decoder=true`)",
        "",
        "Train pipeline per video with decoding in a child process, CPU of both processes (a "
        "mean over the passes: the child's CPU clock ticks are coarse), against in-process.",
        "",
        "| media | in-process CPU | isolated CPU | in-process wall | isolated wall |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | {_ms(s['ours_cpu_ms'])} | {_ms(s['ours_isolated_cpu_ms'])} | "
            f"{_ms(s['ours_wall_ms'])} | {_ms(s['ours_isolated_wall_ms'])} |"
        )
    return lines


def _breakdown_table(results: dict) -> list[str]:
    if not any(results.get("breakdown", {}).values()):
        return []
    lines = [
        "",
        "### Stage breakdown",
        "",
        "Median CPU ms per video and stage, measured stage by stage on the frames the timed "
        "runs sampled. The `floor` rows split the PyAV floor's decoding into its parts; the "
        "`ours` rows time actionrec's reader and each configured transform.",
    ]
    flat = [
        (f"{n}, {split}", st)
        for n, per in results["breakdown"].items()
        for split, st in per.items()
    ]
    for name, stages in flat:
        total = sum(v for k, v in stages.items() if k.startswith(("ours", "collate")))
        lines += [
            "",
            f"`{name}`:",
            "",
            "| stage | CPU ms | share of ours |",
            "| --- | ---: | ---: |",
        ]
        for stage, ms in stages.items():
            share = f"{100 * ms / total:.0f}%" if stage.startswith(("ours", "collate")) else ""
            lines.append(f"| {stage} | {_fmt(ms, 2)} | {share} |")
        lines.append(f"| ours, sum of stages | {_fmt(total, 2)} | 100% |")
    return lines


def _throughput_table(results: dict) -> list[str]:
    tp = results.get("throughput")
    if not tp:
        return []
    workers = sorted({n for per in tp.values() for n in per})
    lines = [
        "",
        "### DataLoader throughput",
        "",
        "The train loader as the data config sets it up (batches of 8), videos/s after the "
        "first batch, by `data.workers_per_gpu` (0: the main process loads). Wall time: "
        "anything else running on the machine shares its cores.",
        "",
        "| media | " + " | ".join(f"{n} workers" for n in workers) + " |",
        "| --- | " + " | ".join("---:" for _ in workers) + " |",
    ]
    for name, per in tp.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(per.get(n)) for n in workers) + " |")
    return lines


def _exactness_table(results: dict) -> list[str]:
    keys: list[str] = []
    for entry in results["sets"].values():
        keys += [k for k in entry["exactness"] if k not in keys]
    lines = [
        "",
        "### Exactness",
        "",
        "Max abs pixel difference on the val and train indices: raw frames against a full "
        "sequential decode (video) or OpenCV's JPEG decode (frames, what mmcv uses); `val "
        "pixels` compares the val pipeline's output with mmaction2's on the same indices.",
        "",
        "| media | " + " | ".join(keys) + " |",
        "| --- | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for name, entry in results["sets"].items():
        ex = entry["exactness"]
        cells = [
            "-" if k not in ex else (_fmt(ex[k], 2) if isinstance(ex[k], float) else str(ex[k]))
            for k in keys
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def print_table(results: dict) -> None:
    header = f"{'media':14} {'pipeline':8} {'ours':>8} {'wall':>8} {'floor':>8} {'mm2':>8} "
    header += f"{'/floor':>7} {'/mm2':>7}  floor decoder"
    print("CPU ms per video at one thread (medians)")
    print(header)
    for name, entry in results["sets"].items():
        for split, p in entry["pipelines"].items():
            s = p["summary"]
            print(
                f"{name:14} {split:8} {_fmt(s['ours_cpu_ms']):>8} {_fmt(s['ours_wall_ms']):>8} "
                f"{_fmt(s['floor_cpu_ms']):>8} {_fmt(s['mmaction2_cpu_ms']):>8} "
                f"{_fmt(s['ours_vs_floor'], 2):>7} {_fmt(s['ours_vs_mmaction2'], 2):>7}  "
                f"{s['floor_decoder']}"
            )
    for name, entry in results["sets"].items():
        print(f"exactness {name}: {entry['exactness']}")
    if "skipped" in results["mmaction2"]:
        print(f"mmaction2: skipped ({results['mmaction2']['skipped']})")


def write_markdown(path: Path, block: str) -> None:
    """Replace the text between the markers (appended at the end when they are missing)."""
    text = path.read_text() if path.exists() else ""
    new = f"{BEGIN}\n{block}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + new + rest.split(END, 1)[1]
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + new + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    results = build_results(args)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.markdown:
        write_markdown(args.markdown, render_markdown(results))
        print(f"wrote the tables into {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
