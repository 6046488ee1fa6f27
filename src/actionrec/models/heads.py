"""Heads: spatial pooling (and TSN's segment consensus), dropout, a linear classifier."""

from __future__ import annotations

import torch
from torch import nn

from actionrec.models.consensus import SegmentConsensus


class ClassifierHead(nn.Module):
    """What every head ends with: dropout and a linear classifier, mmaction2's initialisation.

    Args:
        num_classes: K, the number of classes.
        in_channels: D, the feature width of the backbone.
        dropout_ratio: dropout before the classifier.
        init_std: std of the normal init of the classifier weight; its bias starts at 0.
    """

    def __init__(
        self, num_classes: int, in_channels: int, dropout_ratio: float, init_std: float
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} must be >= 1")
        if not 0.0 <= dropout_ratio < 1.0:
            raise ValueError(f"dropout_ratio={dropout_ratio} must be in [0, 1)")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)
        self.init_std = init_std
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.normal_(self.fc_cls.weight, 0.0, self.init_std)
        nn.init.zeros_(self.fc_cls.bias)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` video or clip features to ``(B, K)`` logits."""
        return self.fc_cls(self.dropout(feats))


class TSNHead(ClassifierHead):
    """mmaction2's ``TSNHead`` with ``spatial_type='avg'``.

    Args:
        num_classes: K, the number of classes.
        in_channels: D, the feature width of the backbone.
        consensus: ``"avg"`` or ``"max"`` over the T segments.
        dropout_ratio: dropout before the classifier (0.4 in the TSN recipe).
        init_std: std of the normal init of the classifier weight; its bias starts at 0.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        consensus: str = "avg",
        dropout_ratio: float = 0.4,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(num_classes, in_channels, dropout_ratio, init_std)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.consensus = SegmentConsensus(consensus)

    def pool_features(self, x: torch.Tensor, num_segs: int) -> torch.Tensor:
        """Backbone maps ``(B*T, D, h, w)`` to video features ``(B, D)``."""
        x = self.pool(x).flatten(1)  # (B*T, D)
        x = x.view(-1, num_segs, x.shape[-1])  # (B, T, D)
        return self.consensus(x)  # (B, D)

    def forward(self, x: torch.Tensor, num_segs: int) -> torch.Tensor:
        """``(B*T, D, h, w)`` feature maps to ``(B, K)`` class scores (logits)."""
        return self.classify(self.pool_features(x, num_segs))
