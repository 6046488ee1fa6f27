"""Write what mmaction2's X3D-S computes, as test fixtures for ``actionrec.models.x3d``
(``tests/models/test_x3d.py``).

Run with the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmaction2_x3d_reference.py

It builds the model of mmaction2 1.x's ``x3d/x3d_s_13x6x1_facebook-kinetics400-rgb`` (5 classes,
nothing downloaded) and writes to ``tests/fixtures/mmaction2/``:

- ``x3d_s_keys.json``: the recognizer's state-dict keys and shapes, in mmaction2's order;
- ``x3d_s_outputs.npz``: in eval mode, for the seeded input ``randn(INPUT_SHAPE)`` (torch's CPU
  generator, seed 0) under seeded stand-in weights (``weights.py``, seed 0): the logits ``(B, K)``
  and the pooled backbone features ``(B, 432)``. Kilobytes: no weights are stored.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from mmaction2_3d_reference import FIXTURES, build, load_weights_module, stub_missing_drn
from mmengine.config import Config
from mmengine.logging import MMLogger

CONFIG = "x3d/x3d_s_13x6x1_facebook-kinetics400-rgb"
# (B, C, T, H, W): T=6 lets the 5x1x1 stem and the 3x3x3 convs see the clip's ends; 64 px leaves
# 2x2 at conv5, so the spatial strides and paddings count.
INPUT_SHAPE = (2, 3, 6, 64, 64)


@torch.no_grad()
def main() -> None:
    import mmaction

    stub_missing_drn()
    from mmaction.utils import register_all_modules

    register_all_modules()
    for logger in (MMLogger.get_instance("mmengine"), MMLogger.get_current_instance()):
        logger.setLevel(logging.WARNING)
    root = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition"
    model_cfg = Config.fromfile(root / f"{CONFIG}.py").model
    model = build(model_cfg, None)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items())
    (FIXTURES / "x3d_s_keys.json").write_text("{\n" + lines + "\n}\n")  # a key a line

    weights = load_weights_module()
    model.load_state_dict(weights.seeded_state_dict(shapes, seed=0), strict=True)
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    feats = model.backbone(x)  # (B, 432, T, h, w)
    logits = model.cls_head(feats)  # (B, K)
    np.savez(
        FIXTURES / "x3d_s_outputs.npz",
        input_shape=np.array(INPUT_SHAPE),
        logits=logits.numpy(),
        features=feats.mean(dim=(2, 3, 4)).numpy(),
        feature_shape=np.array(feats.shape),
    )
    print(f"x3d_s: features {tuple(feats.shape)}, logits {logits[0].tolist()}")
    print(f"wrote {FIXTURES} (mmaction2 {mmaction.__version__})")


if __name__ == "__main__":
    main()
