"""Recognizers: whole networks from normalized frames to class scores."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from actionrec.checkpoints import convert_mmaction_resnet
from actionrec.models.heads import TSNHead


def check_head_width(backbone: nn.Module, head: nn.Module) -> None:
    """Stop when the head's ``in_channels`` is not the backbone's ``num_features`` (if it says)."""
    width = getattr(backbone, "num_features", None)
    if width is not None and width != head.in_channels:
        raise ValueError(
            f"head.in_channels={head.in_channels} does not match the backbone's feature width "
            f"{width}; set model.net.head.in_channels={width}"
        )


class TSN(nn.Module):
    """Temporal Segment Network: a 2D backbone on every segment, consensus, classifier.

    The number of segments T is read from the input, so it is configured once, in the data;
    at test time T is every frame of a video (mmaction2's consensus over all sampled frames).

    Args:
        backbone: maps ``(N, C, H, W)`` to ``(N, D, h, w)`` and has ``num_features`` (D).
        head: a :class:`TSNHead` whose ``in_channels`` equals the backbone's D.
    """

    input_layout = "NTCHW"
    memory_format = torch.channels_last

    def __init__(self, backbone: nn.Module, head: TSNHead) -> None:
        super().__init__()
        check_head_width(backbone, head)
        self.backbone = backbone
        self.head = head
        self.num_features = head.in_channels
        self.num_classes = head.num_classes

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` float frames to ``(B, D)`` pooled, consensus-averaged features."""
        t = imgs.shape[1]
        x = self.backbone(imgs.flatten(0, 1))  # (B*T, D, h, w)
        return self.head.pool_features(x, num_segs=t)  # (B, D)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features to ``(B, K)`` logits."""
        return self.head.classify(feats)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` float frames to ``(B, K)`` logits."""
        return self.forward_head(self.forward_features(imgs))

    def convert_mmaction_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict:
        """mmaction2 TSN keys (``backbone.conv1.conv.*``, ``cls_head.fc_cls.*``) to ours."""
        return convert_mmaction_resnet(state)

    def example_input(self, batch: int = 1, size: int = 224, frames: int = 3) -> torch.Tensor:
        """Random normalized-scale float frames ``(batch, frames, 3, size, size)``."""
        return torch.randn(batch, frames, 3, size, size)
