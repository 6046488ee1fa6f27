"""Dataset preparation: file lists, frames, re-encoding and list checks on tiny video trees."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from tests.conftest import ROOT

from actionrec.data.annotations import load_annotations
from actionrec.data.decoding import backend_unavailable, read_rawframes
from actionrec.data.formats import FrameFolders, Videos
from actionrec.data.prepare.checking import check_annotations
from actionrec.data.prepare.filelists import build_file_lists, read_classes
from actionrec.data.prepare.frames import extract_frames
from actionrec.data.prepare.reencode import resize_video
from actionrec.data.rawframes import check_rawframes

CLASSES = ("jump", "run", "wave")
NUM_FRAMES, WIDTH, HEIGHT = 20, 64, 48
SCRIPTS = ("build_file_list", "extract_frames", "resize_videos", "check_dataset")


def write_video(path: Path, num_frames: int = NUM_FRAMES, seed: int = 0) -> None:
    """A small H.264 video of random blocks, ``gop`` 10 (keyframe distance to be reduced)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = 10
        stream.options = {"preset": "ultrafast", "threads": "1"}
        for _ in range(num_frames):
            blocks = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
            image = np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))  # (H, W, 3)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def video_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """videos/<class>/<class>_<i>.mp4: 3 classes x 2 videos of 20 frames, 64x48."""
    root = tmp_path_factory.mktemp("tree") / "videos"
    for c, name in enumerate(CLASSES):
        for i in range(2):
            write_video(root / name / f"{name}_{i}.mp4", seed=10 * c + i)
    return root


@pytest.fixture(scope="module")
def frame_tree(video_tree: Path) -> Path:
    """The videos extracted by the script, in two processes, at short side 32."""
    out = video_tree.parent / "rawframes"
    script = load_script("extract_frames")
    assert script.main([str(video_tree), str(out), "--short-side", "32", "--num-workers", "2"]) == 0
    return out


def test_video_lists_split_each_class_with_a_seed(video_tree: Path, tmp_path: Path) -> None:
    written = build_file_lists(video_tree, tmp_path / "a", val_ratio=0.5, seed=3, name="toy")
    names = [w.path.name for w in written]
    assert names == ["toy_train_list_videos.txt", "toy_val_list_videos.txt", "classes.txt"]
    assert read_classes(tmp_path / "a" / "classes.txt") == list(CLASSES)
    train = load_annotations(written[0].path, video_tree, Videos(), num_classes=3)
    val = load_annotations(written[1].path, video_tree, Videos(), num_classes=3)
    assert sorted(r.label for r in val) == [0, 1, 2]  # one of the two videos of each class
    assert {Path(r.path) for r in train + val} == set(video_tree.rglob("*.mp4"))
    for record in train + val:
        assert Path(record.path).parent.name == CLASSES[record.label]

    again = build_file_lists(video_tree, tmp_path / "b", val_ratio=0.5, seed=3, name="toy")
    assert [w.path.read_text() for w in again] == [w.path.read_text() for w in written]
    splits = {
        build_file_lists(video_tree, tmp_path / f"s{s}", val_ratio=0.5, seed=s)[1].path.read_text()
        for s in range(8)
    }
    assert len(splits) > 1  # the seed matters


def test_rawframe_lists_count_frames(frame_tree: Path, tmp_path: Path) -> None:
    written = build_file_lists(frame_tree, tmp_path, format="rawframes", val_ratio=0)
    assert written[0].path.name == "train_list_rawframes.txt"
    lines = written[0].path.read_text().splitlines()
    assert lines[0] == f"jump/jump_0 {NUM_FRAMES} 0"
    records = load_annotations(written[0].path, frame_tree, FrameFolders(), num_classes=3)
    assert len(records) == 6
    for record in records:
        check_rawframes(record)  # every promised frame exists


def test_official_splits_ucf101_and_hmdb51(video_tree: Path, tmp_path: Path) -> None:
    ucf = tmp_path / "ucf"
    ucf.mkdir()
    (ucf / "classInd.txt").write_text("1 wave\n2 jump\n3 run\n")  # not sorted: its order wins
    (ucf / "trainlist01.txt").write_text("jump/jump_0.avi 2\nrun/run_0.avi 3\nwave/wave_0.avi 1\n")
    (ucf / "testlist01.txt").write_text("jump/jump_1.avi\nwave/wave_1.avi\nrun/run_9.avi\n")
    written = build_file_lists(
        video_tree, tmp_path / "u", split_style="ucf101", ann_dir=ucf, splits=[1]
    )
    train, val, classes = written
    assert train.path.name == "ucf101_train_split_1_videos.txt"
    assert train.path.read_text().splitlines() == [
        "jump/jump_0.mp4 1",
        "run/run_0.mp4 2",
        "wave/wave_0.mp4 0",
    ]
    assert val.lines == 2 and val.missing == ("run/run_9",)
    assert read_classes(classes.path) == ["wave", "jump", "run"]

    hmdb = tmp_path / "hmdb"
    hmdb.mkdir()
    for name in CLASSES:
        (hmdb / f"{name}_test_split2.txt").write_text(f"{name}_0.avi 1 \n{name}_1.avi 2 \n")
    written = build_file_lists(
        video_tree, tmp_path / "h", split_style="hmdb51", ann_dir=hmdb, splits=[2]
    )
    assert written[0].path.name == "hmdb51_train_split_2_videos.txt"
    assert written[1].path.read_text().splitlines() == [
        "jump/jump_1.mp4 0",
        "run/run_1.mp4 1",
        "wave/wave_1.mp4 2",
    ]


def test_extract_frames_names_sizes_and_resumes(
    video_tree: Path, frame_tree: Path, tmp_path: Path, capsys
) -> None:
    video = video_tree / "run" / "run_1.mp4"
    folder = frame_tree / "run" / "run_1"
    frames = sorted(p.name for p in folder.glob("*.jpg"))
    assert len(frames) == decoded_frames(video) == NUM_FRAMES
    assert frames == [f"img_{i:05}.jpg" for i in range(1, NUM_FRAMES + 1)]
    first = read_rawframes(folder, np.array([1]))
    assert tuple(first.shape) == (1, 3, 32, 43)  # short side 32, aspect kept: 64 * 32 / 48 = 42.7

    mtimes = {p: p.stat().st_mtime_ns for p in frame_tree.rglob("*.jpg")}
    script = load_script("extract_frames")
    assert script.main([str(video_tree), str(frame_tree), "--num-workers", "1"]) == 0
    assert "0 videos extracted (0 frames), 6 already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in frame_tree.rglob("*.jpg")} == mtimes

    custom = extract_frames(
        video, tmp_path / "x", short_side=0, filename_tmpl="x_{:03}.jpg", start_index=0
    )
    assert custom.frames == NUM_FRAMES and not custom.skipped
    assert (tmp_path / "x" / "x_000.jpg").is_file() and (tmp_path / "x" / "x_019.jpg").is_file()
    assert read_rawframes(tmp_path / "x", np.array([0]), "x_{:03}.jpg").shape[-2:] == (
        HEIGHT,
        WIDTH,
    )
    assert extract_frames(video, tmp_path / "x").skipped


def test_resize_video_short_side_dense_keyframes_all_frames(
    video_tree: Path, tmp_path: Path
) -> None:
    src, dst = video_tree / "wave" / "wave_0.mp4", tmp_path / "wave_0.mp4"
    result = resize_video(src, dst, short_side=32, gop=4)
    assert result.frames == NUM_FRAMES and dst.is_file()
    with av.open(str(dst)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (42, 32)  # 42.7 rounded down to even
        assert not container.streams.audio
        packets = sorted(
            (p for p in container.demux(stream) if p.pts is not None), key=lambda p: p.pts
        )
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert keyframes[0] == 0 and max(np.diff([*keyframes, len(packets)])) <= 4
    assert decoded_frames(dst) == decoded_frames(src) == NUM_FRAMES
    assert resize_video(src, dst).skipped  # resumable: an existing output is done


def test_check_dataset_reports_bad_lines_and_cleans(
    video_tree: Path, tmp_path: Path, samples_dir: Path, capsys
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(video_tree / "jump" / "jump_0.mp4", root / "good_a.mp4")
    shutil.copy(video_tree / "run" / "run_0.mp4", root / "good_b.mp4")
    (root / "empty.mp4").write_bytes(b"")
    data = (samples_dir / "test.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "text.mp4").write_text("not a video\n")
    lines = [
        "good_a.mp4 0",
        "empty.mp4 1",
        "truncated.mp4 2",
        "good_b.mp4 1",
        "text.mp4 0",
        "missing.mp4 2",
    ]
    ann = tmp_path / "list.txt"
    ann.write_text("\n".join(lines) + "\n")

    _, bad = check_annotations(ann, root, show_progress=False)
    assert [(b.line, Path(b.path).name) for b in bad] == [
        (2, "empty.mp4"),
        (3, "truncated.mp4"),
        (5, "text.mp4"),
        (6, "missing.mp4"),
    ]
    assert "FileNotFoundError" in bad[-1].reason

    out = tmp_path / "clean.txt"
    script = load_script("check_dataset")
    code = script.main(
        ["--ann-file", str(ann), "--data-root", str(root), "--out", str(out), "--num-workers", "1"]
    )
    printed = capsys.readouterr().out
    assert code == 1
    for number, name in [(2, "empty"), (3, "truncated"), (5, "text"), (6, "missing")]:
        assert f"line {number}: {root / name}.mp4" in printed
    assert out.read_text().splitlines() == ["good_a.mp4 0", "good_b.mp4 1"]
    clean_args = ["--ann-file", str(out), "--data-root", str(root), "--num-workers", "1"]
    assert script.main(clean_args) == 0


def test_check_dataset_with_a_decoder_that_is_not_installed(
    video_tree: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    ann = tmp_path / "list.txt"
    ann.write_text("jump/jump_0.mp4 0\n")
    monkeypatch.setitem(sys.modules, "decord", None)  # what `import` meets without the package
    backend_unavailable.cache_clear()
    try:
        code = load_script("check_dataset").main(
            ["--ann-file", str(ann), "--data-root", str(video_tree), "--decoder", "decord"]
        )
    finally:
        backend_unavailable.cache_clear()
    # One line with the fix, not the list reported bad line by line.
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: decoder=decord: decord is not installed: pip install decord (wheels for x86-64 "
        "Linux and Windows only); or use the default decoder, pyav"
    ]


def test_scripts_print_help() -> None:
    for name in SCRIPTS:
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / f"{name}.py"), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage:") and "--" in result.stdout
