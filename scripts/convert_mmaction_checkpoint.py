"""Convert an mmaction2 TSN checkpoint into a state dict of our TSN network.

Usage:
    python scripts/convert_mmaction_checkpoint.py tsn_r50_kinetics400.pth tsn_r50_k400.pth
    python src/train.py model=tsn_r50 load_from=tsn_r50_k400.pth ...

The file is read with ``torch.load(weights_only=True)``; its ConvModule keys
(``backbone.layer1.0.conv1.conv.weight``, ``cls_head.fc_cls.weight``) are renamed to ours
(``backbone.layer1.0.conv1.weight``, ``head.fc_cls.weight``), checked by loading them into a
freshly built TSN of the guessed depth, and written as a plain state dict that ``load_from=OUT``
(and ``ckpt_path=OUT`` of scripts/predict.py) accepts.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from actionrec.checkpoints import (
    CheckpointError,
    convert_mmaction_resnet,
    is_mmaction_state_dict,
    load_state_dict_file,
    strip_prefixes,
)
from actionrec.models.backbones import ResNet
from actionrec.models.heads import TSNHead
from actionrec.models.recognizers import TSN

# Blocks per stage and whether they are bottlenecks (have conv3), as torchvision builds them.
RESNET_LAYOUTS = {
    ((2, 2, 2, 2), False): 18,
    ((3, 4, 6, 3), False): 34,
    ((3, 4, 6, 3), True): 50,
    ((3, 4, 23, 3), True): 101,
    ((3, 8, 36, 3), True): 152,
}
# mmaction2 1.x keeps the normalization in the checkpoint; ours lives in the config.
DROPPED_PREFIXES = ("data_preprocessor.",)
_BLOCK = re.compile(r"^backbone\.layer(\d)\.(\d+)\.")


def guess_resnet_depth(state: Mapping[str, torch.Tensor]) -> int | None:
    """The ResNet depth whose stage layout the (converted) keys show, or None."""
    blocks = [0, 0, 0, 0]
    for key in state:
        match = _BLOCK.match(key)
        if match and 1 <= int(match[1]) <= 4:
            stage = int(match[1]) - 1
            blocks[stage] = max(blocks[stage], int(match[2]) + 1)
    bottleneck = any(re.match(r"^backbone\.layer\d\.\d+\.conv3\.", k) for k in state)
    return RESNET_LAYOUTS.get((tuple(blocks), bottleneck))


def read_mmaction_tsn(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an mmaction2 TSN checkpoint; CheckpointError for anything else."""
    state = strip_prefixes(load_state_dict_file(path, key=""), ("module.",))
    if not is_mmaction_state_dict(state) or "cls_head.fc_cls.weight" not in state:
        raise CheckpointError(
            f"{path} is not an mmaction2 TSN checkpoint: expected keys like "
            f"'backbone.conv1.conv.weight' and 'cls_head.fc_cls.weight', found {list(state)[:3]}"
        )
    return {k: v for k, v in state.items() if not k.startswith(DROPPED_PREFIXES)}


def convert(
    src: str | Path, dst: str | Path, num_classes: int | None = None
) -> dict[str, int | bool]:
    """Convert ``src`` to our TSN keys, verify them on a built TSN, save to ``dst``.

    Args:
        num_classes: the class count the output is meant for; a head of another size is left
            out (``load_from`` then starts a fresh head).

    Returns:
        ``depth``, ``num_classes`` (the checkpoint's), ``in_channels``, ``tensors`` written and
        ``head_dropped``.
    """
    state = convert_mmaction_resnet(read_mmaction_tsn(Path(src)))
    depth = guess_resnet_depth(state)
    if depth is None:
        raise CheckpointError(
            f"{src}: the backbone keys match no ResNet depth of {sorted(RESNET_LAYOUTS.values())}"
        )
    classes, width = state["head.fc_cls.weight"].shape
    net = TSN(ResNet(depth=depth), TSNHead(classes, in_channels=width))
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{src} does not fit a TSN ResNet-{depth}: {reason}") from None
    dropped = num_classes is not None and num_classes != classes
    if dropped:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    torch.save(state, dst)
    return {
        "depth": depth,
        "num_classes": classes,
        "in_channels": width,
        "tensors": len(state),
        "head_dropped": dropped,
    }


def describe(src: str, dst: str, info: Mapping, num_classes: int | None) -> str:
    depth, classes = info["depth"], info["num_classes"]
    model = "tsn_r18" if depth == 18 else "tsn_r50"
    if depth not in (18, 50):
        width = info["in_channels"]
        model += f" model.net.backbone.depth={depth} model.net.head.in_channels={width}"
    head = f"head {info['in_channels']} -> {classes} classes"
    if info["head_dropped"]:
        head += f" (left out: --num-classes {num_classes})"
    target = num_classes or classes
    return (
        f"{src}: mmaction2 TSN, ResNet-{depth} backbone (guessed from its keys), {head}\n"
        f"wrote {info['tensors']} tensors to {dst}\n"
        f"use: python src/train.py model={model} data.num_classes={target} load_from={dst}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", metavar="IN", help="mmaction2 TSN checkpoint (.pth)")
    parser.add_argument("dst", metavar="OUT", help="where to write our state dict")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="class count the output is for; a head of another size is left out",
    )
    args = parser.parse_args(argv)
    if args.num_classes is not None and args.num_classes < 1:
        parser.error(f"--num-classes {args.num_classes} must be >= 1")
    try:
        info = convert(args.src, args.dst, args.num_classes)
    except CheckpointError as err:
        sys.exit(f"error: {err}")
    print(describe(args.src, args.dst, info, args.num_classes))


if __name__ == "__main__":
    main()
