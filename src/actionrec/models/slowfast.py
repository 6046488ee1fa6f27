"""mmaction2's SlowFast (``ResNet3dSlowFast``, ``SlowFastHead``): one clip ``(N, 3, T, H, W)``
read by two :class:`~actionrec.models.resnet3d.ResNet3d` pathways, with lateral connections.

The slow pathway sees every ``resample_rate``-th frame at full width; the fast pathway
``speed_ratio`` times as many frames at ``1 / channel_ratio`` of the width. After the stem and
after each of the first three stages, a time-strided conv carries the fast features into the slow
pathway's input. Both pathways keep :class:`ResNet3d`'s torchvision-like names, so mmaction2's
checkpoints convert with the 3-D ResNet rules under ``slow_path.`` and ``fast_path.``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from actionrec.checkpoints import convert_mmaction_resnet, load_state_dict_file
from actionrec.models.backbones import PretrainedWeightsError
from actionrec.models.heads import ClassifierHead
from actionrec.models.recognizer3d import Recognizer3D
from actionrec.models.resnet3d import Bottleneck3d, ResNet3d

# mmaction2's ``lateral_infl``: a lateral conv doubles the fast pathway's channels.
LATERAL_INFLATION = 2
STAGES = ("conv1", "layer1", "layer2", "layer3")  # the laterals follow these (not layer4)


class ResNet3dSlowFast(nn.Module):
    """mmaction2's ``ResNet3dSlowFast`` with the SlowFast R50 recipe's values as defaults.

    Slow pathway: a 2-D stem (1x7x7) and 3x1x1 convs in the last two stages, as SlowOnly.
    Fast pathway: a 5x7x7 stem and 3x1x1 convs in every block, ``64 / channel_ratio`` base width.
    Laterals: ``(fusion_kernel, 1, 1)`` convs of temporal stride ``speed_ratio``, no BN or ReLU
    (mmaction2's ``lateral_norm=False``), their output concatenated after the slow features.

    Args:
        depth: 50, 101 or 152, for both pathways.
        pretrained: None (mmaction2's from-scratch init), or the file of a whole SlowFast
            backbone's state dict (mmaction2's keys or ours), loaded strictly as mmaction2 does.
        resample_rate: tau, the slow pathway reads every ``resample_rate``-th input frame.
        speed_ratio: alpha, the fast pathway reads ``speed_ratio`` times as many frames.
        channel_ratio: beta inverse, the fast pathway is that many times narrower.
        fusion_kernel: temporal kernel size of the lateral convs.
        norm_eval: keep every BatchNorm in eval mode (frozen statistics) while training.
        zero_init_residual: the from-scratch init starts each block's last BN at zero.
    """

    def __init__(
        self,
        depth: int = 50,
        pretrained: str | None = None,
        resample_rate: int = 8,
        speed_ratio: int = 8,
        channel_ratio: int = 8,
        fusion_kernel: int = 5,
        norm_eval: bool = False,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if speed_ratio < 1 or resample_rate % speed_ratio:
            raise ValueError(
                f"speed_ratio={speed_ratio} must divide resample_rate={resample_rate}: the fast "
                "pathway reads every (resample_rate // speed_ratio)-th frame"
            )
        if channel_ratio < 1 or 64 % channel_ratio:
            raise ValueError(f"channel_ratio={channel_ratio} must divide 64 (the slow width)")
        if fusion_kernel < 1 or fusion_kernel % 2 == 0:
            raise ValueError(f"fusion_kernel={fusion_kernel} must be odd (padded to keep T)")
        self.resample_rate = resample_rate
        self.speed_ratio = speed_ratio
        fast_base = 64 // channel_ratio
        # Fast widths entering each lateral: the stem's, then each stage's output.
        fast_widths = [fast_base] + [fast_base * 2**i * Bottleneck3d.expansion for i in range(3)]
        common = dict(depth=depth, conv1_stride_t=1, pool1_stride_t=1, with_pool2=False)
        common.update(norm_eval=norm_eval, zero_init_residual=zero_init_residual)
        self.slow_path = ResNet3d(
            conv1_kernel=(1, 7, 7),
            inflate=(0, 0, 1, 1),
            lateral_channels=[LATERAL_INFLATION * w for w in fast_widths],
            **common,
        )
        self.fast_path = ResNet3d(
            conv1_kernel=(5, 7, 7), inflate=(1, 1, 1, 1), base_channels=fast_base, **common
        )
        for name, width in zip(STAGES, fast_widths, strict=True):
            lateral = nn.Conv3d(
                width,
                LATERAL_INFLATION * width,
                (fusion_kernel, 1, 1),
                stride=(speed_ratio, 1, 1),
                padding=(fusion_kernel // 2, 0, 0),
                bias=False,
            )
            nn.init.kaiming_normal_(lateral.weight, mode="fan_out", nonlinearity="relu")
            self.add_module(f"{name}_lateral", lateral)
        self.num_features: int = self.slow_path.num_features + self.fast_path.num_features
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str) -> None:
        """mmaction2's ``pretrained`` for SlowFast: a whole 3-D backbone, every key required."""
        state = {"backbone." + k: v for k, v in load_state_dict_file(path, "pretrained").items()}
        state = convert_mmaction_slowfast(state)
        state = {k.removeprefix("backbone."): v for k, v in state.items()}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise PretrainedWeightsError(
                f"pretrained={path!r} is not a SlowFast-{self.slow_path.depth} backbone: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}"
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3, T, H, W)`` float clips to the slow ``(N, 2048, T/tau, H/32, W/32)`` and fast
        ``(N, 256, T*alpha/tau, H/32, W/32)`` feature maps (R50 widths). T must be a multiple of
        ``resample_rate``. Frames are taken as mmaction2's nearest-neighbour resampling does."""
        t, rate = x.shape[2], self.resample_rate
        fast_rate = rate // self.speed_ratio
        slow = self.slow_path.stem(x[:, :, : t // rate * rate : rate])  # (N, 64, T/tau, H/4, W/4)
        fast = self.fast_path.stem(x[:, :, : t // fast_rate * fast_rate : fast_rate])
        slow = torch.cat((slow, self.conv1_lateral(fast)), dim=1)  # (N, 64 + 2 * 8, ...)
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
            slow = getattr(self.slow_path, name)(slow)
            fast = getattr(self.fast_path, name)(fast)
            if i < 3:
                lateral = getattr(self, f"{name}_lateral")(fast)  # (N, 2 * C_fast, T/tau, h, w)
                slow = torch.cat((slow, lateral), dim=1)
        return slow, fast


class SlowFastHead(ClassifierHead):
    """mmaction2's ``SlowFastHead`` with ``spatial_type='avg'``: average each pathway over
    (t, h, w), concatenate fast then slow, dropout, fc.

    Args:
        num_classes: K, the number of classes.
        in_channels: D, the two pathways' widths together (2048 + 256 for R50).
        dropout_ratio: dropout before the classifier (0.5 in the SlowFast recipes).
        init_std: std of the normal init of the classifier weight; its bias starts at 0.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        dropout_ratio: float = 0.8,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(num_classes, in_channels, dropout_ratio, init_std)
        self.pool = nn.AdaptiveAvgPool3d(1)

    def pool_features(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        """The (slow, fast) maps ``(B, D_s, t, h, w)``, ``(B, D_f, t', h, w)`` to ``(B, D)``."""
        slow, fast = x
        return torch.cat((self.pool(fast), self.pool(slow)), dim=1).flatten(1)  # (B, D_f + D_s)

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        """The (slow, fast) feature maps to ``(B, K)`` logits."""
        return self.classify(self.pool_features(x))


class RecognizerSlowFast(Recognizer3D):
    """mmaction2's ``Recognizer3D`` with a :class:`ResNet3dSlowFast` backbone and a
    :class:`SlowFastHead`: one clip of T frames per view (the 32x2 frames of 4x16x1)."""

    def convert_mmaction_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict:
        """mmaction2 keys to ours: see :func:`convert_mmaction_slowfast`."""
        return convert_mmaction_slowfast(state)

    def example_input(self, batch: int = 1, size: int = 224, frames: int = 32) -> torch.Tensor:
        """Random normalized-scale float clips ``(batch, 3, frames, size, size)``."""
        return torch.randn(batch, 3, frames, size, size)


_LATERAL = re.compile(r"^backbone\.slow_path\.(\w+_lateral)\.conv\.")
_PATHWAY = re.compile(r"^backbone\.(slow_path|fast_path)\.")


def convert_mmaction_slowfast(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 SlowFast recognizer keys to ours: each pathway's ``ConvModule`` pairs as in
    the 3-D ResNet (``slow_path.conv1.conv`` -> ``slow_path.conv1``, ``...conv1.bn`` ->
    ``...bn1``), the laterals moved from the slow pathway to the backbone
    (``slow_path.layer1_lateral.conv`` -> ``layer1_lateral``), ``cls_head.`` -> ``head.``."""
    out = {}
    for key, value in state.items():
        if lateral := _LATERAL.match(key):
            key = f"backbone.{lateral[1]}.{key[lateral.end() :]}"
        elif pathway := _PATHWAY.match(key):
            (inner,) = convert_mmaction_resnet({"backbone." + key[pathway.end() :]: value})
            key = f"backbone.{pathway[1]}.{inner.removeprefix('backbone.')}"
        else:
            (key,) = convert_mmaction_resnet({key: value})
        out[key] = value
    return out
