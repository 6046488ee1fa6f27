"""The LightningModule: normalization on the device, view averaging, metrics, optimizers."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader

from actionrec.metrics import mean_class_accuracy
from actionrec.module import Recognizer
from actionrec.optim import LinearWarmup


class Fixed(nn.Module):
    """A 'network' that returns preset logits per clip, to check what the module does with them."""

    num_classes = 3

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores
        self.seen: list[torch.Tensor] = []
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        self.seen.append(imgs)
        return self.scores[: imgs.shape[0]] + self.w


def make(net: nn.Module, **kwargs) -> Recognizer:
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    return Recognizer(net, optimizer=sgd, **kwargs)


def test_normalizes_uint8_with_mean_and_std_in_pixel_units() -> None:
    net = Fixed(torch.zeros(1, 3))
    module = make(net, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    imgs = torch.full((1, 2, 3, 4, 4), 50, dtype=torch.uint8)
    module(imgs)
    x = net.seen[0]
    assert x.dtype == torch.float32
    assert x[0, 0, :, 0, 0].tolist() == [20.0, 7.5, 4.0]


def test_to_bgr_swaps_channels_before_normalizing() -> None:
    net = Fixed(torch.zeros(1, 3))
    module = make(net, mean=(0, 0, 0), std=(1, 1, 1), to_bgr=True)
    imgs = torch.zeros(1, 1, 3, 2, 2, dtype=torch.uint8)
    imgs[:, :, 0] = 200  # red
    module(imgs)
    assert net.seen[0][0, 0, :, 0, 0].tolist() == [0.0, 0.0, 200.0]


def test_checkpoints_hold_the_network_weights_only() -> None:
    # mean and std come from the config: checkpoints written before and after the Normalizer
    # have the same keys, so each loads into the other strictly.
    from actionrec.models.backbones import SimpleCNN
    from actionrec.models.heads import TSNHead
    from actionrec.models.recognizers import TSN

    net = TSN(SimpleCNN(channels=(4,)), TSNHead(3, in_channels=4))
    module = make(net, mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0))
    assert list(module.state_dict()) == [f"net.{k}" for k in net.state_dict()]
    module.load_state_dict({f"net.{k}": v for k, v in net.state_dict().items()})  # strict


# Two views of one video, three classes, worked by hand.
VIEW_SCORES = torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("score", [1.0, 2.0, 0.0]),
        # softmax([2,0,0]) = [e2, 1, 1]/(e2+2); softmax([0,4,0]) = [1, e4, 1]/(e4+2)
        (
            "prob",
            [
                (7.389056 / 9.389056 + 1 / 56.598150) / 2,
                (1 / 9.389056 + 54.598150 / 56.598150) / 2,
                (1 / 9.389056 + 1 / 56.598150) / 2,
            ],
        ),
    ],
)
def test_average_clips_by_hand(mode: str, expected: list[float]) -> None:
    module = make(Fixed(VIEW_SCORES), average_clips=mode, frames_per_view=1)
    imgs = torch.zeros(1, 2, 1, 3, 4, 4, dtype=torch.uint8)  # (B, crops, T, C, H, W): 2 views
    out = module(imgs)
    torch.testing.assert_close(out, torch.tensor([expected]), atol=1e-5, rtol=0)


def test_prob_of_a_single_view_is_its_softmax() -> None:
    # TSN's one view of every frame: mmaction2's average_clips='prob' still applies a softmax.
    module = make(Fixed(VIEW_SCORES[:1]), average_clips="prob")
    out = module(torch.zeros(1, 2, 5, 3, 4, 4, dtype=torch.uint8))  # 2 crops x 5 frames
    torch.testing.assert_close(out, VIEW_SCORES[:1].softmax(-1))


def frame_ids(batch: int, crops: int, frames: int) -> torch.Tensor:
    """uint8 ``(B, crops, F, 1, 1, 1)`` whose pixel is ``100 b + 10 crop + frame``."""
    ids = torch.arange(batch).view(-1, 1, 1) * 100 + torch.arange(crops).view(1, -1, 1) * 10
    return (ids + torch.arange(frames)).view(batch, crops, frames, 1, 1, 1).to(torch.uint8)


@pytest.mark.parametrize(
    ("frames_per_view", "views"),
    [
        # TSN: every frame of every crop, crop by crop, in one view (consensus over all).
        (None, [[0, 1, 2, 3, 10, 11, 12, 13]]),
        # TSM with num_segments=4: each crop's segments; 3-D with clip_len=2: clip by clip.
        (4, [[0, 1, 2, 3], [10, 11, 12, 13]]),
        (2, [[0, 1], [2, 3], [10, 11], [12, 13]]),
    ],
)
def test_views_group_frames_as_mmaction2_does(frames_per_view, views) -> None:
    module = make(Fixed(torch.zeros(4, 3)), frames_per_view=frames_per_view)
    grouped = module.to_views(frame_ids(2, 2, 4))  # (B, V, T, 1, 1, 1)
    assert grouped[0].flatten(1).tolist() == views
    assert grouped[1].flatten(1).tolist() == [[v + 100 for v in view] for view in views]


def test_frames_that_do_not_fill_whole_views_are_refused() -> None:
    module = make(Fixed(torch.zeros(4, 3)), frames_per_view=8)
    with pytest.raises(ValueError, match=r"model.frames_per_view=8 does not divide the 12"):
        module(torch.zeros(1, 3, 12, 3, 4, 4, dtype=torch.uint8))


def test_training_refuses_a_clip_of_several_views() -> None:
    module = make(Fixed(torch.zeros(4, 3)), frames_per_view=2)
    batch = {"imgs": torch.zeros(1, 4, 3, 4, 4, dtype=torch.uint8), "label": torch.tensor([0])}
    with pytest.raises(ValueError, match=r"makes 2 views of model\.frames_per_view=2"):
        module.training_step(batch, 0)


class Clip3D(Fixed):
    input_layout = "NCTHW"


def test_a_3d_network_gets_channels_before_time() -> None:
    net = Clip3D(torch.zeros(6, 3))
    module = make(net, mean=(10.0, 20.0, 30.0), std=(1.0, 2.0, 5.0), frames_per_view=2)
    imgs = torch.full((1, 3, 4, 3, 5, 6), 50, dtype=torch.uint8)  # 3 crops x 2 clips of 2
    imgs[..., 1, :, :] = 60  # green
    module(imgs)
    (x,) = net.seen
    assert x.shape == (6, 3, 2, 5, 6)  # (views, C, T, H, W)
    assert x[0, :, 0, 0, 0].tolist() == [40.0, 20.0, 4.0]


def test_channels_last_3d_for_a_3d_network() -> None:
    net = Clip3D(torch.zeros(2, 3))
    net.conv = nn.Conv3d(3, 4, 1)
    module = make(net, frames_per_view=2, channels_last=True)
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    module(torch.zeros(1, 4, 3, 5, 6, dtype=torch.uint8))
    assert net.seen[0].is_contiguous(memory_format=torch.channels_last_3d)


def test_average_clips_none_refuses_several_views() -> None:
    module = make(Fixed(VIEW_SCORES), average_clips=None, frames_per_view=1)
    with pytest.raises(ValueError, match="average_clips=score or prob"):
        module(torch.zeros(1, 2, 1, 3, 4, 4, dtype=torch.uint8))
    single = module(torch.zeros(1, 1, 1, 3, 4, 4, dtype=torch.uint8))
    torch.testing.assert_close(single, VIEW_SCORES[:1])


def test_views_go_through_the_network_in_chunks() -> None:
    net = Fixed(torch.zeros(10, 3))
    module = make(net, max_testing_views=4, frames_per_view=1)
    module(torch.zeros(2, 5, 1, 3, 4, 4, dtype=torch.uint8))  # 10 views
    assert [x.shape[0] for x in net.seen] == [4, 4, 2]


def test_mean_class_accuracy_counts_only_classes_present() -> None:
    # rows: true class. Class 0: 3/4 right, class 1: 1/2, class 2 never appears but is predicted.
    confmat = torch.tensor([[3, 0, 1], [1, 1, 0], [0, 0, 0]])
    assert mean_class_accuracy(confmat).item() == pytest.approx((0.75 + 0.5) / 2)


def test_validation_logs_the_metric_keys() -> None:
    torch.manual_seed(0)
    from actionrec.models.backbones import SimpleCNN
    from actionrec.models.heads import TSNHead
    from actionrec.models.recognizers import TSN

    net = TSN(SimpleCNN(channels=(4,)), TSNHead(6, in_channels=4))
    module = make(net, topk=(1, 5, 10))
    assert module.topk == (1, 5)  # k above the class count is dropped
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    batch = {
        "imgs": torch.randint(0, 255, (4, 3, 3, 8, 8), dtype=torch.uint8),
        "label": torch.tensor([0, 1, 2, 3]),
    }
    module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    assert set(logged) == {"val/loss", "val/top1", "val/top5", "val/mean_class_acc"}
    assert 0.0 <= float(logged["val/top1"]) <= float(logged["val/top5"]) <= 1.0


def test_configure_optimizers_skips_frozen_parameters() -> None:
    net = Fixed(torch.zeros(1, 3))
    net.frozen = nn.Parameter(torch.zeros(2), requires_grad=False)
    sched = functools.partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[40, 80])
    module = Recognizer(net, optimizer=functools.partial(torch.optim.SGD, lr=0.01), scheduler=sched)
    (optimizer,), (scheduler,) = module.configure_optimizers()
    params = optimizer.param_groups[0]["params"]
    assert len(params) == 1 and params[0] is net.w
    assert scheduler["interval"] == "epoch"


def test_bad_average_clips() -> None:
    with pytest.raises(ValueError, match="average_clips='mean'"):
        make(Fixed(VIEW_SCORES), average_clips="mean")


@pytest.mark.parametrize("max_steps", [-1, 3])
def test_warmup_scales_the_lr_up_by_optimizer_steps(tmp_path, max_steps) -> None:
    import lightning as L
    from torch.utils.data import DataLoader

    from actionrec.models.backbones import SimpleCNN
    from actionrec.models.heads import TSNHead
    from actionrec.models.recognizers import TSN

    class Record(L.Callback):
        def __init__(self) -> None:
            self.lrs: list[float] = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            self.lrs.append(optimizer.param_groups[0]["lr"])

    data = [
        {
            "imgs": torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8),
            "label": torch.tensor(i % 3),
        }
        for i in range(8)
    ]
    net = TSN(SimpleCNN(channels=(4,)), TSNHead(3, in_channels=4))
    module = Recognizer(
        net,
        optimizer=functools.partial(torch.optim.SGD, lr=1.0),
        warmup=LinearWarmup(epochs=1, start_factor=0.25),
    )
    record = Record()
    trainer = L.Trainer(
        max_epochs=2,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[record],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(data, batch_size=2))
    # 4 steps per epoch: 0.25 + 0.75 * k/4 at step k = 0..3 (mmaction2's LinearLR by
    # iterations), then the plain lr; a run cut short by max_steps warms up the same way.
    expected = [0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0, 1.0, 1.0, 1.0]
    steps = len(record.lrs)
    assert record.lrs == pytest.approx(expected[:steps])
    assert steps == (8 if max_steps == -1 else max_steps)
    # The optimizer holds the lr of the next step: what the logs show is what is used.
    assert module.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(expected[steps])


def test_multi_label_uses_bce_and_reports_map_and_hit_at_one() -> None:
    from actionrec.models.backbones import SimpleCNN
    from actionrec.models.heads import TSNHead
    from actionrec.models.recognizers import TSN

    net = TSN(SimpleCNN(channels=(4,)), TSNHead(4, in_channels=4))
    module = make(net, multi_label=True)
    assert isinstance(module.loss_fn, nn.BCEWithLogitsLoss)
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    batch = {
        "imgs": torch.randint(0, 255, (3, 2, 3, 8, 8), dtype=torch.uint8),
        "label": torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]),
    }
    assert module.training_step(batch, 0).dim() == 0
    module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    assert set(logged) >= {"val/loss", "val/top1", "val/mAP"}
    assert "val/mean_class_acc" not in logged


def test_hit_at_one_by_hand() -> None:
    from actionrec.metrics import HitAtOne

    metric = HitAtOne()
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.1, 0.7]])
    metric.update(scores, torch.tensor([[1, 0, 1], [1, 1, 0]]))  # hit, miss
    assert metric.compute().item() == 0.5


class Pooled(nn.Module):
    """Features are each clip's mean pixel per channel: easy to compute by hand."""

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.calls = 0

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return imgs.mean(dim=(1, 3, 4))  # (B, T, C, H, W) -> (B, C)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(imgs))


def test_feature_extraction_averages_pooled_features_over_views() -> None:
    net = Pooled()
    module = make(net, mean=(0, 0, 0), std=(1, 1, 1), max_testing_views=2, frames_per_view=1)
    imgs = torch.zeros(2, 3, 1, 3, 2, 2, dtype=torch.uint8)  # (B=2, crops=3, T, C, H, W)
    imgs[0, 0] = 30  # video 0: one view of 30, two of 0 -> mean 10
    imgs[1, :, :, 1] = 6  # video 1: channel 1 at 6 in every view
    feats = module.extract_features(imgs)
    assert feats.tolist() == [[10.0, 10.0, 10.0], [0.0, 6.0, 0.0]]
    assert net.calls == 3  # 6 views in chunks of 2
    single = module.extract_features(imgs[:, 0])  # (B, T, C, H, W): one view
    assert single.tolist() == [[30.0, 30.0, 30.0], [0.0, 6.0, 0.0]]


def test_feature_extraction_needs_forward_features() -> None:
    module = make(Fixed(torch.zeros(1, 3)))
    with pytest.raises(ValueError, match="forward_features"):
        module.extract_features(torch.zeros(1, 1, 3, 2, 2, dtype=torch.uint8))


class HostReads(TorchFunctionMode):
    """Records tensor operations that read values back to the host or whose output shape
    depends on values: on a GPU each one waits for the queued kernels to finish."""

    READS = frozenset(
        {"__bool__", "item", "tolist", "__int__", "__float__", "__index__", "numpy", "cpu"}
    )
    DATA_DEPENDENT = frozenset(
        {"unique", "unique_consecutive", "nonzero", "masked_select", "bincount"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", repr(func))
        bool_index = name == "__getitem__" and any(
            isinstance(a, torch.Tensor) and a.dtype == torch.bool for a in args[1:]
        )
        if name in self.READS | self.DATA_DEPENDENT or bool_index:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


class WatchBatches(L.Callback):
    """Watches batches 1 and 2 of a training or validation loop whole: from one batch's start to
    the next one's, so Lightning's work after a batch (its logger connector turns progress-bar
    values into numbers) counts."""

    def __init__(self, reads: HostReads) -> None:
        self.reads, self.active = reads, False

    def _next(self, batch_idx: int) -> None:
        if self.active:
            self.reads.__exit__(None, None, None)
            self.active = False
        if batch_idx in (1, 2):
            self.reads.__enter__()
            self.active = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._next(batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._next(batch_idx)


def tiny_run(multi_label: bool) -> tuple[Recognizer, DataLoader]:
    """A 5-class TSN of one conv block, and 4 batches of 2 clips for it."""
    from actionrec.models.backbones import SimpleCNN
    from actionrec.models.heads import TSNHead
    from actionrec.models.recognizers import TSN

    torch.manual_seed(0)
    net = TSN(SimpleCNN(channels=(4,)), TSNHead(5, in_channels=4))
    module = make(net, multi_label=multi_label, topk=(1, 5))
    label = (
        torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 0, 0, 0]]) if multi_label else torch.tensor([3, 1])
    )
    batch = {"imgs": torch.randint(0, 255, (2, 2, 3, 8, 8), dtype=torch.uint8), "label": label}
    return module, DataLoader([batch] * 4, batch_size=None)


@pytest.mark.parametrize("multi_label", [False, True])
def test_training_steps_never_wait_for_the_device(tmp_path, multi_label) -> None:
    """Whole steps under a real Trainer: the Recognizer's step, its metrics and their logging,
    backward, the optimizer, and what Lightning does between steps."""
    module, loader = tiny_run(multi_label)
    reads = HostReads()
    watch = WatchBatches(reads)
    trainer = L.Trainer(
        max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[watch],
        gradient_clip_val=40,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 4 and not watch.active
    assert reads.seen == []


@pytest.mark.parametrize("multi_label", [False, True])
def test_validation_steps_wait_for_the_device_once(tmp_path, multi_label) -> None:
    module, loader = tiny_run(multi_label)
    reads = HostReads()
    watch = WatchBatches(reads)
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, callbacks=[watch],
    )  # fmt: skip
    (results,) = trainer.validate(module, loader)
    assert "val/top1" in results and not watch.active
    # One read per batch is left, inside TorchMetrics: the confusion matrix counts with
    # torch.bincount, and mAP checks whether the scores are probabilities or logits.
    assert reads.seen == (["__bool__"] if multi_label else ["bincount"]) * 2


def test_eval_loss_is_a_mean_over_videos_however_batched() -> None:
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 3.0]])
    module = make(Fixed(scores))
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    labels = torch.tensor([0, 2, 1]), torch.tensor([1])
    for label in labels:  # batches of 3 videos and of 1
        imgs = torch.zeros(len(label), 1, 3, 2, 2, dtype=torch.uint8)
        module.validation_step({"imgs": imgs, "label": label}, 0)
    first = torch.nn.functional.cross_entropy(scores, labels[0])
    second = torch.nn.functional.cross_entropy(scores[:1], labels[1])
    expected = (3 * first + second) / 4
    torch.testing.assert_close(module.val_loss.compute(), expected)


def test_setup_refuses_a_head_with_another_num_classes(tmp_path) -> None:
    module = make(Fixed(torch.zeros(4, 3)))
    data = L.LightningDataModule()
    data.num_classes = 5
    data.train_dataloader = lambda: DataLoader(
        [{"imgs": torch.zeros(1, 1, 3, 2, 2)}], batch_size=None
    )
    trainer = L.Trainer(max_steps=1, logger=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=r"data.num_classes=5 but the model's head has 3"):
        trainer.fit(module, datamodule=data)
