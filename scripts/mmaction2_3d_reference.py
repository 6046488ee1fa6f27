"""Write what mmaction2's I3D R50 and SlowOnly R50 compute, as test fixtures for actionrec's
``actionrec.models.resnet3d`` (``tests/models/test_resnet3d.py``).

Run with the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmaction2_3d_reference.py

For each recipe's model (mmaction2 1.x configs, ``num_classes`` 5, nothing downloaded) it writes
to ``tests/fixtures/mmaction2/``:

- ``{name}_keys.json``: the recognizer's state-dict keys and shapes, in mmaction2's order;
- ``{name}_outputs.npz``: in eval mode, for the seeded input ``randn(INPUT_SHAPE)`` (torch's
  CPU generator, seed 0) under seeded stand-in weights (``weights.py``, seed 0): the logits
  ``(B, K)`` and the pooled backbone features ``(B, 2048)``; and ``inflated``: the pooled
  features of the backbone initialised by mmaction2's own ``inflate_weights`` from a seeded 2-D
  torchvision ResNet-50 state dict (seed 1). Kilobytes: no weights are stored.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from mmengine.config import Config
from mmengine.logging import MMLogger

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mmaction2"
NUM_CLASSES = 5
# name: (mmaction2 config, input (B, C, T, H, W)); T is large enough for every temporal stride
# to act (I3D: conv1 /2, pool1 /2, pool2 /2 leaves T=2 at layer3/4's 3x1x1 convs).
MODELS = {
    "i3d_r50": (
        "i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb",
        (2, 3, 16, 64, 64),
    ),
    "slowonly_r50": (
        "slowonly/slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb",
        (2, 3, 8, 64, 64),
    ),
}


def load_weights_module():
    spec = importlib.util.spec_from_file_location("weights", FIXTURES / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(model_cfg: dict, pretrained: str | None):
    from mmaction.registry import MODELS as REGISTRY

    cfg = Config(dict(model=model_cfg)).model
    cfg.backbone.pretrained = pretrained
    cfg.cls_head.num_classes = NUM_CLASSES
    cfg.pop("data_preprocessor", None)
    model = REGISTRY.build(cfg)
    model.init_weights()  # inflates the 2-D weights when pretrained is a file
    return model.eval()


@torch.no_grad()
def reference(name: str, config: str, input_shape: tuple, weights, root: Path, tmp: Path) -> None:
    model_cfg = Config.fromfile(root / f"{config}.py").model
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))

    model = build(model_cfg, None)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items())
    (FIXTURES / f"{name}_keys.json").write_text("{\n" + lines + "\n}\n")  # a key a line
    model.load_state_dict(weights.seeded_state_dict(shapes, seed=0), strict=True)
    feats = model.backbone(x)  # (B, 2048, t, h, w)
    logits = model.cls_head(feats)  # (B, K)

    shapes_2d = {k: list(v.shape) for k, v in torchvision.models.resnet50().state_dict().items()}
    path_2d = tmp / "resnet50_2d.pth"
    torch.save(weights.seeded_state_dict(shapes_2d, seed=1), path_2d)
    inflated = build(model_cfg, str(path_2d)).backbone(x)

    np.savez(
        FIXTURES / f"{name}_outputs.npz",
        input_shape=np.array(input_shape),
        logits=logits.numpy(),
        features=feats.mean(dim=(2, 3, 4)).numpy(),
        feature_shape=np.array(feats.shape),
        inflated=inflated.mean(dim=(2, 3, 4)).numpy(),
    )
    print(f"{name}: features {tuple(feats.shape)}, logits {logits[0].tolist()}")


def stub_missing_drn() -> None:
    """mmaction2 1.2.0's wheel lacks ``localizers/drn`` that ``mmaction.models`` imports
    ; a stand-in module lets the recognizers import."""
    import sys
    import types

    for name in ("mmaction.models.localizers.drn", "mmaction.models.localizers.drn.drn"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["mmaction.models.localizers.drn.drn"].DRN = None


def main() -> None:
    import mmaction

    stub_missing_drn()
    from mmaction.utils import register_all_modules

    register_all_modules()
    for logger in (MMLogger.get_instance("mmengine"), MMLogger.get_current_instance()):
        logger.setLevel(logging.WARNING)  # not a line per initialised tensor
    root = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition"
    weights = load_weights_module()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (config, input_shape) in MODELS.items():
            reference(name, config, input_shape, weights, root, Path(tmp))
    print(f"wrote {FIXTURES} (mmaction2 {mmaction.__version__})")


if __name__ == "__main__":
    main()
