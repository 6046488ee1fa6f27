"""Pure spatial kernels on uint8 video tensors ``(T, C, H, W)``.

T acts as a batch: every frame gets the same geometry. Nothing here draws random numbers; the
transform classes in :mod:`actionrec.data.transforms` pick the parameters.

``resize`` is OpenCV's ``cv2.resize(..., INTER_LINEAR)`` on uint8 images, run frame by frame on
the channels-last view of the clip: what mmcv's ``imresize`` and thus mmaction2 use, so pixels
equal mmaction2's bit for bit, and faster than torchvision's uint8 kernel (measured: 0.7 vs
1.3 ms for three 1280x720 frames to 455x256, the same for 340x256 crops to 224x224).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor

INTERPOLATIONS = ("bilinear", "nearest")

# Frames are resized in DataLoader workers, one process per core: OpenCV's own thread pool would
# only oversubscribe the cores (mmengine switches it off the same way).
cv2.setNumThreads(1)


def check_video(imgs: Tensor) -> None:
    """Raise ValueError unless ``imgs`` is a uint8 tensor ``(T, C, H, W)``."""
    if not isinstance(imgs, Tensor) or imgs.dtype != torch.uint8 or imgs.ndim != 4:
        got = (type(imgs).__name__, getattr(imgs, "dtype", None), getattr(imgs, "shape", None))
        raise ValueError(f"imgs must be a uint8 tensor (T, C, H, W), got {got}")


def frame_size(imgs: Tensor) -> tuple[int, int]:
    """``(H, W)`` of a uint8 ``(T, C, H, W)`` clip; ValueError for anything else."""
    check_video(imgs)
    return int(imgs.shape[-2]), int(imgs.shape[-1])


def check_fits(name: str, crop_w: int, crop_h: int, height: int, width: int) -> None:
    """Raise ValueError naming transform ``name`` when its crop exceeds the image."""
    if crop_w > width or crop_h > height:
        raise ValueError(
            f"{name} crop {crop_w}x{crop_h} (WxH) does not fit in a {width}x{height} image; "
            "resize the frames first"
        )


def rescale_size(width: int, height: int, scale: float | tuple[float, float]) -> tuple[int, int]:
    """New ``(width, height)`` for an image rescaled as mmcv's ``rescale_size`` does.

    Args:
        width: Current width.
        height: Current height.
        scale: A positive factor, or a pair bounding the long and the short side: the image is
            made as large as possible with long side <= ``max(scale)`` and short side <=
            ``min(scale)``. ``(math.inf, 256)`` (mmaction2's ``(-1, 256)``) sets the short side
            to 256.

    Returns:
        ``(new_width, new_height)``, each ``int(side * factor + 0.5)``.
    """
    if isinstance(scale, tuple | list):
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f"scale must be a positive pair, got {scale!r}")
        factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    else:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        factor = float(scale)
    return int(width * factor + 0.5), int(height * factor + 0.5)


def resize(
    imgs: Tensor,
    size_hw: tuple[int, int],
    interpolation: str = "bilinear",
    exact: bool = False,
) -> Tensor:
    """Resize every frame to ``size_hw`` without antialiasing (as OpenCV does).

    Args:
        imgs: uint8 ``(T, C, H, W)``.
        size_hw: Output ``(height, width)``.
        interpolation: ``"bilinear"`` (OpenCV INTER_LINEAR) or ``"nearest"``.
        exact: Kept for configs that set it; bilinear is OpenCV's own kernel either way.

    Returns:
        uint8 ``(T, C, height, width)``, laid out channels-last for ``"bilinear"``; ``imgs``
        itself when it has that size already.
    """
    check_video(imgs)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    height, width = (int(s) for s in size_hw)
    if height < 1 or width < 1:
        raise ValueError(f"size_hw must be positive, got {size_hw!r}")
    if (height, width) == tuple(imgs.shape[-2:]):
        return imgs  # no kernel changes pixels at scale 1; a copy would cost as much as a resize
    if interpolation == "nearest":
        # torch's legacy "nearest" uses floor(dst * src / dst_size) like OpenCV's INTER_NEAREST.
        return F.interpolate(imgs, size=(height, width), mode="nearest")
    if not _packed_uint8(imgs):
        # OpenCV needs pixels packed along a row (frames from another decoder, flips).
        imgs = imgs.contiguous(memory_format=torch.channels_last)
    frames = imgs.permute(0, 2, 3, 1).numpy()  # (T, H, W, C), a view
    out = np.empty((len(frames), height, width, frames.shape[-1]), dtype=np.uint8)
    for frame, dst in zip(frames, out, strict=True):
        cv2.resize(frame, (width, height), dst=dst, interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(out).permute(0, 3, 1, 2)  # (T, C, height, width)


def crop(imgs: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """Cut the same box out of every frame.

    Args:
        imgs: ``(T, C, H, W)`` (any dtype; usually uint8).
        box: ``(x1, y1, x2, y2)`` in pixels, right/bottom exclusive, inside the image.

    Returns:
        ``(T, C, y2 - y1, x2 - x1)``, a view of ``imgs``.
    """
    x1, y1, x2, y2 = (int(v) for v in box)
    height, width = imgs.shape[-2:]
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ValueError(f"box {box!r} does not fit in an image of {height}x{width} (HxW)")
    return imgs[..., y1:y2, x1:x2]


def hflip(imgs: Tensor) -> Tensor:
    """Mirror every frame left-right: ``(..., H, W) -> (..., H, W)``."""
    return _flip(imgs, -1)


def vflip(imgs: Tensor) -> Tensor:
    """Mirror every frame top-bottom: ``(..., H, W) -> (..., H, W)``."""
    return _flip(imgs, -2)


def _flip(imgs: Tensor, dim: int) -> Tensor:
    """``imgs.flip(dim)``; OpenCV's, frame by frame, for channels-last uint8 clips (what the
    resize before a train Flip gives), which is 3x faster than torch's kernel on them."""
    frames = imgs.permute(0, 2, 3, 1).numpy() if _packed_uint8(imgs) else None
    if frames is None:
        return imgs.flip(dim)
    out = np.empty(frames.shape, dtype=np.uint8)
    code = 1 if dim == -1 else 0  # OpenCV: 1 mirrors around the vertical axis, 0 the horizontal
    for frame, dst in zip(frames, out, strict=True):
        cv2.flip(frame, code, dst=dst)
    return torch.from_numpy(out).permute(0, 3, 1, 2)  # (T, C, H, W), channels-last


def _packed_uint8(imgs: Tensor) -> bool:
    """Whether a ``(T, C, H, W)`` uint8 CPU tensor is channels-last with pixels packed along
    each row (OpenCV's layout), so its ``(T, H, W, C)`` view is a valid array of images."""
    if imgs.dtype != torch.uint8 or imgs.ndim != 4 or imgs.device.type != "cpu":
        return False
    channels, width = imgs.shape[1], imgs.shape[3]
    _, stride_c, stride_h, stride_w = imgs.stride()
    return stride_c == 1 and stride_w == channels and stride_h >= width * channels and channels <= 4


def pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``value`` as a ``(w, h)`` pair of positive ints (an int means a square).

    Raises:
        ValueError: naming ``name`` when ``value`` is not a positive int or pair of them.
    """
    if isinstance(value, int | np.integer):
        values = (value, value)
    else:
        is_seq = isinstance(value, Sequence) and not isinstance(value, str)
        values = tuple(value) if is_seq else ()
    ok = len(values) == 2 and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not ok:
        raise ValueError(f"{name} must be a positive int or a (w, h) pair of them, got {value!r}")
    return int(values[0]), int(values[1])


def _gray(imgs: Tensor) -> Tensor:
    """float ``(T, 3, H, W)`` -> ``(T, 1, H, W)`` luma with mmaction2's ColorJitter weights."""
    r, g, b = imgs.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def _shift_hue(imgs: Tensor, hue: float) -> Tensor:
    # mmaction2 rounds to uint8 and shifts OpenCV's 8-bit hue (180 steps per turn) by
    # int(hue * 255) steps; express that shift in turns for torchvision.
    steps = int(hue * 255)
    turns = (steps / 180 + 0.5) % 1.0 - 0.5
    as_uint8 = imgs.clamp(0, 255).to(torch.uint8)
    return TF.adjust_hue(as_uint8, turns).to(imgs.dtype)


def color_jitter(
    imgs: Tensor,
    order: Sequence[int],
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> Tensor:
    """mmaction2's ColorJitter with fixed factors, the same for every frame.

    Args:
        imgs: uint8 ``(T, 3, H, W)`` RGB.
        order: A permutation of ``0..3``: brightness, contrast, saturation, hue.
        brightness: Multiplier (1 keeps the frame).
        contrast: Blend factor towards each frame's mean luma (1 keeps the frame).
        saturation: Blend factor towards each pixel's luma (1 keeps the frame).
        hue: Hue shift as mmaction2 defines it, in [-0.5, 0.5] (0 keeps the frame).

    Returns:
        uint8 ``(T, 3, H, W)``, truncated after clipping as mmaction2 does.
    """
    check_video(imgs)
    out = imgs.to(torch.float32)
    for op in order:
        if op == 0 and brightness != 1:
            out = out * brightness
        elif op == 1 and contrast != 1:
            mean = _gray(out).mean(dim=(-3, -2, -1), keepdim=True)  # (T, 1, 1, 1)
            out = contrast * out + (1 - contrast) * mean
        elif op == 2 and saturation != 1:
            out = saturation * out + (1 - saturation) * _gray(out)
        elif op == 3 and hue != 0:
            out = _shift_hue(out, hue)
    return out.clamp_(0, 255).to(torch.uint8)
