"""A small synthetic action dataset that the project renders on first use.

Each class is one shape (circle, square, ...) that drifts, grows or shrinks, and spins across a
shaded, noisy background. Shape and background colours come from the same distribution for every
class and every shape covers the same area at a given size, so neither colour, brightness nor pixel
count reveals the class: a model has to look at the outline. TSN averages frames and cannot see
temporal order, so the class is deliberately recognisable from any single frame.

Layout written under ``root`` (the mmaction2 video-list layout, ``data_root = root / "videos"``)::

    videos/<class_name>/<split>_<index:04d>.mp4   H.264, yuv420p
    train_list_videos.txt                          "<class_name>/<split>_<index>.mp4 <label>"
    val_list_videos.txt
    classes.txt                                    line i is the name of label i
    .complete                                      JSON of the generation parameters
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "plus",
    "ring",
    "star",
    "crescent",
    "frame",
)
_FORMAT_VERSION = 1  # bump when rendering changes, so stale datasets are not reused silently
_SPLITS = ("train", "val")
_SUPERSAMPLE = 2  # render at 2x and average: anti-aliased edges, like a real camera
_MARKER = ".complete"


def _star(u: np.ndarray, v: np.ndarray, points: int = 5, inner: float = 0.4) -> np.ndarray:
    sector = 2 * np.pi / points
    # Fold every point into the half-sector between a tip (angle 0) and the next notch.
    phi = np.abs((np.arctan2(v, u) + sector / 2) % sector - sector / 2)
    r = np.hypot(u, v)
    x, y = r * np.cos(phi), r * np.sin(phi)
    notch_x, notch_y = inner * np.cos(sector / 2), inner * np.sin(sector / 2)
    # Inside when on the origin's side of the edge from the tip (1, 0) to the notch.
    return (x - 1) * notch_y - y * (notch_x - 1) <= 0


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
    dist = u[..., None] * np.cos(angles) + v[..., None] * np.sin(angles)
    return (dist <= 0.5).all(axis=-1)  # inradius 0.5: circumradius 1


# Unit shapes in local coordinates (u, v); each fits the unit disc before area normalisation.
_SHAPE_MASKS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda u, v: u**2 + v**2 <= 1,
    "square": lambda u, v: np.maximum(abs(u), abs(v)) <= 0.7,
    "triangle": _triangle,
    "plus": lambda u, v: ((abs(u) <= 0.3) & (abs(v) <= 1)) | ((abs(v) <= 0.3) & (abs(u) <= 1)),
    "ring": lambda u, v: (u**2 + v**2 <= 1) & (u**2 + v**2 >= 0.55**2),
    "star": _star,
    "crescent": lambda u, v: (u**2 + v**2 <= 1) & ((u - 0.5) ** 2 + v**2 >= 0.8**2),
    "frame": lambda u, v: (np.maximum(abs(u), abs(v)) <= 0.8) & (np.maximum(abs(u), abs(v)) >= 0.5),
}


@functools.cache
def _area_scale(shape: str) -> float:
    """Factor that gives ``shape`` the area of the unit disc, so area never tells classes apart."""
    grid = np.linspace(-1, 1, 801)
    u, v = np.meshgrid(grid, grid)
    area = _SHAPE_MASKS[shape](u, v).mean() * 4
    return float(np.sqrt(np.pi / area))


def _random_colours(rng: np.random.Generator, min_contrast: float = 70.0) -> np.ndarray:
    """Draw (foreground, background) RGB colours, the foreground the brighter by ``min_contrast``.

    The distribution is the same for every class. A lit object on a darker scene spares a small
    CNN from having to learn both contrast polarities, which roughly halves its training time.
    """
    luma = np.array([0.299, 0.587, 0.114])
    while True:
        colours = rng.uniform(0, 255, size=(2, 3))
        contrast = (colours[0] - colours[1]) @ luma
        if abs(contrast) >= min_contrast:
            return colours if contrast > 0 else colours[::-1]


def render_video(
    shape: str, *, num_frames: int, width: int, height: int, rng: np.random.Generator
) -> np.ndarray:
    """Render one toy video of ``shape`` moving over a shaded, noisy background.

    Args:
        shape: One of ``SHAPES``.
        num_frames: Number of frames T.
        width: Frame width W in pixels.
        height: Frame height H in pixels.
        rng: Source of every random choice; the same generator state gives the same video.

    Returns:
        uint8 array of shape (T, H, W, 3), RGB.
    """
    if shape not in _SHAPE_MASKS:
        raise ValueError(f"shape={shape!r} is not supported; allowed: {SHAPES}")
    fg, bg = _random_colours(rng)
    short = min(width, height)
    # Equivalent-disc radius, drawn per video and changing over time: pixel count overlaps classes.
    radius = rng.uniform(0.16, 0.28, size=2) * short
    centre = rng.uniform(radius.max(), [[width, height]] - radius.max(), size=(2, 2))
    angle = rng.uniform(0, 2 * np.pi) + rng.uniform(-np.pi, np.pi) * np.array([0.0, 1.0])
    gradient_dir = rng.uniform(0, 2 * np.pi)

    s = np.linspace(0, 1, num_frames)[:, None, None]  # (T, 1, 1): progress through the clip
    cx, cy = [(centre[0, i] + (centre[1, i] - centre[0, i]) * s) for i in range(2)]
    r = (radius[0] + (radius[1] - radius[0]) * s) * _area_scale(shape)
    theta = angle[0] + (angle[1] - angle[0]) * s
    xs = (np.arange(width * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    ys = (np.arange(height * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    dx, dy = xs[None, None, :] - cx, ys[None, :, None] - cy  # (T, 1, W') and (T, H', 1)
    u = (np.cos(theta) * dx + np.sin(theta) * dy) / r  # (T, H', W')
    v = (-np.sin(theta) * dx + np.cos(theta) * dy) / r
    mask = _SHAPE_MASKS[shape](u, v).astype(np.float32)
    coverage = mask.reshape(num_frames, height, _SUPERSAMPLE, width, _SUPERSAMPLE).mean(axis=(2, 4))

    # A gentle light gradient across the background, in a random direction.
    yy, xx = np.mgrid[0:height, 0:width] / short - 0.5
    shade = 1 + 0.25 * (np.cos(gradient_dir) * xx + np.sin(gradient_dir) * yy)  # (H, W)
    background = bg * shade[..., None]  # (H, W, 3)
    frames = background + coverage[..., None] * (fg - background)  # (T, H, W, 3)
    frames += rng.normal(0, 6.0, size=frames.shape)
    return np.clip(frames, 0, 255).round().astype(np.uint8)


def _encode_video(frames: np.ndarray, path: Path, fps: int) -> None:
    """Write (T, H, W, 3) uint8 RGB frames to ``path`` as H.264 with a short GOP for cheap seeks."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 8
        # One encoder thread: deterministic output, and the process pool already uses the cores.
        stream.options = {"crf": "23", "preset": "medium", "threads": "1"}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


def _make_video(job: tuple[Path, str, int, int, int, int, tuple[int, ...]]) -> None:
    path, shape, num_frames, width, height, fps, seed_key = job
    rng = np.random.default_rng(seed_key)
    frames = render_video(shape, num_frames=num_frames, width=width, height=height, rng=rng)
    _encode_video(frames, path, fps)


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / _MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _check_args(params: dict) -> None:
    if not 2 <= params["num_classes"] <= len(SHAPES):
        raise ValueError(f"num_classes={params['num_classes']} must be in [2, {len(SHAPES)}]")
    for name in ("videos_per_class_train", "videos_per_class_val", "num_frames", "fps"):
        if params[name] < 1:
            raise ValueError(f"{name}={params[name]} must be >= 1")
    for name in ("width", "height"):
        # yuv420p stores chroma at half resolution, so H.264 needs even frame sizes.
        if params[name] < 16 or params[name] % 2:
            raise ValueError(f"{name}={params[name]} must be an even number >= 16")


def _write_dataset(out: Path, params: dict, num_workers: int) -> None:
    """Render every video and write the lists and marker into the empty directory ``out``."""
    classes = SHAPES[: params["num_classes"]]
    jobs, lists = [], {split: [] for split in _SPLITS}
    for split_index, split in enumerate(_SPLITS):
        for label, shape in enumerate(classes):
            (out / "videos" / shape).mkdir(parents=True, exist_ok=True)
            for index in range(params[f"videos_per_class_{split}"]):
                rel = f"{shape}/{split}_{index:04d}.mp4"
                lists[split].append(f"{rel} {label}\n")
                # A key per video, not one stream: the video does not depend on worker order.
                key = (params["seed"], split_index, label, index)
                frame_args = (params["num_frames"], params["width"], params["height"])
                jobs.append((out / "videos" / rel, shape, *frame_args, params["fps"], key))
    if num_workers > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            list(pool.map(_make_video, jobs, chunksize=8))
    else:
        for job in jobs:
            _make_video(job)
    for split in _SPLITS:
        (out / f"{split}_list_videos.txt").write_text("".join(lists[split]))
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    (out / _MARKER).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")


def generate_toy_dataset(
    root: str | Path,
    num_classes: int = 6,
    videos_per_class_train: int = 40,
    videos_per_class_val: int = 15,
    num_frames: int = 24,
    width: int = 96,
    height: int = 72,
    fps: int = 12,
    seed: int = 0,
    overwrite: bool = False,
    num_workers: int | None = None,
) -> Path:
    """Render the toy dataset into ``root``, or return at once if it is already there.

    List files follow mmaction2's video-list format with paths relative to ``root / "videos"``
    (use that as ``data_root``), e.g. ``circle/train_0000.mp4 0``. The same arguments give
    byte-identical lists and identical decoded frames. The dataset is built in a temporary sibling
    directory and renamed into place, so a crash never leaves a partial dataset at ``root``.

    Args:
        root: Directory to create.
        num_classes: Number of shape classes, taken in order from ``SHAPES``.
        videos_per_class_train: Training videos per class.
        videos_per_class_val: Validation videos per class.
        num_frames: Frames per video.
        width: Frame width in pixels (even).
        height: Frame height in pixels (even).
        fps: Frame rate stored in the files.
        seed: Seed of every random choice.
        overwrite: Replace an existing dataset at ``root`` that was made with other arguments.
        num_workers: Processes that render and encode; None uses up to 2 CPU cores. Does not
            change the output.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: For an argument out of range.
        FileExistsError: If ``root`` holds something else and ``overwrite`` is False.
    """
    root = Path(root)
    params = {
        "version": _FORMAT_VERSION,
        "num_classes": num_classes,
        "videos_per_class_train": videos_per_class_train,
        "videos_per_class_val": videos_per_class_val,
        "num_frames": num_frames,
        "width": width,
        "height": height,
        "fps": fps,
        "seed": seed,
    }
    _check_args(params)
    if _read_marker(root) == params:
        return root
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{root} exists but is not a toy dataset made with {params}; "
            "pass overwrite=True (--overwrite) to replace it, or choose another root"
        )
    if num_workers is None:
        num_workers = min(2, os.cpu_count() or 1)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_dataset(tmp, params, num_workers)
        _replace_dir(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _replace_dir(new: Path, root: Path) -> None:
    """Move ``new`` to ``root``, removing what was there only after the new one is in place."""
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    if root.exists():
        root.rename(old)
    new.rename(root)
    shutil.rmtree(old, ignore_errors=True)


def ensure_toy_dataset(root: str | Path, **kwargs) -> Path:
    """Generate the toy dataset if needed and print one line saying where it is.

    Args:
        root: Directory of the dataset.
        **kwargs: Passed to :func:`generate_toy_dataset`.

    Returns:
        ``root`` as a Path.
    """
    start = time.perf_counter()
    before = _read_marker(Path(root))
    root = generate_toy_dataset(root, **kwargs)
    seconds = time.perf_counter() - start
    # generate_toy_dataset returns early exactly when the marker already matched.
    action = "found" if before is not None and before == _read_marker(root) else "generated"
    print(f"Toy dataset at {root.resolve()} ({action} in {seconds:.1f} s)")
    return root
