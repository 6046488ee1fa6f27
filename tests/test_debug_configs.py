"""The debug options run end to end on the toy data and do what their files say."""

from __future__ import annotations

import csv

import pytest
from tests.conftest import load_entry_point, toy_overrides


@pytest.fixture(scope="module")
def train_entry():
    return load_entry_point("train")


def test_fast_dev_run_runs_one_batch_of_each_and_writes_nothing(
    train_entry, compose_train, toy_root, tmp_path
) -> None:
    cfg = compose_train(*toy_overrides(toy_root), "debug=fast_dev_run", "test=true")
    metrics = train_entry.train(cfg)
    assert {"train/loss", "val/loss", "test/loss"} <= set(metrics)
    assert not list(tmp_path.rglob("*.ckpt"))  # a smoke run leaves no checkpoint behind


def test_limit_runs_two_short_epochs_with_checkpoints(
    train_entry, compose_train, toy_root, tmp_path
) -> None:
    cfg = compose_train(*toy_overrides(toy_root), "debug=limit")
    metrics = train_entry.train(cfg)
    assert "val/top1" in metrics
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert {int(r["epoch"]) for r in rows if r.get("val/top1")} == {0, 1}  # val every epoch
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_profiler_reports_where_the_time_goes(
    train_entry, compose_train, toy_root, tmp_path
) -> None:
    cfg = compose_train(*toy_overrides(toy_root), "debug=profiler", "trainer.limit_train_batches=2")
    train_entry.train(cfg)
    report = (tmp_path / "fit-profiler.txt").read_text()
    assert "Profiler Report" in report and "run_training_batch" in report


def test_overfit_drives_the_training_loss_down(
    train_entry, compose_train, toy_root, tmp_path
) -> None:
    cfg = compose_train(
        *toy_overrides(toy_root), "debug=overfit", "trainer.max_epochs=12", "data.videos_per_gpu=4"
    )
    train_entry.train(cfg)
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert len(losses) == 12
    assert losses[-1] < 0.5 * losses[0], losses
