"""Write mmaction2's TSM R50 keys and its scores on seeded weights and inputs, as test fixtures.

Builds ``Recognizer2D(ResNetTSM, TSMHead)`` from mmaction2's
``tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb`` config, loads the seeded stand-in
weights of ``tests/fixtures/mmaction2/weights.py`` and scores seeded inputs in eval mode:

- ``tsm_r50_keys.json``: the state-dict keys and shapes, in mmaction2's order;
- ``tsm_r50_outputs.npz``: per case, the input's seed and shape and the scores (kilobytes; the
  inputs are drawn again by the test from ``torch.Generator().manual_seed(seed)``).

Run with the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmaction2_tsm_reference.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "mmaction2"
CONFIG = "recognition/tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb.py"
# name: (num_segments of the mmaction2 model, input (B, T, C, H, W), seed of the input)
CASES = {
    "seg8": (8, (2, 8, 3, 64, 64), 0),
    # 16 frames through the 8-segment model: mmaction2 scores 2 views of 8 per video, (4, K).
    "seg8_two_views": (8, (2, 16, 3, 64, 64), 1),
    # The 1x1x16 recipes' model: the shift and the consensus work across 16 segments.
    "seg16": (16, (1, 16, 3, 64, 64), 2),
}


def load_weights_module():
    spec = importlib.util.spec_from_file_location("weights", FIXTURES / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub_missing_drn() -> None:
    """mmaction2 1.2.0's wheel lacks ``localizers/drn``, which ``mmaction.models`` imports; TSM
    does not use it, so an empty module stands in."""
    for name in ("mmaction.models.localizers.drn", "mmaction.models.localizers.drn.drn"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["mmaction.models.localizers.drn.drn"].DRN = None


def build(num_segments: int) -> torch.nn.Module:
    """mmaction2's model of the config, with no download (the weights are loaded afterwards)."""
    import mmaction
    from mmaction.registry import MODELS
    from mmaction.utils import register_all_modules
    from mmengine.config import Config

    stub_missing_drn()
    register_all_modules()
    cfg = Config.fromfile(Path(mmaction.__file__).parent / ".mim" / "configs" / CONFIG)
    cfg.model.backbone.pretrained = None
    cfg.model.backbone.num_segments = num_segments
    cfg.model.cls_head.num_segments = num_segments
    return MODELS.build(cfg.model).eval()


def main() -> None:
    weights = load_weights_module()
    out: dict[str, np.ndarray] = {}
    shapes = None
    for name, (num_segments, shape, seed) in CASES.items():
        model = build(num_segments)
        if shapes is None:
            shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
            (FIXTURES / "tsm_r50_keys.json").write_text(json.dumps(shapes, indent=0) + "\n")
        model.load_state_dict(weights.seeded_state_dict(shapes, seed=0), strict=True)
        imgs = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():  # Recognizer2D's stage='head' without the data preprocessor
            x = model.backbone(imgs.flatten(0, 1))  # (B*T, 2048, 2, 2)
            scores = model.cls_head(x, num_segs=shape[1])  # (B * T / num_segments, K)
        out[f"{name}/scores"] = scores.numpy()
        out[f"{name}/input_shape"] = np.array(shape)
        out[f"{name}/input_seed"] = np.array(seed)
        out[f"{name}/num_segments"] = np.array(num_segments)
        print(name, tuple(scores.shape), float(scores.abs().mean()))
    np.savez_compressed(FIXTURES / "tsm_r50_outputs.npz", **out)


if __name__ == "__main__":
    main()
