"""The LightningModule: normalize on the device, loss, metrics, multi-view averaging, optimizers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MultilabelAveragePrecision,
)

from actionrec.metrics import HitAtOne, gather_results, mean_class_accuracy
from actionrec.normalization import Normalizer
from actionrec.optim import apply_multipliers, lr_scale_factor, scale_lr, steps_per_epoch

AVERAGE_CLIPS = ("score", "prob", None)
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
# (optimizer, steps_per_epoch) to a per-step scheduler or None, e.g. actionrec.optim.LinearWarmup.
Warmup = Callable[
    [torch.optim.Optimizer, Callable[[], int]], torch.optim.lr_scheduler.LRScheduler | None
]
ParamGroups = Callable[[nn.Module], list[dict]]
Blending = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Recognizer(L.LightningModule):
    """Trains and evaluates a video network on uint8 batches.

    Batches are ``{"imgs": uint8 (B, F, C, H, W), "label": int64 (B,)}`` with the F sampled
    frames in order (clips x ``clip_len``); multi-crop testing adds a crop axis,
    ``(B, S, F, C, H, W)``. ``frames_per_view`` groups them into the views that go through the
    network (mmaction2's grouping per family), and the view scores are averaged per video.

    Args:
        net: maps one view per row, normalized float in its ``input_layout`` (``"NTCHW"``:
            ``(N, T, C, H, W)``, 2-D segment networks; ``"NCTHW"``: ``(N, C, T, H, W)``, 3-D
            networks), to logits ``(N, K)``; has ``num_classes``.
        optimizer: a factory taking ``params`` (a ``functools.partial``, from ``conf/optim``).
        scheduler: a factory taking ``optimizer``, stepped once per epoch; or None.
        mean: per-channel mean in 0-255 units, RGB order of the input; None takes the
            network's own ``mean`` (e.g. its pretrained weights' preset).
        std: per-channel std in 0-255 units; None takes the network's own ``std``.
        to_bgr: swap RGB to BGR before normalizing (for weights trained on BGR).
        loss: the training criterion on ``(logits, label)``; None picks cross-entropy, or
            binary cross-entropy with ``multi_label``.
        multi_label: labels are multi-hot ``(B, K)`` floats (mmaction2's ``multi_class``):
            metrics are mean average precision (``mAP``) and ``top1``, the share of videos whose
            best-scored class is one of their labels.
        topk: the k of each ``top{k}`` accuracy; k above the class count is dropped.
        frames_per_view: the frames of one view: None puts every frame of every crop into one
            view (TSN: consensus over all sampled frames); n cuts each crop's frames into
            views of n consecutive frames (TSM: ``num_segments``; 3-D networks: ``clip_len``,
            one view per clip and crop). Training batches must make one view.
        average_clips: how view scores combine: ``"score"`` (mean logits), ``"prob"``
            (mean softmax), or None (single-view inputs only).
        max_testing_views: push at most this many views through the network at once.
        feature_extraction: testing keeps each video's pooled features ``(B, D)``, averaged
            over its views, instead of class scores (mmaction2's feature extraction); no
            test metrics are computed.
        warmup: builds a scheduler stepped every optimizer step, on top of whatever
            ``scheduler`` sets, from the optimizer and a callable giving the optimizer steps of
            an epoch (:class:`actionrec.optim.LinearWarmup`, mmaction2's warmup by iterations).
        param_groups: builds the optimizer's parameter groups from ``net``; groups may carry
            ``lr_mult`` and ``decay_mult`` (e.g. :func:`actionrec.optim.tsm_param_groups`).
        lr_base_batch_size: the total batch the configured lr is for (mmaction2's
            ``auto_scale_lr``): set, every lr is scaled by ``videos_per_gpu x world size /
            lr_base_batch_size`` when the optimizer is built.
        videos_per_gpu: the batch per device, for ``lr_base_batch_size``.
        blending: mixes training clips and their targets, e.g.
            :class:`actionrec.blending.MixupBlending`; ``train/top1`` then counts the class
            with the largest share of each blended target.
        channels_last: lay the network and its inputs out channels-last, in the network's
            ``memory_format`` (``channels_last`` for 2-D networks, ``channels_last_3d`` for 3-D).
        compile: ``torch.compile`` the network when a trainer sets the model up; a dict gives
            its arguments (``{mode: max-autotune}``). Checkpoint keys stay those of ``net``.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        mean: Sequence[float] | None = (123.675, 116.28, 103.53),
        std: Sequence[float] | None = (58.395, 57.12, 57.375),
        to_bgr: bool = False,
        loss: nn.Module | None = None,
        multi_label: bool = False,
        topk: Sequence[int] = (1, 5),
        frames_per_view: int | None = None,
        average_clips: str | None = "score",
        max_testing_views: int | None = None,
        feature_extraction: bool = False,
        warmup: Warmup | None = None,
        param_groups: ParamGroups | None = None,
        lr_base_batch_size: int | None = None,
        videos_per_gpu: int | None = None,
        blending: Blending | None = None,
        channels_last: bool = False,
        compile: bool | dict = False,
    ) -> None:
        super().__init__()
        if average_clips not in AVERAGE_CLIPS:
            raise ValueError(f"average_clips={average_clips!r} is not one of {AVERAGE_CLIPS}")
        if frames_per_view is not None and frames_per_view < 1:
            raise ValueError(f"model.frames_per_view={frames_per_view} must be >= 1 or null")
        if lr_base_batch_size is not None and videos_per_gpu is None:
            raise ValueError("lr_base_batch_size (auto_scale_lr) needs videos_per_gpu")
        if not isinstance(compile, bool | dict):
            raise ValueError(f"compile={compile!r} must be true, false or torch.compile's kwargs")
        ignore = ["net", "loss", "optimizer", "scheduler", "warmup", "param_groups", "blending"]
        self.save_hyperparameters(ignore=ignore, logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.warmup_factory = warmup
        self.multi_label = multi_label
        if loss is None:
            loss = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
        self.loss_fn = loss
        self.frames_per_view = frames_per_view
        layout = getattr(net, "input_layout", "NTCHW")
        mean, std = (_net_statistic(net, k, v) for k, v in (("mean", mean), ("std", std)))
        self.normalizer = Normalizer(mean, std, to_bgr, layout, channels_last)
        self.average_clips = average_clips
        self.max_testing_views = max_testing_views
        self.feature_extraction = feature_extraction
        # The latest confusion matrix of each stage (``val``, ``test``; not multi-label), and
        # what the last test produced per video, in annotation order.
        self.confusion_matrices: dict[str, torch.Tensor] = {}
        self.test_results: dict[str, torch.Tensor] | None = None
        self._test_outputs: list[dict[str, torch.Tensor]] = []
        self.param_groups = param_groups
        self.lr_base_batch_size = lr_base_batch_size
        self.videos_per_gpu = videos_per_gpu
        self.blending = blending
        self.channels_last = channels_last
        self.compile = compile
        self._net_compiled = False
        if channels_last:
            default = torch.channels_last_3d if layout == "NCTHW" else torch.channels_last
            memory_format = getattr(net, "memory_format", default)
            self.net.to(memory_format=memory_format)  # weights of the matching rank only
        num_classes = net.num_classes
        self.topk = tuple(k for k in topk if k <= num_classes)
        # The training step never reads a value back to the host: on a GPU each read waits for
        # the step's kernels to finish. TorchMetrics' checks do read (the NaN check, the unique
        # labels), and here they check nothing: the labels were checked against num_classes when
        # the annotations were read, and a NaN loss is left in the epoch mean, where it shows.
        self.train_acc = (
            HitAtOne()
            if multi_label
            else MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        )
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_metrics = self._eval_metrics(num_classes)
        self.test_metrics = self._eval_metrics(num_classes)
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")

    def _eval_metrics(self, num_classes: int) -> MetricCollection:
        # Unchecked, as the training metrics: each check waits for the GPU.
        if self.multi_label:
            mean_ap = MultilabelAveragePrecision(num_classes, validate_args=False)
            return MetricCollection({"top1": HitAtOne(), "mAP": mean_ap})
        accs = {
            f"top{k}": MulticlassAccuracy(
                num_classes, top_k=k, average="micro", validate_args=False
            )
            for k in self.topk
        }
        confmat = MulticlassConfusionMatrix(num_classes, validate_args=False)
        return MetricCollection({**accs, "confmat": confmat})

    def normalize(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 views ``(N, T, C, H, W)`` to the network's input (see :class:`Normalizer`)."""
        return self.normalizer(imgs)

    def to_views(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, F, C, H, W)`` or ``(B, S, F, C, H, W)`` to views ``(B, V, T, C, H, W)``.

        Each crop's F frames (clips x clip_len, in order) are cut into views of
        ``frames_per_view`` consecutive frames; None makes one view of every frame of every
        crop, crop by crop (mmaction2's order).
        """
        if imgs.dim() == 5:
            imgs = imgs.unsqueeze(1)
        if imgs.dim() != 6:
            raise ValueError(
                f"imgs must be (B, F, C, H, W) or (B, crops, F, C, H, W); got {tuple(imgs.shape)}"
            )
        b, crops, frames = imgs.shape[:3]
        n = self.frames_per_view
        if n is None:
            return imgs.reshape(b, 1, crops * frames, *imgs.shape[3:])
        if frames % n:
            raise ValueError(
                f"model.frames_per_view={n} does not divide the {frames} frames sampled per "
                "crop (data.num_clips x data.clip_len): make them fit, e.g. frames_per_view="
                f"{frames} or data.num_clips a multiple of {n} / data.clip_len"
            )
        return imgs.reshape(b, crops * frames // n, n, *imgs.shape[3:])

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, F, C, H, W)`` or ``(B, S, F, C, H, W)`` to video scores ``(B, K)``.

        The views' ``average_clips`` average, as mmaction2 scores a video: mean logits
        (``score``), mean probabilities (``prob``) -- a softmax for a single view too -- or the
        one view's logits (None).
        """
        views = self.to_views(imgs)  # (B, V, T, C, H, W)
        b, v = views.shape[:2]
        flat = views.flatten(0, 1)  # (B*V, T, C, H, W)
        chunk = self.max_testing_views or flat.shape[0]
        scores = torch.cat([self.net(self.normalizer(c)) for c in flat.split(chunk)])
        return self.average_views(scores.view(b, v, -1))  # (B, K)

    def extract_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, F, C, H, W)`` or ``(B, S, F, C, H, W)`` to pooled features ``(B, D)``.

        Views are pushed through in chunks like scores and their features averaged per video
        (mmaction2 averages the feature head's outputs over views with ``average_clips=score``).
        """
        if not hasattr(self.net, "forward_features"):
            raise ValueError(
                f"feature_extraction needs a network with forward_features; "
                f"{type(self.net).__name__} has none"
            )
        views = self.to_views(imgs)
        b, v = views.shape[:2]
        flat = views.flatten(0, 1)
        chunk = self.max_testing_views or flat.shape[0]
        feats = [self.net.forward_features(self.normalizer(c)) for c in flat.split(chunk)]
        feats = torch.cat(feats)
        return feats.view(b, v, -1).mean(dim=1)

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

    def training_view(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 training clips ``(B, F, C, H, W)`` to the network's normalized input."""
        views = self.to_views(imgs)
        if views.shape[1] != 1:
            raise ValueError(
                f"a training clip makes {views.shape[1]} views of model.frames_per_view="
                f"{self.frames_per_view} frames: sample one view's frames for training "
                "(data.num_clips x data.clip_len = frames_per_view), as mmaction2's recipes do"
            )
        return self.normalizer(views[:, 0])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.blending is None:
            logits, target = self.net(self.training_view(batch["imgs"])), batch["label"]
            label = target
        else:
            logits, target = self.blended_forward(batch["imgs"], batch["label"])
            label = target if self.multi_label else target.argmax(dim=-1)  # the dominant class
        loss = self.loss_fn(logits, target)
        self.train_loss(loss)
        self.train_acc(logits, label)
        # Not prog_bar: Lightning turns progress-bar values into Python numbers after every
        # batch, a wait for the GPU each; the bar (callbacks.RichProgress) reads it every 10th.
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True)
        self.log("train/top1", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def blended_forward(
        self, imgs: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(B, T, C, H, W)`` and labels to logits ``(B, K)`` and blended soft targets
        ``(B, K)``; blending works on the normalized float clips, on the device."""
        if self.multi_label:
            target = label.float()
        else:
            target = F.one_hot(label, self.net.num_classes).float()
        x, target = self.blending(self.training_view(imgs), target)
        if self.channels_last:
            x = self.normalizer.lay_out(x)
        return self.net(x), target

    def _eval_step(self, batch: dict, stage: str) -> torch.Tensor:
        scores = self(batch["imgs"])
        label = batch["label"]
        if self.multi_label:
            loss = F.binary_cross_entropy_with_logits(scores, label.float())
        elif self.average_clips == "prob":  # probabilities
            loss = F.nll_loss(scores.clamp_min(1e-12).log(), label)
        else:
            loss = F.cross_entropy(scores, label)
        loss_metric = self.val_loss if stage == "val" else self.test_loss
        # A mean over videos, however batched: the batch's loss once per video. (MeanMetric's
        # weight= is dropped with nan_strategy="disable": TorchMetrics issue #3434, open.)
        loss_metric(loss.expand(label.shape[0]))
        self.log(f"{stage}/loss", loss_metric, on_epoch=True, prog_bar=stage == "val")
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(scores, label.long() if self.multi_label else label)
        return scores

    def _eval_epoch_end(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        values = metrics.compute()
        confmat = values.pop("confmat", None)
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "top1")
        if confmat is not None:
            self.log(f"{stage}/mean_class_acc", mean_class_accuracy(confmat))
            # Synced over devices; callbacks.ConfusionMatrixReport writes it out.
            self.confusion_matrices[stage] = confmat.detach().cpu()
        metrics.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if self.feature_extraction:
            outputs = {"features": self.extract_features(batch["imgs"])}
        else:
            outputs = {"scores": self._eval_step(batch, "test")}
        if "index" in batch:  # the annotation line order, to put the videos back in it
            outputs["index"] = batch["index"]
        if "skipped" in batch:  # replaced unreadable videos are marked in the results
            outputs["replaced"] = torch.tensor([bool(s) for s in batch["skipped"]])
        outputs["label"] = batch["label"]
        self._test_outputs.append({k: v.detach().cpu() for k, v in outputs.items()})

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []
        self.test_results = None

    def on_test_epoch_end(self) -> None:
        if not self.feature_extraction:
            self._eval_epoch_end("test")
        self.test_results = gather_results(self._test_outputs)
        self._test_outputs = []

    def setup(self, stage: str) -> None:
        # The labels were checked against the data's num_classes; the metrics trust that.
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        classes = getattr(data, "num_classes", None)
        if classes is not None and classes != self.net.num_classes:
            raise ValueError(
                f"data.num_classes={classes} but the model's head has {self.net.num_classes} "
                "classes: set model.net.head.num_classes to ${data.num_classes} (the default) "
                "or make the two equal"
            )

    def configure_model(self) -> None:
        # Compiling the module in place keeps its parameter names (no ``_orig_mod.``), so
        # checkpoints load into an uncompiled model and back.
        if self.compile and not self._net_compiled:
            self.net.compile(**(self.compile if isinstance(self.compile, dict) else {}))
            self._net_compiled = True

    def configure_optimizers(self) -> tuple[list, list[dict]]:
        if self.param_groups is not None:
            params = self.param_groups(self.net)
        else:
            params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        apply_multipliers(optimizer)
        if self.lr_base_batch_size is not None:
            world = self.trainer.world_size
            factor = lr_scale_factor(self.videos_per_gpu, world, self.lr_base_batch_size)
            scale_lr(optimizer, factor)
            rank_zero_info(
                f"auto_scale_lr: lr x {factor:g} ({self.videos_per_gpu} videos x {world} "
                f"processes / base batch {self.lr_base_batch_size}): "
                f"{[round(g['lr'], 8) for g in optimizer.param_groups]}"
            )
        schedulers = []
        # First: the epoch scheduler then starts from its lrs. The epoch's steps are counted
        # when the warmup first needs them, once the trainer has loaded the training data.
        warmup = self.warmup_factory and self.warmup_factory(
            optimizer, lambda: steps_per_epoch(self.trainer)
        )
        if warmup is not None:
            # The epoch scheduler's key in the lr logs: both change the one lr it shows.
            name = f"lr-{type(optimizer).__name__}"
            schedulers.append({"scheduler": warmup, "interval": "step", "name": name})
        if self.scheduler_factory is not None:
            scheduler = self.scheduler_factory(optimizer=optimizer)
            schedulers.append({"scheduler": scheduler, "interval": "epoch"})
        return [optimizer], schedulers


def _net_statistic(net: nn.Module, name: str, value: Sequence[float] | None) -> Sequence[float]:
    """``value``, or when None the network's own ``mean``/``std`` (``name``)."""
    if value is not None:
        return value
    own = getattr(net, name, None)
    if own is None:
        raise ValueError(
            f"model.{name}=null takes the network's own {name}, and {type(net).__name__} has "
            f"none: set model.{name} (0-255 units, RGB)"
        )
    return own
