"""Each model family trains with its mmaction2 recipe (optimizer, schedule, parameter groups) on
the toy data, on two CPU processes under DDP, and its checkpoint evaluates on one.

The recipes' frame counts and 224 px crops are scaled down to the toy's protocol (64 px) so that a
ResNet-50 step takes well under a second here; what is tested is the recipe's code path.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.conftest import ROOT, toy_overrides

# The recipe, and the toy protocol's sampling resized to a clip each family takes.
FAMILIES = {
    "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb": [
        "data.test_num_clips=6",
        "model.frames_per_view=3",  # test: two views per crop, the shift within each 3 segments
    ],
    "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb": [
        "data.clip_len=8",
        "data.frame_interval=2",
        "data.num_clips=1",
        "data.test_num_clips=2",
        "model.frames_per_view=8",  # one view per clip and crop, as Recognizer3D
    ],
    "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb": [
        "data.clip_len=4",
        "data.frame_interval=4",
        "data.num_clips=1",
        "data.test_num_clips=2",
        "model.frames_per_view=4",
    ],
    "r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb": [
        "data.clip_len=8",
        "data.frame_interval=2",
        "data.num_clips=1",
        "data.test_num_clips=2",
        "model.frames_per_view=8",
        "trainer.sync_batchnorm=false",  # torch syncs BatchNorm on GPUs only, not under gloo
    ],
    "x3d_s_13x6x1_facebook-kinetics400-rgb": [  # its training side is SlowFast's, not mmaction2's
        "data.clip_len=4",
        "data.frame_interval=2",
        "data.num_clips=1",
        "data.test_num_clips=2",
        "model.frames_per_view=4",
    ],
    "tv_r2plus1d_18_references-8xb24-16x1x1-45e_kinetics400": [
        "data.clip_len=4",
        "data.frame_interval=1",
        "data.num_clips=1",
        "data.test_num_clips=2",
        "model.frames_per_view=4",
    ],
    "mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb": [
        "data.clip_len=4",
        "data.frame_interval=2",
        "data.num_clips=1",
        "data.test_num_clips=2",
        "model.frames_per_view=4",
        # the reference script's reduced MViT (same structure), at the toy's 64 px crops
        "model.net.arch={embed_dims:16,num_layers:5,num_heads:1,downscale_indices:[1,2,4]}",
        "model.net.spatial_size=64",
    ],
    "slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb": [
        "data.clip_len=8",  # tau 8: the slow pathway reads 1 frame, the fast all 8
        "data.frame_interval=1",
        "data.num_clips=1",
        "data.test_num_clips=2",
        "model.frames_per_view=8",
    ],
    "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400": [
        "data.clip_len=4",
        "data.frame_interval=2",
        "data.num_clips=1",
        "data.test_num_clips=2",
        "model.frames_per_view=4",
        "model.net.backbone.img_size=64",  # a small ViT on the toy's 64 px crops
        "model.net.backbone.embed_dims=64",
        "model.net.backbone.depth=2",
        "model.net.backbone.num_heads=2",
        "model.net.head.in_channels=64",
    ],
}
# Recipes trained from scratch: no pretrained weights to switch off.
FROM_SCRATCH = {
    "mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb",
    "tv_r2plus1d_18_references-8xb24-16x1x1-45e_kinetics400",  # backbone.weights: null already
}
SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data.videos_per_gpu=2",
    "data.val_videos_per_gpu=2",
    "data.test_videos_per_gpu=2",
]


def run(args: list[str], timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


# Runs of minutes on 2 CPU cores, in the slow set: I3D (it shares SlowOnly's backbone, head and
# network classes), R(2+1)D R34 at 8 frames (2 min), X3D-S (its depthwise 3-D backward, 4 min),
# MViT (two processes, each a minute), torchvision's R(2+1)D-18,
# SlowFast (two ResNet-50 pathways), VideoMAE (6 min).
SLOW = {
    "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb",
    "r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb",
    "x3d_s_13x6x1_facebook-kinetics400-rgb",
    "mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb",
    "tv_r2plus1d_18_references-8xb24-16x1x1-45e_kinetics400",
    "slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb",
    "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400",
}


@pytest.mark.parametrize(
    "recipe", [pytest.param(r, marks=pytest.mark.slow) if r in SLOW else r for r in FAMILIES]
)
def test_the_recipe_trains_under_ddp(recipe, toy_root, tmp_path) -> None:
    result = run(
        [
            "src/train.py",
            f"experiment={recipe}",
            "data=toy",
            "protocol=toy",
            *toy_overrides(toy_root),
            *FAMILIES[recipe],
            *SHORT,
            *([] if recipe in FROM_SCRATCH else ["model.net.backbone.pretrained=null"]),
            "trainer=ddp_cpu",
            f"paths.log_dir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / recipe / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["train/loss"]) and 0 <= metrics["val/top1"] <= 1

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    cfg = ckpt["run_config"]
    base_lr = cfg["optim"]["lr"]
    initial = sorted((round(g["initial_lr"] / base_lr, 6), g["weight_decay"]) for g in groups)
    if "tsm" in recipe:  # TSMOptimWrapperConstructor(fc_lr5); ResNet convs have no biases
        assert initial == [(1, 0), (1, 1e-4), (5, 1e-4), (10, 0)]
    elif "x3d" in recipe:  # SlowFast's X3D_S weight decay
        assert initial == [(1.0, 5e-5)]
    elif "mvit" in recipe:  # auto_scale_lr: 2 videos x 2 processes / 256; no decay on norms, biases
        assert initial == [(1 / 64, 0), (1 / 64, 0), (1 / 64, 0.05)]
    elif "videomae" in recipe:  # layer decay 0.75 over 2 blocks, lr x 2 x 2 videos / 256
        scales = [0.75 ** (3 - layer) * 4 / 256 for layer in range(4)]
        assert initial == sorted((round(s, 6), wd) for s in scales for wd in (0, 0.05))
    else:
        assert initial == [(1.0, 1e-4)]
    assert all(g.get("momentum", 0.9) == 0.9 for g in groups)

    # The DDP checkpoint tests on one process with the family's view layout.
    out = tmp_path / "scores.npz"
    single = run(
        [
            "src/eval.py",
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"paths.log_dir={tmp_path / 'eval'}",
            f"out={out}",
        ]
    )
    assert single.returncode == 0, single.stderr[-3000:]
    with np.load(out) as scores:
        listed = len((toy_root / "val_list_videos.txt").read_text().splitlines())
        assert scores["scores"].shape == (listed, cfg["data"]["num_classes"])
        np.testing.assert_allclose(scores["scores"].sum(1), 1.0, rtol=1e-5)  # average_clips=prob


def test_every_family_has_a_recipe_here() -> None:
    models = {p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")}
    # The model each recipe overrides (a recipe's name need not start with its model's).
    experiments = [(ROOT / "conf" / "experiment" / f"{r}.yaml").read_text() for r in FAMILIES]
    used = [re.search(r"override /model: (\S+)", text).group(1) for text in experiments]
    named = {model.split("_")[0] for model in used} | {"tsn"}
    assert {m.split("_")[0] for m in models} <= named, "add the new family to FAMILIES"
