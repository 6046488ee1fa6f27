"""Annotation lists: mmaction2's sample files, hand-written edge cases, and the messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.conftest import SAMPLES, requires_samples

from actionrec.data.annotations import AnnotationError, VideoRecord, load_annotations
from actionrec.data.formats import FrameFolders, Videos
from actionrec.data.rawframes import check_rawframes

pytestmark = requires_samples
LISTS = SAMPLES / "annotations"


def write_list(tmp_path: Path, text: str, name: str = "list.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_video_list_joins_data_root():
    records = load_annotations(LISTS / "video_test_list.txt", data_root=str(SAMPLES))
    assert records == [
        VideoRecord(path=str(SAMPLES / "test.mp4"), label=0, line=1),
        VideoRecord(path=str(SAMPLES / "test.mp4"), label=0, line=2),
    ]


def test_rawframes_list():
    records = load_annotations(LISTS / "rawframe_test_list.txt", media=FrameFolders())
    assert [(r.path, r.total_frames, r.offset, r.label) for r in records] == [
        ("imgs", 5, 0, 127)
    ] * 2


def test_rawframes_list_with_offset():
    records = load_annotations(
        LISTS / "rawframe_test_list_with_offset.txt", media=FrameFolders(with_offset=True)
    )
    assert [(r.total_frames, r.offset, r.label) for r in records] == [(5, 2, 127)] * 2


@pytest.mark.parametrize(
    ("name", "media", "labels"),
    [
        ("video_test_list_multi_label.txt", Videos(), [(0, 3), (0, 2, 4)]),
        ("rawframe_test_list_multi_label.txt", FrameFolders(), [(1,), (3, 5)]),
    ],
)
def test_multi_label_lists_give_tuples(name, media, labels):
    records = load_annotations(LISTS / name, media=media, multi_class=True, num_classes=6)
    assert [r.label for r in records] == labels


def test_several_labels_without_multi_class_says_how_to_fix():
    with pytest.raises(AnnotationError, match=r"video_test_list_multi_label\.txt:1") as info:
        load_annotations(LISTS / "video_test_list_multi_label.txt")
    assert "multi_class=true" in str(info.value)
    assert "test.mp4 0 3" in str(info.value)


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = write_list(tmp_path, "\na.mp4 1\n   \nb.mp4 2\r\n\n")
    records = load_annotations(path)
    assert [(r.path, r.label, r.line) for r in records] == [("a.mp4", 1, 2), ("b.mp4", 2, 4)]


def test_custom_delimiter_allows_spaces_in_paths(tmp_path):
    path = write_list(tmp_path, "my clip.mp4,3\nother clip.mp4 , 4\n")
    records = load_annotations(path, delimiter=",", data_root="root")
    assert [(r.path, r.label) for r in records] == [
        ("root/my clip.mp4", 3),
        ("root/other clip.mp4", 4),
    ]


def test_lines_without_label_are_inference_samples(tmp_path):
    video = load_annotations(write_list(tmp_path, "a.mp4\n"))
    frames = load_annotations(write_list(tmp_path, "dir 7\n", "f.txt"), media=FrameFolders())
    multi = load_annotations(write_list(tmp_path, "a.mp4\n"), multi_class=True, num_classes=3)
    assert video[0].label is None and frames[0].label is None and multi[0].label is None
    assert frames[0].total_frames == 7


@pytest.mark.parametrize(
    ("text", "kwargs", "expected_format"),
    [
        ("a.mp4 x\n", {}, "path label"),
        ("ok.mp4 1\nbad.mp4 1.5\n", {}, "path label"),
        ("dir\n", {"media": FrameFolders()}, "frame_dir total_frames label"),
        ("dir many 3\n", {"media": FrameFolders()}, "frame_dir total_frames label"),
        ("dir 5\n", {"media": FrameFolders(with_offset=True)}, "frame_dir offset"),
    ],
)
def test_malformed_line_names_file_line_and_format(tmp_path, text, kwargs, expected_format):
    path = write_list(tmp_path, text)
    bad_line = len(text.splitlines())
    with pytest.raises(AnnotationError) as info:
        load_annotations(path, **kwargs)
    message = str(info.value)
    assert f"{path}:{bad_line}" in message
    assert repr(text.splitlines()[-1]) in message
    assert expected_format in message


def test_label_out_of_range_names_line_and_num_classes(tmp_path):
    path = write_list(tmp_path, "a.mp4 0\nb.mp4 5\n")
    with pytest.raises(AnnotationError, match=r"list\.txt:2.*label 5.*num_classes=5"):
        load_annotations(path, num_classes=5)
    with pytest.raises(AnnotationError, match=r":1: label 127"):
        load_annotations(LISTS / "rawframe_test_list.txt", media=FrameFolders(), num_classes=10)


def test_negative_label_is_rejected(tmp_path):
    with pytest.raises(AnnotationError, match="label -1"):
        load_annotations(write_list(tmp_path, "a.mp4 -1\n"))


def test_missing_list_names_file_and_config_key(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt") as info:
        load_annotations(missing, key="data.ann_file_val")
    assert isinstance(info.value, AnnotationError)
    assert "data.ann_file_val=" in str(info.value)
    with pytest.raises(AnnotationError, match=r"data\.ann_file_train=.*data\.data_root="):
        load_annotations(missing)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"multi_class": True},
        {"num_classes": 0},
        {"delimiter": ""},
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        load_annotations(LISTS / "video_test_list.txt", **kwargs)


def imgs_record(total_frames: int = 10, offset: int = 0) -> VideoRecord:
    return VideoRecord(str(SAMPLES / "imgs"), 0, total_frames=total_frames, offset=offset, line=3)


def test_check_rawframes_accepts_the_sample_folder():
    check_rawframes(imgs_record())
    check_rawframes(imgs_record(total_frames=5, offset=2))
    check_rawframes(imgs_record(total_frames=5), filename_tmpl="x_{:05}.jpg")


def test_check_rawframes_suggests_start_index():
    with pytest.raises(FileNotFoundError, match=r"line 3.*start_index=1 matches"):
        check_rawframes(imgs_record(), start_index=0)


def test_check_rawframes_suggests_template_from_files_present():
    with pytest.raises(FileNotFoundError, match=r"filename_tmpl='img_\{:05\}\.jpg'"):
        check_rawframes(imgs_record(), filename_tmpl="{:06}.jpg")


def test_check_rawframes_reports_too_few_frames_and_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"only 10 such frames"):
        check_rawframes(imgs_record(total_frames=12))
    with pytest.raises(FileNotFoundError, match="frame folder not found"):
        check_rawframes(dataclasses.replace(imgs_record(), path=str(tmp_path / "gone")))


def test_check_rawframes_guesses_unpadded_template(tmp_path):
    for i in range(1, 13):
        (tmp_path / f"frame{i}.png").touch()
    record = VideoRecord(str(tmp_path), None, total_frames=12)
    check_rawframes(record, filename_tmpl="frame{}.png")
    with pytest.raises(
        FileNotFoundError, match=r"filename_tmpl='frame\{\}\.png' \(12 files from 1\)"
    ):
        check_rawframes(record)
