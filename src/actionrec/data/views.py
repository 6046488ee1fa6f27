"""Multi-view crops for testing (mmaction2's ThreeCrop and TenCrop): one clip in, a view axis out.

Like the transforms in :mod:`actionrec.data.transforms` they are callables
``t(imgs, rng=None)`` on uint8 ``(T, C, H, W)``, but deterministic and returning
``(V, T, C, h, w)``: a crop axis that the model's view layout groups. Boxes are
``(x1, y1, x2, y2)`` pixels, right/bottom exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from actionrec.data import functional as F

Box = tuple[int, int, int, int]


class _FixedCrops:
    """Shared constructor: ``crop_size`` ``(w, h)``, an int means square."""

    def __init__(self, crop_size: int | Sequence[int]) -> None:
        self.crop_size = F.pair(crop_size, "crop_size")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(crop_size={self.crop_size})"


class ThreeCrop(_FixedCrops):
    """Three crops along the long side, in mmaction2's order: start, end, middle.

    ``crop_size`` must span the short side (e.g. ``Resize((-1, 256))`` then ``ThreeCrop(256)``).
    Adds a view axis: uint8 ``(T, C, H, W)`` -> uint8 ``(3, T, C, crop_h, crop_w)``.
    """

    def boxes(self, height: int, width: int) -> list[Box]:
        """The three boxes: left, right, middle (or top, bottom, middle for tall images)."""
        crop_w, crop_h = self.crop_size
        F.check_fits(type(self).__name__, crop_w, crop_h, height, width)
        if crop_h == height:
            step = (width - crop_w) // 2
            offsets = [(0, 0), (2 * step, 0), (step, 0)]
        elif crop_w == width:
            step = (height - crop_h) // 2
            offsets = [(0, 0), (0, 2 * step), (0, step)]
        else:
            raise ValueError(
                f"ThreeCrop crop_size={self.crop_size} (w, h) must match the height or the width "
                f"of the {width}x{height} (WxH) frames"
            )
        return [(x, y, x + crop_w, y + crop_h) for x, y in offsets]

    def __call__(self, imgs: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """uint8 ``(T, C, H, W)`` -> uint8 ``(3, T, C, crop_h, crop_w)``."""
        return torch.stack([F.crop(imgs, b) for b in self.boxes(*F.frame_size(imgs))])


class TenCrop(_FixedCrops):
    """Corner and centre crops, each followed by its mirror image, in mmaction2's order.

    Views: upper-left, its flip, upper-right, its flip, lower-left, its flip, lower-right, its
    flip, centre, its flip. The centre offset is ``2 * ((W - w) // 4)``, which can sit one pixel
    left of :class:`CenterCrop`'s. uint8 ``(T, C, H, W)`` -> uint8 ``(10, T, C, crop_h, crop_w)``.
    """

    def boxes(self, height: int, width: int) -> list[Box]:
        """The five unflipped boxes in view order."""
        crop_w, crop_h = self.crop_size
        F.check_fits(type(self).__name__, crop_w, crop_h, height, width)
        w_step, h_step = (width - crop_w) // 4, (height - crop_h) // 4
        grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
        return [(i * w_step, j * h_step, i * w_step + crop_w, j * h_step + crop_h) for i, j in grid]

    def __call__(self, imgs: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """uint8 ``(T, C, H, W)`` -> uint8 ``(10, T, C, crop_h, crop_w)``."""
        views = []
        for box in self.boxes(*F.frame_size(imgs)):
            cropped = F.crop(imgs, box)
            views += [cropped, F.hflip(cropped)]
        return torch.stack(views)
