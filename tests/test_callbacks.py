"""Our callbacks: progress output by terminal kind, last.ckpt every epoch, skipped-media counts."""

from __future__ import annotations

import io
import sys

import pytest
from lightning.pytorch.callbacks import RichProgressBar

from actionrec.callbacks import (
    LastCheckpoint,
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
    with pytest.raises(ValueError, match="metrics_every=0"):
        RichProgress(metrics_every=0)


def test_last_checkpoint_has_its_own_state_key(tmp_path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    periodic = ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1)
    assert LastCheckpoint(str(tmp_path)).state_key != periodic.state_key


def test_skipped_media_are_counted_from_batches() -> None:
    report = SkippedMediaReport(show=2)
    report._collect({"skipped": ["", "a.mp4 (list line 3): bad\nb.mp4 (list line 9): bad"]})
    report._collect({"skipped": ["c.mp4 (list line 4): bad", ""]})
    report._collect({"imgs": None})  # batches without the key are ignored
    assert report.count == 3
    assert report.examples == ["a.mp4 (list line 3): bad", "b.mp4 (list line 9): bad"]
