"""2D backbones that map frames ``(N, 3, H, W)`` to feature maps ``(N, D, h, w)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from actionrec.checkpoints import load_state_dict_file, strip_prefixes

RESNET_DEPTHS = (18, 34, 50, 101, 152)
# mmaction2 configs name ImageNet weights this way; they are torchvision's V1 weights.
MMACTION_TORCHVISION_PREFIX = "torchvision://"


class PretrainedWeightsError(RuntimeError):
    """The requested pretrained weights could not be loaded."""


class FrozenStages:
    """mmaction2's ``frozen_stages`` and ``norm_eval`` for ResNets (2-D and 3-D) named like
    torchvision's: ``conv1``/``bn1`` (the stem) and ``layer1`` ... ``layer4``.

    The class sets ``frozen_stages`` and ``norm_eval``; frozen stages stay in eval mode with no
    gradient, and ``norm_eval`` keeps every BatchNorm's statistics fixed while training.
    """

    frozen_stages: int
    norm_eval: bool

    def _freeze_stages(self) -> None:
        stages = [nn.Sequential(self.conv1, self.bn1)]
        stages += [self.layer1, self.layer2, self.layer3, self.layer4]
        for stage in stages[: self.frozen_stages + 1]:
            stage.eval()
            for p in stage.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


class ResNet(FrozenStages, nn.Module):
    """torchvision's ResNet without its classifier, with mmaction2's training switches.

    The submodules keep torchvision's names (``conv1``, ``bn1``, ``layer1`` ...), so a
    torchvision state dict loads as it is.

    Args:
        depth: 18, 34, 50, 101 or 152.
        pretrained: None (random init); a torchvision weights name of ``ResNet{depth}_Weights``
            such as ``"IMAGENET1K_V1"`` or ``"DEFAULT"`` (also mmaction2's
            ``"torchvision://resnet50"``); or the path of a local state dict file.
        norm_eval: keep every BatchNorm in eval mode (frozen statistics) while training.
        frozen_stages: -1 trains everything; 0 freezes the stem; i >= 1 also ``layer1..layer{i}``.
    """

    def __init__(
        self,
        depth: int = 50,
        pretrained: str | None = None,
        norm_eval: bool = False,
        frozen_stages: int = -1,
    ) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(
                f"ResNet depth={depth} is not supported; choose one of {RESNET_DEPTHS}"
            )
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages={frozen_stages} must be between -1 and 4")
        self.depth = depth
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        tv = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = tv.conv1, tv.bn1, tv.relu, tv.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            tv.layer1,
            tv.layer2,
            tv.layer3,
            tv.layer4,
        )
        self.num_features: int = tv.fc.in_features
        if pretrained is not None:
            self.load_pretrained(pretrained)
        self._freeze_stages()

    def load_pretrained(self, pretrained: str) -> None:
        """Load torchvision weights by name, or a local state dict file (its ``fc`` is dropped)."""
        state = resnet2d_state_dict(self.depth, pretrained)
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise PretrainedWeightsError(
                f"pretrained={pretrained!r} does not fit ResNet-{self.depth}: "
                f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` float frames to ``(N, D, H/32, W/32)`` feature maps."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet2d_state_dict(depth: int, pretrained: str) -> dict[str, torch.Tensor]:
    """The 2-D ResNet weights that ``pretrained`` names, with torchvision's keys and no ``fc``.

    Args:
        depth: the ResNet's depth, which a torchvision name must match.
        pretrained: a local state dict file (``module.``/``backbone.`` prefixes are stripped); a
            weights name of torchvision's ``ResNet{depth}_Weights`` (``"IMAGENET1K_V1"``,
            ``"DEFAULT"``); mmaction2's ``"torchvision://resnet{depth}"`` (V1); or the download
            URL of one of those weights (as mmaction2's SlowOnly configs name V2).
    """
    if Path(pretrained).is_file():
        state = load_state_dict_file(pretrained, "pretrained")
        state = strip_prefixes(state, ("module.", "backbone."))
    else:
        state = _torchvision_state_dict(depth, pretrained)
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _torchvision_state_dict(depth: int, name: str) -> dict[str, torch.Tensor]:
    if name.startswith(MMACTION_TORCHVISION_PREFIX):
        arch = name[len(MMACTION_TORCHVISION_PREFIX) :]
        if arch != f"resnet{depth}":
            raise ValueError(f"pretrained={name!r} does not match depth={depth}")
        name = "IMAGENET1K_V1"
    enum = torchvision.models.get_model_weights(f"resnet{depth}")
    by_url = {w.url: w for w in enum}
    try:
        weights = by_url[name] if name in by_url else enum[name]
    except KeyError:
        allowed = [w.name for w in enum] + ["DEFAULT", "a local .pth file", "null"]
        raise ValueError(
            f"model.net.backbone.pretrained={name!r} is neither a file nor a weights name of "
            f"{enum.__name__}; allowed: {allowed}"
        ) from None
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as err:  # urllib, ssl, socket and hub errors all mean "not available"
        raise PretrainedWeightsError(
            f"cannot load the pretrained weights {enum.__name__}.{weights.name} "
            f"({weights.url}): {err}\n"
            "Either train from scratch with model.net.backbone.pretrained=null, or download "
            "the file elsewhere and pass its local path: model.net.backbone.pretrained="
            f"/path/to/{Path(weights.url).name} (or put that file into "
            f"{torch.hub.get_dir()}/checkpoints/)."
        ) from err


class SimpleCNN(nn.Module):
    """A small conv net for CPU-sized experiments (the toy default): (conv3x3-BN-ReLU-pool) x N.

    Args:
        channels: output width of each block; ``num_features`` is the last one.
        in_channels: input channels (3 for RGB).
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256), in_channels: int = 3) -> None:
        super().__init__()
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels={list(channels)} must be a non-empty list of positive ints")
        blocks: list[nn.Module] = []
        for width in channels:
            blocks += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                # Pooling after the last block too: measured on the toy data, the wider
                # receptive field learns shapes faster than stopping at 1/8 resolution.
                nn.MaxPool2d(2),
            ]
            in_channels = width
        self.features = nn.Sequential(*blocks)
        self.num_features: int = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` float frames to ``(N, D, H/2^n, W/2^n)`` feature maps (n blocks)."""
        return self.features(x)
