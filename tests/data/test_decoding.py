"""Decoders: PyAV is exact against a full sequential decode (skipping unreferenced pictures
included); decord agrees; bad files raise; a backend that cannot work here says why."""

from __future__ import annotations

import importlib.util
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import SAMPLES, backend_param, requires_backend, requires_samples

from actionrec.data import pyav_reader
from actionrec.data.decoding import (
    DecodeError,
    PyAVReader,
    VideoReader,
    backend_unavailable,
    open_video,
    read_rawframes,
)
from actionrec.data.sampling import SampleFrames

pytestmark = requires_samples

# Indices spanning every GOP (test.mp4 keyframes: 0, 235; demo.mp4: 0, 187, 230, 268), the
# frames either side of each keyframe, the last frame, repeats, and no particular order.
INDICES = {
    "test.mp4": [299, 0, 234, 235, 236, 150, 150, 17, 298],
    "demo.mp4": [279, 0, 186, 187, 229, 230, 267, 268, 268, 100, 3],
}


def decode_all(path: Path | str) -> np.ndarray:
    """The reference: every frame in decoding order, (N, H, W, C) uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def references() -> dict[str, np.ndarray]:
    return {name: decode_all(SAMPLES / name) for name in INDICES}


def as_hwc(frames: torch.Tensor) -> np.ndarray:
    return frames.permute(0, 2, 3, 1).numpy()  # (T, H, W, C)


def mismatches(frames: torch.Tensor, reference: np.ndarray, indices: list[int]) -> list[str]:
    got = as_hwc(frames).astype(np.int16)
    return [
        f"index {i}: max |diff| {np.abs(got[k] - reference[i]).max()}"
        for k, i in enumerate(indices)
        if not np.array_equal(got[k], reference[i])
    ]


def write_video(path: Path, codec: str, num_frames: int = 60, gop: int = 12, first_pts: int = 0):
    """A small video whose frames differ: the red level and a green column move per frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.time_base = Fraction(1, 25)
        for i in range(num_frames):
            image = np.zeros((48, 64, 3), np.uint8)
            image[..., 0] = i * 4
            image[:, i % 64, 1] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = first_pts + i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("name", INDICES)
def test_pyav_equals_sequential_decode(name, references):
    indices = INDICES[name]
    with open_video(SAMPLES / name) as reader:
        assert isinstance(reader, VideoReader)
        assert reader.num_frames == len(references[name])
        frames = reader.read(np.array(indices))
        again = reader.read(np.array([indices[-1], 0]))  # a reader serves several reads
    assert frames.shape == (len(indices), 3, 256, 340) and frames.dtype == torch.uint8
    assert mismatches(frames, references[name], indices) == []
    assert mismatches(again, references[name], [indices[-1], 0]) == []


def write_textured_video(path: Path, codec: str, max_b_frames: int | None = None) -> Path:
    """60 frames of a noise texture sliding sideways, 30-frame GOPs: encoders make chains of
    P- and (reference and non-reference) B-frames, so a frame decoded from a wrong or missing
    reference differs."""
    texture = np.random.default_rng(0).integers(0, 256, (48, 96, 3), dtype=np.uint8)
    options = {"x265-params": "log-level=none"} if codec == "libx265" else {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 30
        if max_b_frames is not None:
            stream.codec_context.max_b_frames = max_b_frames
        for i in range(60):
            image = np.ascontiguousarray(np.roll(texture, i, axis=1)[:, :64])
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(
    ("name", "codec", "max_b_frames"),
    [
        ("h264.mp4", "libx264", None),  # B-pyramid: reference and non-reference B-frames
        ("hevc.mp4", "libx265", None),
        ("mpeg4.mp4", "mpeg4", 2),
        ("mpeg2.mkv", "mpeg2video", 2),
    ],
)
@pytest.mark.parametrize("keep_packets", [True, False], ids=["kept-packets", "seeking"])
def test_pyav_skipping_unreferenced_pictures_is_exact(
    tmp_path, monkeypatch, name, codec, max_b_frames, keep_packets
):
    if not keep_packets:  # a file too large to keep its packets: seek and demux per span
        monkeypatch.setattr(pyav_reader, "KEEP_PACKETS_BYTES", 0)
    path = write_textured_video(tmp_path / name, codec, max_b_frames)
    reference = decode_all(path)
    with PyAVReader(path) as reader:
        assert reader._skip_nonref  # the path under test: pts reorder, the codec is listed
        assert (reader._packets is not None) == keep_packets
        for i in range(len(reference)):  # every frame alone: the longest skipped runs
            assert mismatches(reader.read(np.array([i])), reference, [i]) == []
        for indices in ([59, 0, 29, 30, 31], [2, 3, 4, 33, 34], list(range(60))):
            assert mismatches(reader.read(np.array(indices)), reference, indices) == []


@pytest.mark.parametrize("name", INDICES)
def test_pyav_equals_sequential_decode_on_sampled_clips(name, references):
    # TSN's train sampling and mmaction2's 25-clip test sampling, as training and testing ask.
    num_frames, rng = len(references[name]), np.random.default_rng(0)
    samplers = [SampleFrames(1, num_clips=3), SampleFrames(1, num_clips=25, test_mode=True)]
    with open_video(SAMPLES / name) as reader:
        for sampler in samplers[:1] * 8 + samplers[1:]:
            indices = sampler(num_frames, 0, rng).tolist()
            assert mismatches(reader.read(np.array(indices)), references[name], indices) == []


OTHER_BACKENDS = [backend_param("decord"), backend_param("torchcodec")]
with_decord = requires_backend("decord")


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("name", INDICES)
def test_other_backends_equal_pyav(name, backend, references):
    indices = INDICES[name]
    with open_video(SAMPLES / name, backend=backend) as reader:
        assert reader.num_frames == len(references[name])
        frames = reader.read(np.array(indices))
    assert frames.shape == (len(indices), 3, 256, 340) and frames.dtype == torch.uint8
    assert mismatches(frames, references[name], indices) == []


def test_pyav_with_decoder_threads_is_still_exact(references):
    indices = [279, 5, 230, 231]
    with open_video(SAMPLES / "demo.mp4", num_threads=2) as reader:
        assert mismatches(reader.read(np.array(indices)), references["demo.mp4"], indices) == []


def test_pyav_reads_mpeg4_avi_exactly(tmp_path):
    path = write_video(tmp_path / "clip.avi", "mpeg4", num_frames=60, gop=12)
    reference = decode_all(path)
    indices = [59, 0, 11, 12, 13, 30, 30, 47, 1]
    with open_video(path) as reader:
        assert reader.num_frames == len(reference) == 60
        assert mismatches(reader.read(np.array(indices)), reference, indices) == []
        assert mismatches(reader.read(np.arange(60)), reference, list(range(60))) == []


def test_pyav_counts_frames_an_edit_list_keeps(tmp_path):
    # Negative start pts make the MP4 muxer write an edit list that hides the first 3 frames.
    path = write_video(tmp_path / "edit.mp4", "libx264", num_frames=40, gop=10, first_pts=-3)
    reference = decode_all(path)
    assert len(reference) == 37
    indices = [36, 0, 9, 10, 20, 20, 1]
    with open_video(path) as reader:
        assert reader.num_frames == 37
        assert mismatches(reader.read(np.array(indices)), reference, indices) == []


@with_decord
def test_decord_agrees_within_the_frames_an_edit_list_keeps(tmp_path):
    path = write_video(tmp_path / "edit.mp4", "libx264", num_frames=40, gop=10, first_pts=-3)
    reference = decode_all(path)
    with open_video(path, backend="decord") as reader:
        frames = reader.read(np.arange(len(reference)))
    assert mismatches(frames, reference, list(range(len(reference)))) == []


@with_decord
def test_decord_frame_count_is_one_it_can_deliver(tmp_path):
    # decord itself counts 40 here; the reader counts the 37 frames the edit list keeps.
    path = write_video(tmp_path / "edit.mp4", "libx264", num_frames=40, gop=10, first_pts=-3)
    with open_video(path, backend="decord") as reader:
        assert reader.num_frames == len(decode_all(path)) == 37


@with_decord
@pytest.mark.xfail(
    strict=True,
    reason="decord 0.6 returns other pictures when it seeks to the last frames of an edit-list "
    "MP4 (a full sequential read is right); the default decoder, PyAV, is exact here",
)
def test_decord_seeking_near_the_end_of_an_edit_list(tmp_path):
    path = write_video(tmp_path / "edit.mp4", "libx264", num_frames=40, gop=10, first_pts=-3)
    reference = decode_all(path)
    with open_video(path, backend="decord") as reader:
        assert mismatches(reader.read(np.array([0, 35, 36])), reference, [0, 35, 36]) == []


@pytest.mark.parametrize("backend", ["pyav", *OTHER_BACKENDS])
def test_backends_agree_on_an_mpeg4_avi(tmp_path, backend):
    path = write_video(tmp_path / "clip.avi", "mpeg4", num_frames=40, gop=12)
    reference = decode_all(path)
    indices = [0, 11, 12, 13, 25, 39, 5]
    with open_video(path, backend=backend) as reader:
        assert reader.num_frames == len(reference) == 40
        assert mismatches(reader.read(np.array(indices)), reference, indices) == []


@pytest.mark.parametrize(
    ("name", "codec"),
    [("bframes.avi", "libx264"), ("raw.h264", "libx264"), ("clip.ts", "libx264")],
)
def test_pyav_falls_back_when_pts_do_not_give_frame_order(tmp_path, name, codec):
    # AVI stores no presentation times (B-frames come out of order), a raw H.264 stream has no
    # pts at all, and MPEG-TS seeking lands on later keyframes: all must still be exact.
    path = write_video(tmp_path / name, codec, num_frames=40, gop=12)
    reference = decode_all(path)
    with open_video(path) as reader:
        assert reader.num_frames == len(reference) == 40
        for indices in ([3], [2], [39, 0, 13, 13, 25]):
            assert mismatches(reader.read(np.array(indices)), reference, indices) == []


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("broken")
    data = (SAMPLES / "test.mp4").read_bytes()
    files = {
        "empty": (folder / "empty.mp4", b""),
        "text": (folder / "text.mp4", b"not a video\n"),
        "truncated": (folder / "truncated.mp4", data[: len(data) // 2]),
    }
    for path, content in files.values():
        path.write_bytes(content)
    return {kind: path for kind, (path, _) in files.items()} | {
        "truncated_faststart": truncated_faststart(folder),
    }


def truncated_faststart(folder: Path) -> Path:
    """test.mp4 remuxed with its index first, then cut: opens, but frames are missing."""
    path = folder / "faststart.mp4"
    with (
        av.open(str(SAMPLES / "test.mp4")) as source,
        av.open(str(path), "w", options={"movflags": "faststart"}) as target,
    ):
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(video=0):
            if packet.dts is not None:  # the demuxer's final flush packet
                packet.stream = stream
                target.mux(packet)
    cut = folder / "faststart_cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


@pytest.mark.parametrize("backend", ["pyav", backend_param("decord")])
@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "truncated_faststart"])
def test_broken_file_raises_decode_error(broken_files, kind, backend):
    path = broken_files[kind]
    with pytest.raises(DecodeError, match=backend) as info, open_video(path, backend=backend) as r:
        r.read(np.array([0, r.num_frames // 2, r.num_frames - 1]))
    assert path.name in str(info.value)
    assert info.value.path == str(path) and info.value.backend == backend


@pytest.mark.parametrize("backend", ["pyav", backend_param("decord")])
def test_missing_video_raises_file_not_found(tmp_path, backend):
    with pytest.raises(FileNotFoundError, match=r"gone\.mp4"):
        open_video(tmp_path / "gone.mp4", backend=backend)


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_a_backend_that_is_not_installed_says_what_to_install(monkeypatch, backend):
    monkeypatch.setitem(sys.modules, backend, None)  # what `import` meets without the package
    backend_unavailable.cache_clear()
    try:
        with pytest.raises(ImportError, match=f"{backend} is not installed: pip install {backend}"):
            open_video(SAMPLES / "test.mp4", backend=backend)
    finally:
        backend_unavailable.cache_clear()


@pytest.mark.skipif(
    importlib.util.find_spec("torchcodec") is None or backend_unavailable("torchcodec") is None,
    reason="needs torchcodec installed on a machine without FFmpeg's libraries",
)
def test_torchcodec_without_ffmpeg_says_to_install_it():
    # torchcodec >= 0.17 imports without FFmpeg and fails only when a decoder is built.
    with pytest.raises(ImportError, match=r"install FFmpeg .*or use backend='pyav'") as info:
        open_video(SAMPLES / "test.mp4", backend="torchcodec")
    assert "\n" not in str(info.value)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="backend='opencv'"):
        open_video(SAMPLES / "test.mp4", backend="opencv")
    with pytest.raises(ValueError, match="num_threads=-1"):
        open_video(SAMPLES / "test.mp4", num_threads=-1)
    with open_video(SAMPLES / "test.mp4") as reader:
        with pytest.raises(IndexError, match=r"\[0, 300\)"):
            reader.read(np.array([0, 300]))
        with pytest.raises(ValueError, match="1-D integer"):
            reader.read(np.zeros((2, 2), dtype=np.int64))


def test_rawframes_shape_order_and_repeats():
    frames = read_rawframes(SAMPLES / "imgs", np.array([10, 1, 5, 5, 2]))
    assert frames.shape == (5, 3, 240, 320) and frames.dtype == torch.uint8
    assert torch.equal(frames[2], frames[3])
    single = read_rawframes(SAMPLES / "imgs", np.array([10]))
    assert torch.equal(frames[0], single[0])
    # What mmcv does (cv2.imdecode, then BGR to RGB): the same pixels as mmaction2's.
    reference = cv2.cvtColor(cv2.imread(str(SAMPLES / "imgs" / "img_00010.jpg")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(as_hwc(single)[0], reference)


def test_rawframes_offset_and_template():
    shifted = read_rawframes(SAMPLES / "imgs", np.array([1, 2]), offset=2)
    assert torch.equal(shifted, read_rawframes(SAMPLES / "imgs", np.array([3, 4])))
    flow = read_rawframes(SAMPLES / "imgs", np.array([1, 5]), filename_tmpl="x_{:05}.jpg")
    assert flow.shape[:2] == (2, 3)


def test_rawframes_grayscale_becomes_rgb(tmp_path):
    Image.fromarray(np.full((8, 10), 77, np.uint8), mode="L").save(tmp_path / "img_00001.jpg")
    frames = read_rawframes(tmp_path, np.array([1, 1]))
    assert frames.shape == (2, 3, 8, 10)
    assert torch.equal(frames[:, 0], frames[:, 2])


def test_rawframes_missing_frame_hints_at_template():
    with pytest.raises(FileNotFoundError, match=r"img_00000\.jpg.*filename_tmpl.*start_index"):
        read_rawframes(SAMPLES / "imgs", np.array([0, 1]))


def test_rawframes_corrupt_frame_raises_decode_error(tmp_path):
    (tmp_path / "img_00001.jpg").write_bytes((SAMPLES / "imgs" / "img_00001.jpg").read_bytes())
    (tmp_path / "img_00002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = (SAMPLES / "imgs" / "img_00003.jpg").read_bytes()
    (tmp_path / "img_00003.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match=r"img_00002\.jpg"):
        read_rawframes(tmp_path, np.array([1, 2]))
    with pytest.raises(DecodeError, match=r"img_00003\.jpg"):
        read_rawframes(tmp_path, np.array([3]))


@pytest.mark.parametrize(
    ("name", "codec", "max_b_frames", "from_container"),
    [
        ("plain.avi", "mpeg4", 0, True),  # pts are idx1 positions: no need to demux
        ("bframes.avi", "mpeg4", 2, False),  # packed B-frames: demux (and decode sequentially)
        ("plain.mp4", "mpeg4", 0, False),  # MP4 pts come from demuxing only
    ],
)
def test_avi_index_read_from_the_container_equals_the_demuxed_one(
    tmp_path, name, codec, max_b_frames, from_container
):
    path = str(write_textured_video(tmp_path / name, codec, max_b_frames))
    with av.open(path) as container:
        stream = container.streams.video[0]
        index = pyav_reader.index_from_container(container, stream)
        demuxed = pyav_reader.index_packets(container, stream)
    assert (index is not None) == from_container
    if index is not None:
        for ours, reference in zip(index, demuxed, strict=True):
            np.testing.assert_array_equal(ours, reference)
    reference = decode_all(path)
    with PyAVReader(path) as reader:
        indices = [59, 0, 11, 12, 13, 30, 30]
        assert mismatches(reader.read(np.array(indices)), reference, indices) == []


def test_avi_with_an_incomplete_index_is_demuxed(tmp_path):
    path = write_textured_video(tmp_path / "plain.avi", "mpeg4", 0)
    data = path.read_bytes()
    cut = tmp_path / "noindex.avi"
    cut.write_bytes(data[: data.rindex(b"idx1")])  # the index chunk and what follows it lost
    with av.open(str(cut)) as container:
        assert pyav_reader.index_from_container(container, container.streams.video[0]) is None
    reference = decode_all(cut)
    with PyAVReader(cut) as reader:
        assert reader.num_frames == len(reference)
        assert mismatches(reader.read(np.array([0, 30, 59])), reference, [0, 30, 59]) == []


@pytest.mark.parametrize(
    ("name", "codec", "max_b_frames", "probed_without_decoding"),
    [
        ("h264.mp4", "libx264", None, True),
        ("hevc.mp4", "libx265", None, False),
        ("mpeg4.mp4", "mpeg4", 2, False),  # probing without decoding would lose its size
        ("h264.avi", "libx264", 0, False),
    ],
)
def test_open_container_probes_without_decoding_only_where_nothing_is_lost(
    tmp_path, name, codec, max_b_frames, probed_without_decoding
):
    path = str(write_textured_video(tmp_path / name, codec, max_b_frames))
    with av.open(path) as container:
        full = container.streams.video[0].codec_context
        expected = (full.name, full.width, full.height, full.has_b_frames, full.pix_fmt)
    with pyav_reader.open_container(path) as container:
        quick = container.streams.video[0].codec_context
        # The probe's decode is what sets the pixel format; frames carry their own.
        assert (quick.pix_fmt is None) == probed_without_decoding
        assert (quick.name, quick.width, quick.height, quick.has_b_frames) == expected[:4]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    np.testing.assert_array_equal(np.stack(frames), decode_all(path))
    with pyav_reader.open_container(path, probe=True) as container:
        assert container.streams.video[0].codec_context.pix_fmt == expected[4]


def test_the_reader_opens_files_with_the_arguments_pyav_19_kept(monkeypatch):
    # PyAV 19 (the only PyAV for Python >= 3.12) removed av.open's stream_options; this
    # stands in for its signature wherever an older PyAV is installed.
    pyav_open = av.open

    def open_as_pyav_19(file, mode=None, format=None, options=None, container_options=None):
        return pyav_open(
            file, mode, format=format, options=options, container_options=container_options
        )

    monkeypatch.setattr(av, "open", open_as_pyav_19)
    with PyAVReader(SAMPLES / "test.mp4") as reader:
        assert reader.read(np.array([0, 299])).shape == (2, 3, 256, 340)


def test_videos_of_other_sizes_one_after_another_stay_exact(tmp_path, references):
    small = write_video(tmp_path / "small.mp4", "libx264")
    small_ref = decode_all(small)
    for _ in range(2):
        for name in ("test.mp4", "small", "demo.mp4", "small"):
            path, ref = (small, small_ref) if name == "small" else (SAMPLES / name, None)
            ref = references[name] if ref is None else ref
            with PyAVReader(path) as reader:
                frames = reader.read(np.array([0, 17]))
            assert not mismatches(frames, ref, [0, 17]), name


@pytest.mark.parametrize("backend", ["pyav", *OTHER_BACKENDS])
def test_every_backend_reports_the_rate_decord_gives_mmaction2(tmp_path, backend):
    # SampleFrames(target_fps=...) scales by it; mmaction2 reads decord's get_avg_fps.
    avi = write_video(tmp_path / "clip.avi", "mpeg4", num_frames=30)
    for path, fps in [(SAMPLES / "test.mp4", 30.0), (SAMPLES / "demo.mp4", 28.0), (avi, 25.0)]:
        with open_video(path, backend=backend) as reader:
            assert reader.fps == pytest.approx(fps, abs=1e-9), path.name
