"""Write what mmaction2's SlowFast R50 computes, as test fixtures for actionrec's
``actionrec.models.slowfast`` (``tests/models/test_slowfast.py``).

Run with the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmaction2_slowfast_reference.py

As ``mmaction2_3d_reference.py`` (``num_classes`` 5, seeded stand-in weights, seed 0; nothing
downloaded) it writes ``slowfast_r50_keys.json`` and ``slowfast_r50_outputs.npz``: for the
seeded input ``randn(INPUT_SHAPE)`` in eval mode, the logits ``(B, K)``, the pooled features as
the head concatenates them ``(B, 256 + 2048)`` (fast, then slow) and both pathways' map shapes.
The recipe trains from scratch, so there is no 2-D inflation to record.
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

NAME = "slowfast_r50"
CONFIG = "slowfast/slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb"
# 32 frames as the recipe's clip: 4 slow (tau 8), 32 fast (alpha 8); 32 px keeps it small.
INPUT_SHAPE = (2, 3, 32, 32, 32)


@torch.no_grad()
def main() -> None:
    import mmaction

    stub_missing_drn()
    from mmaction.utils import register_all_modules

    register_all_modules()
    for logger in (MMLogger.get_instance("mmengine"), MMLogger.get_current_instance()):
        logger.setLevel(logging.WARNING)  # not a line per initialised tensor
    root = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition"
    weights = load_weights_module()
    model = build(Config.fromfile(root / f"{CONFIG}.py").model, None)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items())
    (FIXTURES / f"{NAME}_keys.json").write_text("{\n" + lines + "\n}\n")  # a key a line
    model.load_state_dict(weights.seeded_state_dict(shapes, seed=0), strict=True)
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    slow, fast = model.backbone(x)
    logits = model.cls_head((slow, fast))  # (B, K)
    features = torch.cat((fast.mean(dim=(2, 3, 4)), slow.mean(dim=(2, 3, 4))), dim=1)
    np.savez(
        FIXTURES / f"{NAME}_outputs.npz",
        input_shape=np.array(INPUT_SHAPE),
        logits=logits.numpy(),
        features=features.numpy(),
        slow_shape=np.array(slow.shape),
        fast_shape=np.array(fast.shape),
    )
    print(f"{NAME}: slow {tuple(slow.shape)}, fast {tuple(fast.shape)}, logits {logits[0]}")
    print(f"wrote {FIXTURES} (mmaction2 {mmaction.__version__})")


if __name__ == "__main__":
    main()
