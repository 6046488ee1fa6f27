"""Tests for the toy dataset generator: layout, decodability, determinism, no colour shortcut."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from actionrec.data.toy import SHAPES, generate_toy_dataset, render_video

TINY = {
    "num_classes": 6,
    "videos_per_class_train": 2,
    "videos_per_class_val": 1,
    "num_frames": 6,
    "width": 48,
    "height": 32,
    "num_workers": 1,
}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_toy_dataset(tmp_path_factory.mktemp("toy") / "toy", seed=0, **TINY)


def read_list(path: Path) -> list[tuple[str, int]]:
    pairs = []
    for line in path.read_text().splitlines():
        rel, label = line.split(" ")
        pairs.append((rel, int(label)))
    return pairs


def decode(path: Path) -> np.ndarray:
    """All frames of a video as uint8 (T, H, W, 3)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_lists_follow_mmaction2_video_format(tiny_root: Path) -> None:
    classes = (tiny_root / "classes.txt").read_text().splitlines()
    assert classes == list(SHAPES[: TINY["num_classes"]])
    train = read_list(tiny_root / "train_list_videos.txt")
    val = read_list(tiny_root / "val_list_videos.txt")
    assert len(train) == TINY["num_classes"] * TINY["videos_per_class_train"]
    assert len(val) == TINY["num_classes"] * TINY["videos_per_class_val"]
    for pairs in (train, val):
        assert {label for _, label in pairs} == set(range(len(classes)))
        for rel, label in pairs:
            assert rel.split("/")[0] == classes[label]
            assert (tiny_root / "videos" / rel).is_file()
    assert not {rel for rel, _ in train} & {rel for rel, _ in val}


def test_videos_decode_to_requested_shape(tiny_root: Path) -> None:
    rel, _ = read_list(tiny_root / "val_list_videos.txt")[0]
    frames = decode(tiny_root / "videos" / rel)
    assert frames.shape == (TINY["num_frames"], TINY["height"], TINY["width"], 3)
    assert frames.dtype == np.uint8


def test_same_seed_same_dataset_other_seed_differs(tiny_root: Path, tmp_path: Path) -> None:
    # Two worker processes instead of one must not change a single frame.
    again = generate_toy_dataset(tmp_path / "again", seed=0, **{**TINY, "num_workers": 2})
    other = generate_toy_dataset(tmp_path / "other", seed=1, **TINY)
    for name in ("train_list_videos.txt", "val_list_videos.txt", "classes.txt"):
        assert (again / name).read_bytes() == (tiny_root / name).read_bytes()
    for rel, _ in read_list(tiny_root / "train_list_videos.txt"):
        np.testing.assert_array_equal(
            decode(again / "videos" / rel), decode(tiny_root / "videos" / rel)
        )
    rel, _ = read_list(tiny_root / "train_list_videos.txt")[0]
    assert not np.array_equal(
        decode(other / "videos" / rel)[0], decode(tiny_root / "videos" / rel)[0]
    )


def test_render_is_a_pure_function_of_the_rng() -> None:
    kwargs = {"num_frames": 4, "width": 32, "height": 24}
    a = render_video("star", rng=np.random.default_rng(3), **kwargs)
    b = render_video("star", rng=np.random.default_rng(3), **kwargs)
    assert a.shape == (4, 24, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[-1]), "the shape should move between frames"


def test_second_call_does_not_rewrite(tiny_root: Path) -> None:
    files = [tiny_root / ".complete", tiny_root / "train_list_videos.txt"]
    files.append(next((tiny_root / "videos").rglob("*.mp4")))
    before = [f.stat().st_mtime_ns for f in files]
    assert generate_toy_dataset(tiny_root, seed=0, **TINY) == tiny_root
    assert [f.stat().st_mtime_ns for f in files] == before


def test_other_arguments_replace_a_toy_dataset(tmp_path: Path) -> None:
    small = {**TINY, "num_classes": 2, "videos_per_class_train": 1}
    root = generate_toy_dataset(tmp_path / "toy", seed=0, **small)
    generate_toy_dataset(root, seed=1, **small)
    assert json.loads((root / ".complete").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["toy"], "no temporary directory left behind"


def test_foreign_directory_needs_overwrite(tmp_path: Path) -> None:
    small = {**TINY, "num_classes": 2, "videos_per_class_train": 1}
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "notes.txt").write_text("not a toy dataset")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_toy_dataset(tmp_path / "toy", **small)
    generate_toy_dataset(tmp_path / "toy", overwrite=True, **small)
    assert not (tmp_path / "toy" / "notes.txt").exists()


@pytest.mark.parametrize(
    ("name", "value"), [("num_classes", 1), ("num_classes", 99), ("width", 95), ("num_frames", 0)]
)
def test_bad_arguments_name_the_argument(tmp_path: Path, name: str, value: int) -> None:
    with pytest.raises(ValueError, match=name):
        generate_toy_dataset(tmp_path / "toy", **{**TINY, name: value})


def test_mean_colour_does_not_predict_the_class() -> None:
    """Nearest class mean on a video's mean RGB, leave-one-out, must stay near chance."""
    num_classes, per_class = 6, 30
    features, labels = [], []
    for label, shape in enumerate(SHAPES[:num_classes]):
        for index in range(per_class):
            rng = np.random.default_rng([7, label, index])
            video = render_video(shape, num_frames=2, width=48, height=36, rng=rng)
            features.append(video.reshape(-1, 3).mean(axis=0))
            labels.append(label)
    x, y = np.array(features), np.array(labels)
    sums = np.stack([x[y == k].sum(axis=0) for k in range(num_classes)])  # (K, 3)
    counts = np.bincount(y, minlength=num_classes)[:, None].astype(float)  # (K, 1)
    correct = 0
    for i in range(len(x)):
        own = np.eye(num_classes)[y[i]][:, None]  # (K, 1): leave this video out of its class
        means = (sums - own * x[i]) / (counts - own)
        correct += int(np.argmin(np.linalg.norm(means - x[i], axis=1)) == y[i])
    assert correct / len(x) < 0.3, f"mean colour predicts the class: {correct / len(x):.2f}"
