"""Callbacks of our own: progress output, seeding, reports, and validating the last epoch."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from actionrec import reports
from actionrec.console import FILE_ONLY

log = logging.getLogger(__name__)


class ValidateLastEpoch(Callback):
    """Validates the last training epoch whatever ``trainer.check_val_every_n_epoch`` says.

    A run shorter than the interval (mmaction2 validates every 5 epochs) would otherwise end
    without a validation, a ``val/top1`` or a ``best.ckpt``.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 == trainer.max_epochs
        if last and trainer.check_val_every_n_epoch not in (None, 1):
            trainer.check_val_every_n_epoch = 1


class SkippedMediaReport(Callback):
    """Counts the unreadable samples the datasets replaced (``on_error=skip``) and reports them.

    Each epoch logs ``data/skipped`` (summed over devices; train and val together) and, when
    any were skipped, logs a warning naming the first few files and why.

    Args:
        show: how many file names the summary line names.
    """

    def __init__(self, show: int = 3) -> None:
        self.show = show
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def _collect(self, batch: Any) -> None:
        if not isinstance(batch, dict) or "skipped" not in batch:
            return
        for entry in batch["skipped"]:
            lines = [line for line in entry.split("\n") if line]
            self.count += len(lines)
            self.examples += lines[: max(0, self.show - len(self.examples))]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._collect(batch)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(batch)

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(batch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module, f"epoch {trainer.current_epoch}")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module, "test")

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        count = torch.tensor(float(self.count), device=pl_module.device)
        pl_module.log("data/skipped", count, reduce_fx="sum", sync_dist=True)
        if self.count:
            log.warning(
                "%s: %d unreadable sample(s) replaced on this device (data.on_error=skip), e.g. %s",
                when,
                self.count,
                "; ".join(self.examples),
            )
        self._reset()


class ConfusionMatrixReport(Callback):
    """Writes each validation's and test's confusion matrix into the run directory.

    After every validation (not the sanity check) and test, on rank 0: the module's
    ``confusion_matrices[stage]`` (a :class:`~actionrec.module.Recognizer` keeps the latest,
    synced over devices) becomes ``confusion_matrix_{stage}.csv`` and ``.png`` in ``out_dir``,
    overwritten each time so that they show the latest, and the picture goes to W&B and
    TensorBoard as ``{stage}/confusion_matrix``. Class names come from the datamodule's
    ``class_names``. A stage without a matrix (multi-label, feature extraction) writes nothing.

    Args:
        out_dir: the run directory.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    # After the module's own epoch-end hook, which computes the matrix (callbacks run first).
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "test")

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        confmat = getattr(pl_module, "confusion_matrices", {}).get(stage)
        if confmat is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        names = getattr(trainer.datamodule, "class_names", None) if trainer.datamodule else None
        _, png = reports.save_confusion_matrix(confmat, names, self.out_dir, stage)
        reports.log_image(trainer.loggers, f"{stage}/confusion_matrix", png, trainer.global_step)


class SaveRunConfig(Callback):
    """Puts the run's config into every checkpoint as ``run_config``, from which eval, predict
    and export rebuild the run.

    Args:
        run_config: the resolved config as plain containers (loadable with
            ``torch.load(weights_only=True)``).
    """

    def __init__(self, run_config: dict) -> None:
        self.run_config = run_config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint["run_config"] = self.run_config


class BatchSeed(Callback):
    """Seeds torch's generator before each training batch from (seed, epoch, batch, rank).

    Dropout and any other draw in the training step then depend on where the run is, not on
    what the process drew before: a resumed run draws what the uninterrupted one did (a
    checkpoint holds no generator states), and devices draw differently from each other.

    Args:
        seed: the run's seed.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        key = [self.seed, trainer.current_epoch, batch_idx, trainer.global_rank]
        torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))


class SampleClips(Callback):
    """Logs a few training clips as the model receives them, once, at the first training batch.

    Each clip is the uint8 frames the pipeline made (before the device normalizes them), laid
    side by side: W&B gets one image per clip, captioned with its label, TensorBoard one image
    with a clip per row; other loggers nothing.

    Args:
        num_clips: how many clips of the first batch.
    """

    def __init__(self, num_clips: int = 4) -> None:
        self.num_clips = num_clips
        self._done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._done or not isinstance(batch, dict) or "imgs" not in batch:
            return
        self._done = True
        imgs = batch["imgs"][: self.num_clips].detach().cpu()  # (N, T, C, H, W) uint8
        rows = imgs.permute(0, 2, 3, 1, 4).flatten(3)  # (N, C, H, T*W): frames side by side
        names = getattr(trainer.datamodule, "class_names", None) if trainer.datamodule else None
        captions = [_label_text(label, names) for label in batch["label"][: len(rows)]]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                images = [row.permute(1, 2, 0).numpy() for row in rows]  # (H, T*W, C)
                logger.log_image("train/clips", images, step=trainer.global_step, caption=captions)
            elif isinstance(logger, TensorBoardLogger):
                grid = rows.permute(1, 0, 2, 3).flatten(1, 2)  # (C, N*H, T*W): a clip per row
                logger.experiment.add_image("train/clips", grid, trainer.global_step)


def _label_text(label: torch.Tensor, names: list[str] | None) -> str:
    ids = label.nonzero().flatten().tolist() if label.dim() else [int(label)]  # multi-hot or id
    return ", ".join(names[i] if names and 0 <= i < len(names) else str(i) for i in ids)


class LineProgress(ProgressBar):
    """Plain progress lines for logs and CI: one per epoch, with its metrics and duration, on the
    console and in the run's log file."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._start = time.monotonic()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._print(trainer, "validate")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, "test")

    def _print(self, trainer: L.Trainer, what: str) -> None:
        # Every rank reads the metrics: reading syncs values logged with sync_dist, a
        # collective that deadlocks if only rank 0 joins it.
        metrics = self.get_metrics(trainer, trainer.lightning_module)
        if not self._enabled or not trainer.is_global_zero:
            return
        shown = "  ".join(
            f"{k}={float(v):.4f}"
            for k, v in sorted(metrics.items())
            if k not in ("v_num",) and not k.endswith("_step")
        )
        line = f"{what}  {shown}  ({time.monotonic() - self._start:.1f}s)"
        print(line, flush=True)
        log.info(line, extra=FILE_ONLY)  # the run's log file keeps the progress too

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        return {k: v for k, v in trainer.callback_metrics.items() if v.numel() == 1}


class RichProgress(RichProgressBar):
    """Lightning's Rich bar, reading the logged metrics every ``metrics_every`` training steps.

    Reading a metric copies it to the host, which on a GPU waits for the step's kernels to
    finish. Lightning's bar reads after every step, so the GPU would idle each step while the
    next batch is fetched and its first kernels are launched. The bar itself moves every step.

    Metrics logged every step with ``prog_bar=True`` are read by Lightning itself after every
    batch, so the Recognizer logs ``train/loss`` without it, and the bar shows the latest value
    of each of ``step_metrics`` when it reads the others.
    """

    def __init__(
        self, metrics_every: int = 10, step_metrics: Sequence[str] = ("train/loss",), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if metrics_every < 1:
            raise ValueError(f"metrics_every={metrics_every} must be >= 1")
        self.metrics_every = metrics_every
        self.step_metrics = tuple(step_metrics)
        self._metrics: dict | None = None  # None: not read yet
        self._stale = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stale = (batch_idx + 1) % self.metrics_every != 0
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        finally:
            self._stale = False

    def _get_train_description(self, current_epoch: int) -> str:
        # Epochs counted from 1, as the plain lines, the log and epoch_N.ckpt count them.
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs >= 0:
            description += f"/{self.trainer.max_epochs}"
        return f"{description:{len(self.validation_description)}}"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        if not self._stale or self._metrics is None:
            metrics = super().get_metrics(trainer, pl_module)
            logged = trainer.callback_metrics  # tensors: reading them is what costs
            for name in self.step_metrics:
                if name not in metrics and isinstance(logged.get(name), torch.Tensor):
                    metrics[name] = logged[name].item()
            self._metrics = metrics
        return self._metrics


def progress_bar() -> ProgressBar:
    """A Rich progress bar on an interactive terminal, plain lines otherwise (CI, log files)."""
    return RichProgress() if sys.stdout.isatty() else LineProgress()
