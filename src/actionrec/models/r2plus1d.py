"""mmaction2's R(2+1)D ResNets (``ResNet2Plus1d``): clips ``(N, 3, T, H, W)`` to
``(N, 512, T/8, H/32, W/32)``.

mmaction2 builds R(2+1)D as its ``ResNet3d`` with every convolution, stem and shortcuts included,
factored into a spatial and a temporal one (``Conv2plus1d``). torchvision's ``r2plus1d_18`` is
not that network: its stem is a fixed 45-channel (2+1)D conv without max pool, its shortcuts
are plain 1x1x1 convs, its ``BasicBlock`` gives the second conv the first conv's middle width,
and it has no depth 34. Its ``Conv2Plus1D`` is the same factorisation but fixes the kernel to
3 (the stem's is 7, the shortcuts' 1), so the one class below serves all three. Module names
follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv2``, ``downsample.0``/``.1``),
so mmaction2's checkpoints convert with the same rules as its other ResNets.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from actionrec.models.backbones import FrozenStages

# depth: blocks per stage (mmaction2's BasicBlock3d depths).
STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
# mmaction2's R(2+1)D configs set norm_cfg eps=1e-3 for the block and stem BatchNorms; the
# BatchNorm inside each Conv2plus1d keeps PyTorch's 1e-5 (mmaction2 does not pass norm_cfg on).
BN_EPS = 1e-3


class Conv2plus1d(nn.Sequential):
    """A ``(t, k, k)`` convolution factored as mmaction2's ``Conv2plus1d``: ``(1, k, k)`` conv
    (spatial stride) -> BN -> ReLU -> ``(t, 1, 1)`` conv (temporal stride), without bias.

    The middle width keeps the parameters of the full 3-D kernel (R(2+1)D paper, section 3.5):
    ``floor(t k^2 C_in C_out / (k^2 C_in + t C_out))`` with t taken as 3, as mmaction2 does for
    every kernel. ``stride`` and ``padding`` are ``(t, s, s)`` like ``nn.Conv3d``'s.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int],
        stride: Sequence[int] = (1, 1, 1),
        padding: Sequence[int] = (0, 0, 0),
    ) -> None:
        t, kh, kw = kernel_size
        mid = int(
            3 * in_channels * out_channels * kh * kw / (in_channels * kh * kw + 3 * out_channels)
        )
        super().__init__(
            OrderedDict(
                conv_s=nn.Conv3d(
                    in_channels,
                    mid,
                    (1, kh, kw),
                    (1, stride[1], stride[2]),
                    (0, padding[1], padding[2]),
                    bias=False,
                ),
                bn_s=nn.BatchNorm3d(mid),
                relu=nn.ReLU(inplace=True),
                conv_t=nn.Conv3d(
                    mid, out_channels, (t, 1, 1), (stride[0], 1, 1), (padding[0], 0, 0), bias=False
                ),
            )
        )


class BasicBlock2plus1d(nn.Module):
    """mmaction2's ``BasicBlock3d`` with ``conv_cfg=Conv2plus1d``: two (2+1)D 3x3x3 convs (the
    first strides by ``stride`` in t, h and w), each followed by BN, and the shortcut."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = Conv2plus1d(inplanes, planes, (3, 3, 3), (stride,) * 3, (1, 1, 1))
        self.bn1 = nn.BatchNorm3d(planes, eps=BN_EPS)
        self.conv2 = Conv2plus1d(planes, planes, (3, 3, 3), (1, 1, 1), (1, 1, 1))
        self.bn2 = nn.BatchNorm3d(planes, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, T, H, W)`` to ``(N, planes, T / stride, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def make_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One stage as mmaction2's ``make_res_layer``: the first block strides (t, h, w alike) and
    projects through a 1x1x1 (2+1)D shortcut."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            Conv2plus1d(inplanes, planes, (1, 1, 1), (stride,) * 3),
            nn.BatchNorm3d(planes, eps=BN_EPS),
        )
    layers = [BasicBlock2plus1d(inplanes, planes, stride, downsample)]
    layers += [BasicBlock2plus1d(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet2Plus1d(FrozenStages, nn.Module):
    """mmaction2's ``ResNet2Plus1d`` as its R(2+1)D R34 recipe configures it.

    Stem: (2+1)D conv 3x7x7 (spatial stride 2) -> BN -> ReLU -> max pool (1, 3, 3) (spatial
    stride 2); then four stages of :class:`BasicBlock2plus1d` whose first blocks stride
    (1, 2, 2, 2) in t, h and w alike. Trained from scratch (mmaction2 asserts
    ``pretrained2d=False``); ``load_from`` takes mmaction2's R(2+1)D checkpoints.

    Args:
        depth: 18 or 34.
        pretrained: mmaction2's ``pretrained``; only None (its recipe's, from scratch) is
            taken here: start from an R(2+1)D checkpoint with ``load_from`` instead.
        norm_eval: keep every BatchNorm in eval mode (frozen statistics) while training.
        frozen_stages: -1 trains everything; 0 freezes the stem; i >= 1 also ``layer1..layer{i}``.
        zero_init_residual: the init starts each block's last BN at zero.
    """

    def __init__(
        self,
        depth: int = 34,
        pretrained: str | None = None,
        norm_eval: bool = False,
        frozen_stages: int = -1,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            allowed = tuple(STAGE_BLOCKS)
            raise ValueError(
                f"ResNet2Plus1d depth={depth} is not supported; choose one of {allowed}"
            )
        if pretrained is not None:
            raise ValueError(
                f"ResNet2Plus1d pretrained={pretrained!r}: only None is supported (no 2-D "
                "weights inflate into (2+1)D convs); load a checkpoint with load_from=PATH"
            )
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages={frozen_stages} must be between -1 and 4")
        self.depth = depth
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self.conv1 = Conv2plus1d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3))
        self.bn1 = nn.BatchNorm3d(64, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        inplanes = 64
        for i, blocks in enumerate(STAGE_BLOCKS[depth]):
            planes = 64 * 2**i
            self.add_module(f"layer{i + 1}", make_stage(inplanes, planes, blocks, min(i, 1) + 1))
            inplanes = planes
        self.num_features: int = inplanes
        self.init_weights(zero_init_residual)
        self._freeze_stages()

    def init_weights(self, zero_init_residual: bool) -> None:
        """mmaction2's from-scratch init: Kaiming-normal convs (fan-out), BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock2plus1d):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` float clips to ``(N, 512, T/8, H/32, W/32)`` feature maps."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, T, H/4, W/4)
        x = self.layer2(self.layer1(x))  # (N, 128, T/2, H/8, W/8)
        return self.layer4(self.layer3(x))  # (N, 512, T/8, H/32, W/32)
