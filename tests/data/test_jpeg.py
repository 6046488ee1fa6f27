"""Region decoding of frame JPEGs: the same pixels and errors as OpenCV's full decode, cropped;
and the dataset drawing its crop before decoding gives what the whole pipeline gives."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tests.conftest import SAMPLES

from actionrec.data import jpeg
from actionrec.data.annotations import VideoRecord
from actionrec.data.dataset import VideoDataset
from actionrec.data.formats import FrameFolders
from actionrec.data.rawframes import FrameFolderReader, read_rawframes
from actionrec.data.readers import DecodeError
from actionrec.data.sampling import SampleFrames
from actionrec.data.transforms import (
    CenterCrop,
    Compose,
    Flip,
    MultiScaleCrop,
    RandomResizedCrop,
    Resize,
)
from actionrec.data.views import TenCrop

requires_extension = pytest.mark.skipif(
    not jpeg.AVAILABLE and not os.environ.get("CI"),
    reason="actionrec.data._jpeg not built (no libjpeg headers at install): OpenCV decodes",
)

FLAGS = {  # cv2.imwrite parameters per JPEG flavour
    "420": [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420],
    "422": [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422],
    "444": [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444],
    "progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
    "restarts": [cv2.IMWRITE_JPEG_RST_INTERVAL, 3],
}


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A BGR image with colour edges everywhere, so chroma upsampling matters at every pixel."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.add(image, rng.integers(0, 40, image.shape, dtype=np.uint8))


def encode(image: np.ndarray, flags: list[int] = (), quality: int = 95) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality, *flags])
    assert ok
    return data.reshape(-1)


def with_exif_orientation(data: np.ndarray, orientation: int) -> np.ndarray:
    """``data`` with an APP1 Exif segment (one IFD entry: Orientation) after SOI."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    raw = data.tobytes()
    return np.frombuffer(raw[:2] + segment + raw[2:], dtype=np.uint8)


def opencv_crop(data: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return jpeg.decode(data, "x.jpg")[y1:y2, x1:x2]


def region(data: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    out = np.empty((y2 - y1, x2 - x1, 3), dtype=np.uint8)
    jpeg.decode_region(data, box, out, "x.jpg")
    return out


def random_boxes(height: int, width: int, count: int, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    boxes = [(0, 0, width, height), (0, 0, 1, 1), (width - 1, height - 1, width, height)]
    for _ in range(count):
        w, h = int(rng.integers(1, width + 1)), int(rng.integers(1, height + 1))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        boxes.append((x, y, x + w, y + h))
    # Edges on and next to 16-pixel block boundaries, where libjpeg crops and upsamples.
    boxes += [(16, 16, 32 + d, 32 + d) for d in (-1, 0, 1, 2) if 32 + d <= min(height, width)]
    return boxes


def test_extension_is_built_in_ci() -> None:
    # The install compiles it wherever libjpeg's headers are (CI has them); elsewhere frames
    # still decode, with OpenCV, so a missing build must not pass unnoticed where it matters.
    if os.environ.get("CI"):
        assert jpeg.AVAILABLE, "actionrec.data._jpeg was not built: is libjpeg-dev installed?"


@requires_extension
@pytest.mark.parametrize("flavour", [*FLAGS, "gray"])
@pytest.mark.parametrize("size_hw", [(256, 340), (255, 341), (37, 50)])
def test_region_pixels_equal_opencv(flavour: str, size_hw: tuple[int, int]) -> None:
    image = textured(*size_hw)
    if flavour == "gray":
        data = encode(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    else:
        data = encode(image, FLAGS[flavour])
    assert jpeg.region_size(data) == size_hw
    for box in random_boxes(*size_hw, count=40):
        np.testing.assert_array_equal(region(data, box), opencv_crop(data, box), err_msg=str(box))


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="mmaction2 sample media not found")
def test_region_pixels_equal_opencv_on_mmaction2_frames() -> None:
    for path in sorted((SAMPLES / "imgs").glob("*.jpg")):
        data = np.fromfile(path, dtype=np.uint8)
        for box in random_boxes(240, 320, count=10):
            np.testing.assert_array_equal(region(data, box), opencv_crop(data, box))


def test_what_the_extension_leaves_to_opencv(tmp_path: Path) -> None:
    image = textured(64, 96)
    png = np.frombuffer(cv2.imencode(".png", image)[1].tobytes(), dtype=np.uint8)
    rotated = with_exif_orientation(encode(image), 6)  # 90 degrees clockwise
    assert jpeg.region_size(png) is None
    assert jpeg.region_size(rotated) is None
    assert jpeg.decode(rotated, "r.jpg").shape == (96, 64, 3)  # OpenCV applies EXIF
    for data in (png, rotated):
        box = (3, 5, 40, 60)
        np.testing.assert_array_equal(region(data, box), opencv_crop(data, box))


def test_damaged_and_mismatched_files_fail_as_opencv_does() -> None:
    data = encode(textured(64, 96))
    truncated = data[: len(data) // 2]
    if cv2.imdecode(truncated, cv2.IMREAD_COLOR) is not None:  # OpenCV pads a cut file
        np.testing.assert_array_equal(
            region(truncated, (0, 0, 96, 64)), opencv_crop(truncated, (0, 0, 96, 64))
        )
    garbage = np.frombuffer(b"\xff\xd8\xff" + b"\x00" * 100, dtype=np.uint8)
    with pytest.raises(DecodeError, match=r"x\.jpg"):
        region(garbage, (0, 0, 8, 8))
    with pytest.raises(DecodeError, match="outside"):
        region(data, (0, 0, 97, 64))


def write_frames(folder: Path, count: int, size_hw: tuple[int, int], seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    for i in range(1, count + 1):
        cv2.imwrite(str(folder / f"img_{i:05}.jpg"), textured(*size_hw, seed=seed + i))
    return folder


@pytest.mark.parametrize("indices", [[1, 3, 5], [5, 1, 3, 3]])
def test_frame_folder_box_equals_whole_frames_cropped(tmp_path: Path, indices) -> None:
    folder = write_frames(tmp_path / "v", 5, (48, 64))
    reader = FrameFolderReader(VideoRecord(str(folder), 0, 5))
    whole = reader.read(np.array(indices))
    assert reader.region_size(np.array(indices)) == (48, 64)  # from a header, before decoding
    part = reader.read(np.array(indices), (7, 3, 40, 45))
    assert part.shape == (len(indices), 3, 42, 33)
    assert torch.equal(part, whole[:, :, 3:45, 7:40])
    box = read_rawframes(folder, np.array(indices), box=(7, 3, 40, 45))
    assert torch.equal(box, part)


@pytest.mark.skipif(not jpeg.AVAILABLE, reason="actionrec.data._jpeg is not built")
def test_frame_folder_box_decodes_only_the_box(tmp_path: Path, monkeypatch) -> None:
    folder = write_frames(tmp_path / "v", 3, (48, 64))
    expected = read_rawframes(folder, np.array([1, 3]))[..., 3:45, 7:40]

    def whole_decode(data: np.ndarray, path: str) -> np.ndarray:
        raise AssertionError(f"{path} was decoded whole")

    monkeypatch.setattr(jpeg, "decode", whole_decode)
    reader = FrameFolderReader(VideoRecord(str(folder), 0, 3))
    assert reader.region_size(np.array([1, 3])) == (48, 64)
    assert torch.equal(reader.read(np.array([1, 3]), (7, 3, 40, 45)), expected)


def test_frames_without_region_decoding_are_cropped_after_decoding(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    for i in (1, 2):
        cv2.imwrite(str(folder / f"img_{i:05}.png"), textured(48, 64, seed=i))
    reader = FrameFolderReader(VideoRecord(str(folder), 0, 2), "img_{:05}.png")
    assert reader.region_size(np.array([1, 2])) is None  # a PNG: no header-only size
    whole = reader.read(np.array([1, 2]))
    assert torch.equal(reader.read(np.array([1, 2]), (7, 3, 40, 45)), whole[..., 3:45, 7:40])
    with pytest.raises(DecodeError, match="outside"):
        reader.read(np.array([1, 2]), (0, 0, 65, 48))


def test_frame_folder_box_still_checks_frame_sizes(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "v", 2, (48, 64))
    cv2.imwrite(str(folder / "img_00002.jpg"), textured(48, 80))
    with pytest.raises(DecodeError, match="differ in size"):
        read_rawframes(folder, np.array([1, 2]), box=(0, 0, 32, 32))


def tsn_train(**kw) -> Compose:
    return Compose(
        [
            Resize((-1, 256)),
            MultiScaleCrop(224, (1, 0.875, 0.75, 0.66)),
            Resize((224, 224), keep_ratio=False),
            Flip(0.5),
        ],
        **kw,
    )


def test_split_crop_draws_what_the_pipeline_draws() -> None:
    pipeline = tsn_train()
    frames = torch.from_numpy(textured(256, 340)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    for seed in range(20):
        expected = pipeline(frames, np.random.default_rng(seed))
        # The same generator carries on: the crop drawn by split_crop, the flip by the rest.
        rng = np.random.default_rng(seed)
        (x1, y1, x2, y2), rest = pipeline.split_crop(256, 340, rng)
        assert [type(t) for t in rest.transforms] == [Resize, Flip]
        assert torch.equal(rest(frames[..., y1:y2, x1:x2], rng), expected)


@pytest.mark.parametrize(
    "pipeline",
    [
        Compose([Resize((-1, 256)), TenCrop(224)]),  # several crops: nothing to split
        Compose([Flip(0.5), CenterCrop(224)]),  # a draw before the crop
        Compose([Resize((-1, 128)), CenterCrop(64)]),  # resizes first: decode whole frames
    ],
)
def test_split_crop_leaves_other_pipelines_whole(pipeline: Compose) -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert pipeline.split_crop(256, 340, rng) == (None, pipeline)
    assert rng.bit_generator.state == state  # nothing drawn


@pytest.mark.parametrize("crop", [CenterCrop(100), RandomResizedCrop()])
def test_split_crop_knows_every_crop(crop) -> None:
    box, rest = Compose([crop, Flip(0.5)]).split_crop(120, 160, np.random.default_rng(0))
    assert box is not None and [type(t) for t in rest.transforms] == [Flip]


class Whole:
    """A pipeline that is not a Compose: the dataset runs it as one step, on whole frames."""

    def __init__(self, pipeline: Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, imgs: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return self.pipeline(imgs, rng)


@pytest.mark.parametrize("size_hw", [(256, 340), (240, 320)])
@pytest.mark.parametrize("split", ["train", "lazy train", "val"])
def test_dataset_region_decoding_gives_the_whole_pipelines_samples(
    tmp_path: Path, split: str, size_hw: tuple[int, int]
) -> None:
    folders = [write_frames(tmp_path / f"v{i}", 6, size_hw, seed=10 * i) for i in range(3)]
    records = [VideoRecord(str(f), i, 6) for i, f in enumerate(folders)]
    if split == "val":
        pipeline = Compose([Resize((-1, 256)), CenterCrop(224)])
        sampler = SampleFrames(1, 1, 3, test_mode=True)
    else:
        pipeline, sampler = tsn_train(lazy=split == "lazy train"), SampleFrames(1, 1, 3)
    kw = dict(media=FrameFolders(), isolate_decoder=False, seed=5)
    fast = VideoDataset(records, sampler, pipeline, **kw)
    slow = VideoDataset(records, sampler, Whole(pipeline), **kw)
    for epoch in range(4):
        for i in range(len(records)):
            a, b = fast[(i, epoch)], slow[(i, epoch)]
            assert a["imgs"].shape == (3, 3, 224, 224)
            assert torch.equal(a["imgs"], b["imgs"]), (i, epoch)
