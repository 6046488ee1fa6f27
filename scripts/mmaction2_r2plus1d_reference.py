"""Write what mmaction2's R(2+1)D R34 computes, as test fixtures for actionrec's
``actionrec.models.r2plus1d`` (``tests/models/test_r2plus1d.py``).

Run with the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmaction2_r2plus1d_reference.py

Builds the recipe's model (``num_classes`` 5, nothing downloaded) and writes to
``tests/fixtures/mmaction2/``: ``r2plus1d_r34_keys.json`` (mmaction2's state-dict keys and shapes,
in its order) and ``r2plus1d_r34_outputs.npz``: in eval mode, for the seeded input
``randn(INPUT_SHAPE)`` (torch's CPU generator, seed 0) under the seeded stand-in weights
(``weights.py``, seed 0), the logits ``(B, K)`` and the pooled backbone features ``(B, 512)``.
The helpers are those of ``mmaction2_3d_reference.py``.
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

NAME = "r2plus1d_r34"
CONFIG = "r2plus1d/r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb"
# (B, C, T, H, W): T=8 is the recipe's clip and leaves T=1 after the three temporal strides.
INPUT_SHAPE = (2, 3, 8, 32, 32)


@torch.no_grad()
def main() -> None:
    import mmaction

    stub_missing_drn()
    from mmaction.utils import register_all_modules

    register_all_modules()
    for logger in (MMLogger.get_instance("mmengine"), MMLogger.get_current_instance()):
        logger.setLevel(logging.WARNING)
    root = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition"
    model = build(Config.fromfile(root / f"{CONFIG}.py").model, None)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items())
    (FIXTURES / f"{NAME}_keys.json").write_text("{\n" + lines + "\n}\n")  # a key a line
    model.load_state_dict(load_weights_module().seeded_state_dict(shapes, seed=0), strict=True)
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    feats = model.backbone(x)  # (B, 512, t, h, w)
    logits = model.cls_head(feats)  # (B, K)
    np.savez(
        FIXTURES / f"{NAME}_outputs.npz",
        input_shape=np.array(INPUT_SHAPE),
        logits=logits.numpy(),
        features=feats.mean(dim=(2, 3, 4)).numpy(),
        feature_shape=np.array(feats.shape),
    )
    print(f"{NAME}: features {tuple(feats.shape)}, logits {logits[0].tolist()}")
    print(f"wrote {FIXTURES} (mmaction2 {mmaction.__version__})")


if __name__ == "__main__":
    main()
