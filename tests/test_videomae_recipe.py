"""``experiment=vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400`` carries mmaction2's test side
(``tests/fixtures/mmaction2/videomae_recipe.json``, read by mmengine in
``scripts/mmaction2_vit_reference.py``) and a cosine decay equal to mmengine's."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate
from tests.fixtures.mmaction2.weights import FIXTURES

from actionrec.optim import CosineAfterWarmup

NAME = "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400"
REF = json.loads((FIXTURES / "videomae_recipe.json").read_text())


def test_the_test_side_is_mmaction2s(compose_train) -> None:
    cfg = compose_train(f"experiment={NAME}")
    assert cfg.task_name == NAME
    backbone = cfg.model.net.backbone
    for key in ("img_size", "patch_size", "embed_dims", "depth", "num_heads", "num_frames"):
        assert backbone[key] == REF["backbone"][key], key
    assert backbone.qkv_bias == REF["backbone"]["qkv_bias"]
    assert cfg.model.net.head.in_channels == REF["cls_head"]["in_channels"]
    assert cfg.model.average_clips == REF["cls_head"]["average_clips"]
    assert list(cfg.model.mean) == REF["preprocessor"]["mean"]
    assert list(cfg.model.std) == REF["preprocessor"]["std"]
    steps = {t["type"]: t for t in REF["test_pipeline"]}
    data = cfg.data
    sampling = [data.clip_len, data.frame_interval, data.test_num_clips]
    assert sampling == [
        steps["SampleFrames"][k] for k in ("clip_len", "frame_interval", "num_clips")
    ]
    resize, crop = data.test_pipeline
    assert list(resize.scale) == steps["Resize"]["scale"]
    assert crop._target_.endswith("ThreeCrop") and crop.crop_size == steps["ThreeCrop"]["crop_size"]
    assert data.test_videos_per_gpu == REF["test_batch_size"]


def test_the_decay_after_warmup_is_mmengines_cosine(compose_train) -> None:
    cfg = compose_train(f"experiment={NAME}")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = instantiate(cfg.optim.optimizer)(params=[param], lr=1.0)
    scheduler = instantiate(cfg.optim.scheduler)(optimizer=optimizer)
    lrs = []
    for _ in range(cfg.trainer.max_epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx(REF["cosine_factors"], rel=1e-9)
    # It ends at VideoMAE's --min_lr: the cosine's last epoch is the run's.
    assert scheduler.begin + scheduler.T_max == cfg.trainer.max_epochs
    assert scheduler.factor(cfg.trainer.max_epochs) == pytest.approx(0.002)


def test_a_wrong_schedule_is_refused() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="begin=-1 >= 0"):
        CosineAfterWarmup(optimizer, T_max=70, begin=-1)
