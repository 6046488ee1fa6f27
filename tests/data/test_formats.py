"""Media formats: chosen once from the data keys, each owning its lines, reader and checks."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import SAMPLES, requires_samples

from actionrec.data.annotations import VideoRecord
from actionrec.data.datamodule import VideoDataModule
from actionrec.data.formats import FORMATS, FrameFolders, Videos, media_format
from actionrec.data.readers import VideoReader

pytestmark = requires_samples


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({}, Videos),
        ({"dataset_type": "rawframes"}, FrameFolders),
    ],
)
def test_the_data_keys_choose_the_format(keys, expected) -> None:
    media = media_format(**keys)
    assert type(media) is expected and FORMATS[media.name] is expected


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"dataset_type": "frames"},
            r"dataset_type='frames' is not one of \('video', 'rawframes'\)",
        ),
        ({"decoder": "opencv"}, r"decoder='opencv' is not one of \("),
        ({"dataset_type": "rawframes", "decoder": "opencv"}, r"decoder='opencv' is not one"),
        ({"with_offset": True}, "with_offset=True is only valid with dataset_type='rawframes'"),
    ],
)
def test_wrong_keys_are_named_with_what_is_allowed(keys, message) -> None:
    with pytest.raises(ValueError, match=message):
        media_format(**keys)
    with pytest.raises(ValueError, match="data." + message):
        VideoDataModule(num_classes=2, **keys)


@pytest.mark.parametrize(
    ("keys", "start_index", "isolated"),
    [
        ({"dataset_type": "video"}, 0, True),
        ({"dataset_type": "rawframes"}, 1, False),
        ({"dataset_type": "video", "start_index": 1}, 1, True),
        ({"dataset_type": "rawframes", "start_index": 0}, 0, False),
    ],
)
def test_start_index_and_isolation_default_to_the_formats_own(keys, start_index, isolated):
    media = media_format(**keys)
    assert media.start_index == start_index
    assert media.isolate_by_default is isolated


def test_formats_travel_to_a_decoder_process() -> None:
    media = FrameFolders("x_{:05}.jpg", 0, with_offset=True)
    copy = pickle.loads(pickle.dumps(media))
    assert repr(copy) == repr(media) and copy.line_format == media.line_format


def test_frame_folder_lines_say_what_is_wrong() -> None:
    assert FrameFolders().split_line(["7", "3"]) == (7, 0, ["3"])
    assert FrameFolders(with_offset=True).split_line(["2", "7", "3"]) == (7, 2, ["3"])
    assert FrameFolders().split_line([]) == "too few fields"
    assert "non-negative" in FrameFolders().split_line(["many", "3"])
    assert "non-negative" in FrameFolders().split_line(["-1", "3"])
    assert Videos().split_line(["3"]) == (None, 0, ["3"])


def test_both_formats_open_a_reader_of_the_same_interface() -> None:
    video = Videos().open(VideoRecord(str(SAMPLES / "test.mp4"), 0))
    frames = FrameFolders().open(VideoRecord(str(SAMPLES / "imgs"), 0, total_frames=10))
    for reader in (video, frames):
        with reader:
            assert isinstance(reader, VideoReader)
            whole = reader.read(np.array([1, 3]))
            box = reader.read(np.array([1, 3]), (4, 2, 30, 20))
            assert box.shape == (2, 3, 18, 26)
            assert torch.equal(box, whole[..., 2:20, 4:30])
    # A video decodes whole pictures: no size to choose a box from before decoding.
    assert video.region_size(np.array([1])) is None
    assert frames.region_size(np.array([1])) == tuple(frames.read(np.array([1])).shape[-2:])


def test_a_missing_frame_says_which_settings_match(tmp_path: Path) -> None:
    reader = FrameFolders(start_index=0).open(VideoRecord(str(SAMPLES / "imgs"), 0, 10, line=4))
    with pytest.raises(FileNotFoundError, match=r"line 4 of the list.*start_index=1 matches"):
        reader.read(np.array([0, 5]))


def test_the_first_folders_all_failing_stop_the_list() -> None:
    good = VideoRecord(str(SAMPLES / "imgs"), 0, total_frames=10)
    short = VideoRecord(str(SAMPLES / "imgs"), 0, total_frames=40)
    FrameFolders().check_list([short, short, good, short])  # one good: skip the others later
    with pytest.raises(FileNotFoundError, match="holds only 10 such frames"):
        FrameFolders().check_list([short, short, short, good])
    Videos().check_list([VideoRecord("missing.mp4", 0)] * 3)  # opened (and skipped) later


def test_a_folder_outside_a_list_counts_its_frames(tmp_path: Path) -> None:
    assert FrameFolders().count_frames(SAMPLES / "imgs") == 10
    with pytest.raises(FileNotFoundError, match=r"no frames named like 'img_00000\.jpg'"):
        FrameFolders(start_index=0).count_frames(SAMPLES / "imgs")
