"""The decode floor: candidate decoders that decode only what the sampled frames need, which
of them work here, and how exact each one (and ours) is against a full sequential decode."""

from __future__ import annotations

import importlib
import os
import sys
import time
import warnings
from collections.abc import Callable

import av
import cv2
import numpy as np
import torch

from actionrec.data.decoding import backend_unavailable, open_video, read_rawframes
from actionrec.data.pyav_reader import index_packets, open_container

from .media import FILENAME_TMPL, MediaSet
from .recipe import our_decoder


def pyav_seek(path: str, inds: np.ndarray, skip_nonref: bool = False, clock=None) -> np.ndarray:
    """Seek to the keyframe before each group of wanted frames and decode up to them.

    With ``skip_nonref`` the decoder skips pictures that no other picture references (FFmpeg's
    ``skip_frame=NONREF``) unless they are wanted: the least work an exact decode needs.
    ``clock`` (a dict) receives CPU ms per stage: index, decode, convert.
    """
    tick = time.process_time
    t0 = tick()
    with open_container(path) as container:  # H.264: probed without decoding a picture
        stream = container.streams.video[0]
        codec = stream.codec_context
        codec.thread_count = 1
        pts, key_pts, _ = index_packets(container, stream)  # what our reader calls frame i
        unique = np.unique(inds)
        targets = pts[unique]
        groups = np.maximum(np.searchsorted(key_pts, targets, side="right") - 1, 0)
        t1 = tick()
        convert = 0.0
        found: dict[int, np.ndarray] = {}
        for group in np.unique(groups):
            want = set(targets[groups == group].tolist())
            container.seek(int(key_pts[group]), stream=stream, backward=True, any_frame=False)
            done = False
            for packet in container.demux(stream):
                if skip_nonref:
                    codec.skip_frame = "DEFAULT" if packet.pts in want else "NONREF"
                for frame in codec.decode(packet if packet.size else None):
                    if frame.pts in want and frame.pts not in found:
                        c = tick()
                        found[frame.pts] = frame.to_ndarray(format="rgb24", threads=1)  # (H, W, 3)
                        convert += tick() - c
                done = want <= found.keys()
                if done:
                    break
            if not done:
                raise RuntimeError(
                    f"{path}: frames at pts {sorted(want - found.keys())} not decoded"
                )
        codec.skip_frame = "DEFAULT"
    if clock is not None:
        total = tick() - t0
        clock["index"] = clock.get("index", 0.0) + (t1 - t0) * 1e3
        clock["decode"] = clock.get("decode", 0.0) + (total - (t1 - t0) - convert) * 1e3
        clock["convert"] = clock.get("convert", 0.0) + convert * 1e3
    return np.stack([found[int(p)] for p in pts[inds]])  # (T, H, W, 3)


def pyav_skip(path: str, inds: np.ndarray) -> np.ndarray:
    return pyav_seek(path, inds, skip_nonref=True)


def torchcodec_exact(path: str, inds: np.ndarray) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=1)
    unique, inverse = np.unique(inds, return_inverse=True)
    frames = decoder.get_frames_at(indices=unique.tolist()).data  # (U, 3, H, W)
    return frames.permute(0, 2, 3, 1).numpy()[inverse.reshape(-1)]


def decord_batch(path: str, inds: np.ndarray) -> np.ndarray:
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    unique, inverse = np.unique(inds, return_inverse=True)
    return reader.get_batch(unique.tolist()).asnumpy()[inverse.reshape(-1)]


def jpeg_torchvision(folder: str, inds: np.ndarray) -> np.ndarray:
    """File reads and one batched libjpeg-turbo call (torchvision's ``decode_jpeg``)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    unique, inverse = np.unique(inds, return_inverse=True)
    data = [
        torch.from_numpy(np.fromfile(os.path.join(folder, FILENAME_TMPL.format(i)), np.uint8))
        for i in unique.tolist()
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's codec notice
        frames = torch.stack(decode_jpeg(data, mode=ImageReadMode.RGB))  # (U, 3, H, W)
    return frames.permute(0, 2, 3, 1).numpy()[inverse.reshape(-1)]


def jpeg_opencv(folder: str, inds: np.ndarray) -> np.ndarray:
    """What mmcv does: cv2.imdecode, then BGR to RGB."""
    unique, inverse = np.unique(inds, return_inverse=True)
    frames = []
    for i in unique.tolist():
        data = np.fromfile(os.path.join(folder, FILENAME_TMPL.format(i)), dtype=np.uint8)
        frames.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(frames)[inverse.reshape(-1)]


VIDEO_DECODERS = {
    "pyav seek": pyav_seek,
    "pyav seek + skip non-ref": pyav_skip,
    "torchcodec exact": torchcodec_exact,
    "decord": decord_batch,
}
# The optional candidates, by the actionrec backend whose package (and libraries) each needs.
OPTIONAL_BACKEND = {"torchcodec exact": "torchcodec", "decord": "decord"}


def usable_video_decoders() -> dict[str, Callable[[str, np.ndarray], np.ndarray]]:
    """The candidates that work here; each one skipped is named on stderr with the reason."""
    usable = {}
    for name, decode in VIDEO_DECODERS.items():
        reason = backend_unavailable(OPTIONAL_BACKEND[name]) if name in OPTIONAL_BACKEND else None
        if reason is None:
            usable[name] = decode
        else:
            print(f"{name}: skipped (not measured): {reason}", file=sys.stderr)
    return usable


def backend_version(backend: str) -> str:
    """The optional ``backend``'s version, or why it was not measured."""
    if backend_unavailable(backend) is not None:
        return "not usable here (not measured)"
    return importlib.import_module(backend).__version__


FRAME_DECODERS = {"jpeg torchvision": jpeg_torchvision, "jpeg opencv": jpeg_opencv}


def reference_frames(media: MediaSet, item: dict, inds: np.ndarray) -> np.ndarray:
    """What index i means: the i-th frame of a full sequential decode (videos), cv2 (JPEG)."""
    if media.kind == "rawframes":
        return jpeg_opencv(item["path"], inds)
    wanted = set(np.unique(inds).tolist())
    frames = {}
    with av.open(item["path"]) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames[i] = frame.to_ndarray(format="rgb24", threads=1)
            if len(frames) == len(wanted):
                break
    return np.stack([frames[int(i)] for i in inds])


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    if a.shape != b.shape:
        return 255
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def check_exactness(media: MediaSet, drawn: dict[str, list], decoders: dict) -> dict:
    """Max abs difference to the reference frames, for ours and each candidate decoder."""
    diffs: dict[str, int] = {}
    for split, per_repeat in drawn.items():
        if split == "test":
            continue  # the same frames as val, more of them
        for i, inds in enumerate(per_repeat[0]):
            item = media.items[i]
            ref = reference_frames(media, item, inds)
            if media.kind == "video":
                with open_video(item["path"], backend=our_decoder()) as video:
                    ours = video.read(inds).permute(0, 2, 3, 1).numpy()
            else:
                ours = read_rawframes(item["path"], inds, FILENAME_TMPL).permute(0, 2, 3, 1).numpy()
            diffs["ours"] = max(diffs.get("ours", 0), max_diff(ours, ref))
            for name, fn in decoders.items():
                diffs[name] = max(diffs.get(name, 0), max_diff(fn(item["path"], inds), ref))
    return diffs


def frames_to_decode(media: MediaSet, path: str, inds: np.ndarray) -> int:
    """Frames an exact seek-and-decode walks: from each keyframe to the last frame wanted after it.

    Display order, so B-frames that follow the last wanted frame in decode order are not counted.
    A frame folder decodes only the distinct frames asked for.
    """
    unique = np.unique(inds)
    if media.kind == "rawframes":
        return len(unique)
    with av.open(path) as container:
        pts, key_pts, _ = index_packets(container, container.streams.video[0])
    keys = np.searchsorted(pts, key_pts)  # display index of each keyframe
    groups = np.maximum(np.searchsorted(keys, unique, side="right") - 1, 0)
    return int(sum(unique[groups == g].max() - keys[g] + 1 for g in np.unique(groups)))
