"""Spatial transforms on uint8 video tensors ``(T, C, H, W)``, with mmaction2's arguments.

Every transform is a callable ``t(imgs, rng=None) -> imgs``: one random draw per call (from the
``numpy.random.Generator`` given, or a fresh one), applied to every frame alike, so a clip keeps
one crop box and one flip. The draw is a small public method (``sample_box``, ``sample_params``)
that tests and notebooks can call; the pixel work is in :mod:`actionrec.data.functional`.
Boxes are ``(x1, y1, x2, y2)`` pixels, right/bottom exclusive; sizes given as pairs are
``(w, h)`` as in mmaction2. The test-time multi-view crops live in :mod:`actionrec.data.views`,
ColorJitter and the albumentations adapter in :mod:`actionrec.data.augmentations`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from actionrec.data import functional as F

# Defined next door, importable from here as before (configs of earlier runs name them here).
from actionrec.data.augmentations import Albumentations, ColorJitter  # noqa: F401
from actionrec.data.views import TenCrop, ThreeCrop  # noqa: F401

Box = tuple[int, int, int, int]


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


def _to_pixels(edges: tuple[float, float], size: int) -> tuple[int, int]:
    """Edges of a box side in fractional pixels to whole ones in ``[0, size]``, at least 1 apart."""
    lo = min(max(int(edges[0] + 0.5), 0), size - 1)
    return lo, min(max(int(edges[1] + 0.5), lo + 1), size)


def _choice(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


class Compose:
    """Apply transforms in order, sharing one random generator.

    Args:
        transforms: Callables ``t(imgs, rng)``; their output feeds the next one.
        lazy: Resample a ``Resize`` -> crop -> ``Resize`` (to a fixed size) at the start of
            the pipeline once, from the crop box mapped back to the unresized frame, as
            mmaction2 0.x's lazy mode (``lazy=True`` and ``Fuse``) does: one interpolation
            instead of two, and no resize of the whole frame. The crop is drawn as without it
            (same candidates on the resized size, same ``rng`` calls); the box is rounded to
            whole pixels of the original frame, so pixels differ from the three-step chain by
            interpolation only. A first resize that leaves the frame as it is (frames already
            at its size) makes no difference at all.
    """

    def __init__(self, transforms: Sequence[Callable[..., Tensor]], lazy: bool = False) -> None:
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not callable(t):
                raise ValueError(f"transforms[{i}] must be callable, got {t!r}")
        self.transforms = transforms
        self.lazy = bool(lazy)

    def __call__(self, imgs: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """Run every transform on uint8 ``(T, C, H, W)``; the result's shape is theirs."""
        rng = _rng(rng)
        transforms = self.transforms
        if self.lazy and isinstance(imgs, Tensor) and imgs.ndim == 4:
            box, rest = self.split_crop(*F.frame_size(imgs), rng)
            if box is not None:
                imgs, transforms = F.crop(imgs, box), rest.transforms
        for t in transforms:
            imgs = t(imgs, rng=rng)
        return imgs

    def split_crop(
        self, height: int, width: int, rng: np.random.Generator | None = None
    ) -> tuple[Box | None, Compose]:
        """Draw the pipeline's leading crop before any frame is decoded.

        When the transforms start with a crop (``MultiScaleCrop``, ``RandomResizedCrop``,
        ``CenterCrop``), possibly after resizes that leave a ``height`` x ``width`` frame as it
        is, the crop's box is drawn here exactly as running the pipeline would draw it (same
        ``rng`` calls, in the same order), so a reader can decode only that box. With ``lazy``,
        a leading ``Resize`` -> crop -> ``Resize`` gives the box in the original frame.

        Returns:
            ``(box, rest)``: running ``rest`` (never lazy: only the leading chain fuses) on the
            box's pixels gives what this pipeline gives on whole frames. ``(None, self)`` when
            the pipeline does not start so; then nothing was drawn.
        """
        transforms = self.transforms
        for i, t in enumerate(transforms):
            if isinstance(t, Resize) and t.output_size(height, width) == (height, width):
                continue  # resizing to the same size returns the frames as they are
            if self.lazy and self._fusable(i):
                new_h, new_w = t.output_size(height, width)
                x1, y1, x2, y2 = transforms[i + 1].crop_box(new_h, new_w, rng=_rng(rng))
                scale_x, scale_y = width / new_w, height / new_h
                xs = _to_pixels((x1 * scale_x, x2 * scale_x), width)
                ys = _to_pixels((y1 * scale_y, y2 * scale_y), height)
                return (xs[0], ys[0], xs[1], ys[1]), Compose(transforms[i + 2 :])
            if not isinstance(t, BoxCrop):
                break
            return t.crop_box(height, width, rng=_rng(rng)), Compose(transforms[i + 1 :])
        return None, self

    def _fusable(self, i: int) -> bool:
        """Whether transforms ``i, i+1, i+2`` are a Resize, a crop, a Resize to a fixed size."""
        window = self.transforms[i : i + 3]
        return (
            len(window) == 3
            and isinstance(window[0], Resize)
            and isinstance(window[1], BoxCrop)
            and isinstance(window[2], Resize)
            and not window[2].keep_ratio
        )

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"{type(self).__name__}([{inner}\n])"


class Resize:
    """Resize every frame (mmcv's size rule).

    Args:
        scale: With ``keep_ratio``: a positive float factor, or a pair bounding the long and
            short side, where ``(-1, 256)`` means "short side 256". Without: the output
            ``(w, h)``.
        keep_ratio: Keep the aspect ratio (see ``scale``).
        interpolation: ``"bilinear"`` or ``"nearest"``.
        exact: Kept for configs that set it: resizing is OpenCV's own, so always exact.
    """

    def __init__(
        self,
        scale: float | Sequence[int],
        keep_ratio: bool = True,
        interpolation: str = "bilinear",
        exact: bool = False,
    ) -> None:
        if interpolation not in F.INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {F.INTERPOLATIONS}, got {interpolation!r}"
            )
        self.scale = self._parse_scale(scale, keep_ratio)
        self.keep_ratio = bool(keep_ratio)
        self.interpolation = interpolation
        self.exact = bool(exact)

    @staticmethod
    def _parse_scale(scale: Any, keep_ratio: bool) -> float | tuple[float, float]:
        if isinstance(scale, float) and keep_ratio and scale > 0:
            return scale
        if isinstance(scale, Sequence) and not isinstance(scale, str) and len(scale) == 2:
            sides = tuple(scale)
            if keep_ratio and sorted(sides)[0] == -1 and sorted(sides)[1] > 0:
                return (math.inf, float(max(sides)))  # short side fixed, long side free
            return tuple(float(s) for s in F.pair(sides, "scale"))
        raise ValueError(
            f"scale must be a positive float factor (keep_ratio=True) or a pair like (-1, 256) "
            f"or (w, h), got {scale!r} with keep_ratio={keep_ratio}"
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(new_h, new_w)`` for a ``height`` x ``width`` input."""
        if not self.keep_ratio:
            return int(self.scale[1]), int(self.scale[0])
        new_w, new_h = F.rescale_size(width, height, self.scale)
        return new_h, new_w

    def __call__(self, imgs: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """uint8 ``(T, C, H, W)`` -> uint8 ``(T, C, new_h, new_w)``; deterministic."""
        size = self.output_size(*F.frame_size(imgs))
        return F.resize(imgs, size, interpolation=self.interpolation, exact=self.exact)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(scale={self.scale}, keep_ratio={self.keep_ratio}, "
            f"interpolation={self.interpolation!r}, exact={self.exact})"
        )


class BoxCrop:
    """A crop of one box, the same for every frame; subclasses give the box by ``crop_box``,
    which :meth:`Compose.split_crop` also calls to decode only that box."""

    def crop_box(self, height: int, width: int, rng: np.random.Generator | None = None) -> Box:
        raise NotImplementedError

    def __call__(self, imgs: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """uint8 ``(T, C, H, W)`` -> uint8 ``(T, C, crop_h, crop_w)``, one box for all frames."""
        return F.crop(imgs, self.crop_box(*F.frame_size(imgs), rng=rng))


class MultiScaleCrop(BoxCrop):
    """TSN's corner/centre crop at a random scale of the short side (no resize).

    Crop sides are ``int(min(H, W) * s)`` for ``s`` in ``scales``; width and height scales are
    paired when their positions in ``scales`` differ by at most ``max_wh_scale_gap``; a side
    within 2 px of ``input_size`` snaps to it. The position is one of 5 fixed offsets (corners,
    centre; 13 adds edge centres and quarter points) or, with ``random_crop``, anywhere.

    Args:
        input_size: Network input ``(w, h)`` (an int means square); only used for snapping.
        scales: Side scales relative to the short image side, in (0, 1].
        max_wh_scale_gap: Largest index gap between the width and the height scale.
        random_crop: Uniform position instead of the fixed ones.
        num_fixed_crops: 5 or 13.
    """

    def __init__(
        self,
        input_size: int | Sequence[int] = 224,
        scales: Sequence[float] = (1, 0.875, 0.75, 0.66),
        max_wh_scale_gap: int = 1,
        random_crop: bool = False,
        num_fixed_crops: int = 5,
    ) -> None:
        self.input_size = F.pair(input_size, "input_size")
        scales = tuple(scales) if isinstance(scales, Sequence) else ()
        if not scales or not all(isinstance(s, int | float) and 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence in (0, 1], got {scales!r}")
        if not isinstance(max_wh_scale_gap, int) or max_wh_scale_gap < 0:
            raise ValueError(f"max_wh_scale_gap must be an int >= 0, got {max_wh_scale_gap!r}")
        if num_fixed_crops not in (5, 13):
            raise ValueError(f"num_fixed_crops must be 5 or 13, got {num_fixed_crops!r}")
        self.scales = scales
        self.max_wh_scale_gap = max_wh_scale_gap
        self.random_crop = bool(random_crop)
        self.num_fixed_crops = num_fixed_crops
        self._sizes: dict[tuple[int, int], list[tuple[int, int]]] = {}  # by (height, width)

    def crop_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Candidate ``(crop_w, crop_h)``, repeats kept (they weigh the draw as in mmaction2)."""
        sizes = self._sizes.get((height, width))
        if sizes is None:
            sizes = self._sizes[(height, width)] = self._crop_sizes(height, width)
        return list(sizes)

    def _crop_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        sides = [int(min(height, width) * s) for s in self.scales]
        sizes = []
        for i, crop_h in enumerate(sides):
            for j, crop_w in enumerate(sides):
                if abs(i - j) <= self.max_wh_scale_gap:
                    snapped = [
                        target if abs(side - target) < 3 else side
                        for side, target in zip((crop_w, crop_h), self.input_size, strict=True)
                    ]
                    sizes.append((snapped[0], snapped[1]))
        return sizes

    def fixed_offsets(self, height: int, width: int, crop_w: int, crop_h: int) -> list[tuple]:
        """The ``num_fixed_crops`` candidate ``(x1, y1)`` for one crop size, mmaction2's order."""
        w_step, h_step = (width - crop_w) // 4, (height - crop_h) // 4
        # In quarter steps: the four corners and the centre, then edge centres and quarters.
        grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
        if self.num_fixed_crops == 13:
            grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        return [(i * w_step, j * h_step) for i, j in grid]

    def candidate_boxes(self, height: int, width: int) -> set[Box]:
        """Every box :meth:`sample_box` can return for a ``height`` x ``width`` image."""
        boxes = set()
        for crop_w, crop_h in set(self.crop_sizes(height, width)):
            F.check_fits("MultiScaleCrop", crop_w, crop_h, height, width)
            if self.random_crop:
                offsets = [
                    (x, y) for x in range(width - crop_w + 1) for y in range(height - crop_h + 1)
                ]
            else:
                offsets = self.fixed_offsets(height, width, crop_w, crop_h)
            boxes.update((x, y, x + crop_w, y + crop_h) for x, y in offsets)
        return boxes

    def sample_box(self, height: int, width: int, rng: np.random.Generator | None = None) -> Box:
        """Draw a size uniformly from :meth:`crop_sizes`, then a position; returns the box."""
        rng = _rng(rng)
        crop_w, crop_h = _choice(rng, self.crop_sizes(height, width))
        F.check_fits("MultiScaleCrop", crop_w, crop_h, height, width)
        if self.random_crop:
            x = int(rng.integers(width - crop_w + 1))
            y = int(rng.integers(height - crop_h + 1))
        else:
            x, y = _choice(rng, self.fixed_offsets(height, width, crop_w, crop_h))
        return x, y, x + crop_w, y + crop_h

    crop_box = sample_box  # the box __call__ cuts

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, scales={self.scales}, "
            f"max_wh_scale_gap={self.max_wh_scale_gap}, random_crop={self.random_crop}, "
            f"num_fixed_crops={self.num_fixed_crops})"
        )


class RandomResizedCrop(BoxCrop):
    """Inception-style random area/aspect crop, as mmaction2's (it crops only; resize after).

    Args:
        area_range: Crop area as a fraction of the image area, ``0 < lo <= hi <= 1``.
        aspect_ratio_range: Crop ``w / h`` range, drawn log-uniformly, ``0 < lo <= hi``.
        max_attempts: Draws to try before falling back to the centred square of the short side.
    """

    def __init__(
        self,
        area_range: Sequence[float] = (0.08, 1.0),
        aspect_ratio_range: Sequence[float] = (3 / 4, 4 / 3),
        max_attempts: int = 10,
    ) -> None:
        area_range, aspect_ratio_range = tuple(area_range), tuple(aspect_ratio_range)
        if len(area_range) != 2 or not 0 < area_range[0] <= area_range[1] <= 1:
            raise ValueError(f"area_range must satisfy 0 < lo <= hi <= 1, got {area_range!r}")
        if len(aspect_ratio_range) != 2 or not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(
                f"aspect_ratio_range must satisfy 0 < lo <= hi, got {aspect_ratio_range!r}"
            )
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.area_range = area_range
        self.aspect_ratio_range = aspect_ratio_range
        self.max_attempts = max_attempts

    def sample_box(self, height: int, width: int, rng: np.random.Generator | None = None) -> Box:
        """Draw a crop box for a ``height`` x ``width`` image."""
        rng = _rng(rng)
        log_ratio = np.log(self.aspect_ratio_range)
        ratios = np.exp(rng.uniform(log_ratio[0], log_ratio[1], size=self.max_attempts))
        areas = rng.uniform(*self.area_range, size=self.max_attempts) * (height * width)
        crop_ws = np.round(np.sqrt(areas * ratios)).astype(np.int64)
        crop_hs = np.round(np.sqrt(areas / ratios)).astype(np.int64)
        for crop_w, crop_h in zip(crop_ws.tolist(), crop_hs.tolist(), strict=True):
            if crop_h <= height and crop_w <= width:
                x = int(rng.integers(width - crop_w + 1))
                y = int(rng.integers(height - crop_h + 1))
                return x, y, x + crop_w, y + crop_h
        side = min(height, width)
        x, y = (width - side) // 2, (height - side) // 2
        return x, y, x + side, y + side

    crop_box = sample_box  # the box __call__ cuts

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(area_range={self.area_range}, "
            f"aspect_ratio_range={self.aspect_ratio_range}, max_attempts={self.max_attempts})"
        )


class Flip:
    """Flip every frame of a clip with probability ``flip_ratio``.

    Args:
        flip_ratio: Probability of flipping, in [0, 1].
        direction: ``"horizontal"`` or ``"vertical"``.
    """

    DIRECTIONS = ("horizontal", "vertical")

    def __init__(self, flip_ratio: float = 0.5, direction: str = "horizontal") -> None:
        if not isinstance(flip_ratio, int | float) or not 0 <= flip_ratio <= 1:
            raise ValueError(f"flip_ratio must be in [0, 1], got {flip_ratio!r}")
        if direction not in self.DIRECTIONS:
            raise ValueError(f"direction must be one of {self.DIRECTIONS}, got {direction!r}")
        self.flip_ratio = float(flip_ratio)
        self.direction = direction

    def sample_params(self, rng: np.random.Generator | None = None) -> bool:
        """Whether to flip this clip."""
        return bool(_rng(rng).random() < self.flip_ratio)

    def __call__(self, imgs: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """uint8 ``(T, C, H, W)`` -> same shape, all frames flipped or none."""
        F.check_video(imgs)
        if not self.sample_params(rng):
            return imgs
        return F.hflip(imgs) if self.direction == "horizontal" else F.vflip(imgs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(flip_ratio={self.flip_ratio}, direction={self.direction!r})"


class CenterCrop(BoxCrop):
    """Cut the centre ``crop_size`` ``(w, h)`` box (an int means square); deterministic."""

    def __init__(self, crop_size: int | Sequence[int]) -> None:
        self.crop_size = F.pair(crop_size, "crop_size")

    def box(self, height: int, width: int) -> Box:
        """The box cut from a ``height`` x ``width`` image (offsets rounded down)."""
        crop_w, crop_h = self.crop_size
        F.check_fits(type(self).__name__, crop_w, crop_h, height, width)
        x, y = (width - crop_w) // 2, (height - crop_h) // 2
        return x, y, x + crop_w, y + crop_h

    def crop_box(self, height: int, width: int, rng: np.random.Generator | None = None) -> Box:
        """:meth:`box`; draws nothing."""
        return self.box(height, width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(crop_size={self.crop_size})"
