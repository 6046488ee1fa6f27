"""Segment consensus: how TSN turns per-segment features into one per video."""

from __future__ import annotations

import torch
from torch import nn

CONSENSUS_TYPES = ("avg", "max")


class SegmentConsensus(nn.Module):
    """Reduce the segment axis of ``(B, T, ...)`` features to ``(B, ...)``.

    Args:
        kind: ``"avg"`` (TSN's default, mmaction2's ``AvgConsensus``) or ``"max"``.
    """

    def __init__(self, kind: str = "avg") -> None:
        super().__init__()
        if kind not in CONSENSUS_TYPES:
            raise ValueError(f"consensus kind={kind!r} is not one of {CONSENSUS_TYPES}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, D)``."""
        if self.kind == "avg":
            return x.mean(dim=1)
        return x.amax(dim=1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
