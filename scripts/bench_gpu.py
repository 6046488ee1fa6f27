"""TSN-R50 1x1x8 training throughput on a CUDA GPU: the compute ceiling against real loading.

Run through ``bash scripts/bench_gpu.sh`` (under 5 minutes on one GPU). It builds the recipe's
configs (``model=tsn_r50`` without pretrained weights, ``data=kinetics400_video`` with
``num_clips=8``) and measures, in clips per second:

1. the ceiling: uint8 batches already on the GPU, the Recognizer under a Lightning Trainer,
   bf16-mixed and channels_last; the same steps in a plain PyTorch loop (Lightning's cost) and
   in fp32 (what bf16 buys);
2. real loading: Kinetics-like clips generated first (340x256, 10 s at 30 fps, H.264 with a
   keyframe every 16 frames, as ``scripts/resize_videos.py`` writes them), decoded and augmented
   by the datamodule with one worker per CPU core;
3. the ratio of the two, and that ``src/train.py`` trains with ``trainer=ddp`` on every GPU.

It prints a markdown snippet for docs/benchmarks.md. ``--dry-run`` runs every stage on the CPU
with the toy model, small clips and a few steps (seconds), to check the script without a GPU.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import lightning as L
import numpy as np
import torch
from bench_step import (
    CLIP_NORM,
    SGD,
    Batches,
    Setup,
    StepClock,
    lightning_trainer,
    quiet_lightning,
    time_plain,
)
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig

from actionrec import runs
from actionrec.callbacks import RichProgress
from actionrec.data.decoding import BACKENDS, backend_unavailable

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Plan:
    """What one benchmark run does; ``real()`` and ``dry()`` are the two there are."""

    device: str
    model: list[str]  # Hydra overrides
    batch: int
    size: int  # training crop
    clips: int
    clip_size: tuple[int, int]  # width, height
    seconds: float
    fps: int
    steps: int
    warmup: int
    loader_steps: int
    loader_warmup: int

    @staticmethod
    def real(batch: int, workers: int) -> Plan:
        model = ["model=tsn_r50", "model.net.backbone.pretrained=null"]
        # Each worker makes whole batches, so loading-bound batches come in bursts of about
        # one per worker: time several bursts, after the first two (start-up, prefetch).
        loader_warmup, loader_steps = max(10, 2 * workers), max(40, 8 * workers)
        clips = (340, 256)
        return Plan(
            "cuda", model, batch, 224, 200, clips, 10.0, 30, 30, 10, loader_steps, loader_warmup
        )

    @staticmethod
    def dry() -> Plan:
        # A two-block toy CNN at 32 px: every stage runs, in seconds, on a CPU.
        model = [
            "model=tsn_toy",
            "model.net.backbone.channels=[8,16]",
            "model.net.head.in_channels=16",
        ]
        return Plan("cpu", model, 2, 32, 6, (64, 48), 2.0, 10, 3, 1, 3, 1)


def compose_config(plan: Plan, root: Path, workers: int, decoder: str) -> DictConfig:
    """The recipe's configs, pointed at the generated clips."""
    size = plan.size
    overrides = [
        "data=kinetics400_video",
        f"data.data_root={root}/videos",
        f"data.data_root_val={root}/videos",
        *(f"data.ann_file_{split}={root}/list.txt" for split in ("train", "val", "test")),
        "data.num_clips=8",  # 1x1x8
        f"data.videos_per_gpu={plan.batch}",
        f"data.workers_per_gpu={workers}",
        f"data.decoder={decoder}",
        f"data.train_pipeline.1.input_size={size}",
        f"data.train_pipeline.2.scale=[{size},{size}]",
        *plan.model,
        "model.channels_last=true",
        f"paths.output_dir={root}/run",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def write_clip(job: tuple[Path, tuple[int, int], int, int, int, int]) -> None:
    """One clip of a drifting random texture with sensor noise, as x264 encodes a camera."""
    path, (width, height), frames, fps, gop, seed = job
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = texture.repeat(8, 0).repeat(8, 1)  # blocks: structure for the encoder to track
    dx, dy = rng.uniform(-1.5, 1.5, 2)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # scripts/resize_videos.py's settings (gop 16): what docs/datasets.md prepares with.
        stream.options = {"crf": "23", "preset": "veryfast", "x264-params": f"keyint={gop}"}
        for i in range(frames):
            x, y = int(8 + dx * i) % 8, int(8 + dy * i) % 8
            frame = texture[y : y + height, x : x + width]
            frame = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def generate_clips(plan: Plan, root: Path, samples: int, gop: int) -> None:
    """``plan.clips`` clips under ``root/videos``, listed to ``samples`` lines (repeating)."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    frames = int(plan.seconds * plan.fps)
    jobs = [
        (root / "videos" / f"clip_{i:04d}.mp4", plan.clip_size, frames, plan.fps, gop, i)
        for i in range(plan.clips)
    ]
    # Forked before this process has run any torch work: the children only draw numpy noise
    # and encode, and a fork spares each of them re-importing torch and lightning.
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count(), mp_context=context) as pool:
        list(pool.map(write_clip, jobs, chunksize=4))
    lines = [f"clip_{i % plan.clips:04d}.mp4 {i % 400}\n" for i in range(samples)]
    (root / "list.txt").write_text("".join(lines))


def clips_per_second(stamps: list[tuple[float, float]], warmup: int, batch: int) -> float:
    """Clips per second over the steps after ``warmup`` (step-end wall times)."""
    walls = [wall for wall, _ in stamps[warmup:]]
    return batch * (len(walls) - 1) / (walls[-1] - walls[0])


def fit(
    cfg: DictConfig, plan: Plan, precision: str, steps: int, loader, warmup: int, every: bool
) -> list:
    """Train ``steps`` steps of the configured Recognizer; the step-end times.

    The clock waits for the GPU at the first timed step and the last, as training does not:
    waiting every step (``every``) exposes the host's work between steps, which real training
    overlaps with the GPU's unless something in the step reads a value back.
    """
    module = runs.build_module(cfg)
    clock = StepClock(sync_at=None if every else {warmup, steps - 1})
    trainer = lightning_trainer(steps, precision, clock, accelerator=plan.device, devices=1)
    if isinstance(loader, Batches):
        trainer.fit(module, train_dataloaders=loader)
    else:
        trainer.fit(module, datamodule=loader)
    return clock.stamps


def synthetic_batches(plan: Plan, count: int = 4) -> list[dict[str, torch.Tensor]]:
    """uint8 batches already on the device: what the model sees when loading costs nothing."""
    shape = (plan.batch, 8, 3, plan.size, plan.size)
    return [
        {
            "imgs": torch.randint(0, 256, shape, dtype=torch.uint8, device=plan.device),
            "label": torch.randint(0, 400, (plan.batch,), device=plan.device),
        }
        for _ in range(count)
    ]


def ceiling(cfg: DictConfig, plan: Plan) -> dict[str, float]:
    """Clips/s on batches in device memory: the Recognizer in bf16 and fp32 and a plain loop
    in bf16, timed as training runs; then both bf16 loops waiting for the GPU every step."""
    batches = synthetic_batches(plan)
    warmup, n = plan.warmup, plan.warmup + plan.steps

    def module(precision: str, every: bool = False) -> float:
        stamps = fit(cfg, plan, precision, n, Batches(batches, n), warmup, every)
        return clips_per_second(stamps, warmup, plan.batch)

    def plain(every: bool = False) -> float:
        net = runs.build_module(cfg).net  # fresh weights
        setup = Setup(lambda: net, SGD, plan.batch, 8, plan.size)  # conf/optim/sgd.yaml
        sync_at = None if every else {warmup, n - 1}
        stamps = time_plain(net, setup, batches, n, "channels_last+bf16", plan.device, sync_at)
        return clips_per_second(stamps, warmup, plan.batch)

    return {
        "bf16": module("bf16-mixed"),
        "plain_bf16": plain(),
        "fp32": module("32-true"),
        "bf16_every": module("bf16-mixed", every=True),
        "plain_bf16_every": plain(every=True),
    }


class SyncWatch(L.Callback):
    """Counts the host-device synchronizations of the training steps after ``warmup``: CUDA's
    sync debug mode warns at each, from the Python line that caused it."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")


def host_syncs(cfg: DictConfig, plan: Plan, bar: str) -> tuple[float, list[str]]:
    """Host-device syncs per training step of the Recognizer on batches in device memory,
    with no progress bar, actionrec's Rich bar or Lightning's; and where the first come from."""
    if plan.device != "cuda":
        return float("nan"), []
    warmup, steps = 3, 20
    batches = synthetic_batches(plan)
    bars = {
        "none": [],
        "actionrec": [RichProgress(console_kwargs={"file": io.StringIO()})],
        "lightning": [RichProgressBar(console_kwargs={"file": io.StringIO()})],
    }
    trainer = L.Trainer(
        max_steps=warmup + steps,
        precision="bf16-mixed",
        callbacks=[*bars[bar], SyncWatch(warmup)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=bar != "none",
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=CLIP_NORM,
        accelerator="cuda",
        devices=1,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(runs.build_module(cfg), train_dataloaders=Batches(batches, warmup + steps))
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    sources = collections.Counter(
        f"{Path(w.filename).parent.name}/{Path(w.filename).name}:{w.lineno}" for w in syncs
    )
    return len(syncs) / steps, [f"{where} ({count})" for where, count in sources.most_common(4)]


def loading(cfg: DictConfig, plan: Plan) -> float:
    """Clips/s with the datamodule decoding and augmenting the generated clips."""
    datamodule = instantiate(cfg.data)
    n = plan.loader_warmup + plan.loader_steps
    stamps = fit(cfg, plan, "bf16-mixed", n, datamodule, plan.loader_warmup, every=False)
    return clips_per_second(stamps, plan.loader_warmup, plan.batch)


def ddp_check(plan: Plan, root: Path, workers: int) -> str:
    """Train a few steps through ``src/train.py`` with DDP on every GPU; a one-line verdict."""
    devices = torch.cuda.device_count() if plan.device == "cuda" else 2
    trainer = "trainer=ddp" if plan.device == "cuda" else "trainer=ddp_cpu"
    args = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        *plan.model,
        "data=kinetics400_video",
        f"data.data_root={root}/videos",
        f"data.data_root_val={root}/videos",
        *(f"data.ann_file_{split}={root}/list.txt" for split in ("train", "val", "test")),
        "data.num_clips=8",
        f"data.videos_per_gpu={plan.batch}",
        f"data.val_videos_per_gpu={plan.batch}",
        f"data.workers_per_gpu={max(1, workers // devices)}",
        f"data.train_pipeline.1.input_size={plan.size}",
        f"data.train_pipeline.2.scale=[{plan.size},{plan.size}]",
        f"data.val_pipeline.1.crop_size={plan.size}",
        "model.channels_last=true",
        trainer,
        f"trainer.devices={devices}",
        "trainer.precision=bf16-mixed",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=2",
        "trainer.check_val_every_n_epoch=1",
        "trainer.limit_train_batches=5",
        "callbacks=none",
        f"hydra.run.dir={root}/ddp_run",
    ]
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"the DDP run failed (exit {result.returncode}):\n{tail}")
    seconds = time.perf_counter() - start
    return f"{trainer} on {devices} device(s): 5 steps and validation in {seconds:.0f} s"


def device_name(plan: Plan) -> str:
    if plan.device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU dry run ({os.cpu_count()} cores), not a measurement"


def report(plan: Plan, results: dict, workers: int, decoder: str, gop: int, elapsed: float) -> str:
    ceil, real = results["ceiling"], results["loading"]
    ratio = real / ceil["bf16"]
    peak = (
        f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        if plan.device == "cuda"
        else ""
    )
    lines = [
        f"### {device_name(plan)}",
        "",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}; TSN 1x1x8 "
        f"({' '.join(plan.model)}), {plan.size}² crops, batch {plan.batch}, channels_last{peak}.",
        "",
        "| stage | clips/s | frames/s |",
        "|---|---:|---:|",
        f"| ceiling: uint8 batches on the device, Recognizer, bf16-mixed | {ceil['bf16']:.1f} "
        f"| {8 * ceil['bf16']:.0f} |",
        f"| same steps, plain PyTorch loop | {ceil['plain_bf16']:.1f} "
        f"| {8 * ceil['plain_bf16']:.0f} |",
        f"| same, Recognizer in fp32 (32-true) | {ceil['fp32']:.1f} | {8 * ceil['fp32']:.0f} |",
        f"| real loading: {plan.clips} generated clips {plan.clip_size[0]}x{plan.clip_size[1]} "
        f"{plan.seconds:g} s gop {gop}, {workers} workers, {decoder} | {real:.1f} "
        f"| {8 * real:.0f} |",
        f"| ceiling, the clock waiting for the GPU after every step: Recognizer "
        f"| {ceil['bf16_every']:.1f} | {8 * ceil['bf16_every']:.0f} |",
        f"| same, plain PyTorch loop | {ceil['plain_bf16_every']:.1f} "
        f"| {8 * ceil['plain_bf16_every']:.0f} |",
        "",
        f"Real loading reaches {ratio:.2f} of the ceiling. A Recognizer step costs "
        f"{ceil['plain_bf16'] / ceil['bf16']:.3f}x a plain loop's "
        f"({ceil['plain_bf16_every'] / ceil['bf16_every']:.3f}x when every step waits for the "
        f"GPU); bf16 runs {ceil['bf16'] / ceil['fp32']:.2f}x as fast as fp32.",
        "Host-device syncs per training step (CUDA sync debug mode, 20 steps): "
        + "; ".join(
            f"{bar} progress bar {count:.2f}" + (f" from {', '.join(where)}" if where else "")
            for bar, (count, where) in results["syncs"].items()
        )
        + ".",
        f"DDP: {results['ddp']}.",
        f"Total {elapsed:.0f} s (clip generation {results['generate']:.0f} s).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every stage on the CPU, tiny")
    parser.add_argument("--batch", type=int, default=32, help="videos per step (mmaction2: 32)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="loader workers")
    parser.add_argument("--decoder", default="pyav", choices=BACKENDS)
    parser.add_argument(
        "--gop", type=int, default=16, help="keyframe interval of the clips (YouTube: up to 250)"
    )
    parser.add_argument("--skip-ddp", action="store_true", help="leave out the DDP check")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/actionrec_bench_gpu"))
    args = parser.parse_args(argv)
    if (reason := backend_unavailable(args.decoder)) is not None:
        parser.error(f"--decoder {args.decoder}: {reason}; or leave it out (pyav)")
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit(
            "error: scripts/bench_gpu.py measures a CUDA GPU and none is visible "
            "(torch.cuda.is_available() is False); `--dry-run` checks the script on a CPU"
        )
    workers = 2 if args.dry_run else args.workers
    plan = Plan.dry() if args.dry_run else Plan.real(args.batch, workers)
    quiet_lightning()
    start = time.perf_counter()
    shutil.rmtree(args.dir, ignore_errors=True)
    samples = (plan.loader_warmup + plan.loader_steps + 1) * plan.batch
    generate_clips(plan, args.dir, samples, args.gop)
    results: dict = {"generate": time.perf_counter() - start}
    print(f"generated {plan.clips} clips in {results['generate']:.0f} s", flush=True)
    cfg = compose_config(plan, args.dir, workers, args.decoder)
    results["ceiling"] = ceiling(cfg, plan)
    print(f"ceiling: {results['ceiling']}", flush=True)
    results["syncs"] = {
        bar: host_syncs(cfg, plan, bar) for bar in ("none", "actionrec", "lightning")
    }
    print(f"host syncs per step: {results['syncs']}", flush=True)
    results["loading"] = loading(cfg, plan)
    print(f"loading: {results['loading']:.1f} clips/s", flush=True)
    results["ddp"] = "skipped (--skip-ddp)" if args.skip_ddp else ddp_check(plan, args.dir, workers)
    elapsed = time.perf_counter() - start
    print("\n" + report(plan, results, workers, args.decoder, args.gop, elapsed))


if __name__ == "__main__":
    main()
