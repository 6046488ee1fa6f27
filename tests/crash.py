"""Test-only callbacks and plugins that stop a training process where a crash test kills it.

Loaded by ``src/train.py`` subprocesses as ``+callbacks.x._target_=tests.crash.PauseAt`` with
``PYTHONPATH`` at the repository root.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins import TorchCheckpointIO


class PauseAt(L.Callback):
    """Writes ``marker`` and sleeps at epoch ``epoch`` (0-based): at its start when ``batch`` is
    None, else after training batch ``batch``. The test then kills or signals the process.
    Once: a run resumed in the same place with the same callback (a requeued job) goes on."""

    def __init__(self, marker: str, epoch: int, batch: int | None = None) -> None:
        self.marker, self.epoch, self.batch = Path(marker), epoch, batch

    def _pause(self) -> None:
        if self.marker.exists():
            return
        self.marker.write_text(str(os.getpid()))
        time.sleep(600)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.batch is None and trainer.current_epoch == self.epoch:
            self._pause()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.batch == batch_idx and trainer.current_epoch == self.epoch:
            self._pause()


class KillInsideSave(TorchCheckpointIO):
    """Writes checkpoint number ``kill_at`` (counting from 1) half-way, then SIGKILLs its own
    process: a node lost, or the OOM killer, in the middle of a save."""

    def __init__(self, kill_at: int = 2) -> None:
        super().__init__()
        self.kill_at, self.saves = kill_at, 0

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options=None) -> None:
        self.saves += 1
        if self.saves < self.kill_at:
            return super().save_checkpoint(checkpoint, path, storage_options)
        super().save_checkpoint(checkpoint, path, storage_options)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
