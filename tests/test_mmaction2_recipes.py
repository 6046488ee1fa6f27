"""Each ``experiment=`` named after an mmaction2 1.x config carries that config's values.

The expected values come from mmaction2 itself: ``scripts/mmengine_lr_schedules.py`` reads the
configs with mmengine and runs their ``param_scheduler`` in the throwaway environment, writing
``tests/fixtures/mmaction2/lr_schedules.json`` (CI has no mmaction2; the fixture travels).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from tests.conftest import ROOT
from torchvision.models import ResNet50_Weights

from actionrec.optim import WarmupMultiStep

FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "mmaction2" / "lr_schedules.json").read_text())
RECIPES = [
    "tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb",
    "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb",
    "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb",
    "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb",
    "r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb",
]
# mmaction2 names torchvision's V1 ImageNet weights torchvision://resnet50 and the V2 ones by URL.
TORCHVISION_PREFIX = "torchvision://"


def weights_file(pretrained: str | None) -> str | None:
    """The file name of ImageNet ResNet-50 weights, named as we or mmaction2 name them."""
    if pretrained is None:  # from scratch
        return None
    if pretrained.startswith(TORCHVISION_PREFIX):
        pretrained = "IMAGENET1K_V1"
    if "/" in pretrained:
        return pretrained.rsplit("/", 1)[-1]
    return Path(ResNet50_Weights[pretrained].url).name


def lr_per_epoch(cfg, epochs: int) -> list[float]:
    """The lr of each epoch that the experiment's optimizer and scheduler give."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = instantiate(cfg.optim.optimizer)(params=[param])
    scheduler = instantiate(cfg.optim.scheduler)(optimizer=optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("name", RECIPES)
def test_the_recipe_has_mmaction2s_values(compose_train, name) -> None:
    cfg = compose_train(f"experiment={name}")
    ref = FIXTURE[name]
    assert cfg.task_name == name
    assert cfg.optim.optimizer.lr == ref["lr"]
    assert cfg.optim.optimizer.momentum == ref["momentum"]
    assert cfg.optim.optimizer.weight_decay == ref["weight_decay"]
    assert cfg.trainer.gradient_clip_val == ref["clip_grad"]
    assert (cfg.optim.get("param_groups") is not None) == ref["fc_lr5"]
    assert cfg.trainer.max_epochs == ref["max_epochs"]
    assert cfg.trainer.check_val_every_n_epoch == ref["val_interval"]
    assert cfg.callbacks.checkpoints.every_n_epochs == ref["checkpoint_interval"]
    data = cfg.data
    batches = [data.videos_per_gpu, data.val_videos_per_gpu, data.test_videos_per_gpu]
    assert batches == ref["batch_size"]
    assert cfg.optim.warmup_epochs == 0  # any warmup is the scheduler's, by epoch
    assert weights_file(cfg.model.net.backbone.pretrained) == weights_file(ref["pretrained"])
    assert cfg.model.average_clips == ref["average_clips"]
    sampling = [data.clip_len, data.frame_interval, data.num_clips]
    assert sampling == ref["sampling"]["train"] == ref["sampling"]["val"]
    assert [*sampling[:2], data.test_num_clips] == ref["sampling"]["test"]
    crop = data.test_pipeline[-1]
    assert [crop._target_.rsplit(".", 1)[-1], crop.crop_size] == ref["test_crop"]
    expected = [ref["lr"] * f for f in ref["lr_factors"]]
    assert lr_per_epoch(cfg, ref["max_epochs"]) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "schedule"),
    [
        (
            "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb",
            dict(warmup_epochs=5, start_factor=0.1, milestones=[25, 45]),
        ),
        (
            "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb",
            dict(warmup_epochs=10, start_factor=0.1, milestones=[90, 130], milestones_from=10),
        ),
    ],
)
def test_warmup_multistep_is_mmengines_schedule(name, schedule) -> None:
    # mmengine's LinearLR counts its end exclusively and MultiStepLR its milestones from begin.
    factors = FIXTURE[name]["lr_factors"]
    ours = WarmupMultiStep(**schedule)
    assert [ours(e) for e in range(len(factors))] == pytest.approx(factors, rel=1e-9)


def test_warmup_multistep_refuses_a_bad_start() -> None:
    with pytest.raises(ValueError, match="start_factor=0"):
        WarmupMultiStep(5, 0.0, [10])


MVIT = "mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb"
MVIT_EPOCH_LENGTH = 100  # scripts/mmengine_lr_schedules.py's EPOCH_LENGTH (every recipe's)


def test_the_mvit_recipe_has_mmaction2s_values(compose_train) -> None:
    cfg = compose_train(f"experiment={MVIT}")
    ref = FIXTURE[MVIT]
    optimizer, data = cfg.optim.optimizer, cfg.data
    assert optimizer._target_ == "torch.optim.AdamW"
    assert (optimizer.lr, list(optimizer.betas)) == (ref["lr"], ref["betas"])
    assert optimizer.weight_decay == ref["weight_decay"]
    assert cfg.optim.param_groups.norm_decay_mult == ref["paramwise_cfg"]["norm_decay_mult"]
    assert cfg.optim.param_groups.bias_decay_mult == ref["paramwise_cfg"]["bias_decay_mult"]
    assert cfg.trainer.gradient_clip_val == ref["clip_grad"]
    assert cfg.trainer.max_epochs == ref["max_epochs"]
    assert cfg.trainer.check_val_every_n_epoch == ref["val_interval"]
    assert cfg.callbacks.checkpoints.every_n_epochs == ref["checkpoint_interval"]
    batches = [data.videos_per_gpu, data.val_videos_per_gpu, data.test_videos_per_gpu]
    assert batches == ref["batch_size"]


def lr_per_epoch_with_warmup(cfg, epochs: int, steps: int) -> list[float]:
    """The lr at the start of each epoch of ``steps`` optimizer steps, the warmup stepped every
    step and the scheduler every epoch, as the LightningModule steps them."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = instantiate(cfg.optim.optimizer)(params=[param])
    warmup = instantiate(cfg.optim.warmup)(optimizer, lambda: steps)
    scheduler = instantiate(cfg.optim.scheduler)(optimizer=optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        for _ in range(steps):
            optimizer.step()
            warmup.step()
        scheduler.step()
    return lrs


def test_the_slowfast_recipe_has_mmaction2s_values(compose_train) -> None:
    # Its warmup is by iterations (convert_to_iter_based), so it is ours (optim.warmup), stepped
    # as mmengine's runner steps it over epochs of the fixture's EPOCH_LENGTH iterations.
    name = "slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb"
    cfg = compose_train(f"experiment={name}")
    ref = FIXTURE[name]
    assert cfg.task_name == name
    optimizer = cfg.optim.optimizer
    assert [optimizer.lr, optimizer.momentum, optimizer.weight_decay] == [
        ref["lr"],
        ref["momentum"],
        ref["weight_decay"],
    ]
    assert cfg.trainer.gradient_clip_val == ref["clip_grad"]
    assert cfg.optim.get("param_groups") is None and not ref["fc_lr5"]
    assert cfg.trainer.max_epochs == ref["max_epochs"]
    assert cfg.trainer.check_val_every_n_epoch == ref["val_interval"]
    assert cfg.callbacks.checkpoints.every_n_epochs == ref["checkpoint_interval"]
    data = cfg.data
    batches = [data.videos_per_gpu, data.val_videos_per_gpu, data.test_videos_per_gpu]
    assert batches == ref["batch_size"]
    assert cfg.model.net.backbone.pretrained is None and ref["pretrained"] is None
    expected = [ref["lr"] * f for f in ref["lr_factors"]]
    ours = lr_per_epoch_with_warmup(cfg, ref["max_epochs"], steps=MVIT_EPOCH_LENGTH)
    assert ours == pytest.approx(expected, rel=1e-9)
    assert cfg.model.average_clips == ref["average_clips"]
    sampling = [data.clip_len, data.frame_interval, data.num_clips]
    assert sampling == ref["sampling"]["train"] == ref["sampling"]["val"]
    assert [*sampling[:2], data.test_num_clips] == ref["sampling"]["test"]
    crop = data.test_pipeline[-1]
    assert [crop._target_.rsplit(".", 1)[-1], crop.crop_size] == ref["test_crop"]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_the_mvit_lr_is_mmengines_per_iteration_schedule(compose_train) -> None:
    """Warmup per step (mmengine's iteration-based LinearLR) and the cosine per epoch give
    mmengine's lr at the first step of every epoch (the warmup's exclusive_end: mmengine's
    LinearLR reaches 1 one step before its end)."""
    cfg = compose_train(f"experiment={MVIT}")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = instantiate(cfg.optim.optimizer)(params=[param])
    warmup = instantiate(cfg.optim.warmup)(optimizer, lambda: MVIT_EPOCH_LENGTH)
    scheduler = instantiate(cfg.optim.scheduler)(optimizer=optimizer)
    lrs = []
    for _ in range(cfg.trainer.max_epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        for _ in range(MVIT_EPOCH_LENGTH):
            warmup.step()
        scheduler.step()
    expected = [FIXTURE[MVIT]["lr"] * f for f in FIXTURE[MVIT]["lr_factors"]]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_the_mvit_weight_decay_per_parameter_is_mmengines(compose_train) -> None:
    from actionrec.models.mvit import MViTv2
    from actionrec.optim import apply_multipliers

    cfg = compose_train(f"experiment={MVIT}")
    toy = {"embed_dims": 16, "num_layers": 5, "num_heads": 1, "downscale_indices": [1, 2, 4]}
    net = MViTv2(5, arch=toy, spatial_size=64, temporal_size=8)  # the fixture's reduced model
    optimizer = instantiate(cfg.optim.optimizer)(params=instantiate(cfg.optim.param_groups)(net))
    apply_multipliers(optimizer)
    ours = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    names = {n: torch.tensor(float(ours[id(p)])) for n, p in net.named_parameters()}
    ref = json.loads((ROOT / "tests/fixtures/mmaction2/mvit_toy_weight_decay.json").read_text())
    expected = net.convert_mmaction_state_dict({k: torch.tensor(v) for k, v in ref.items()})
    assert {k: float(v) for k, v in names.items()} == {
        k: float(v.reshape(())) for k, v in expected.items()
    }
