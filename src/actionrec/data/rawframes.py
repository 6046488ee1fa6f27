"""Frame folders: one image per frame (mmaction2's rawframes), decoded by OpenCV as mmcv does,
so pixels equal mmaction2's."""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from actionrec.data.readers import decode_error

# OpenCV >= 4.10 converts to RGB while decoding; older ones need a BGR -> RGB pass.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def read_rawframes(
    frame_dir: str | os.PathLike,
    indices: np.ndarray,
    filename_tmpl: str = "img_{:05}.jpg",
    *,
    offset: int = 0,
) -> torch.Tensor:
    """Read frames stored one image per file, decoding each distinct frame once.

    Args:
        frame_dir: Folder holding the frames.
        indices: 1-D integer array of frame numbers as they appear in file names (the
            sampler's ``start_index`` already added); may repeat and be unsorted.
        filename_tmpl: Python format string turning a frame number into a file name.
        offset: Added to every index before formatting (rawframes lists ``with_offset``).

    Returns:
        uint8 ``(T, 3, H, W)`` RGB frames in the order of ``indices``, laid out channels-last
        (grayscale files are expanded to 3 channels).

    Raises:
        FileNotFoundError: When a frame file is missing.
        DecodeError: When a frame cannot be decoded or frames differ in size.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if np.all(indices[1:] > indices[:-1]):  # sampled frames usually are: no repeats to share
        unique, order = indices.tolist(), range(len(indices))
    else:
        unique, inverse = np.unique(indices, return_inverse=True)
        unique, order = unique.tolist(), inverse.reshape(-1).tolist()
    paths = [os.path.join(frame_dir, filename_tmpl.format(i + offset)) for i in unique]
    images = [_decode_image(_read_bytes(p, filename_tmpl), p) for p in paths]
    if len({image.shape for image in images}) > 1:
        raise decode_error(str(frame_dir), "rawframes", "frames differ in size")
    if not images:
        return torch.empty((0, 3, 0, 0), dtype=torch.uint8)
    frames = np.stack([images[u] for u in order])  # (T, H, W, C)
    return torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W), channels-last


def _read_bytes(path: str, filename_tmpl: str) -> np.ndarray:
    try:
        with open(path, "rb") as file:
            return np.frombuffer(file.read(), dtype=np.uint8)  # half np.fromfile's cost
    except FileNotFoundError:
        raise FileNotFoundError(
            f"frame file not found: {path}; check data.filename_tmpl={filename_tmpl!r}, "
            "data.start_index (1 for mmaction2's extracted frames) and total_frames in the list"
        ) from None
    except OSError as error:
        raise decode_error(path, "rawframes", error) from error


def _decode_image(data: np.ndarray, path: str) -> np.ndarray:
    """Encoded image (any format OpenCV reads) to uint8 (H, W, 3) RGB; grey becomes 3 channels."""
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB)
    if image is None:
        raise decode_error(path, "rawframes", "not a decodable image (corrupt or truncated?)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if _IMREAD_RGB is None else image
