"""A DataLoader worker's memory over thousands of videos: flat after warm-up, or a leak.

Renders toy videos into a temporary folder (seconds), lists them over and over, and runs the
training loader (the toy recipe's pipeline, persistent workers) through thousands of samples,
with the decoder in a child process (``isolate_decoder``, the default) and without. Every sample
carries the resident memory (RSS) of the worker that made it and of that worker's decoder
process; the table shows them at intervals, and the last line the growth after warm-up.

    python scripts/bench_memory.py                      # 3000 samples each way (~1-2 min)
    python scripts/bench_memory.py --samples 20000 --every 2000 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import psutil
import torch
from torch.utils.data import Dataset

from actionrec.data.datamodule import VideoDataModule
from actionrec.data.toy import generate_toy_dataset
from actionrec.data.transforms import Flip, MultiScaleCrop, Resize

MIB = 2**20


class MemoryProbe(Dataset):
    """A dataset whose samples also carry the RSS of the process that made them (bytes)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, idx: int) -> dict[str, Any]:
        sample = self.dataset[idx]
        process = psutil.Process()
        sample["rss"] = process.memory_info().rss
        sample["rss_decoder"] = sum(c.memory_info().rss for c in process.children())
        return sample


def make_videos(root: Path, videos: int) -> Path:
    """Render about ``videos`` toy videos (6 classes) under ``root``; returns its list file."""
    generate_toy_dataset(root, videos_per_class_train=max(1, videos // 6), videos_per_class_val=1)
    return root / "train_list_videos.txt"


def worker_memory(
    root: Path, samples: int, isolate_decoder: bool, every: int, workers: int = 1
) -> list[tuple[int, float, float]]:
    """``(samples so far, worker RSS MiB, decoder RSS MiB)`` every ``every`` samples.

    The list of ``root`` (from :func:`make_videos`) is repeated to ``samples`` lines. With
    several workers the largest worker (and decoder) at each point is reported.
    """
    lines = (root / "train_list_videos.txt").read_text().splitlines(keepends=True)
    repeated = root / f"repeated_{samples}.txt"
    repeated.write_text("".join(lines[i % len(lines)] for i in range(samples)))
    batch = 8
    dm = VideoDataModule(
        num_classes=6,
        ann_file_train=str(repeated),
        ann_file_val=str(repeated),  # setup("fit") reads one; never loaded here
        data_root=str(root / "videos"),
        num_clips=3,
        train_pipeline=[  # conf/data/toy.yaml
            MultiScaleCrop(64, scales=(1, 0.875), random_crop=True),
            Resize((64, 64), keep_ratio=False),
            Flip(0.5),
        ],
        videos_per_gpu=batch,
        workers_per_gpu=workers,
        isolate_decoder=isolate_decoder,
    )
    dm.setup("fit")
    dataset = dm.datasets["train"]
    dm.datasets["train"] = MemoryProbe(dataset)
    points, seen = [], 0
    for data in dm.train_dataloader():
        before, seen = seen, seen + len(data["label"])
        if seen // every > before // every or seen == batch:
            rss, decoder = data["rss"].max().item(), data["rss_decoder"].max().item()
            points.append((seen, rss / MIB, decoder / MIB))
    dataset.close()
    return points


def growth(points: list[tuple[int, float, float]], warmup: int) -> float:
    """MiB the worker and its decoder gained from the first point past ``warmup`` to the end."""
    after = [p for p in points if p[0] >= warmup]
    first, last = after[0], after[-1]
    return (last[1] + last[2]) - (first[1] + first[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--videos", type=int, default=300, help="distinct files, listed again")
    parser.add_argument("--every", type=int, default=500, help="print RSS every N samples")
    parser.add_argument("--warmup", type=int, default=500, help="samples before growth counts")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.samples <= args.warmup:
        parser.error("--samples must exceed --warmup")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "toy"
        make_videos(root, args.videos)
        print(f"# Loader memory: {args.samples} samples from {args.videos} toy videos\n")
        print(
            "| isolate_decoder | samples | worker RSS MiB | decoder RSS MiB |\n|---|---:|---:|---:|"
        )
        grown = {}
        for isolate in (True, False):
            points = worker_memory(root, args.samples, isolate, args.every, args.workers)
            for seen, rss, decoder in points:
                print(
                    f"| {str(isolate).lower()} | {seen} | {rss:.1f} | {decoder:.1f} |", flush=True
                )
            grown[isolate] = growth(points, args.warmup)
        print(
            f"\nGrowth after {args.warmup} samples (worker + decoder): "
            f"{grown[True]:+.1f} MiB with isolate_decoder, {grown[False]:+.1f} MiB without"
        )


if __name__ == "__main__":
    main()
