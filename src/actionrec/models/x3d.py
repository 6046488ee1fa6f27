"""mmaction2's X3D (Feichtenhofer, CVPR 2020): clips ``(N, 3, T, H, W)`` to ``(N, D, T, h, w)``,
its two-layer ``X3DHead`` and the recognizer that loads mmaction2's (converted Facebook) weights.

Written here because torchvision has no X3D. One width rule and one depth rule expand a small
base network (24 channels, 1-2-5-3 blocks): X3D-S and X3D-M are both ``gamma_b=2.25,
gamma_d=2.2`` and differ only in their input. Modules follow :mod:`actionrec.models.resnet3d`'s
names (``conv1``/``bn1`` ... in each block, ``downsample.0``/``.1``); mmaction2's ``ConvModule``
pairs (``conv2.conv``/``conv2.bn``) convert by :meth:`X3DRecognizer.convert_mmaction_state_dict`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import nn

from actionrec.checkpoints import load_state_dict_file, strip_prefixes
from actionrec.models.backbones import FrozenStages, PretrainedWeightsError
from actionrec.models.heads import ClassifierHead
from actionrec.models.recognizer3d import Recognizer3D

BASE_CHANNELS = 24  # mmaction2 X3D: the width of the stem, before gamma_w
BASE_BLOCKS = (1, 2, 5, 3)  # mmaction2 X3D: blocks per stage, before gamma_d


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """``width * multiplier`` to a multiple of ``divisor``, never below ``min_width`` nor 10%
    under the product (mmaction2's ``_round_width``, for stage and SE widths)."""
    width *= multiplier
    rounded = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * width else rounded)


class SqueezeExcitation3d(nn.Module):
    """Channel gates from the clip's mean: avg pool -> 1x1x1 conv -> ReLU -> 1x1x1 conv ->
    sigmoid, times the input (mmaction2's ``SEModule``; torchvision's is 2-D only)."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        squeezed = round_width(channels, ratio)
        self.fc1 = nn.Conv3d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv3d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, T, H, W)`` to the same shape."""
        s = x.mean(dim=(2, 3, 4), keepdim=True)  # (N, C, 1, 1, 1)
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(s))))


class BlockX3D(nn.Module):
    """mmaction2's ``BlockX3D``: 1x1x1 (BN, ReLU) -> channel-wise 3x3x3 with the spatial stride
    (BN) -> squeeze-excitation (optional) -> swish -> 1x1x1 (BN), plus the shortcut, ReLU."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        outplanes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        se_ratio: float | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(
            planes, planes, 3, (1, stride, stride), padding=1, groups=planes, bias=False
        )
        self.bn2 = nn.BatchNorm3d(planes)
        self.se = SqueezeExcitation3d(planes, se_ratio) if se_ratio is not None else None
        self.swish = nn.SiLU()
        self.conv3 = nn.Conv3d(planes, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(outplanes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, inplanes, T, H, W)`` to ``(N, outplanes, T, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        out = self.bn3(self.conv3(self.swish(out)))
        return self.relu(out + identity)


class X3D(FrozenStages, nn.Module):
    """mmaction2's ``X3D`` backbone; the defaults are X3D-S's (and X3D-M's) expansion.

    Stem: a 1x3x3 conv (spatial stride 2, no BN) and a channel-wise 5x1x1 conv (BN, ReLU); four
    stages of :class:`BlockX3D`, each halving H and W in its first block; then ``conv5``, a
    1x1x1 conv widening by ``gamma_b`` (BN, ReLU). T is never strided. Swish is always used
    (mmaction2's ``use_swish`` flag is read by none of its layers, so it is not an argument here).

    Args:
        gamma_w: width factor of the base network (24 channels in the stem, doubling per stage).
        gamma_b: bottleneck factor: the blocks' inner width and conv5's output over the stage's.
        gamma_d: depth factor on the base 1-2-5-3 blocks per stage (rounded up).
        pretrained: None (mmaction2's from-scratch init), or the path of a file holding this
            backbone's weights, as mmaction2's ``pretrained`` (no 2-D ImageNet inflation for X3D):
            an X3D recognizer or backbone state dict, mmaction2's keys or ours.
        se_ratio: squeeze-excitation width over the block's inner width; None: no SE.
        se_style: ``"half"``: SE in every other block of a stage (the first, third ...);
            ``"all"``: in every block.
        norm_eval: keep every BatchNorm in eval mode (frozen statistics) while training.
        frozen_stages: -1 trains everything; 0 freezes the stem; i >= 1 also ``layer1..layer{i}``.
        zero_init_residual: the from-scratch init starts each block's last BN at zero.
    """

    def __init__(
        self,
        gamma_w: float = 1.0,
        gamma_b: float = 2.25,
        gamma_d: float = 2.2,
        pretrained: str | None = None,
        se_ratio: float | None = 1 / 16,
        se_style: str = "half",
        norm_eval: bool = False,
        frozen_stages: int = -1,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if min(gamma_w, gamma_b, gamma_d) <= 0:
            raise ValueError(f"gamma_w={gamma_w}, gamma_b={gamma_b}, gamma_d={gamma_d} must be > 0")
        if se_ratio is not None and not se_ratio > 0:
            raise ValueError(f"se_ratio={se_ratio} must be > 0 or None")
        if se_style not in ("half", "all"):
            raise ValueError(f"se_style={se_style!r} must be 'half' or 'all'")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages={frozen_stages} must be between -1 and 4")
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        base = round_width(BASE_CHANNELS, gamma_w)
        self.conv1_s = nn.Conv3d(3, base, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
        self.conv1_t = nn.Conv3d(base, base, (5, 1, 1), padding=(2, 0, 0), groups=base, bias=False)
        self.bn1 = nn.BatchNorm3d(base)
        self.relu = nn.ReLU(inplace=True)
        inplanes = base
        for i, blocks in enumerate(BASE_BLOCKS):
            width = base * 2**i
            planes = int(width * gamma_b)
            stage = []
            for j in range(math.ceil(gamma_d * blocks)):
                downsample = None
                if j == 0:  # every stage strides, so its first block always projects
                    downsample = nn.Sequential(
                        nn.Conv3d(inplanes, width, 1, (1, 2, 2), bias=False),
                        nn.BatchNorm3d(width),
                    )
                se = se_ratio if se_style == "all" or j % 2 == 0 else None
                stride = 2 if j == 0 else 1
                stage.append(BlockX3D(inplanes, planes, width, stride, downsample, se))
                inplanes = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_features: int = int(inplanes * gamma_b)
        self.conv5 = nn.Conv3d(inplanes, self.num_features, 1, bias=False)
        self.bn5 = nn.BatchNorm3d(self.num_features)
        self.init_weights(zero_init_residual)
        if pretrained is not None:
            self.load_pretrained(pretrained)
        self._freeze_stages()

    def init_weights(self, zero_init_residual: bool) -> None:
        """mmaction2's from-scratch init: Kaiming-normal convs (fan-out), zero conv biases (the
        SE's), BN weight 1 and bias 0; with ``zero_init_residual`` each block's last BN at 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BlockX3D):
                    nn.init.zeros_(m.bn3.weight)

    def load_pretrained(self, pretrained: str) -> None:
        """Every backbone tensor from the file ``pretrained`` (a classifier there is ignored)."""
        state = strip_prefixes(load_state_dict_file(pretrained, "pretrained"), ("module.",))
        if not any(k.startswith("backbone.") for k in state):  # a bare backbone's file
            state = {f"backbone.{k}": v for k, v in state.items()}
        state = {
            k.removeprefix("backbone."): v
            for k, v in convert_mmaction_x3d(state).items()
            if k.startswith("backbone.")
        }
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise PretrainedWeightsError(
                f"pretrained={pretrained!r} does not fit X3D: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )

    def _freeze_stages(self) -> None:
        """As :class:`FrozenStages`, with X3D's two-conv stem."""
        stages = [nn.ModuleList([self.conv1_s, self.conv1_t, self.bn1])]
        stages += [self.layer1, self.layer2, self.layer3, self.layer4]
        for stage in stages[: self.frozen_stages + 1]:
            stage.eval()
            for p in stage.parameters():
                p.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` float clips to ``(N, D, T, H/32, W/32)`` feature maps."""
        x = self.relu(self.bn1(self.conv1_t(self.conv1_s(x))))  # (N, 24, T, H/2, W/2)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 192, T, H/32, W/32)
        return self.relu(self.bn5(self.conv5(x)))  # (N, D, T, H/32, W/32)


class X3DHead(ClassifierHead):
    """mmaction2's ``X3DHead`` with ``spatial_type='avg'``: average over (t, h, w), then ``fc1``
    to ``mid_channels`` (no bias) and ReLU, dropout, the classifier ``fc_cls`` (its ``fc2``).

    Args:
        num_classes: K, the number of classes.
        in_channels: D, the feature width of the backbone.
        dropout_ratio: dropout before the classifier (0.5 in mmaction2's X3D config).
        init_std: std of the normal init of both layers' weights; the classifier's bias starts at 0.
        mid_channels: width of ``fc1`` (2048 in mmaction2, fixed there).
        fc1_bias: whether ``fc1`` has a bias (not in mmaction2's X3D config).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        dropout_ratio: float = 0.5,
        init_std: float = 0.01,
        mid_channels: int = 2048,
        fc1_bias: bool = False,
    ) -> None:
        super().__init__(num_classes, mid_channels, dropout_ratio, init_std)
        self.in_channels = in_channels  # the backbone's D; fc_cls reads mid_channels
        self.mid_channels = mid_channels
        self.fc1 = nn.Linear(in_channels, mid_channels, bias=fc1_bias)
        self.relu = nn.ReLU()
        nn.init.normal_(self.fc1.weight, 0.0, init_std)
        if fc1_bias:
            nn.init.zeros_(self.fc1.bias)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone maps ``(B, D, t, h, w)`` to clip features ``(B, D)``."""
        return x.mean(dim=(2, 3, 4))  # (B, D)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` clip features to ``(B, K)`` logits."""
        return self.fc_cls(self.dropout(self.relu(self.fc1(feats))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, t, h, w)`` feature maps to ``(B, K)`` logits."""
        return self.classify(self.pool_features(x))


# mmaction2 X3D keys -> ours: ConvModule pairs split into conv/BN, `se_module` -> `se`, fc2 is
# the classifier.
_X3D_RULES = [
    (re.compile(r"^backbone\.conv1_([st])\.conv\."), r"backbone.conv1_\1."),
    (re.compile(r"^backbone\.conv1_t\.bn\."), "backbone.bn1."),
    (re.compile(r"^backbone\.conv5\.conv\."), "backbone.conv5."),
    (re.compile(r"^backbone\.conv5\.bn\."), "backbone.bn5."),
    (re.compile(r"^(backbone\.layer\d\.\d+)\.conv(\d)\.conv\."), r"\1.conv\2."),
    (re.compile(r"^(backbone\.layer\d\.\d+)\.conv(\d)\.bn\."), r"\1.bn\2."),
    (re.compile(r"^(backbone\.layer\d\.\d+)\.downsample\.conv\."), r"\1.downsample.0."),
    (re.compile(r"^(backbone\.layer\d\.\d+)\.downsample\.bn\."), r"\1.downsample.1."),
    (re.compile(r"^(backbone\.layer\d\.\d+)\.se_module\."), r"\1.se."),
    (re.compile(r"^cls_head\.fc1\."), "head.fc1."),
    (re.compile(r"^cls_head\.fc2\."), "head.fc_cls."),
]


def convert_mmaction_x3d(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 X3D recognizer keys to ours (:meth:`X3DRecognizer.convert_mmaction_state_dict`);
    keys already ours pass unchanged."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _X3D_RULES:
            if pattern.match(key):
                key = pattern.sub(repl, key)
                break
        out[key] = value
    return out


class X3DRecognizer(Recognizer3D):
    """:class:`~actionrec.models.recognizer3d.Recognizer3D` with an :class:`X3D` backbone and
    an :class:`X3DHead`: mmaction2 builds X3D as a ``Recognizer3D`` too; only the checkpoint
    keys differ. ``num_features`` is the backbone's D (the head's ``fc1`` is in
    ``forward_head``)."""

    def convert_mmaction_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict:
        """mmaction2 ``X3D`` + ``X3DHead`` keys to ours (``conv2.conv`` -> ``conv2``,
        ``conv2.bn`` -> ``bn2``, ``conv1_t.bn`` -> ``bn1``, ``conv5.bn`` -> ``bn5``,
        ``se_module`` -> ``se``, ``cls_head.fc2`` -> ``head.fc_cls``)."""
        return convert_mmaction_x3d(state)

    def example_input(self, batch: int = 1, size: int = 160, frames: int = 13) -> torch.Tensor:
        """Random normalized-scale float clips ``(batch, 3, frames, size, size)``."""
        return torch.randn(batch, 3, frames, size, size)
