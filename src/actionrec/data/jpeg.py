"""Frame images: OpenCV's full decode, or libjpeg-turbo decoding only the region a pipeline keeps.

A training sample from a frame folder keeps one crop of each frame (MultiScaleCrop: about half
of a 340x256 frame; CenterCrop: 224x224 of it). :func:`decode_region` decodes just that
region with the small C extension ``actionrec.data._jpeg``: libjpeg-turbo skips the inverse
DCT, upsampling and colour conversion outside it and stops after its last row. The pixels equal
OpenCV's full decode cropped (tests check it on every chroma layout), so mmaction2's pixels are
kept; only the time changes (``docs/benchmarks.md``).

The extension is built at install time against the system's libjpeg-turbo headers
(``libjpeg-dev``). Where it is missing, or for anything it does not handle the way OpenCV does
(non-JPEG files, EXIF orientation, CMYK, libjpeg warnings on damaged data), the region is cut
from OpenCV's full decode instead: same pixels, same errors.
"""

from __future__ import annotations

import cv2
import numpy as np

from actionrec.data.readers import Box, decode_error

try:
    from actionrec.data import _jpeg
except ImportError:  # not built: no compiler or no libjpeg headers at install time
    _jpeg = None

AVAILABLE = _jpeg is not None

# OpenCV >= 4.10 converts to RGB while decoding; older ones need a BGR -> RGB pass.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def decode(data: np.ndarray, path: str) -> np.ndarray:
    """Encoded image (any format OpenCV reads) to uint8 ``(H, W, 3)`` RGB, as mmcv decodes it.

    Grey images become 3 channels; EXIF orientation is applied (OpenCV's ``IMREAD_COLOR``).

    Raises:
        DecodeError: naming ``path`` when OpenCV cannot decode it.
    """
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB)
    if image is None:
        raise decode_error(path, "rawframes", "not a decodable image (corrupt or truncated?)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if _IMREAD_RGB is None else image


def region_size(data: np.ndarray) -> tuple[int, int] | None:
    """``(height, width)`` of a JPEG that :func:`decode_region` decodes by region itself.

    None when the extension is not built or the file is not such a JPEG (another format, EXIF
    orientation that OpenCV would apply, CMYK): decode those in full with :func:`decode`.
    """
    if _jpeg is None:
        return None
    try:
        height, width, components, exif = _jpeg.read_header(data)
    except ValueError:
        return None
    return (height, width) if components in (1, 3) and not exif else None


def decode_region(data: np.ndarray, box: Box, out: np.ndarray, path: str) -> tuple[int, int]:
    """Decode the ``box`` ``(x1, y1, x2, y2)`` of an image into ``out``.

    Args:
        data: The encoded file.
        box: Pixels, right/bottom exclusive.
        out: C-contiguous uint8 ``(y2 - y1, x2 - x1, 3)``, receives RGB.
        path: Named in errors.

    Returns:
        The full image's ``(height, width)``.

    Raises:
        DecodeError: When the image cannot be decoded or ``box`` does not fit in it.
    """
    x1, y1, x2, y2 = box
    if _jpeg is not None:
        try:
            warnings, height, width = _jpeg.decode_region(data, out, x1, y1, x2 - x1, y2 - y1)
        except ValueError:
            pass  # OpenCV decides: it reads more formats and words the errors its own way
        else:
            if not warnings:
                return height, width
    image = decode(data, path)
    height, width = image.shape[:2]
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise decode_error(path, "rawframes", f"box {box} outside the {width}x{height} image")
    out[...] = image[y1:y2, x1:x2]
    return height, width
