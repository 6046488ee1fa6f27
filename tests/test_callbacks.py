"""Our callbacks: progress output by terminal kind, last.ckpt every epoch, skipped-media counts."""

from __future__ import annotations

import io
import sys

import pytest
from lightning.pytorch.callbacks import RichProgressBar

from actionrec.callbacks import LastCheckpoint, LineProgress, SkippedMediaReport, progress_bar


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "kind"), [(FakeTTY(), RichProgressBar), (io.StringIO(), LineProgress)]
)
def test_rich_on_terminals_plain_lines_elsewhere(monkeypatch, stream, kind) -> None:
    monkeypatch.setattr(sys, "stdout", stream)
    assert isinstance(progress_bar(), kind)


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
