"""Data randomness is a function of (seed, epoch, index): no repeats, no dependence on workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.data.datamodule import EpochShuffleSampler, VideoDataModule


def record_draws(imgs: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A train pipeline that returns its random draws instead of the frames.

    The dataset drew the frame indices from the same generator just before, so equal draws
    mean an equal augmentation of the sample.
    """
    return torch.from_numpy(rng.integers(2**62, size=2))


def toy_datamodule(toy_root: Path, tmp_path: Path, workers: int, lines: int = 12):
    train = (toy_root / "train_list_videos.txt").read_text().splitlines()[:lines]
    ann = tmp_path / "train.txt"
    ann.write_text("\n".join(train) + "\n")
    dm = VideoDataModule(
        num_classes=6,
        ann_file_train=str(ann),
        data_root=str(toy_root / "videos"),
        num_clips=3,
        train_pipeline=[record_draws],
        videos_per_gpu=4,
        workers_per_gpu=workers,
        isolate_decoder=False,
    )
    dm.datasets["train"] = dm.build_dataset("train")
    return dm


def draws_per_epoch(dm: VideoDataModule, epochs: int) -> list[list[tuple[int, ...]]]:
    loader = dm.train_dataloader()
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
        out.append([tuple(row.tolist()) for batch in loader for row in batch["imgs"]])
    return out


def test_no_two_workers_or_epochs_repeat_a_draw(toy_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    # Two persistent workers over two epochs: the epoch reaches them with every index.
    two_workers = draws_per_epoch(toy_datamodule(toy_root, tmp_path, workers=2), epochs=2)
    flat = [d for epoch in two_workers for d in epoch]
    assert len(flat) == 2 * 12
    assert len(set(flat)) == len(flat)  # 2**62 values: a repeat is a bug, not chance
    # In-process loading draws exactly the same, in the same order.
    assert draws_per_epoch(toy_datamodule(toy_root, tmp_path, workers=0), epochs=2) == two_workers
    # Another seed draws otherwise.
    monkeypatch.setenv("PL_GLOBAL_SEED", "8")
    other = draws_per_epoch(toy_datamodule(toy_root, tmp_path, workers=0), epochs=1)
    assert not set(other[0]) & set(flat)


def test_the_train_order_is_a_function_of_seed_and_epoch() -> None:
    sampler = EpochShuffleSampler(50, seed=3)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(50)) and {e for _, e in first} == {0}
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for i, _ in second] != [i for i, _ in first] and {e for _, e in second} == {1}
    again = EpochShuffleSampler(50, seed=3)  # e.g. in a resumed run
    again.set_epoch(1)
    assert list(again) == second
    assert [i for i, _ in EpochShuffleSampler(50, seed=4)] != [i for i, _ in first]


@pytest.mark.parametrize("world", [2, 3])
def test_devices_share_the_epoch_without_overlap(world: int) -> None:
    shares = []
    for rank in range(world):
        sampler = EpochShuffleSampler(50, seed=0, rank=rank, world=world)
        sampler.set_epoch(2)
        shares.append([i for i, _ in sampler])
    assert all(
        len(share) == 50 // world == len(EpochShuffleSampler(50, 0, 0, world)) for share in shares
    )
    everything = [i for share in shares for i in share]
    assert len(set(everything)) == len(everything)  # the dropped tail is nobody's


def test_a_replacement_for_unreadable_media_is_drawn_alike(toy_root, tmp_path) -> None:
    lines = (toy_root / "train_list_videos.txt").read_text().splitlines()[:6]
    ann = tmp_path / "broken.txt"
    ann.write_text("\n".join(["missing/gone.mp4 0", *lines]) + "\n")

    def sample(epoch: int) -> dict:
        dm = toy_datamodule(toy_root, tmp_path, workers=0)
        dm.ann_files["train"] = str(ann)
        return dm.build_dataset("train")[(0, epoch)]

    first, again, later = sample(epoch=3), sample(epoch=3), sample(epoch=4)
    assert "missing/gone.mp4" in first["skipped"]
    assert torch.equal(first["imgs"], again["imgs"]) and first["label"] == again["label"]
    assert not torch.equal(first["imgs"], later["imgs"])
