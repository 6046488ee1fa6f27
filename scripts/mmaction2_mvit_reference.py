"""Write what mmaction2's MViTv2 computes, as test fixtures for ``actionrec.models.mvit``
(``tests/models/test_mvit.py``).

Run with the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmaction2_mvit_reference.py

Builds the model of mmaction2's ``mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb`` config
(``num_classes`` 5, nothing downloaded), once as configured and once reduced (narrower, fewer
layers, a smaller input; the same structure: three downscales, k/v strides 8 -> 1), loads the
seeded stand-in weights of ``weights.py`` (seed 0) and scores ``randn(INPUT_SHAPE)`` (torch's
CPU generator, seed 0) in eval mode. It writes to ``tests/fixtures/mmaction2/``:

- ``{name}_keys.json``: the recognizer's state-dict keys and shapes, in mmaction2's order;
- ``{name}_outputs.npz``: the input shape, the logits ``(B, K)`` and the class-token features
  ``(B, D)``. Kilobytes: no weights are stored;
- ``mvit_toy_weight_decay.json``: the weight decay mmengine's optimizer constructor gives each
  parameter of the reduced model under the recipe's ``optim_wrapper`` (``paramwise_cfg``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from mmaction2_3d_reference import FIXTURES, load_weights_module, stub_missing_drn
from mmengine.config import Config
from mmengine.logging import MMLogger

CONFIG = "mvit/mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb"
NUM_CLASSES = 5
# name: (backbone overrides, input (B, C, T, H, W)). mvit_toy: 64 px gives 16x16 patches, so
# q pools 16 -> 8 -> 4 -> 2 while k/v stay 2x2 (strides 8, 4, 2, 1): q and k sizes differ, as
# in the full model's relative positions.
MODELS = {
    "mvit_toy": (
        dict(
            arch=dict(embed_dims=16, num_layers=5, num_heads=1, downscale_indices=[1, 2, 4]),
            spatial_size=64,
            temporal_size=8,
        ),
        (2, 3, 8, 64, 64),
    ),
    "mvit_v2_s": (dict(), (1, 3, 16, 224, 224)),
}


@torch.no_grad()
def reference(name: str, overrides: dict, input_shape: tuple, weights, root: Path) -> None:
    from mmaction.registry import MODELS as REGISTRY

    cfg = Config.fromfile(root / f"{CONFIG}.py").model
    cfg.backbone.update(overrides)
    cfg.cls_head.num_classes = NUM_CLASSES
    cfg.cls_head.in_channels = (overrides.get("arch") or {}).get("embed_dims", 96) * 8
    cfg.pop("data_preprocessor", None)
    model = REGISTRY.build(cfg)
    model.init_weights()
    model.eval()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items())
    (FIXTURES / f"{name}_keys.json").write_text("{\n" + lines + "\n}\n")  # a key a line
    model.load_state_dict(weights.seeded_state_dict(shapes, seed=0), strict=True)
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    feats = model.backbone(x)  # ((patch tokens, class token),) of the last scale
    logits = model.cls_head(feats)  # (B, K)
    np.savez(
        FIXTURES / f"{name}_outputs.npz",
        input_shape=np.array(input_shape),
        logits=logits.numpy(),
        features=feats[-1][1].numpy(),
    )
    if name == "mvit_toy":
        write_weight_decay(model, Config.fromfile(root / f"{CONFIG}.py").optim_wrapper)
    print(f"{name}: class token {tuple(feats[-1][1].shape)}, logits {logits[0].tolist()}")


def write_weight_decay(model: torch.nn.Module, optim_wrapper: dict) -> None:
    from mmaction.registry import OPTIM_WRAPPERS  # noqa: F401 (registers mmaction2's)
    from mmengine.optim import build_optim_wrapper

    wrapper = build_optim_wrapper(model, optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {
        names[id(p)]: group["weight_decay"]
        for group in wrapper.optimizer.param_groups
        for p in group["params"]
    }
    assert len(decay) == len(names)
    decay = {n: decay[n] for n in names.values()}  # in the model's order
    (FIXTURES / "mvit_toy_weight_decay.json").write_text(json.dumps(decay, indent=0) + "\n")


def main() -> None:
    import mmaction

    stub_missing_drn()
    from mmaction.utils import register_all_modules

    register_all_modules()
    for logger in (MMLogger.get_instance("mmengine"), MMLogger.get_current_instance()):
        logger.setLevel(logging.WARNING)
    root = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition"
    weights = load_weights_module()
    for name, (overrides, input_shape) in MODELS.items():
        reference(name, overrides, input_shape, weights, root)
    print(f"wrote {FIXTURES} (mmaction2 {mmaction.__version__})")


if __name__ == "__main__":
    main()
