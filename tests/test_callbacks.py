"""Our callbacks: progress output by terminal kind, last-epoch validation, skipped-media counts,
confusion matrix files and the run config in checkpoints."""

from __future__ import annotations

import io
import sys

import pytest
from lightning.pytorch.callbacks import RichProgressBar

from actionrec.callbacks import (
    LineProgress,
    RichProgress,
    SkippedMediaReport,
    progress_bar,
)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "kind"), [(FakeTTY(), RichProgress), (io.StringIO(), LineProgress)]
)
def test_rich_on_terminals_plain_lines_elsewhere(monkeypatch, stream, kind) -> None:
    monkeypatch.setattr(sys, "stdout", stream)
    assert isinstance(progress_bar(), kind)


def test_rich_progress_reads_the_metrics_every_n_steps(tmp_path, monkeypatch) -> None:
    """Each read copies logged values to the host (a wait for the GPU): every 10th step here,
    and at the epoch's end, not after every step as Lightning's bar does."""
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    class Logs(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("train/loss", out["loss"])  # as the Recognizer logs it: not prog_bar
            return out

    reads = []
    metrics = L.Trainer.progress_bar_metrics
    monkeypatch.setattr(
        L.Trainer,
        "progress_bar_metrics",
        property(lambda t: reads.append(t.global_step) or metrics.fget(t)),
    )
    out = io.StringIO()
    bar = RichProgress(metrics_every=10, console_kwargs={"file": out, "force_terminal": True})
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=25, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=[bar],
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(Logs())
    assert RichProgressBar in type(bar).__mro__
    assert reads[:3] == [1, 10, 20]  # the first step's, then every 10th
    assert set(reads[3:]) == {25}  # the epoch's end
    assert "train/loss" in out.getvalue()  # one of step_metrics: the bar reads it itself
    assert "Epoch 1/1" in out.getvalue()  # counted from 1, as the log lines and epoch_N.ckpt
    with pytest.raises(ValueError, match="metrics_every=0"):
        RichProgress(metrics_every=0)


def test_a_run_shorter_than_the_validation_interval_validates_its_last_epoch(tmp_path) -> None:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from actionrec.callbacks import ValidateLastEpoch
    from actionrec.checkpointing import EpochCheckpoints

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.validated: list[int] = []

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            self.validated.append(self.current_epoch)
            self.log("val/top1", torch.tensor(0.5))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    model = Tiny()
    checkpoints = EpochCheckpoints(str(tmp_path), every_n_epochs=0)
    trainer = L.Trainer(
        max_epochs=3,
        check_val_every_n_epoch=5,  # mmaction2's interval, longer than the run
        callbacks=[checkpoints, ValidateLastEpoch()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, loader, loader)
    assert sorted(set(model.validated)) == [2]  # the last epoch only
    assert {p.name for p in tmp_path.iterdir()} == {"last.ckpt", "best.ckpt"}
    assert trainer.checkpoint_callback.best_model_path == str(tmp_path / "best.ckpt")


def test_skipped_media_are_counted_from_batches() -> None:
    report = SkippedMediaReport(show=2)
    report._collect({"skipped": ["", "a.mp4 (list line 3): bad\nb.mp4 (list line 9): bad"]})
    report._collect({"skipped": ["c.mp4 (list line 4): bad", ""]})
    report._collect({"imgs": None})  # batches without the key are ignored
    assert report.count == 3
    assert report.examples == ["a.mp4 (list line 3): bad", "b.mp4 (list line 9): bad"]


def test_confusion_matrices_are_written_into_the_run_directory(tmp_path) -> None:
    import csv
    import functools

    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from actionrec.callbacks import ConfusionMatrixReport
    from actionrec.models.backbones import SimpleCNN
    from actionrec.models.heads import TSNHead
    from actionrec.models.recognizers import TSN
    from actionrec.module import Recognizer

    torch.manual_seed(0)
    net = TSN(SimpleCNN(channels=(4,)), TSNHead(3, in_channels=4))
    module = Recognizer(net, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    batch = {"imgs": torch.randint(0, 255, (4, 2, 3, 8, 8), dtype=torch.uint8)}
    loader = DataLoader([{**batch, "label": torch.tensor([0, 1, 2, 2])}] * 2, batch_size=None)
    report = ConfusionMatrixReport(str(tmp_path / "run"))
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, callbacks=[report], num_sanity_val_steps=2, max_epochs=1,
    )  # fmt: skip
    trainer.validate(module, loader)
    trainer.test(module, loader)
    for stage in ("val", "test"):
        path = tmp_path / "run" / f"confusion_matrix_{stage}.csv"
        rows = list(csv.reader(path.open()))
        assert rows[0] == ["true\\pred", "0", "1", "2"]
        counts = [[int(v) for v in row[1:]] for row in rows[1:]]
        assert counts == module.confusion_matrices[stage].tolist()
        assert [sum(row) for row in counts] == [2, 2, 4]  # true classes, over 2 batches
        assert (tmp_path / "run" / f"confusion_matrix_{stage}.png").is_file()


def test_the_sanity_check_writes_no_confusion_matrix(tmp_path) -> None:
    import functools

    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from actionrec.callbacks import ConfusionMatrixReport
    from actionrec.models.backbones import SimpleCNN
    from actionrec.models.heads import TSNHead
    from actionrec.models.recognizers import TSN
    from actionrec.module import Recognizer

    net = TSN(SimpleCNN(channels=(4,)), TSNHead(3, in_channels=4))
    module = Recognizer(net, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    batch = {"imgs": torch.zeros(2, 2, 3, 8, 8, dtype=torch.uint8), "label": torch.tensor([0, 1])}
    loader = DataLoader([batch], batch_size=None)
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, max_steps=0,
        default_root_dir=tmp_path, callbacks=[ConfusionMatrixReport(str(tmp_path / "run"))],
        num_sanity_val_steps=1, limit_val_batches=1,
    )  # fmt: skip
    trainer.fit(module, loader, loader)
    assert "val" in module.confusion_matrices  # computed by the sanity check ...
    assert not (tmp_path / "run").exists()  # ... but not written


def test_checkpoints_carry_the_run_config(tmp_path) -> None:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from actionrec.callbacks import SaveRunConfig

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    run_config = {"model": {"_target_": "x.Y", "topk": [1, 5]}, "seed": 3}
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, callbacks=[SaveRunConfig(run_config)],
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(2, 2)), batch_size=2))
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    ckpt = torch.load(tmp_path / "x.ckpt", weights_only=True)
    assert ckpt["run_config"] == run_config
    assert "SaveRunConfig" not in str(ckpt.get("callbacks", {}))  # no state to restore
