"""Write the values of mmaction2 1.x recipes that our experiments mirror to
``tests/fixtures/mmaction2/lr_schedules.json``: the optimizer, the per-epoch lr factors of its
``param_scheduler`` as mmengine computes them, the pretrained weights, the sampling of each split
and the test crops.

Run with the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmengine_lr_schedules.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import PARAM_SCHEDULERS

CONFIGS = {
    "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb": "tsm",
    "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb": "slowonly",
    "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb": "i3d",
    "tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb": "tsn",
    "r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb": "r2plus1d",
    "mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb": "mvit",
    "slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb": "slowfast",
}
# Iterations an epoch, for the schedulers mmengine converts to iterations
# (``convert_to_iter_based``); the lr is recorded at each epoch's first iteration.
EPOCH_LENGTH = 100
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mmaction2" / "lr_schedules.json"


def factors(cfg: Config) -> list[float]:
    """The lr of each epoch over the base lr under ``cfg.param_scheduler`` (run at the config's
    lr: an ``eta_min`` is absolute)."""
    param = torch.nn.Parameter(torch.zeros(1))
    base = cfg.optim_wrapper.optimizer.lr
    optimizer = torch.optim.SGD([param], lr=base)
    by_epoch, by_iter = [], []
    for s in cfg.param_scheduler:
        s = dict(s)
        if s.pop("convert_to_iter_based", False):  # as mmengine's runner builds it
            cls = PARAM_SCHEDULERS.get(s.pop("type"))
            by_iter.append(cls.build_iter_from_epoch(optimizer, epoch_length=EPOCH_LENGTH, **s))
        else:
            by_epoch.append(PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer)))
    out = []
    for _ in range(cfg.train_cfg.max_epochs):
        out.append(optimizer.param_groups[0]["lr"] / base)
        for _ in range(EPOCH_LENGTH if by_iter else 0):
            for scheduler in by_iter:
                scheduler.step()
        for scheduler in by_epoch:
            scheduler.step()
    return out


def step(pipeline: list, kind: str) -> dict:
    """The arguments of the first transform of ``kind`` in ``pipeline`` (without its type)."""
    found = next(t for t in pipeline if t["type"] == kind)
    return {k: v for k, v in found.items() if k != "type"}


def sampling(pipeline: list) -> list:
    """``[clip_len, frame_interval, num_clips]`` of the pipeline's ``SampleFrames``."""
    args = step(pipeline, "SampleFrames")
    return [args["clip_len"], args.get("frame_interval", 1), args.get("num_clips", 1)]


def test_crop(pipeline: list) -> list:
    """``[type, crop_size]`` of the test pipeline's multi-view or centre crop."""
    crop = next(t for t in pipeline if t["type"] in ("TenCrop", "ThreeCrop", "CenterCrop"))
    return [crop["type"], crop["crop_size"]]


def main() -> None:
    import mmaction.engine

    root = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition"
    result = {"mmaction2": mmaction.__version__}
    for name, family in CONFIGS.items():
        cfg = Config.fromfile(root / family / f"{name}.py")
        result[name] = {
            "lr": cfg.optim_wrapper.optimizer.lr,
            "momentum": cfg.optim_wrapper.optimizer.get("momentum"),
            "betas": cfg.optim_wrapper.optimizer.get("betas"),
            "paramwise_cfg": cfg.optim_wrapper.get("paramwise_cfg"),
            "weight_decay": cfg.optim_wrapper.optimizer.weight_decay,
            "clip_grad": cfg.optim_wrapper.get("clip_grad", {}).get("max_norm"),
            "fc_lr5": cfg.optim_wrapper.get("paramwise_cfg", {}).get("fc_lr5", False),
            "max_epochs": cfg.train_cfg.max_epochs,
            "val_interval": cfg.train_cfg.get("val_interval", 1),
            "checkpoint_interval": cfg.default_hooks.checkpoint.interval,
            "batch_size": [
                cfg.train_dataloader.batch_size,
                cfg.val_dataloader.batch_size,
                cfg.test_dataloader.batch_size,
            ],
            "pretrained": cfg.model.backbone.get("pretrained"),
            "average_clips": cfg.model.cls_head.get("average_clips"),
            "sampling": {
                split: sampling(cfg[f"{split}_dataloader"].dataset.pipeline)
                for split in ("train", "val", "test")
            },
            "test_crop": test_crop(cfg.test_dataloader.dataset.pipeline),
            "lr_factors": factors(cfg),
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
