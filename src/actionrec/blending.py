"""Mini-batch blending (mixup, cutmix) with mmaction2's semantics, applied on the device.

A blending takes normalized float clips ``(B, ..., C, H, W)`` and soft targets ``(B, K)``
(one-hot or multi-hot) and returns both blended with a random permutation of the batch.
The random draw is a small method; the pixel work is a pure function tests can call.
"""

from __future__ import annotations

import torch
from torch.distributions import Beta


def mixup(
    imgs: torch.Tensor, target: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam * x + (1 - lam) * x[perm]`` for the clips and the targets alike."""
    return lam * imgs + (1 - lam) * imgs[perm], lam * target + (1 - lam) * target[perm]


def cutmix(
    imgs: torch.Tensor,
    target: torch.Tensor,
    box: tuple[int, int, int, int],
    perm: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste the box ``(x1, y1, x2, y2)`` of ``imgs[perm]`` into every frame of each clip.

    The targets mix by the area kept: ``lam = 1 - box area / (H * W)``. ``imgs`` is not
    modified.
    """
    x1, y1, x2, y2 = box
    out = imgs.clone()
    out[..., y1:y2, x1:x2] = imgs[perm][..., y1:y2, x1:x2]
    lam = 1.0 - (x2 - x1) * (y2 - y1) / (imgs.shape[-1] * imgs.shape[-2])
    return out, lam * target + (1 - lam) * target[perm]


class BetaBlending:
    """A blending whose mixing weight is drawn from ``Beta(alpha, alpha)``.

    Args:
        alpha: the Beta distribution's parameter (mmaction2's default 0.2).
    """

    def __init__(self, alpha: float = 0.2) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha={alpha} must be > 0")
        self.beta = Beta(float(alpha), float(alpha))


class MixupBlending(BetaBlending):
    """mixup (Zhang et al., 2018): ``lam ~ Beta(alpha, alpha)``, one per batch."""

    def __call__(
        self, imgs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float ``(B, ..., C, H, W)`` and ``(B, K)`` targets to the same, blended."""
        lam = float(self.beta.sample())
        perm = torch.randperm(imgs.shape[0], device=imgs.device)
        return mixup(imgs, target, lam, perm)


class CutmixBlending(BetaBlending):
    """CutMix (Yun et al., 2019): one box per batch, the same for every frame of a clip."""

    def sample_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A box ``(x1, y1, x2, y2)`` with sides ``sqrt(1 - lam)`` of the frame's, centred
        uniformly and clipped to the frame (mmaction2's ``rand_bbox``)."""
        cut = (1.0 - float(self.beta.sample())) ** 0.5
        cut_w, cut_h = int(width * cut), int(height * cut)
        cx, cy = int(torch.randint(width, ())), int(torch.randint(height, ()))
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        return x1, y1, x2, y2

    def __call__(
        self, imgs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float ``(B, ..., C, H, W)`` and ``(B, K)`` targets to the same, blended."""
        perm = torch.randperm(imgs.shape[0], device=imgs.device)
        box = self.sample_box(imgs.shape[-2], imgs.shape[-1])
        return cutmix(imgs, target, box, perm)


class RandomBlending:
    """mmaction2's ``RandomBatchAugment``: one of ``blendings`` per batch, drawn with ``probs``
    (uniformly when None).

    Args:
        blendings: e.g. a :class:`MixupBlending` and a :class:`CutmixBlending`.
        probs: one probability per blending, summing to 1 (None: uniform).
    """

    def __init__(self, blendings: list, probs: list[float] | None = None) -> None:
        if not blendings:
            raise ValueError("RandomBlending needs at least one blending")
        if probs is not None and (len(probs) != len(blendings) or abs(sum(probs) - 1) > 1e-6):
            raise ValueError(f"probs={probs} must be one per blending and sum to 1")
        self.blendings = list(blendings)
        n = len(self.blendings)
        self.probs = torch.tensor(probs if probs is not None else [1.0 / n] * n, dtype=torch.float)

    def __call__(
        self, imgs: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float ``(B, ..., C, H, W)`` and ``(B, K)`` targets to the same, blended."""
        index = int(torch.multinomial(self.probs, 1))
        return self.blendings[index](imgs, target)
