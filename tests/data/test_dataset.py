"""VideoDataset and VideoDataModule: samples, views, and unreadable media under each policy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from actionrec.data.annotations import load_annotations
from actionrec.data.datamodule import VideoDataModule
from actionrec.data.dataset import MediaError, VideoDataset
from actionrec.data.formats import FrameFolders
from actionrec.data.readers import ReaderBase
from actionrec.data.sampling import SampleFrames
from actionrec.data.transforms import CenterCrop, Compose, TenCrop


@pytest.fixture
def broken_root(toy_root: Path, tmp_path: Path) -> Path:
    """A copy of two toy videos plus broken files, listed together."""
    root = tmp_path / "videos"
    root.mkdir()
    good = sorted((toy_root / "videos").rglob("*.mp4"))[:2]
    for i, path in enumerate(good):
        shutil.copy(path, root / f"good{i}.mp4")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video")
    data = (toy_root / "videos" / good[0].relative_to(toy_root / "videos")).read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    names = ["good0", "empty", "text", "truncated", "missing", "good1"]
    (tmp_path / "list.txt").write_text("".join(f"{n}.mp4 {i % 3}\n" for i, n in enumerate(names)))
    return tmp_path


def dataset(root: Path, **kwargs) -> VideoDataset:
    kwargs.setdefault("isolate_decoder", False)  # a child process costs seconds to start
    records = load_annotations(root / "list.txt", data_root=root / "videos")
    return VideoDataset(
        records, SampleFrames(1, num_clips=3, test_mode=True), Compose([CenterCrop(64)]), **kwargs
    )


def test_a_sample_is_uint8_frames_and_a_label(broken_root: Path) -> None:
    sample = dataset(broken_root)[0]
    assert sample["imgs"].shape == (3, 3, 64, 64) and sample["imgs"].dtype == torch.uint8
    assert sample["label"].dtype == torch.int64 and sample["label"].item() == 0
    assert sample["skipped"] == ""


@pytest.mark.parametrize(
    ("index", "name"), [(1, "empty"), (2, "text"), (3, "truncated"), (4, "missing")]
)
def test_unreadable_media_is_replaced_and_named(broken_root: Path, index: int, name: str) -> None:
    torch.manual_seed(0)
    sample = dataset(broken_root)[index]
    assert sample["imgs"].shape == (3, 3, 64, 64)
    first = sample["skipped"].splitlines()[0]
    assert f"{name}.mp4 (list line {index + 1})" in first


def test_replacement_is_deterministic_under_the_seed(broken_root: Path) -> None:
    draws = []
    for _ in range(2):
        torch.manual_seed(0)
        data = dataset(broken_root)
        draws.append([(data[i]["label"].item(), data[i]["skipped"]) for i in range(1, 5)])
    assert draws[0] == draws[1]


def test_raise_policy_stops_with_the_file(broken_root: Path) -> None:
    with pytest.raises(MediaError, match=r"text\.mp4 \(list line 3\)"):
        dataset(broken_root, on_error="raise")[2]


class LyingReader(ReaderBase):
    """A reader whose file claims more frames than it gives: it fails with an IndexError."""

    num_frames = 100
    fps = None  # the container states no rate

    def read(self, indices, box=None):
        raise IndexError(f"frame {int(indices.max())} is past the end")


def test_any_reader_failure_is_skipped_and_named(broken_root: Path, monkeypatch) -> None:
    """Not only DecodeError and OSError: a reader's IndexError costs its sample, not the run."""
    from actionrec.data import formats

    real = formats.open_video

    def open_video(path, backend="pyav"):
        return LyingReader() if Path(path).name == "good1.mp4" else real(path, backend=backend)

    monkeypatch.setattr(formats, "open_video", open_video)
    data = dataset(broken_root)  # in this process, where the patch reaches
    sample = data[5]
    assert sample["imgs"].shape == (3, 3, 64, 64)  # a replacement
    assert "good1.mp4 (list line 6): IndexError('frame" in sample["skipped"].splitlines()[0]
    with pytest.raises(MediaError, match=r"good1\.mp4 \(list line 6\): IndexError"):
        dataset(broken_root, on_error="raise")[5]


def test_all_bad_gives_up_after_bounded_retries(broken_root: Path) -> None:
    records = [
        r
        for r in load_annotations(broken_root / "list.txt", data_root=broken_root / "videos")
        if "good" not in r.path
    ]
    data = VideoDataset(
        records,
        SampleFrames(1, num_clips=3, test_mode=True),
        Compose([CenterCrop(64)]),
        max_retries=4,
        isolate_decoder=False,
    )
    with pytest.raises(MediaError, match="5 samples in a row"):
        data[0]


def test_workers_survive_bad_media_and_batches_name_it(broken_root: Path) -> None:
    dm = VideoDataModule(
        num_classes=3,
        ann_file_train=str(broken_root / "list.txt"),
        ann_file_val=str(broken_root / "list.txt"),
        data_root=str(broken_root / "videos"),
        num_clips=3,
        train_pipeline=[CenterCrop(64)],
        val_pipeline=[CenterCrop(64)],
        videos_per_gpu=3,
        val_videos_per_gpu=3,
        workers_per_gpu=2,
    )
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    assert [b["imgs"].shape[0] for b in batches] == [3, 3]
    skipped = [line for b in batches for s in b["skipped"] for line in s.splitlines()]
    assert len(skipped) >= 4


def test_test_split_keeps_crops_and_every_sampled_frame(broken_root: Path) -> None:
    # The data layer does not group frames into views: that is the model's (frames_per_view).
    records = load_annotations(broken_root / "list.txt", data_root=broken_root / "videos")
    data = VideoDataset(
        records,
        SampleFrames(1, num_clips=4, test_mode=True),
        Compose([TenCrop(48)]),
        isolate_decoder=False,
    )
    assert data[0]["imgs"].shape == (10, 4, 3, 48, 48)  # (crops, clips x clip_len, C, H, W)
    data = VideoDataset(
        records,
        SampleFrames(2, num_clips=3, test_mode=True),
        Compose([CenterCrop(48)]),
        isolate_decoder=False,
    )
    assert data[0]["imgs"].shape == (6, 3, 48, 48)


def test_multi_class_targets_are_multi_hot(tmp_path: Path, toy_root: Path) -> None:
    video = next((toy_root / "videos").rglob("*.mp4"))
    (tmp_path / "list.txt").write_text(f"{video} 1 3\n")
    records = load_annotations(tmp_path / "list.txt", multi_class=True, num_classes=4)
    data = VideoDataset(
        records,
        SampleFrames(1, num_clips=2, test_mode=True),
        Compose([CenterCrop(48)]),
        multi_class=True,
        num_classes=4,
        isolate_decoder=False,
    )
    assert data[0]["label"].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_a_missing_data_root_or_an_empty_list_stops_setup(broken_root: Path, tmp_path) -> None:
    import lightning as L

    def datamodule(**kwargs) -> VideoDataModule:
        args = {
            "num_classes": 3,
            "ann_file_train": str(broken_root / "list.txt"),
            "ann_file_val": str(broken_root / "list.txt"),
            "data_root": str(broken_root / "videos"),
            "videos_per_gpu": 2,
        }
        return VideoDataModule(**{**args, **kwargs})

    with pytest.raises(FileNotFoundError, match=r"data\.data_root=.*nowhere is not a directory"):
        datamodule(data_root=str(tmp_path / "nowhere")).setup("fit")
    with pytest.raises(FileNotFoundError, match=r"data\.data_root_val=.*nowhere"):
        datamodule(data_root_val=str(tmp_path / "nowhere")).setup("fit")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(
        ValueError, match=r"data\.ann_file_val=.*lists no videos.*limit_val_batches"
    ):
        datamodule(ann_file_val=str(empty)).setup("fit")
    # Validation off: the empty list is not read.
    dm = datamodule(ann_file_val=str(empty))
    dm.trainer = L.Trainer(limit_val_batches=0, logger=False, enable_checkpointing=False)
    dm.setup("fit")
    assert set(dm.datasets) == {"train"}


def test_a_batch_too_large_for_the_list_names_the_key(broken_root: Path) -> None:
    dm = VideoDataModule(
        num_classes=3,
        ann_file_train=str(broken_root / "list.txt"),
        ann_file_val=str(broken_root / "list.txt"),
        data_root=str(broken_root / "videos"),
        videos_per_gpu=8,
    )
    with pytest.raises(ValueError, match=r"data.videos_per_gpu=8.*at most 6"):
        dm.setup("fit")


def test_a_wrong_start_index_stops_setup_with_the_one_that_matches(samples_dir: Path) -> None:
    ann = samples_dir / "annotations" / "rawframe_test_list.txt"
    dm = VideoDataModule(
        num_classes=400,
        ann_file_train=str(ann),
        ann_file_val=str(ann),
        dataset_type="rawframes",  # the data config's key: the datamodule builds the format
        data_root=str(samples_dir),
        start_index=0,
        videos_per_gpu=1,
    )
    with pytest.raises(FileNotFoundError, match="start_index=1 matches"):
        dm.setup("fit")


def test_a_short_frame_folder_is_skipped_with_the_reason(samples_dir: Path, tmp_path) -> None:
    (tmp_path / "list.txt").write_text("imgs 5 1\nimgs 40 2\n")  # the folder holds 10 frames
    records = load_annotations(tmp_path / "list.txt", data_root=samples_dir, media=FrameFolders())
    data = VideoDataset(
        records,
        SampleFrames(1, num_clips=3, test_mode=True),
        Compose([CenterCrop(64)]),
        media=FrameFolders(),
        isolate_decoder=False,
    )
    torch.manual_seed(0)
    sample = data[1]
    assert "holds only 10 such frames" in sample["skipped"]
    assert sample["label"].item() == 1  # replaced by the readable record


def test_a_decode_that_takes_too_long_counts_as_unreadable_in_process(
    broken_root: Path, monkeypatch
) -> None:
    import time

    from actionrec.data import formats

    def slow_open(path, backend="pyav"):
        while True:  # a decoder stuck in a Python-level loop
            time.sleep(0.01)

    monkeypatch.setattr(formats, "open_video", slow_open)
    data = dataset(broken_root, decode_timeout=0.2, on_error="raise", isolate_decoder=False)
    start = time.monotonic()
    with pytest.raises(MediaError, match=r"longer than 0\.2 s"):
        data[0]
    assert time.monotonic() - start < 2


def test_the_decoder_process_survives_hangs_and_crashes() -> None:
    import math
    import os
    import time

    from actionrec.data.isolation import DecoderCrash, DecoderProcess

    process = DecoderProcess(timeout=1.0)
    assert process.call(math.sqrt, 4.0) == 2.0
    with pytest.raises(DecoderCrash, match=r"no answer within 1\.0 s"):
        process.call(time.sleep, 30)  # a decoder stuck in native code
    with pytest.raises(DecoderCrash, match=r"died \(signal 6\)"):
        process.call(os.abort)  # a decoder that crashes its process
    assert process.call(math.sqrt, 9.0) == 3.0  # a fresh child took over
    with pytest.raises(ValueError, match="math domain error"):
        process.call(math.sqrt, -1.0)  # ordinary errors come back as they were
    process.close()


def test_isolated_and_in_process_decoding_give_the_same_samples(broken_root: Path) -> None:
    samples = []
    for isolate in (True, False):
        torch.manual_seed(7)
        data = dataset(broken_root, isolate_decoder=isolate)
        samples.append([data[i] for i in range(len(data))])
    for a, b in zip(*samples, strict=True):
        assert torch.equal(a["imgs"], b["imgs"]) and a["skipped"] == b["skipped"]


@pytest.mark.parametrize("lazy", [True, False, None])
def test_only_the_train_pipeline_is_lazy(lazy: bool | None) -> None:
    kwargs = {} if lazy is None else {"lazy": lazy}
    dm = VideoDataModule(num_classes=2, train_pipeline=[CenterCrop(8)], **kwargs)
    assert dm.pipelines["train"].lazy is (lazy is not False)  # on by default
    assert not dm.pipelines["val"].lazy and not dm.pipelines["test"].lazy
