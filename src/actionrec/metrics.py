"""Evaluation metrics beyond TorchMetrics', and gathering per-video test outputs across ranks."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric


def gather_results(outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-batch test outputs of every rank and sort them by ``index``.

    Each rank tests a strict shard of the list, so the union holds every video exactly once.
    """
    local = {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]} if outputs else {}
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        shards: list[dict | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(shards, local)
        shards = [s for s in shards if s]
        local = {k: torch.cat([s[k] for s in shards]) for k in shards[0]} if shards else {}
    if "index" in local:
        order = local["index"].argsort()
        local = {k: v[order] for k, v in local.items()}
    return local


class HitAtOne(MeanMetric):
    """Multi-label top-1: the share of videos whose highest score is on one of their labels.

    Its inputs are 0/1 values it makes itself, so it skips MeanMetric's NaN check, which reads
    a value back to the host (on a GPU, a wait for the step to finish).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(nan_strategy="disable", **kwargs)

    def update(self, scores: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        best = scores.argmax(dim=-1, keepdim=True)  # (B, 1)
        super().update(target.gather(-1, best).squeeze(-1).gt(0).float())


def mean_class_accuracy(confmat: torch.Tensor) -> torch.Tensor:
    """Mean per-class recall over the classes present in the labels (mmaction2's definition).

    Args:
        confmat: ``(K, K)`` counts, rows are true classes.
    """
    support = confmat.sum(dim=1)
    present = support > 0
    recall = confmat.diagonal()[present].float() / support[present].float()
    return recall.mean() if recall.numel() else confmat.new_zeros((), dtype=torch.float)
