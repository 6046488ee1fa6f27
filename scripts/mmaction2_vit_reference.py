"""Write what mmaction2's VideoMAE ViT computes, as test fixtures for ``actionrec.models.vit``
(``tests/models/test_vit.py``).

Run with the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmaction2_vit_reference.py

From mmaction2's ``videomae/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400`` model (5
classes, nothing downloaded), at two sizes: ``vit_small`` (img 32, depth 2, width 64, 2 heads,
4 frames: the structure, fast) and ``vit_b16`` (the config itself). To
``tests/fixtures/mmaction2/``:

- ``videomae_{size}_keys.json``: the recognizer's state-dict keys and shapes, in mmaction2's order;
- ``videomae_{size}_outputs.npz``: in eval mode, under seeded stand-in weights (``weights.py``,
  seed 0), for ``randn`` inputs (torch's CPU generator, seed 0) at the native size
  (``input_shape``) and at a larger one whose position table is resized (``resized_shape``): the
  logits and the pooled features; and (small only) ``pos_embed``, the fixed sinusoidal table
  that both keep in place of a seeded stand-in;
- ``videomae_{size}_param_groups.json``: per parameter, the ``lr_scale`` and ``weight_decay``
  that mmaction2's ``LearningRateDecayOptimizerConstructor`` gives it (AdamW, weight decay 0.05,
  ``decay_rate`` 0.75, ``num_layers`` = depth, as its VideoMAE detection configs set it);
- ``videomae_recipe.json``: the config's test side as mmengine reads it (backbone, head,
  normalization, test pipeline and batch), and the per-epoch lr factors of mmengine's
  ``CosineAnnealingLR(begin=5, end=75, T_max=70, eta_min=0.002)`` (base lr 1): VideoMAE's
  fine-tuning decay as mmaction2's VideoMAE AVA configs chain it after the warmup.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mmaction2"
CONFIG = "videomae/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400"
NUM_CLASSES = 5
WEIGHT_DECAY = 0.05
DECAY_RATE = 0.75
# size: (backbone overrides, native input (B, C, T, H, W), resized input)
SIZES = {
    "vit_small": (
        dict(img_size=32, embed_dims=64, depth=2, num_heads=2, num_frames=4),
        (2, 3, 4, 32, 32),
        (2, 3, 4, 48, 64),
    ),
    "vit_b16": ({}, (1, 3, 16, 224, 224), (1, 3, 16, 64, 96)),
}


def load_weights_module():
    spec = importlib.util.spec_from_file_location("weights", FIXTURES / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub_missing_drn() -> None:
    """mmaction2 1.2.0's wheel lacks ``localizers/drn``; a stand-in lets the models import."""
    for name in ("mmaction.models.localizers.drn", "mmaction.models.localizers.drn.drn"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["mmaction.models.localizers.drn.drn"].DRN = None


def build(model_cfg, overrides: dict):
    from mmaction.registry import MODELS

    cfg = Config(dict(model=copy.deepcopy(model_cfg))).model
    cfg.backbone.update(overrides)
    cfg.cls_head.num_classes = NUM_CLASSES
    cfg.cls_head.in_channels = cfg.backbone.embed_dims
    cfg.pop("data_preprocessor", None)
    return MODELS.build(cfg).eval()


def param_groups(model, depth: int) -> dict:
    """``{name: [lr_scale, weight_decay]}`` from mmaction2's layer-decay constructor."""
    from mmaction.engine.optimizers import LearningRateDecayOptimizerConstructor

    constructor = LearningRateDecayOptimizerConstructor(
        dict(optimizer=dict(type="AdamW", lr=1.0, weight_decay=WEIGHT_DECAY)),
        dict(decay_rate=DECAY_RATE, decay_type="layer_wise", num_layers=depth),
    )
    groups = constructor(model).optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: [g["lr_scale"], g["weight_decay"]] for g in groups for p in g["params"]}


@torch.no_grad()
def reference(name: str, model_cfg, overrides: dict, shapes_in: tuple, weights) -> None:
    model = build(model_cfg, overrides)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items())
    (FIXTURES / f"videomae_{name}_keys.json").write_text("{\n" + lines + "\n}\n")
    state = weights.seeded_state_dict(shapes, seed=0)
    state["backbone.pos_embed"] = model.state_dict()["backbone.pos_embed"]  # a fixed table
    model.load_state_dict(state, strict=True)
    out = {}
    if name == "vit_small":  # ViT-B's table is 5 MB; the small one checks the formula
        out["pos_embed"] = state["backbone.pos_embed"].numpy()
    for label, shape in zip(("", "resized_"), shapes_in, strict=True):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        feats = model.backbone(x)  # (B, D)
        out[f"{label}input_shape"] = np.array(shape)
        out[f"{label}features"] = feats.numpy()
        out[f"{label}logits"] = model.cls_head(feats).numpy()
    np.savez(FIXTURES / f"videomae_{name}_outputs.npz", **out)
    with torch.enable_grad():
        groups = param_groups(model, model.backbone.blocks.__len__())
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in groups.items())
    (FIXTURES / f"videomae_{name}_param_groups.json").write_text("{\n" + lines + "\n}\n")
    print(f"{name}: logits {out['logits'][0][:3].tolist()}, {len(groups)} parameters grouped")


def recipe(config) -> dict:
    """The config's test-side values and mmengine's cosine-after-warmup factors."""
    from mmengine.registry import PARAM_SCHEDULERS

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    cosine = dict(type="CosineAnnealingLR", T_max=70, eta_min=0.002, by_epoch=True)
    scheduler = PARAM_SCHEDULERS.build(dict(cosine, begin=5, end=75, optimizer=optimizer))
    factors = []
    for _ in range(75):
        factors.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    test = config.test_dataloader
    return {
        "backbone": {k: v for k, v in config.model.backbone.items() if k != "type"},
        "cls_head": {k: v for k, v in config.model.cls_head.items() if k != "type"},
        "preprocessor": {k: config.model.data_preprocessor[k] for k in ("mean", "std")},
        "test_pipeline": [dict(t) for t in test.dataset.pipeline],
        "test_batch_size": test.batch_size,
        "cosine_factors": factors,
    }


def main() -> None:
    import mmaction

    stub_missing_drn()
    from mmaction.utils import register_all_modules

    register_all_modules()
    for logger in (MMLogger.get_instance("mmengine"), MMLogger.get_current_instance()):
        logger.setLevel(logging.WARNING)
    root = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition"
    config = Config.fromfile(root / f"{CONFIG}.py")
    model_cfg = config.model
    (FIXTURES / "videomae_recipe.json").write_text(json.dumps(recipe(config), indent=1) + "\n")
    weights = load_weights_module()
    only = sys.argv[1:] or list(SIZES)
    for name in only:
        overrides, native, resized = SIZES[name]
        reference(name, model_cfg, overrides, (native, resized), weights)
    print(f"wrote {FIXTURES} (mmaction2 {mmaction.__version__})")


if __name__ == "__main__":
    main()
