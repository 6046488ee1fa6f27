"""Writing a run's checkpoints: once per epoch, at its end, atomically, each one resumable.

Every checkpoint a run writes (``last.ckpt``, ``epoch_N.ckpt``, ``best.ckpt``) holds the state
at the end of a training epoch, its validation included: the state the next epoch starts from.
Resuming from any of them with the run's config therefore ends where the uninterrupted run
ends (``tests/test_resume.py``). Files are written beside their target and renamed over it, so a
process killed inside a save leaves the previous checkpoint whole.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)

LAST = "last.ckpt"
BEST = "best.ckpt"


def replace_atomically(tmp: str | Path, path: str | Path) -> None:
    """Move the finished file ``tmp`` over ``path`` (same directory): readers and a process
    killed at any moment see the old file or the new one, never a part of either.

    The data reaches the disk before the rename, so a machine that loses power right after
    does not leave an empty file under the new name.
    """
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be synced
        fd = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def copy_atomically(src: str | Path, path: str | Path) -> None:
    """``path`` becomes a copy of ``src`` (a hard link where the filesystem has them)."""
    tmp = f"{path}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    try:
        os.link(src, tmp)
    except OSError:  # no hard links here (some network and FUSE filesystems)
        shutil.copyfile(src, tmp)
    replace_atomically(tmp, path)


def completed_epochs(checkpoint: dict[str, Any]) -> int:
    """How many training epochs had ended when ``checkpoint`` (a loaded dict) was written."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"])
    except (KeyError, TypeError):
        return int(checkpoint.get("epoch", 0))


class EpochCheckpoints(ModelCheckpoint):
    """The run's checkpoints, all written at the end of a training epoch, after its validation.

    - ``last.ckpt`` after every epoch;
    - ``epoch_{N}.ckpt`` after every ``every_n_epochs``-th epoch (N counts from 1: the state
      after N epochs, mmaction2's ``epoch_N.pth``); 0 writes none;
    - ``best.ckpt`` after an epoch whose validation improved ``monitor``.

    Lightning's own ``ModelCheckpoint`` saves at the end of validation, before the epoch has
    ended in the loop's state (and ``save_last`` with ``save_top_k=0`` only when training
    ends): resuming from such a file replays part of an epoch and diverges. Here every file is
    the state the next epoch starts from, written to a temporary file first and renamed.

    Args:
        dirpath: the run's ``checkpoints/`` directory.
        monitor: the validation metric ``best.ckpt`` follows; None writes no best.
        mode: ``"max"`` or ``"min"``: which way ``monitor`` improves.
        every_n_epochs: the interval of ``epoch_{N}.ckpt`` (mmaction2's checkpoint interval).
    """

    def __init__(
        self,
        dirpath: str,
        monitor: str | None = "val/top1",
        mode: str = "max",
        every_n_epochs: int = 5,
    ) -> None:
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be >= 0 (0: no epoch_N.ckpt)")
        super().__init__(
            dirpath=dirpath,
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=1 if monitor else 0,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
        self.every_n = every_n_epochs
        self._closing_epoch = False  # set while this callback writes an end-of-epoch state
        self._validated_score: torch.Tensor | None = None

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # ModelCheckpoint's setup warns that the directory is not empty: a resumed run's is.
        self.dirpath = trainer.strategy.broadcast(os.path.abspath(self.dirpath))
        if trainer.is_global_zero and stage == "fit":
            os.makedirs(self.dirpath, exist_ok=True)

    # Lightning's save points, all off: this callback writes at the end of the epoch only.
    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor is None:
            return
        score = trainer.callback_metrics.get(self.monitor)
        self._validated_score = None if score is None else score.detach().cpu().clone()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_exception(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        epochs = trainer.current_epoch + 1  # this epoch included
        score, self._validated_score = self._validated_score, None
        targets = []
        if score is not None and self._improves(score):
            self.best_model_score = score
            self.best_model_path = os.path.join(self.dirpath, BEST)
            self.best_k_models = {self.best_model_path: score}
            self.kth_best_model_path, self.kth_value = self.best_model_path, score
            targets.append(self.best_model_path)
        if self.every_n and epochs % self.every_n == 0:
            targets.append(os.path.join(self.dirpath, f"epoch_{epochs}.ckpt"))
        self.current_score = score
        self.last_model_path = os.path.join(self.dirpath, LAST)
        self._write(trainer, [self.last_model_path, *targets])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The run goes on in its own directory, wherever it was when the checkpoint was written
        # (ModelCheckpoint forgets the best score when the directory moved).
        score = state_dict.get("best_model_score")
        self.best_model_score = score
        self.best_model_path = os.path.join(self.dirpath, BEST) if score is not None else ""
        self.best_k_models = {self.best_model_path: score} if score is not None else {}
        self.kth_best_model_path, self.kth_value = self.best_model_path, score
        self.current_score = state_dict.get("current_score")
        self.last_model_path = os.path.join(self.dirpath, LAST)

    def _improves(self, score: torch.Tensor) -> bool:
        if not math.isfinite(float(score)):
            return False
        if self.best_model_score is None:
            return True
        better = torch.gt if self.mode == "max" else torch.lt
        return bool(better(score, self.best_model_score))

    def _write(self, trainer: L.Trainer, paths: list[str]) -> None:
        """Write the state once (``paths[0]``) and copy it to the rest, each atomically."""
        first, rest = paths[0], paths[1:]
        tmp = f"{first}.tmp"
        for logger in trainer.loggers:  # what was logged so far is on disk before the state
            logger.save()
        self._closing_epoch = True
        try:
            # every rank takes part; rank 0 writes the full state (weights, optimizer, loops)
            trainer.save_checkpoint(tmp, weights_only=False)
        finally:
            self._closing_epoch = False
        if trainer.is_global_zero:
            replace_atomically(tmp, first)
            for path in rest:
                copy_atomically(first, path)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = first
        trainer.strategy.barrier("EpochCheckpoints")
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._closing_epoch:
            close_epoch(checkpoint)


def close_epoch(checkpoint: dict[str, Any]) -> None:
    """Mark the epoch being ended as completed in a checkpoint written at its end.

    At ``on_train_epoch_end`` the weights, optimizer and epoch-interval schedulers already hold
    the epoch's final state; only the loop's ``completed`` counter (and ``epoch``) lag one behind
    until the hook returns. Written as they are, a resumed fit would re-enter the epoch's end
    instead of starting the next epoch as the uninterrupted run does.
    """
    progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
    for tracker in (progress["total"], progress["current"]):
        if tracker["completed"] != tracker["processed"] - 1:
            raise RuntimeError(
                "EpochCheckpoints: the fit loop's epoch counters are not those of an epoch's end "
                f"({tracker}); this Lightning version saves elsewhere: report it"
            )
        tracker["completed"] = tracker["processed"]
    checkpoint["epoch"] = progress["current"]["completed"]
