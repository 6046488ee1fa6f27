"""Timing our pipelines: per video against the floor and mmaction2 pass by pass, with the
decoder isolated in a child process, stage by stage, and as DataLoader throughput."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from actionrec.data.annotations import VideoRecord
from actionrec.data.decoding import open_video
from actionrec.data.rawframes import FrameFolderReader

from .baselines import MMAction2
from .floors import pyav_seek
from .media import FILENAME_TMPL, MediaSet
from .recipe import build_datamodule, our_decoder


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


def breakdown(media: MediaSet, split: str, drawn: list, workdir: Path) -> dict[str, float]:
    """Median CPU ms per stage of a pipeline (decoding split by the pyav floor's loop)."""
    dm = build_datamodule(media, workdir, isolate_decoder=False, decode_timeout=None)
    dataset = dm.build_dataset(split)
    pipeline = dataset.pipeline
    transforms = pipeline.transforms
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
                c0 = time.process_time()
                reader = FrameFolderReader(VideoRecord(item["path"], None, 0), FILENAME_TMPL)
                size = reader.region_size(inds)
                box, tail = (None, None) if size is None else pipeline.split_crop(*size, rng)
                imgs = reader.read(inds, box)
                what = "read + JPEG decode" if box is None else "read + JPEG decode of the crop box"
                add(f"ours: {what}", (time.process_time() - c0) * 1e3)
            rest = transforms
            if media.kind == "video" and pipeline.lazy:
                c0 = time.process_time()
                box, tail = pipeline.split_crop(*imgs.shape[-2:], rng)
                if box is not None:
                    imgs, rest = imgs[..., box[1] : box[3], box[0] : box[2]], tail.transforms
                    add("ours: lazy crop box", (time.process_time() - c0) * 1e3)
            elif media.kind != "video" and box is not None:
                rest = tail.transforms
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
