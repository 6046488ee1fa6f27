"""Pure spatial kernels on uint8 video tensors ``(T, C, H, W)``.

T acts as a batch: every frame gets the same geometry. Nothing here draws random numbers; the
transform classes in :mod:`actionrec.data.transforms` pick the parameters.

``resize`` stands in for OpenCV's ``cv2.resize(..., INTER_LINEAR)`` on uint8 images (what mmcv's
``imresize`` and thus mmaction2 use). By default it runs torchvision's fast uint8 kernel, which
differs from OpenCV by 1 on ~15% of the pixels (harmless for training). ``exact=True`` follows
OpenCV's fixed-point arithmetic instead (11-bit weights, an integer horizontal pass, the vertical
rounding of its SIMD kernel) and matches it bit for bit on the x86 builds we measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor

INTERPOLATIONS = ("bilinear", "nearest")
_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
_COEF_SCALE = 1 << _COEF_BITS


def check_video(imgs: Tensor) -> None:
    """Raise ValueError unless ``imgs`` is a uint8 tensor ``(T, C, H, W)``."""
    if not isinstance(imgs, Tensor) or imgs.dtype != torch.uint8 or imgs.ndim != 4:
        got = (type(imgs).__name__, getattr(imgs, "dtype", None), getattr(imgs, "shape", None))
        raise ValueError(f"imgs must be a uint8 tensor (T, C, H, W), got {got}")


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


def _linear_taps(src: int, dst: int, clamp_weights: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Source indices and 11-bit weights of OpenCV's INTER_LINEAR along one axis."""
    scale = 1.0 / (dst / src)  # OpenCV inverts the inverse scale; keep its double rounding
    pos = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    left = np.floor(pos).astype(np.int64)
    frac = (pos - left).astype(np.float32)
    if clamp_weights:
        # Columns: OpenCV snaps out-of-range taps to the border pixel with weight 1.
        frac[left < 0] = 0
        left[left < 0] = 0
        frac[left >= src - 1] = 0
        left[left >= src - 1] = src - 1
    # Rows keep their fractional weight and just read the border row twice.
    idx0 = np.clip(left, 0, src - 1)
    idx1 = np.clip(left + 1, 0, src - 1)
    w1 = np.round(frac * _COEF_SCALE)
    w0 = np.round((np.float32(1) - frac) * _COEF_SCALE)
    return tuple(torch.from_numpy(a.astype(np.int64)) for a in (idx0, idx1, w0, w1))


def _resize_bilinear_exact(imgs: Tensor, height: int, width: int) -> Tensor:
    src_h, src_w = imgs.shape[-2:]
    x0, x1, a0, a1 = _linear_taps(src_w, width, clamp_weights=True)
    y0, y1, b0, b1 = _linear_taps(src_h, height, clamp_weights=False)
    a0, a1 = a0.to(torch.int32), a1.to(torch.int32)

    def horizontal(rows: Tensor) -> Tensor:  # uint8 (T, C, h, W) -> int32 (T, C, h, w), x 2**7
        out = rows.index_select(-1, x0).to(torch.int32).mul_(a0)
        out += rows.index_select(-1, x1).to(torch.int32).mul_(a1)
        return out.bitwise_right_shift_(4)

    # Rows are independent in the horizontal pass, so pick the source rows first (cheaper when
    # shrinking). Then the vertical pass as OpenCV's SIMD kernel: 16x16 multiply-high, round >>2.
    top = horizontal(imgs.index_select(-2, y0)).mul_(b0.to(torch.int32)[:, None])
    bottom = horizontal(imgs.index_select(-2, y1)).mul_(b1.to(torch.int32)[:, None])
    out = top.bitwise_right_shift_(16) + bottom.bitwise_right_shift_(16)  # (T, C, h, w)
    return out.add_(2).bitwise_right_shift_(2).clamp_(0, 255).to(torch.uint8)


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
        exact: For ``"bilinear"``, reproduce OpenCV bit for bit (about 10x slower) instead of
            torchvision's uint8 kernel, which is within 1 of OpenCV on every pixel.

    Returns:
        uint8 ``(T, C, height, width)``.
    """
    check_video(imgs)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    height, width = (int(s) for s in size_hw)
    if height < 1 or width < 1:
        raise ValueError(f"size_hw must be positive, got {size_hw!r}")
    if (height, width) == tuple(imgs.shape[-2:]):
        return imgs.clone()
    if interpolation == "nearest":
        # torch's legacy "nearest" uses floor(dst * src / dst_size) like OpenCV's INTER_NEAREST.
        return F.interpolate(imgs, size=(height, width), mode="nearest")
    if exact:
        return _resize_bilinear_exact(imgs, height, width)
    return TF.resize(
        imgs, [height, width], interpolation=TF.InterpolationMode.BILINEAR, antialias=False
    )


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
    return imgs.flip(-1)


def vflip(imgs: Tensor) -> Tensor:
    """Mirror every frame top-bottom: ``(..., H, W) -> (..., H, W)``."""
    return imgs.flip(-2)


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
