"""Spatial transforms: one box per clip, mmaction2's box sets and view order, cv2 parity on
every memory layout the pipeline sees."""

import sys

import cv2
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from tests.conftest import SAMPLES as SAMPLE_MEDIA
from tests.conftest import compose_config, requires_samples

from actionrec.data import functional as F
from actionrec.data import transforms
from actionrec.data.augmentations import Albumentations, ColorJitter
from actionrec.data.transforms import (
    CenterCrop,
    Compose,
    Flip,
    MultiScaleCrop,
    RandomResizedCrop,
    Resize,
)
from actionrec.data.views import TenCrop, ThreeCrop

SAMPLES = SAMPLE_MEDIA / "imgs"


def coord_video(t: int, h: int, w: int) -> torch.Tensor:
    """uint8 (T, 3, H, W) whose pixels spell their own (x, y, frame): decodable after cropping."""
    y, x = np.mgrid[:h, :w]
    frames = []
    for i in range(t):
        hi_bits = (x >> 8) + 4 * (y >> 8) + 16 * i
        frames.append(np.stack([x & 255, y & 255, hi_bits]))
    return torch.from_numpy(np.stack(frames).astype(np.uint8))


def decode_box(crop: torch.Tensor) -> tuple[int, ...]:
    """The (x1, y1, x2, y2) a (C, h, w) crop of ``coord_video`` was cut from, and its frame."""
    c = crop.numpy().astype(int)
    x1 = c[0, 0, 0] + 256 * (c[2, 0, 0] % 4)
    y1 = c[1, 0, 0] + 256 * ((c[2, 0, 0] // 4) % 4)
    return (x1, y1, x1 + c.shape[2], y1 + c.shape[1]), c[2, 0, 0] // 16


def clip_box(out: torch.Tensor, video: torch.Tensor) -> tuple[int, ...]:
    """Check every frame of ``out`` is the same slice of ``video``; return that box."""
    boxes = set()
    for i, frame in enumerate(out):
        box, frame_id = decode_box(frame)
        assert frame_id == i
        x1, y1, x2, y2 = box
        assert torch.equal(frame, video[i, :, y1:y2, x1:x2])
        boxes.add(box)
    assert len(boxes) == 1, f"frames were cut with different boxes: {boxes}"
    return boxes.pop()


def ref_multiscale_boxes(h, w, input_wh, scales, gap, random_crop, num_fixed):
    """mmaction2 MultiScaleCrop's reachable boxes, re-derived literally from its transform()."""
    base = min(h, w)
    sizes = [int(base * s) for s in scales]
    cands = []
    for i, ch in enumerate(sizes):
        for j, cw in enumerate(sizes):
            if abs(i - j) <= gap:
                cands.append([cw, ch])
    boxes = set()
    for size in cands:
        for k in range(2):
            if abs(size[k] - input_wh[k]) < 3:
                size[k] = input_wh[k]
        cw, ch = size
        if random_crop:
            offs = [(x, y) for x in range(0, w - cw + 1) for y in range(0, h - ch + 1)]
        else:
            ws, hs = (w - cw) // 4, (h - ch) // 4
            offs = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
            if num_fixed == 13:
                offs += [
                    (0, 2 * hs),
                    (4 * ws, 2 * hs),
                    (2 * ws, 4 * hs),
                    (2 * ws, 0 * hs),
                    (1 * ws, 1 * hs),
                    (3 * ws, 1 * hs),
                    (1 * ws, 3 * hs),
                    (3 * ws, 3 * hs),
                ]
        boxes.update((x, y, x + cw, y + ch) for x, y in offs)
    return boxes


@pytest.mark.parametrize("hw", [(256, 340), (340, 256), (226, 300)])
@pytest.mark.parametrize("num_fixed_crops", [5, 13])
def test_multiscale_candidate_boxes_match_mmaction2(hw, num_fixed_crops):
    scales = (1, 0.875, 0.75, 0.66)
    t = MultiScaleCrop(224, scales, num_fixed_crops=num_fixed_crops)
    expected = ref_multiscale_boxes(*hw, (224, 224), scales, 1, False, num_fixed_crops)
    assert t.candidate_boxes(*hw) == expected


def test_multiscale_hand_checked_boxes():
    # 256x340, one scale 0.875 -> 224x224; steps (340-224)//4=29, (256-224)//4=8.
    t = MultiScaleCrop(224, scales=(0.875,))
    expected = {
        (0, 0, 224, 224),
        (116, 0, 340, 224),
        (0, 32, 224, 256),
        (116, 32, 340, 256),
        (58, 16, 282, 240),
    }
    assert t.candidate_boxes(256, 340) == expected
    # 226 * 1 = 226 is within 2 px of 224, so it snaps to the network size.
    assert {b[2] - b[0] for b in MultiScaleCrop(224, (1,)).candidate_boxes(226, 300)} == {224}


def test_multiscale_random_crop_boxes_match_mmaction2():
    t = MultiScaleCrop((40, 30), scales=(1, 0.8), max_wh_scale_gap=0, random_crop=True)
    expected = ref_multiscale_boxes(48, 60, (40, 30), (1, 0.8), 0, True, 5)
    assert t.candidate_boxes(48, 60) == expected


@pytest.mark.parametrize("kwargs", [{}, {"num_fixed_crops": 13}, {"random_crop": True}])
def test_multiscale_draws_one_box_per_clip_from_the_candidates(kwargs):
    video = coord_video(3, 64, 80)
    t = MultiScaleCrop(48, scales=(1, 0.875, 0.75, 0.66), **kwargs)
    rng = np.random.default_rng(0)
    seen = {clip_box(t(video, rng), video) for _ in range(600)}
    candidates = t.candidate_boxes(64, 80)
    assert seen <= candidates
    if not kwargs.get("random_crop"):
        assert seen == candidates  # every fixed box is reachable
    assert t.sample_box(64, 80, np.random.default_rng(5)) == t.sample_box(
        64, 80, np.random.default_rng(5)
    )


def test_center_crop_box_and_slicing():
    video = coord_video(4, 256, 341)
    out = CenterCrop(224)(video)
    assert out.shape == (4, 3, 224, 224) and out.dtype == torch.uint8
    assert clip_box(out, video) == (58, 16, 282, 240)
    assert clip_box(CenterCrop((100, 50))(video), video) == (120, 103, 220, 153)


def test_three_crop_view_order_is_start_end_middle():
    wide = coord_video(2, 256, 341)
    out = ThreeCrop(256)(wide)
    assert out.shape == (3, 2, 3, 256, 256)
    assert [clip_box(v, wide) for v in out] == [
        (0, 0, 256, 256),
        (84, 0, 340, 256),
        (42, 0, 298, 256),
    ]
    tall = coord_video(2, 300, 256)
    assert [clip_box(v, tall)[1] for v in ThreeCrop(256)(tall)] == [0, 44, 22]
    with pytest.raises(ValueError, match="ThreeCrop"):
        ThreeCrop(224)(wide)


def test_ten_crop_view_order_alternates_crop_and_flip():
    video = coord_video(2, 256, 341)
    out = TenCrop(224)(video)
    assert out.shape == (10, 2, 3, 224, 224) and out.dtype == torch.uint8
    boxes = [clip_box(v, video) for v in out[::2]]
    # Steps (341-224)//4=29 and (256-224)//4=8; the centre is 2 steps, not (W-w)//2=58.
    assert boxes == [
        (0, 0, 224, 224),
        (116, 0, 340, 224),
        (0, 32, 224, 256),
        (116, 32, 340, 256),
        (58, 16, 282, 240),
    ]
    for plain, flipped in zip(out[::2], out[1::2], strict=True):
        assert torch.equal(flipped, plain.flip(-1))


def test_flip_is_all_or_nothing_per_clip():
    video = coord_video(3, 20, 30)
    assert torch.equal(Flip(flip_ratio=1.0)(video), video.flip(-1))
    assert torch.equal(Flip(flip_ratio=1.0, direction="vertical")(video), video.flip(-2))
    assert torch.equal(Flip(flip_ratio=0.0)(video), video)
    rng = np.random.default_rng(0)
    flips = [torch.equal(Flip()(video, rng), video.flip(-1)) for _ in range(400)]
    assert 150 < sum(flips) < 250


def test_random_resized_crop_respects_ranges():
    video = coord_video(2, 120, 160)
    t = RandomResizedCrop()
    rng = np.random.default_rng(0)
    for _ in range(200):
        x1, y1, x2, y2 = clip_box(t(video, rng), video)
        w, h = x2 - x1, y2 - y1
        if (w, h) == (120, 120) and (x1, y1) == (20, 0):
            continue  # fallback
        assert 0.08 * 0.95 <= w * h / (120 * 160) <= 1.0
        assert 3 / 4 - 0.03 <= w / h <= 4 / 3 + 0.03


def test_random_resized_crop_falls_back_to_centre_square():
    t = RandomResizedCrop(area_range=(1.0, 1.0), aspect_ratio_range=(2.0, 2.0))
    assert t.sample_box(120, 160, np.random.default_rng(0)) == (20, 0, 140, 120)


@pytest.mark.parametrize(
    "scale,keep_ratio,hw,expected",
    [
        ((-1, 256), True, (240, 320), (256, 341)),
        ((-1, 256), True, (320, 240), (341, 256)),
        ((340, 256), True, (240, 480), (170, 340)),  # long side bounds it
        (0.5, True, (240, 321), (120, 161)),  # int(160.5 + 0.5)
        ((224, 224), False, (240, 320), (224, 224)),
        ((171, 128), False, (240, 320), (128, 171)),
    ],
)
def test_resize_output_size_follows_mmcv(scale, keep_ratio, hw, expected):
    t = Resize(scale, keep_ratio=keep_ratio)
    out = t(torch.zeros(2, 3, *hw, dtype=torch.uint8))
    assert out.shape == (2, 3, *expected) and out.dtype == torch.uint8


def read_samples() -> np.ndarray:
    paths = sorted(SAMPLES.glob("img_0000*.jpg"))
    assert paths, f"sample frames missing under {SAMPLES}"
    return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths])


@requires_samples
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])  # decoders' layout, other tensors'
def test_val_pipeline_matches_cv2(exact, channels_last):
    frames = read_samples()  # (T, H, W, 3)
    h, w = frames.shape[1:3]
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W)
    video = video if channels_last else video.contiguous()
    pipeline = Compose([Resize((-1, 256), exact=exact), CenterCrop(224)])
    out = pipeline(video)
    assert torch.equal(out, pipeline(video)), "val pipeline must be deterministic"

    new_w, new_h = int(w * 256 / min(h, w) + 0.5), int(h * 256 / min(h, w) + 0.5)
    x, y = (new_w - 224) // 2, (new_h - 224) // 2
    ref = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in frames])
    ref = ref[:, y : y + 224, x : x + 224].transpose(0, 3, 1, 2)
    diff = np.abs(out.numpy().astype(int) - ref)
    assert out.shape == (len(frames), 3, 224, 224)
    assert diff.max() == 0


LAYOUTS = {
    "channels_last": lambda hwc: hwc.permute(0, 3, 1, 2),  # what the decoders return
    "contiguous": lambda hwc: hwc.permute(0, 3, 1, 2).contiguous(),
    "crop": lambda hwc: hwc.permute(0, 3, 1, 2)[..., 3:-2, 5:-4],  # MultiScaleCrop's view
    "flipped": lambda hwc: hwc.permute(0, 3, 1, 2).flip(-1).flip(-1),  # Flip's copy, twice
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("size", [(17, 33), (256, 341), (480, 640), (120, 160), (7, 500)])
def test_resize_equals_cv2_on_noise(size, channels, layout):
    hwc = np.random.default_rng(0).integers(0, 256, (2, 102, 140, channels), dtype=np.uint8)
    imgs = LAYOUTS[layout](torch.from_numpy(hwc))  # (T, C, H, W)
    frames = imgs.permute(0, 2, 3, 1).numpy()  # the same pixels, (T, H, W, C)
    ref = [cv2.resize(f, size[::-1], interpolation=cv2.INTER_LINEAR) for f in frames]
    out = F.resize(imgs, size)
    assert out.shape == (2, channels, *size) and out.dtype == torch.uint8
    for got, want in zip(out.permute(0, 2, 3, 1).numpy(), ref, strict=True):
        assert np.array_equal(got, want.reshape(*size, channels))


def test_moved_transforms_stay_importable_from_transforms():
    # Configs of earlier runs name actionrec.data.transforms.ThreeCrop and the like.
    assert (transforms.ThreeCrop, transforms.TenCrop) == (ThreeCrop, TenCrop)
    assert (transforms.ColorJitter, transforms.Albumentations) == (ColorJitter, Albumentations)


def test_compose_threads_one_rng():
    video = coord_video(2, 64, 80)
    pipeline = Compose([MultiScaleCrop(48), Resize((32, 32), keep_ratio=False), Flip()])
    a = pipeline(video, np.random.default_rng(1))
    b = pipeline(video, np.random.default_rng(1))
    assert a.shape == (2, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b)
    rng = np.random.default_rng(1)
    assert len({pipeline(video, rng).numpy().tobytes() for _ in range(10)}) > 1
    assert "MultiScaleCrop" in repr(pipeline)


@pytest.mark.parametrize(
    "build,arg",
    [
        (lambda: Resize(256), "scale"),
        (lambda: Resize((-1, 256), keep_ratio=False), "scale"),
        (lambda: Resize((224, 224), interpolation="cubic"), "interpolation"),
        (lambda: MultiScaleCrop(224, scales=(1.2,)), "scales"),
        (lambda: MultiScaleCrop(224, num_fixed_crops=4), "num_fixed_crops"),
        (lambda: MultiScaleCrop(0), "input_size"),
        (lambda: RandomResizedCrop(area_range=(0.5, 0.1)), "area_range"),
        (lambda: Flip(flip_ratio=1.5), "flip_ratio"),
        (lambda: Flip(direction="diagonal"), "direction"),
        (lambda: CenterCrop((224, 0)), "crop_size"),
        (lambda: Compose([1]), "transforms"),
    ],
)
def test_constructors_reject_bad_arguments(build, arg):
    with pytest.raises(ValueError, match=arg):
        build()


def test_crops_reject_small_frames_and_non_uint8():
    with pytest.raises(ValueError, match="does not fit"):
        CenterCrop(224)(torch.zeros(1, 3, 200, 300, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        CenterCrop(2)(torch.zeros(1, 3, 20, 30))


def ref_color_jitter_no_hue(frame, order, b, c, s):
    """mmaction2 ColorJitter on one HWC RGB frame, hue left out, literal numpy."""

    def gray(x):
        return 0.2989 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]

    img = frame.astype(np.float32)
    for op in order:
        if op == 0 and b != 1:
            img *= b
        if op == 1 and c != 1:
            img = c * img + (1 - c) * np.mean(gray(img))
        if op == 2 and s != 1:
            img = s * img + (1 - s) * np.stack([gray(img)] * 3, axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


@requires_samples
def test_color_jitter_matches_mmaction2_formulas():
    frames = read_samples()[:3]
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    for order, b, c, s in [([0, 1, 2, 3], 1.3, 0.7, 1.4), ([2, 1, 0, 3], 0.6, 1.5, 0.2)]:
        out = F.color_jitter(video, order, b, c, s, hue=0.0).permute(0, 2, 3, 1).numpy()
        ref = np.stack([ref_color_jitter_no_hue(f, order, b, c, s) for f in frames])
        assert np.abs(out.astype(int) - ref).max() <= 1


@requires_samples
def test_color_jitter_draws_once_per_clip():
    frame = torch.from_numpy(read_samples()[0, :64, :96]).permute(2, 0, 1)
    video = frame.expand(4, -1, -1, -1).contiguous()  # four identical frames
    t = ColorJitter()
    out = t(video, np.random.default_rng(0))
    assert out.shape == video.shape and out.dtype == torch.uint8
    assert all(torch.equal(out[0], f) for f in out)
    assert not torch.equal(out, video)
    assert torch.equal(out, t(video, np.random.default_rng(0)))
    assert torch.equal(ColorJitter(0, 0, 0, 0)(video), video)
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.7)


def importorskip_albumentations():
    return pytest.importorskip(
        "albumentations", reason="albumentations is optional: pip install 'albumentations>=2.0'"
    )


@requires_samples
def test_albumentations_adapter_shares_params_across_frames():
    albumentations = importorskip_albumentations()
    frame = torch.from_numpy(read_samples()[0]).permute(2, 0, 1)
    video = frame.expand(3, -1, -1, -1).contiguous()
    video[1] = 255 - video[1]  # frames differ; the geometry must not
    t = Albumentations(
        albumentations.Compose(
            [
                albumentations.RandomResizedCrop(size=(64, 80), p=1.0),
                albumentations.HorizontalFlip(p=0.5),
            ]
        )
    )
    out = t(video, np.random.default_rng(0))
    assert out.shape == (3, 3, 64, 80) and out.dtype == torch.uint8
    assert torch.equal(out[0], out[2])
    # Same box for the inverted frame: its resized pixels mirror frame 0's up to rounding.
    assert (out[1].int() - (255 - out[0].int())).abs().max() <= 1
    assert torch.equal(out, t(video, np.random.default_rng(0)))
    flipped = Albumentations(albumentations.HorizontalFlip(p=1.0))(video)
    assert torch.equal(flipped, video.flip(-1))
    with pytest.raises(ValueError, match="transform"):
        Albumentations(lambda x: x)


# What a config writes: albumentations' serialized form, no albumentations _target_.
ADAPTER = (
    "data.train_pipeline=[{_target_: actionrec.data.augmentations.Albumentations, transform: "
    "{__class_fullname__: Compose, transforms: [{__class_fullname__: Resize, height: 24, "
    "width: 32, p: 1.0}, {__class_fullname__: HorizontalFlip, p: 1.0}]}}]"
)


def test_albumentations_adapter_from_a_config(tmp_path):
    albumentations = importorskip_albumentations()
    (adapter,) = (
        instantiate(compose_config("train", [ADAPTER], tmp_path).data).pipelines["train"].transforms
    )
    built = Albumentations(
        albumentations.Compose(
            [albumentations.Resize(height=24, width=32), albumentations.HorizontalFlip(p=1.0)]
        )
    )
    video = coord_video(3, 40, 50)
    out = adapter(video, np.random.default_rng(0))
    assert out.shape == (3, 3, 24, 32) and torch.equal(out, built(video, np.random.default_rng(0)))


def test_albumentations_adapter_without_albumentations_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "albumentations", None)  # `import` fails as if absent
    cfg = compose_config("train", [ADAPTER], tmp_path)
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg.data)
    message = str(info.value)
    assert "pip install 'albumentations>=2.0'" in message
    assert "full_key: data.train_pipeline" in message  # Hydra writes the index as "0"


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "cropped_channels_last", "grey"])
@pytest.mark.parametrize("flip", [F.hflip, F.vflip])
def test_flips_equal_torch_flip_in_every_layout(layout, flip):
    imgs = torch.randint(0, 256, (3, 3, 20, 30), dtype=torch.uint8)
    if layout == "grey":
        imgs = imgs[:, :1]
    if layout in ("channels_last", "cropped_channels_last"):
        imgs = imgs.contiguous(memory_format=torch.channels_last)
    if layout == "cropped_channels_last":
        imgs = imgs[..., 2:17, 5:26]  # a crop's view: rows are longer than the frame
    dim = -1 if flip is F.hflip else -2
    out = flip(imgs)
    assert torch.equal(out, imgs.flip(dim))
    if layout != "contiguous":
        assert out.is_contiguous(memory_format=torch.channels_last)  # what resize hands on


def tsn_train_pipeline(lazy: bool) -> Compose:
    return Compose(
        [
            Resize((-1, 256)),
            MultiScaleCrop(224, (1, 0.875, 0.75, 0.66)),
            Resize((224, 224), keep_ratio=False),
            Flip(0.5),
        ],
        lazy=lazy,
    )


def smooth_clip(height: int, width: int, frames: int = 2) -> torch.Tensor:
    """uint8 (T, 3, H, W) of smooth colour gradients, where one resampling and two agree."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    return torch.from_numpy(np.repeat(rgb[None].astype(np.uint8), frames, 0)).permute(0, 3, 1, 2)


def test_lazy_changes_nothing_for_frames_at_the_first_resize_size() -> None:
    clip = smooth_clip(256, 340)
    for seed in range(30):
        eager = tsn_train_pipeline(False)(clip, np.random.default_rng(seed))
        lazy = tsn_train_pipeline(True)(clip, np.random.default_rng(seed))
        assert torch.equal(lazy, eager)


@pytest.mark.parametrize("hw", [(240, 320), (720, 1280), (300, 200)])
def test_lazy_resamples_the_same_box_once(hw: tuple[int, int]) -> None:
    clip = smooth_clip(*hw)
    for seed in range(30):
        eager_rng, lazy_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        eager = tsn_train_pipeline(False)(clip, eager_rng)
        lazy = tsn_train_pipeline(True)(clip, lazy_rng)
        # The same draws (crop and flip), the same output; pixels differ by interpolation and
        # by rounding the box to whole pixels of the original frame.
        assert eager_rng.bit_generator.state == lazy_rng.bit_generator.state
        assert lazy.shape == eager.shape == (2, 3, 224, 224)
        diff = (lazy.float() - eager.float()).abs()
        assert diff.mean() < 1.5 and diff.max() <= 8, (seed, diff.mean(), diff.max())


def test_lazy_box_is_the_resized_box_mapped_back() -> None:
    pipeline = tsn_train_pipeline(True)
    crop = pipeline.transforms[1]
    for seed in range(50):
        box, rest = pipeline.split_crop(240, 320, np.random.default_rng(seed))
        drawn = crop.sample_box(256, 341, np.random.default_rng(seed))  # (-1, 256) of 320x240
        exact = np.array(drawn) * np.array([320 / 341, 240 / 256] * 2)
        assert np.abs(np.array(box) - exact).max() <= 0.5
        assert [type(t) for t in rest.transforms] == [Resize, Flip] and not rest.lazy


def test_lazy_needs_resize_crop_resize() -> None:
    # A crop not followed by a fixed-size resize keeps every step (nothing to fuse into).
    pipeline = Compose([Resize((-1, 256)), MultiScaleCrop(224), Flip(0.5)], lazy=True)
    rng = np.random.default_rng(0)
    assert pipeline.split_crop(240, 320, rng) == (None, pipeline)
    clip = smooth_clip(240, 320)
    eager = Compose(pipeline.transforms)(clip, np.random.default_rng(1))
    assert torch.equal(pipeline(clip, np.random.default_rng(1)), eager)


def test_lazy_fuses_a_fixed_size_first_resize_too() -> None:
    pipeline = Compose(
        [
            Resize((400, 300), keep_ratio=False),
            CenterCrop(200),
            Resize((112, 112), keep_ratio=False),
        ],
        lazy=True,
    )
    box, rest = pipeline.split_crop(240, 320, np.random.default_rng(0))
    # CenterCrop(200) of 400x300 is x 100..300, y 50..250: in 320x240 pixels, 80..240, 40..200.
    assert box == (80, 40, 240, 200)
    assert [type(t) for t in rest.transforms] == [Resize]
    assert pipeline(smooth_clip(240, 320), np.random.default_rng(0)).shape == (2, 3, 112, 112)
