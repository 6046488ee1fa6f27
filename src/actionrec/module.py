"""The LightningModule: normalize on the device, loss, metrics, multi-view averaging, optimizers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MultilabelAveragePrecision,
)

AVERAGE_CLIPS = ("score", "prob", None)
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class Recognizer(L.LightningModule):
    """Trains and evaluates a video network on uint8 batches.

    Batches are ``{"imgs": uint8 (B, T, C, H, W), "label": int64 (B,)}``; in multi-view
    testing ``imgs`` is ``(B, V, T, C, H, W)`` and the V view scores are averaged per video.

    Args:
        net: maps float ``(B, T, C, H, W)`` to logits ``(B, K)``; has ``num_classes``.
        optimizer: a factory taking ``params`` (a ``functools.partial``, from ``conf/optim``).
        scheduler: a factory taking ``optimizer``, stepped once per epoch; or None.
        mean: per-channel mean in 0-255 units, RGB order of the input.
        std: per-channel std in 0-255 units.
        to_bgr: swap RGB to BGR before normalizing (for weights trained on BGR).
        loss: the training criterion on ``(logits, label)``; None picks cross-entropy, or
            binary cross-entropy with ``multi_label``.
        multi_label: labels are multi-hot ``(B, K)`` floats (mmaction2's ``multi_class``):
            metrics are mean average precision (``mAP``) and ``top1``, the share of videos whose
            best-scored class is one of their labels.
        topk: the k of each ``top{k}`` accuracy; k above the class count is dropped.
        average_clips: how view scores combine: ``"score"`` (mean logits), ``"prob"``
            (mean softmax), or None (single-view inputs only).
        max_testing_views: push at most this many views through the network at once.
        warmup_epochs: scale the learning rate linearly up over this many epochs (counted in
            optimizer steps), on top of whatever the scheduler sets.
        warmup_start_factor: the scale at the first step.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        mean: Sequence[float] = (123.675, 116.28, 103.53),
        std: Sequence[float] = (58.395, 57.12, 57.375),
        to_bgr: bool = False,
        loss: nn.Module | None = None,
        multi_label: bool = False,
        topk: Sequence[int] = (1, 5),
        average_clips: str | None = "score",
        max_testing_views: int | None = None,
        warmup_epochs: float = 0.0,
        warmup_start_factor: float = 0.1,
    ) -> None:
        super().__init__()
        if average_clips not in AVERAGE_CLIPS:
            raise ValueError(f"average_clips={average_clips!r} is not one of {AVERAGE_CLIPS}")
        if len(mean) != len(std):
            raise ValueError(f"mean={list(mean)} and std={list(std)} differ in length")
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.multi_label = multi_label
        if loss is None:
            loss = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
        self.loss_fn = loss
        self.to_bgr = to_bgr
        self.average_clips = average_clips
        self.max_testing_views = max_testing_views
        if warmup_epochs < 0 or not 0 < warmup_start_factor <= 1:
            raise ValueError(
                f"warmup_epochs={warmup_epochs} must be >= 0 and "
                f"warmup_start_factor={warmup_start_factor} in (0, 1]"
            )
        self.warmup_epochs = warmup_epochs
        self.warmup_start_factor = warmup_start_factor
        # (C, 1, 1) so they broadcast over (..., C, H, W); not saved: they come from the config.
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1), persistent=False)
        num_classes = net.num_classes
        self.topk = tuple(k for k in topk if k <= num_classes)
        self.train_acc = (
            HitAtOne() if multi_label else MulticlassAccuracy(num_classes, average="micro")
        )
        self.train_loss = MeanMetric()
        self.val_metrics = self._eval_metrics(num_classes)
        self.test_metrics = self._eval_metrics(num_classes)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def _eval_metrics(self, num_classes: int) -> MetricCollection:
        if self.multi_label:
            return MetricCollection(
                {"top1": HitAtOne(), "mAP": MultilabelAveragePrecision(num_classes)}
            )
        accs = {
            f"top{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro") for k in self.topk
        }
        return MetricCollection({**accs, "confmat": MulticlassConfusionMatrix(num_classes)})

    def normalize(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., C, H, W)`` to normalized float, on whatever device ``imgs`` is on."""
        x = imgs.float()
        if self.to_bgr:
            x = x.flip(-3)
        return (x - self.mean) / self.std

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, C, H, W)`` or ``(B, V, T, C, H, W)`` to logits ``(B, K)``."""
        if imgs.dim() == 5:
            return self.net(self.normalize(imgs))
        if imgs.dim() != 6:
            raise ValueError(
                f"imgs must be (B, T, C, H, W) or (B, V, T, C, H, W); got {imgs.shape}"
            )
        b, v = imgs.shape[:2]
        views = imgs.flatten(0, 1)  # (B*V, T, C, H, W)
        chunk = self.max_testing_views or views.shape[0]
        scores = torch.cat([self.net(self.normalize(c)) for c in views.split(chunk)])
        return self.average_views(scores.view(b, v, -1))  # (B, K)

    def average_views(self, scores: torch.Tensor) -> torch.Tensor:
        """``(B, V, K)`` view scores to ``(B, K)`` as mmaction2's ``average_clips`` does."""
        if self.average_clips == "prob":
            return F.softmax(scores, dim=-1).mean(dim=1)
        if self.average_clips == "score":
            return scores.mean(dim=1)
        if scores.shape[1] != 1:
            raise ValueError(
                f"average_clips=None keeps one score per view, but the input has "
                f"{scores.shape[1]} views per video; set model.average_clips=score or prob"
            )
        return scores[:, 0]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["imgs"])
        loss = self.loss_fn(logits, batch["label"])
        self.train_loss(loss)
        self.train_acc(logits, batch["label"])
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/top1", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _eval_step(self, batch: dict, stage: str) -> None:
        scores = self(batch["imgs"])
        label = batch["label"]
        if self.multi_label:
            loss = F.binary_cross_entropy_with_logits(scores, label.float())
        elif batch["imgs"].dim() == 6 and self.average_clips == "prob":  # probabilities
            loss = F.nll_loss(scores.clamp_min(1e-12).log(), label)
        else:
            loss = F.cross_entropy(scores, label)
        loss_metric = self.val_loss if stage == "val" else self.test_loss
        loss_metric(loss, weight=label.shape[0])  # a mean over videos, however batched
        self.log(f"{stage}/loss", loss_metric, on_epoch=True, prog_bar=stage == "val")
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(scores, label.long() if self.multi_label else label)

    def _eval_epoch_end(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        values = metrics.compute()
        confmat = values.pop("confmat", None)
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "top1")
        if confmat is not None:
            self.log(f"{stage}/mean_class_acc", mean_class_accuracy(confmat))
        metrics.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def warmup_factor(self) -> float:
        """The learning-rate scale of the coming optimizer step (1 after warmup)."""
        if self.warmup_epochs <= 0:
            return 1.0
        steps_per_epoch = self.trainer.estimated_stepping_batches / max(1, self.trainer.max_epochs)
        progress = (self.global_step + 1) / max(1.0, self.warmup_epochs * steps_per_epoch)
        return min(1.0, self.warmup_start_factor + (1 - self.warmup_start_factor) * progress)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        # Scale around the step and restore, so the scheduler's own values stay untouched.
        scale = self.warmup_factor()
        if scale == 1.0:
            optimizer.step(closure=optimizer_closure)
            return
        lrs = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] *= scale
        optimizer.step(closure=optimizer_closure)
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The composed run config (plain containers, loadable with weights_only=True), so that
        # eval and predict can rebuild this model from the checkpoint alone.
        if getattr(self, "run_config", None) is not None:
            checkpoint["run_config"] = self.run_config

    def configure_optimizers(self) -> dict:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


class HitAtOne(MeanMetric):
    """Multi-label top-1: the share of videos whose highest score is on one of their labels."""

    def update(self, scores: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        best = scores.argmax(dim=-1, keepdim=True)  # (B, 1)
        super().update(target.gather(-1, best).squeeze(-1).gt(0).float())


def mean_class_accuracy(confmat: torch.Tensor) -> torch.Tensor:
    """Mean per-class recall over the classes present in the labels (mmaction2's definition).

    Args:
        confmat: ``(K, K)`` counts, rows are true classes.
    """
    support = confmat.sum(dim=1)
    present = support > 0
    recall = confmat.diagonal()[present].float() / support[present].float()
    return recall.mean() if recall.numel() else confmat.new_zeros((), dtype=torch.float)
