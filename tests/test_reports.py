"""Evaluation reports: confusion matrix files, pictures to loggers, per-video results."""

from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from actionrec import reports
from actionrec.metrics import gather_results


def test_confusion_matrix_csv_and_png(tmp_path) -> None:
    confmat = torch.tensor([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    csv_path, png = reports.save_confusion_matrix(confmat, ["run", "jump", "sit"], tmp_path, "val")
    assert csv_path.name == "confusion_matrix_val.csv"
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["true\\pred", "run", "jump", "sit"]
    assert rows[1:] == [["run", "3", "1", "0"], ["jump", "0", "2", "2"], ["sit", "0", "0", "0"]]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_without_names_numbers_the_classes(tmp_path) -> None:
    csv_path, _ = reports.save_confusion_matrix(torch.eye(2, dtype=torch.long), None, tmp_path, "t")
    assert next(csv.reader(csv_path.open())) == ["true\\pred", "0", "1"]


def test_the_picture_reaches_tensorboard(tmp_path) -> None:
    _, png = reports.save_confusion_matrix(torch.eye(3, dtype=torch.long), None, tmp_path, "val")
    logger = TensorBoardLogger(tmp_path / "tb", name="", version="")
    reports.log_image([logger], "val/confusion_matrix", png, step=7)
    logger.experiment.flush()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    (image,) = events.Images("val/confusion_matrix")
    assert image.step == 7 and image.width > 100


@pytest.mark.parametrize("suffix", [".json", ".npz", ".pkl"])
def test_results_round_trip_in_every_format(tmp_path, suffix) -> None:
    scores = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    results = {
        "index": torch.tensor([0, 1]),
        "scores": scores,
        "label": torch.tensor([0, 1]),
        "video": ["a.mp4", "b.mp4"],
    }
    path = reports.save_results(tmp_path / f"out{suffix}", results)
    if suffix == ".json":
        loaded = json.loads(path.read_text())
    elif suffix == ".npz":
        loaded = dict(np.load(path))
    else:
        loaded = pickle.loads(path.read_bytes())
    np.testing.assert_array_equal(np.asarray(loaded["scores"]), scores.numpy())
    assert list(loaded["video"]) == ["a.mp4", "b.mp4"]
    assert list(loaded["label"]) == [0, 1]


def test_results_refuse_an_unknown_format(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"out=.*scores\.txt.*\.json, \.npz, \.pkl"):
        reports.save_results(tmp_path / "scores.txt", {"scores": torch.zeros(1, 2)})


def test_gathered_results_come_back_in_annotation_order() -> None:
    # Two batches as a shard sampler on rank 1 of 2 would see them, out of order.
    outputs = [
        {"index": torch.tensor([5, 1]), "scores": torch.tensor([[5.0], [1.0]])},
        {"index": torch.tensor([3]), "scores": torch.tensor([[3.0]])},
    ]
    results = gather_results(outputs)
    assert results["index"].tolist() == [1, 3, 5]
    assert results["scores"].flatten().tolist() == [1.0, 3.0, 5.0]
    assert gather_results([]) == {}


def test_the_picture_reaches_wandb_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    from lightning.pytorch.loggers import WandbLogger

    _, png = reports.save_confusion_matrix(torch.eye(3, dtype=torch.long), None, tmp_path, "test")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="t")
    reports.log_image([logger], "test/confusion_matrix", png, step=0)
    logger.experiment.finish()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list((run / "files" / "media" / "images").rglob("*.png"))
