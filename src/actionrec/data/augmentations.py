"""Augmentations beyond TSN's crop and flip: mmaction2's ColorJitter and an albumentations
adapter. Same contract as :mod:`actionrec.data.transforms`: ``t(imgs, rng=None) -> imgs`` on
uint8 ``(T, C, H, W)``, one random draw per clip."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from actionrec.data import functional as F


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


class ColorJitter:
    """mmaction2's ColorJitter: one set of factors per clip, applied in a random order.

    Args:
        brightness: Jitter range: ``v`` means ``(1 - v, 1 + v)``; a pair is the range itself,
            within ``[0, 2]``. Same for ``contrast`` and ``saturation``.
        contrast: See ``brightness``.
        saturation: See ``brightness``.
        hue: ``v`` means ``(-v, v)``; a pair is the range itself, within ``[-0.5, 0.5]``.

    mmaction2 fixes the order of the four operations when the transform is built; here it is
    drawn per clip, as torchvision does, so that a seeded generator alone decides the output.
    """

    def __init__(
        self,
        brightness: float | Sequence[float] = 0.5,
        contrast: float | Sequence[float] = 0.5,
        saturation: float | Sequence[float] = 0.5,
        hue: float | Sequence[float] = 0.1,
    ) -> None:
        self.brightness = self._range("brightness", brightness, center=1.0, radius=1.0)
        self.contrast = self._range("contrast", contrast, center=1.0, radius=1.0)
        self.saturation = self._range("saturation", saturation, center=1.0, radius=1.0)
        self.hue = self._range("hue", hue, center=0.0, radius=0.5)

    @staticmethod
    def _range(name: str, value: Any, center: float, radius: float) -> tuple[float, float]:
        if isinstance(value, int | float) and 0 <= value <= radius:
            return center - value, center + value
        if isinstance(value, Sequence) and len(value) == 2:
            lo, hi = (float(v) for v in value)
            if center - radius <= lo <= hi <= center + radius:
                return lo, hi
        raise ValueError(
            f"{name} must be a number in [0, {radius}] or a (lo, hi) pair within "
            f"[{center - radius}, {center + radius}], got {value!r}"
        )

    def sample_params(self, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """Keyword arguments for :func:`actionrec.data.functional.color_jitter`."""
        rng = _rng(rng)
        params: dict[str, Any] = {"order": rng.permutation(4).tolist()}
        for name in ("brightness", "contrast", "saturation", "hue"):
            params[name] = float(rng.uniform(*getattr(self, name)))
        return params

    def __call__(self, imgs: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """uint8 RGB ``(T, 3, H, W)`` -> same shape and dtype."""
        return F.color_jitter(imgs, **self.sample_params(rng))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )


# albumentations is optional (no config of ours uses the adapter); this is how to get it.
ALBUMENTATIONS_INSTALL = "pip install 'albumentations>=2.0' (or actionrec[albumentations])"


class Albumentations:
    """Run an albumentations transform (or ``Compose``) on a clip with one parameter draw.

    Frames go through albumentations' ``images=`` target, which shares the random parameters
    across the batch, and its random state is seeded from ``rng`` so runs are reproducible.

    In a config, give the transform in albumentations' own serialized form (what
    ``albumentations.to_dict`` writes, with or without its outer ``transform`` key), so that
    a machine without albumentations stops here, saying what to install, rather than at a
    Hydra target it cannot find::

        - _target_: actionrec.data.augmentations.Albumentations
          transform:
            __class_fullname__: GaussianBlur
            p: 0.5

    Args:
        transform: An albumentations transform, e.g. ``albumentations.GaussianBlur(p=0.5)``, or
            its serialized form. It must keep uint8 pixels.

    Raises:
        ImportError: When ``transform`` is serialized and albumentations is not installed.
        ValueError: When ``transform`` is neither.
    """

    def __init__(self, transform: Any) -> None:
        if isinstance(transform, Mapping):
            transform = from_serialized(transform)
        if not callable(transform) or not hasattr(transform, "set_random_state"):
            raise ValueError(
                f"transform must be an albumentations (>= 2.0) transform, got {transform!r}"
            )
        self.transform = transform

    def __call__(self, imgs: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """uint8 ``(T, C, H, W)`` -> uint8 ``(T, C, H', W')``."""
        F.check_video(imgs)
        rng = _rng(rng)
        seed = int(rng.integers(2**63))
        self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        frames = imgs.permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
        out = np.asarray(self.transform(images=frames)["images"])
        if out.dtype != np.uint8 or out.ndim != 4:
            raise ValueError(
                f"{self.transform!r} returned {out.dtype} {out.shape}; expected uint8 (T, H, W, C)"
            )
        return torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2)  # (T, C, H, W)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


def from_serialized(spec: Mapping[str, Any]) -> Any:
    """The albumentations transform that ``albumentations.to_dict`` serialized as ``spec``."""
    try:
        import albumentations
    except ImportError as error:
        raise ImportError(
            f"the Albumentations adapter needs albumentations ({error}): {ALBUMENTATIONS_INSTALL}"
        ) from error
    spec = _plain(spec)  # Hydra hands over DictConfig/ListConfig; albumentations wants builtins
    return albumentations.from_dict(spec if "transform" in spec else {"transform": spec})


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value
