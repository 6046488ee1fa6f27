"""3-D recognizers (mmaction2's ``Recognizer3D`` + ``I3DHead``): one clip ``(B, C, T, H, W)``
to class scores, for the I3D and SlowOnly families (``actionrec.models.resnet3d``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from actionrec.checkpoints import convert_mmaction_resnet
from actionrec.models.heads import ClassifierHead
from actionrec.models.recognizers import check_head_width


class I3DHead(ClassifierHead):
    """mmaction2's ``I3DHead`` with ``spatial_type='avg'``: average over (t, h, w), dropout, fc.

    Args:
        num_classes: K, the number of classes.
        in_channels: D, the feature width of the backbone.
        dropout_ratio: dropout before the classifier (0.5 in the I3D and SlowOnly recipes).
        init_std: std of the normal init of the classifier weight; its bias starts at 0.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        dropout_ratio: float = 0.5,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(num_classes, in_channels, dropout_ratio, init_std)
        self.pool = nn.AdaptiveAvgPool3d(1)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone maps ``(B, D, t, h, w)`` to clip features ``(B, D)``."""
        return self.pool(x).flatten(1)  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, t, h, w)`` feature maps to ``(B, K)`` logits."""
        return self.classify(self.pool_features(x))


class Recognizer3D(nn.Module):
    """A 3-D backbone on a whole clip, then :class:`I3DHead`: mmaction2's ``Recognizer3D``.

    Each view (clip x crop) is one row; the LightningModule averages the views' scores.

    Args:
        backbone: maps ``(B, 3, T, H, W)`` to ``(B, D, t, h, w)`` and has ``num_features`` (D),
            e.g. :class:`~actionrec.models.resnet3d.ResNet3d`.
        head: an :class:`I3DHead` whose ``in_channels`` equals the backbone's D.
    """

    input_layout = "NCTHW"
    memory_format = torch.channels_last_3d

    def __init__(self, backbone: nn.Module, head: I3DHead) -> None:
        super().__init__()
        check_head_width(backbone, head)
        self.backbone = backbone
        self.head = head
        self.num_features = head.in_channels
        self.num_classes = head.num_classes

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` float clips to ``(B, D)`` pooled features."""
        return self.head.pool_features(self.backbone(imgs))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features to ``(B, K)`` logits."""
        return self.head.classify(feats)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` float clips to ``(B, K)`` logits."""
        return self.forward_head(self.forward_features(imgs))

    def convert_mmaction_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict:
        """mmaction2 ``Recognizer3D`` keys to ours. Our ResNet3d keeps torchvision's names, so
        its ``ConvModule`` pairs map as in the 2-D ResNet (``conv1.conv`` -> ``conv1``,
        ``conv1.bn`` -> ``bn1``, ``downsample.conv`` -> ``downsample.0``, ``cls_head.`` ->
        ``head.``)."""
        return convert_mmaction_resnet(state)

    def example_input(self, batch: int = 1, size: int = 224, frames: int = 8) -> torch.Tensor:
        """Random normalized-scale float clips ``(batch, 3, frames, size, size)``."""
        return torch.randn(batch, 3, frames, size, size)
