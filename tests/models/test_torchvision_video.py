"""torchvision's video classifiers as backbones: the same logits as torchvision's own forward,
Kinetics weights by name through torchvision's cache, normalization that follows the arch."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from tests.conftest import ROOT, compose_config, load_entry_point, toy_overrides
from tests.fixtures.mmaction2.weights import seeded_state_dict
from torchvision.models import get_model, get_model_weights

from actionrec import export, runs
from actionrec.data.transforms import Compose
from actionrec.models.torchvision_video import (
    CLASSIFIERS,
    LinearHead,
    TorchvisionVideo,
    TorchvisionVideoRecognizer,
)
from actionrec.module import Recognizer

SMALL = (1, 3, 4, 32, 32)  # (B, C, T, H, W): what the size-free networks get here
# The networks that cannot take SMALL: S3D's last pooling needs 224 px and 14 frames, MViT's
# positional encoding fixes 16 x 224 px (mvit_v2_s is shrunk below instead); the rest are costly.
FULL = {"s3d": (1, 3, 14, 224, 224), "mvit_v1_b": (1, 3, 16, 224, 224)}
# Slow: the costly ones, the VideoResNets that share mc3_18's class and pooling, and mvit_v2_s,
# whose forward and backward test_mvit_v2_s_trains_at_a_small_size runs.
SLOW = {"r3d_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_s", "swin3d_b"}


def shrink_mvit(model: torch.nn.Module) -> None:
    """Let an MViT v2 (relative positions, no absolute table) take SMALL: 2 x 8 x 8 patches."""
    model.pos_encoding.temporal_size, model.pos_encoding.spatial_size = 2, (8, 8)


def shape_of(arch: str) -> tuple[int, ...]:
    return FULL.get(arch, SMALL)


def torchvision_and_ours(arch: str) -> tuple[torch.nn.Module, TorchvisionVideoRecognizer]:
    """torchvision's seeded model, and ours holding its weights (classifier in our head)."""
    torch.manual_seed(0)
    ref = get_model(arch).eval()
    backbone = TorchvisionVideo(arch)
    net = TorchvisionVideoRecognizer(backbone, LinearHead(400, backbone.num_features, 0.0)).eval()
    prefix = CLASSIFIERS[arch] + "."
    state = ref.state_dict()
    net.backbone.model.load_state_dict({k: v for k, v in state.items() if not k.startswith(prefix)})
    fc = {k.rsplit(".", 1)[1]: v for k, v in state.items() if k.startswith(prefix)}
    net.head.fc_cls.weight.data.copy_(fc["weight"].flatten(1))  # S3D's is a 1x1x1 conv
    net.head.fc_cls.bias.data.copy_(fc["bias"])
    if arch == "mvit_v2_s":
        shrink_mvit(ref)
        shrink_mvit(net.backbone.model)
    return ref, net


@pytest.mark.parametrize(
    "arch", [pytest.param(a, marks=pytest.mark.slow) if a in SLOW else a for a in CLASSIFIERS]
)
def test_logits_equal_torchvisions_own_forward(arch: str) -> None:
    ref, net = torchvision_and_ours(arch)
    x = torch.randn(shape_of(arch), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, feats = ref(x), net.forward_features(x)
        actual = net.forward_head(feats)
    assert feats.shape == (x.shape[0], net.num_features)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def kinetics_file(torch_home: Path, arch: str = "mc3_18") -> dict[str, torch.Tensor]:
    """A seeded stand-in for ``arch``'s KINETICS400_V1 file where torchvision's cache has it."""
    weights = get_model_weights(arch).KINETICS400_V1
    shapes = {k: list(v.shape) for k, v in get_model(arch).state_dict().items()}
    state = seeded_state_dict(shapes, seed=3)
    cache = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, cache)
    return state


def test_weights_by_name_load_through_torchvisions_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = kinetics_file(tmp_path)
    loaded = TorchvisionVideo("mc3_18", weights="KINETICS400_V1").model.state_dict()
    assert set(loaded) == set(state) - {"fc.weight", "fc.bias"}
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


def test_a_wrong_weights_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"IMAGENET1K_V1.*KINETICS400_V1.*IMAGENET22K_V1"):
        TorchvisionVideo("swin3d_b", weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="arch='r3d_50'"):
        TorchvisionVideo("r3d_50")


@functools.cache
def preset(arch: str) -> tuple[list[float], list[float]]:
    t = get_model_weights(arch).DEFAULT.transforms()
    return [255 * m for m in t.mean], [255 * s for s in t.std]


def test_a_network_without_its_own_normalization_needs_model_mean() -> None:
    net = torch.nn.Linear(2, 3)
    net.num_classes = 3
    with pytest.raises(ValueError, match=r"model\.mean=null"):
        Recognizer(net, torch.optim.SGD, mean=None, std=None)


def small_net(arch: str) -> TorchvisionVideoRecognizer:
    torch.manual_seed(0)
    backbone = TorchvisionVideo(arch)
    return TorchvisionVideoRecognizer(backbone, LinearHead(5, backbone.num_features)).eval()


def test_channels_last_3d_and_bf16_autocast_match_fp32() -> None:
    net = small_net("mc3_18")
    assert net.memory_format == torch.channels_last_3d
    x = net.example_input(2, 32, 4)
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x)
        net.to(memory_format=torch.channels_last_3d)
        channels_last = net(x.contiguous(memory_format=torch.channels_last_3d))
    scale = expected.abs().max()
    torch.testing.assert_close(channels_last, expected, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(bf16.float(), expected, rtol=0.05, atol=0.05 * scale)


def test_the_transformers_stay_contiguous_and_run_in_bf16() -> None:
    net = small_net("swin3d_t")
    assert net.memory_format == torch.contiguous_format
    assert (list(net.mean), list(net.std)) == preset("swin3d_t") != preset("mc3_18")
    x = net.example_input(2, 32, 4)
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x)
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.float(), expected, rtol=0.05, atol=0.05 * expected.abs().max())


def test_mvit_v2_s_trains_at_a_small_size() -> None:
    torch.manual_seed(0)
    backbone = TorchvisionVideo("mvit_v2_s")
    shrink_mvit(backbone.model)
    net = TorchvisionVideoRecognizer(backbone, LinearHead(5, backbone.num_features)).train()
    net(torch.randn(SMALL)).logsumexp(1).sum().backward()
    assert net.backbone.model.conv_proj.weight.grad.abs().sum() > 0
    assert net.head.fc_cls.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "arch",
    ["mc3_18", *(pytest.param(a, marks=pytest.mark.slow) for a in ("mvit_v2_s", "swin3d_t"))],
)
def test_torch_export_gives_the_same_logits(arch: str) -> None:
    net = small_net(arch)
    if arch == "mvit_v2_s":
        shrink_mvit(net.backbone.model)
    x = net.example_input(2, 32, 4)
    program = torch.export.export(net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), net(x))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mc3_18", "swin3d_t"])
def test_exports_to_onnx_with_its_normalization(arch: str, tmp_path) -> None:
    pytest.importorskip("onnxscript")
    module = Recognizer(small_net(arch), torch.optim.SGD, mean=None, std=None, frames_per_view=4)
    exportable = export.ExportableRecognizer.from_recognizer(module.eval())
    imgs = export.example_input(4, 32, batch=2)
    path = export.export_onnx(exportable, imgs, tmp_path / "m.onnx")
    ort = pytest.importorskip("onnxruntime")
    (actual,) = ort.InferenceSession(str(path)).run(None, {"imgs": imgs.numpy()})
    with torch.no_grad():
        expected = exportable(imgs)
    torch.testing.assert_close(torch.from_numpy(actual), expected, rtol=1e-3, atol=1e-4)


def test_the_model_table_quotes_the_weights_own_accuracy(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    published = importlib.import_module("bench_models").PUBLISHED
    rows = {name: top1 for name, (_, top1) in published.items() if name.startswith("tv_")}
    assert len(rows) >= 4
    for name, top1 in rows.items():
        meta = get_model_weights(name.removeprefix("tv_")).KINETICS400_V1.meta
        assert top1 == meta["_metrics"]["Kinetics-400"]["acc@1"], name


TOY_RUN = [
    "data=toy",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data.videos_per_gpu=2",
    "data.val_videos_per_gpu=2",
]


@pytest.fixture(scope="module")
def train_entry():
    return load_entry_point("train")


def test_the_readmes_one_override_fine_tunes_from_kinetics(compose_train, tmp_path, monkeypatch):
    # README: python src/train.py model=tv_r2plus1d_18 model.net.backbone.weights=KINETICS400_V1
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = kinetics_file(tmp_path)
    cfg = compose_train("model=tv_mc3_18", "model.net.backbone.weights=KINETICS400_V1")
    module = runs.build_module(cfg)
    model = module.net.backbone.model
    torch.testing.assert_close(model.layer4[1].conv2[0].weight, state["layer4.1.conv2.0.weight"])
    transforms = get_model_weights("mc3_18").KINETICS400_V1.transforms()
    mean = torch.tensor(transforms.mean) * 255
    torch.testing.assert_close(module.normalizer.mean.flatten().float(), mean)
    assert cfg.data.num_classes == module.net.num_classes  # our head, the data's classes


@pytest.mark.slow  # 45 s on the shared CPUs, mostly Lightning and the loaders
def test_a_cnn_trains_on_the_toy_data(train_entry, compose_train, toy_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    kinetics_file(tmp_path)  # fine-tuned from "Kinetics" weights, as the README does it
    cfg = compose_train(
        "model=tv_mc3_18",
        "model.net.backbone.weights=KINETICS400_V1",
        "protocol=toy",
        *toy_overrides(toy_root),
        *TOY_RUN,
        "data.clip_len=4",  # the toy protocol's 64 px, one clip of 4 frames
        "data.num_clips=1",
        "model.frames_per_view=4",
    )
    metrics = train_entry.train(cfg)
    assert torch.isfinite(torch.as_tensor(metrics["train/loss"]))
    assert 0 <= metrics["val/top1"] <= 1


@pytest.mark.slow
def test_mvit_v2_s_trains_with_its_own_protocol(train_entry, compose_train, toy_root) -> None:
    cfg = compose_train(
        "model=tv_mvit_v2_s",  # its protocol: 16 frames at 7.5 fps, 224 px
        *toy_overrides(toy_root),
        *TOY_RUN,
        "trainer.limit_train_batches=1",
        "data.videos_per_gpu=1",
        "data.val_videos_per_gpu=1",
    )
    assert cfg.data.clip_len == 16 and cfg.data.train_sampler.target_fps == 7.5
    metrics = train_entry.train(cfg)
    assert torch.isfinite(torch.as_tensor(metrics["train/loss"]))


RECIPE = "tv_r2plus1d_18_references-8xb24-16x1x1-45e_kinetics400"


def test_the_recipe_lr_is_torchvision_references_per_step(compose_train) -> None:
    """torchvision's train.py: SequentialLR(LinearLR over the warmup steps, MultiStepLR with its
    milestones moved by the warmup), stepped every iteration; here 3 steps an epoch."""
    cfg = compose_train(f"experiment={RECIPE}")
    steps, epochs = 3, cfg.trainer.max_epochs
    assert (epochs, cfg.data.videos_per_gpu, cfg.data.clip_len) == (45, 24, 16)
    assert cfg.data.train_sampler.target_fps == 15 and cfg.data.test_num_clips == 5
    ours = instantiate(cfg.optim.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    warmup = instantiate(cfg.optim.warmup)(ours, lambda: steps)
    decay = instantiate(cfg.optim.scheduler)(optimizer=ours)
    ref = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01 * 8, momentum=0.9)
    warm = 10 * steps  # --lr-warmup-epochs 10, --lr-warmup-decay 0.001, --lr-milestones 20 30 40
    ref_sched = torch.optim.lr_scheduler.SequentialLR(
        ref,
        [
            torch.optim.lr_scheduler.LinearLR(ref, 0.001, total_iters=warm),
            torch.optim.lr_scheduler.MultiStepLR(ref, [steps * (m - 10) for m in (20, 30, 40)]),
        ],
        milestones=[warm],
    )
    lrs, expected = [], []
    for _ in range(epochs):
        for _ in range(steps):
            lrs.append(ours.param_groups[0]["lr"])
            expected.append(ref.param_groups[0]["lr"])
            ours.step(), warmup.step(), ref.step(), ref_sched.step()
        decay.step()
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert (ours.defaults["momentum"], ours.defaults["weight_decay"]) == (0.9, 1e-4)


@pytest.mark.parametrize(
    ("model", "frame_size", "shift"),
    [
        ("tv_mc3_18", (100, 150), 1),  # resized to 128 x 171 as it is, not by its short side
        pytest.param("tv_s3d", (200, 300), 0, marks=pytest.mark.slow),  # 256 x 256
        pytest.param("tv_swin3d_t", (200, 300), 0, marks=pytest.mark.slow),  # short side 256
    ],
)
def test_the_val_view_is_the_weights_transforms(model: str, frame_size, shift, tmp_path) -> None:
    """Our val pipeline and normalization give the network what torchvision's preset gives it
    (upscaled noise: the two bilinear resizes round alike; a shifted crop would not match).

    ``shift``: a 112 px centre crop of 171 leaves 59 px; mmaction2's CenterCrop (ours) starts
    at 59 // 2 = 29, torchvision's at round(29.5) = 30, one pixel right."""
    cfg = compose_config("train", [f"model={model}"], tmp_path)
    module = runs.build_module(cfg)
    pipeline = Compose(instantiate(cfg.data.val_pipeline), lazy=cfg.data.lazy)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, *frame_size), dtype=torch.uint8, generator=g)
    ours = module.normalize(pipeline(frames)[None])[0]  # (C, T, h, w)
    preset = get_model_weights(cfg.model.net.backbone.arch).DEFAULT.transforms()
    expected = preset(frames)  # (C, T, h, w)
    assert ours.shape == expected.shape
    ours, expected = ours[..., shift:], expected[..., : expected.shape[-1] - shift]
    # At most one uint8 level of rounding, on a minority of the pixels.
    torch.testing.assert_close(ours, expected, rtol=0, atol=1.01 / (255 * min(preset.std)))
    assert (ours - expected).abs().mean() < 0.25 / (255 * min(preset.std))
