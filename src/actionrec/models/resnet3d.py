"""mmaction2's 3-D ResNets (I3D, SlowOnly): clips ``(N, 3, T, H, W)`` to ``(N, D, t, h, w)``.

Written here because no library has mmaction2's structure (torchvision's video ResNets have
other stems, kernels and strides). The modules keep torchvision's 2-D ResNet names (``conv1``,
``bn1``, ``layer3.2.conv2``, ``downsample.0``/``.1``): 2-D ImageNet weights then inflate key by
key, and mmaction2's checkpoints convert with its 2-D ResNet rules (its ``ConvModule`` pairs
``conv1.conv``/``conv1.bn`` become ``conv1``/``bn1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from actionrec.models.backbones import FrozenStages, PretrainedWeightsError, resnet2d_state_dict

# depth: blocks per stage (mmaction2's Bottleneck3d depths).
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Bottleneck3d(nn.Module):
    """mmaction2's ``Bottleneck3d`` with ``style='pytorch'`` (the spatial stride sits in the 3x3
    conv) and ``inflate_style='3x1x1'``: 1x1x1 (3x1x1 when ``inflate``) -> 1x3x3 -> 1x1x1."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        inflate: bool = True,
    ) -> None:
        super().__init__()
        t = 3 if inflate else 1
        self.conv1 = nn.Conv3d(inplanes, planes, (t, 1, 1), padding=(t // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(
            planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, T, H, W)`` to ``(N, 4 * planes, T, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def make_stage(inplanes: int, planes: int, blocks: int, stride: int, inflate) -> nn.Sequential:
    """One stage as mmaction2's ``make_res_layer``: the first block strides and projects."""
    flags = (inflate,) * blocks if isinstance(inflate, int) else tuple(inflate)
    if len(flags) != blocks:
        raise ValueError(f"inflate={list(flags)} must have one flag per block ({blocks})")
    width = planes * Bottleneck3d.expansion
    downsample = None
    if stride != 1 or inplanes != width:
        downsample = nn.Sequential(
            nn.Conv3d(inplanes, width, 1, stride=(1, stride, stride), bias=False),
            nn.BatchNorm3d(width),
        )
    blocks_ = [Bottleneck3d(inplanes, planes, stride, downsample, flags[0] == 1)]
    blocks_ += [Bottleneck3d(width, planes, 1, None, f == 1) for f in flags[1:]]
    return nn.Sequential(*blocks_)


class ResNet3d(FrozenStages, nn.Module):
    """mmaction2's ``ResNet3d`` with the I3D R50 recipe's values as defaults.

    Stem: conv ``conv1_kernel`` (spatial stride 2) -> BN -> ReLU -> max pool (1, 3, 3) (spatial
    stride 2); then four stages of :class:`Bottleneck3d` with spatial strides (1, 2, 2, 2) and
    no temporal stride, with a (2, 1, 1) max pool after the first when ``with_pool2``.

    Args:
        depth: 50, 101 or 152.
        pretrained: None (mmaction2's from-scratch init), or 2-D ImageNet ResNet weights,
            anything :func:`~actionrec.models.backbones.resnet2d_state_dict` takes (a torchvision
            weights name, ``"torchvision://resnet50"``, its URL, a local file), inflated to 3-D
            as mmaction2's ``pretrained2d=True`` does.
        conv1_kernel: ``(t, h, w)`` of the stem conv, padded to keep the size.
        conv1_stride_t: temporal stride of the stem conv.
        pool1_stride_t: temporal stride of the stem's max pool.
        with_pool2: halve T after the first stage.
        inflate: per stage, one flag for all its blocks or one per block; 1 makes the block's
            first conv 3x1x1 (temporal), 0 keeps it 1x1x1.
        norm_eval: keep every BatchNorm in eval mode (frozen statistics) while training.
        frozen_stages: -1 trains everything; 0 freezes the stem; i >= 1 also ``layer1..layer{i}``.
        zero_init_residual: the from-scratch init starts each block's last BN at zero.
        base_channels: width of the stem and of the first stage's bottleneck (64; SlowFast's
            fast pathway 8).
        lateral_channels: per stage, the channels another pathway concatenates to its input
            (SlowFast's slow pathway); the first block of the stage takes them too.
    """

    def __init__(
        self,
        depth: int = 50,
        pretrained: str | None = None,
        conv1_kernel: Sequence[int] = (5, 7, 7),
        conv1_stride_t: int = 2,
        pool1_stride_t: int = 2,
        with_pool2: bool = True,
        inflate: Sequence = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)),
        norm_eval: bool = False,
        frozen_stages: int = -1,
        zero_init_residual: bool = False,
        base_channels: int = 64,
        lateral_channels: Sequence[int] = (0, 0, 0, 0),
    ) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            allowed = tuple(STAGE_BLOCKS)
            raise ValueError(f"ResNet3d depth={depth} is not supported; choose one of {allowed}")
        if len(inflate) != 4:
            raise ValueError(f"inflate={list(inflate)} must have one entry per stage (4)")
        if len(conv1_kernel) != 3:
            raise ValueError(f"conv1_kernel={list(conv1_kernel)} must be (t, h, w)")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages={frozen_stages} must be between -1 and 4")
        if len(lateral_channels) != 4:
            raise ValueError(f"lateral_channels={list(lateral_channels)} needs one per stage (4)")
        self.depth = depth
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        padding = tuple((k - 1) // 2 for k in conv1_kernel)
        stride = (conv1_stride_t, 2, 2)
        self.conv1 = nn.Conv3d(3, base_channels, tuple(conv1_kernel), stride, padding, bias=False)
        self.bn1 = nn.BatchNorm3d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(pool1_stride_t, 2, 2), padding=(0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)) if with_pool2 else nn.Identity()
        inplanes = base_channels
        for i, (blocks, flags) in enumerate(zip(STAGE_BLOCKS[depth], inflate, strict=True)):
            planes = base_channels * 2**i
            lateral = lateral_channels[i]
            stage = make_stage(inplanes + lateral, planes, blocks, 1 if i == 0 else 2, flags)
            self.add_module(f"layer{i + 1}", stage)
            inplanes = planes * Bottleneck3d.expansion
        self.num_features: int = inplanes
        if pretrained is None:
            self.init_weights(zero_init_residual)
        else:
            self.inflate_pretrained(pretrained)
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
                if isinstance(m, Bottleneck3d):
                    nn.init.zeros_(m.bn3.weight)

    def inflate_pretrained(self, pretrained: str) -> None:
        """Load 2-D ResNet weights as mmaction2's ``inflate_weights``: each 2-D conv kernel
        repeated over the 3-D kernel's t taps and divided by t (a still clip then gives the 2-D
        response), BatchNorm copied. Every tensor must fit (mmaction2 skips with a warning)."""
        state_2d = resnet2d_state_dict(self.depth, pretrained)
        own = self.state_dict()
        state, unfit = {}, []
        for key, value in own.items():
            if key not in state_2d:
                continue
            weight = state_2d[key]
            if value.dim() == 5 and weight.shape == value.shape[:2] + value.shape[3:]:
                t = value.shape[2]
                weight = weight.unsqueeze(2).expand_as(value) / t  # (O, I, t, h, w)
            if weight.shape != value.shape:
                unfit.append(f"{key} {tuple(weight.shape)} -> {tuple(value.shape)}")
            state[key] = weight
        # Older 2-D files have no BN counters; mmaction2 leaves those at zero too.
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state_2d if k not in own]
        if missing or unexpected or unfit:
            raise PretrainedWeightsError(
                f"pretrained={pretrained!r} does not inflate into ResNet3d-{self.depth}: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}, other shapes {unfit[:5]}"
            )
        self.load_state_dict(state, strict=False)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` to ``(N, base_channels, t, H/4, W/4)``: conv, BN, ReLU, max pool."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` float clips to ``(N, D, t, H/32, W/32)`` feature maps, ``t`` =
        T over the stem's temporal strides (and 2 more with ``with_pool2``)."""
        x = self.stem(x)  # (N, 64, t, H/4, W/4)
        x = self.pool2(self.layer1(x))  # (N, 256, t, H/4, W/4)
        return self.layer4(self.layer3(self.layer2(x)))  # (N, D, t, H/32, W/32)


class ResNet3dSlowOnly(ResNet3d):
    """mmaction2's ``ResNet3dSlowOnly`` (its pathway without lateral connections): a
    :class:`ResNet3d` with a 2-D stem, no temporal stride or pool, and 3x1x1 convs only in the
    last two stages. Defaults are the SlowOnly R50 recipe's; arguments as :class:`ResNet3d`."""

    def __init__(
        self,
        depth: int = 50,
        pretrained: str | None = None,
        conv1_kernel: Sequence[int] = (1, 7, 7),
        conv1_stride_t: int = 1,
        pool1_stride_t: int = 1,
        with_pool2: bool = False,
        inflate: Sequence = (0, 0, 1, 1),
        norm_eval: bool = False,
        frozen_stages: int = -1,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__(
            depth=depth,
            pretrained=pretrained,
            conv1_kernel=conv1_kernel,
            conv1_stride_t=conv1_stride_t,
            pool1_stride_t=pool1_stride_t,
            with_pool2=with_pool2,
            inflate=inflate,
            norm_eval=norm_eval,
            frozen_stages=frozen_stages,
            zero_init_residual=zero_init_residual,
        )
