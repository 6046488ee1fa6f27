"""TSM: the shift, mmaction2's scores on seeded weights, its keys, weights and recipe config.

The reference scores come from mmaction2 itself: ``scripts/mmaction2_tsm_reference.py`` builds
its ``Recognizer2D(ResNetTSM, TSMHead)`` in the throwaway environment, loads the seeded stand-in
weights of ``tests/fixtures/mmaction2/weights.py`` and writes ``tsm_r50_outputs.npz``.
"""

from __future__ import annotations

import functools

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from hydra.utils import instantiate
from tests.conftest import ROOT
from tests.fixtures.mmaction2.weights import read_shapes, seeded_state_dict, write_checkpoint
from torch.utils.data import DataLoader

from actionrec import runs
from actionrec.checkpoints import load_weights, to_network_keys
from actionrec.models import tsm as tsm_module
from actionrec.models.backbones import ResNet
from actionrec.models.tsm import TSM, ShiftConv2d, TSMHead, temporal_shift
from actionrec.module import Recognizer
from actionrec.normalization import to_channels_last
from actionrec.optim import tsm_param_groups

FIXTURES = ROOT / "tests" / "fixtures" / "mmaction2"
SHAPES = read_shapes(FIXTURES / "tsm_r50_keys.json")
OUTPUTS = dict(np.load(FIXTURES / "tsm_r50_outputs.npz"))
CASES = ("seg8", "seg8_two_views", "seg16")
TOL = dict(rtol=1e-4, atol=1e-4)


def tsm_r50(num_classes: int = 400, **backbone) -> TSM:
    return TSM(ResNet(depth=50, **backbone), TSMHead(num_classes, in_channels=2048))


@pytest.fixture(scope="module")
def seeded() -> TSM:
    """Our TSM R50 with mmaction2's seeded stand-in weights, converted, in eval mode."""
    net = tsm_r50()
    net.load_state_dict(to_network_keys(seeded_state_dict(SHAPES), net))
    return net.eval()


def case(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference input as our network takes it, ``(views, T, C, H, W)``, and its scores."""
    shape = tuple(OUTPUTS[f"{name}/input_shape"].tolist())
    seed = int(OUTPUTS[f"{name}/input_seed"])
    imgs = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    t = int(OUTPUTS[f"{name}/num_segments"])  # mmaction2's TSM clip: one view of ours
    return imgs.reshape(-1, t, *shape[2:]), torch.from_numpy(OUTPUTS[f"{name}/scores"])


@pytest.mark.parametrize("name", CASES)
def test_scores_equal_mmaction2s(seeded: TSM, name: str) -> None:
    imgs, expected = case(name)
    with torch.no_grad():
        out = seeded(imgs)
    scale = expected.abs().max()
    torch.testing.assert_close(out / scale, expected / scale, **TOL)


def _reversed(x: torch.Tensor, t: int, div: int) -> torch.Tensor:
    flip = x.unflatten(0, (-1, t)).flip(1).flatten(0, 1)  # (B*T, C, H, W), time reversed
    return temporal_shift(flip, t, div).unflatten(0, (-1, t)).flip(1).flatten(0, 1)


WRONG_SHIFTS = {
    "none": lambda x, t, div: x,
    "directions swapped": _reversed,
    "two frames": lambda x, t, div: temporal_shift(temporal_shift(x, t, div), t, div),
    "half the fold": lambda x, t, div: temporal_shift(x, t, 2 * div),
    "across videos": lambda x, t, div: temporal_shift(x, x.shape[0], div),
}


@pytest.mark.parametrize("wrong", WRONG_SHIFTS)
def test_a_wrong_shift_fails_the_comparison(seeded: TSM, wrong: str, monkeypatch) -> None:
    imgs, expected = case("seg8")
    monkeypatch.setattr(tsm_module, "temporal_shift", WRONG_SHIFTS[wrong])
    with torch.no_grad():
        out = seeded(imgs)
    error = ((out - expected).abs().max() / expected.abs().max()).item()
    assert error > 100 * TOL["rtol"], f"a shift {wrong!r} would pass with error {error:.1e}"


def test_shift_moves_one_fold_back_one_forward_and_keeps_the_rest() -> None:
    b, t, c = 2, 4, 16  # fold = 2 channels with shift_div=8
    x = torch.arange(b * t * c, dtype=torch.float32).view(b * t, c, 1, 1) + 1  # no zero values
    out = temporal_shift(x, t, shift_div=8).view(b, t, c)
    x = x.view(b, t, c)
    assert torch.equal(out[:, :-1, :2], x[:, 1:, :2])  # frame i takes frame i+1's values
    assert torch.equal(out[:, -1, :2], torch.zeros(b, 2))  # nothing comes after the last frame
    assert torch.equal(out[:, 1:, 2:4], x[:, :-1, 2:4])  # frame i takes frame i-1's values
    assert torch.equal(out[:, 0, 2:4], torch.zeros(b, 2))  # the first frame: zeros, not video 0
    assert torch.equal(out[:, :, 4:], x[:, :, 4:])


def test_shift_keeps_the_layout_out_of_the_values() -> None:
    x = torch.randn(16, 64, 5, 5)
    shifted = temporal_shift(x.contiguous(memory_format=torch.channels_last), 8)
    torch.testing.assert_close(shifted, temporal_shift(x, 8), rtol=0, atol=0)


def test_shift_refuses_frames_that_are_not_whole_videos() -> None:
    with pytest.raises(ValueError, match="num_segments=8"):
        temporal_shift(torch.zeros(12, 16, 2, 2), 8)


def test_every_residual_branch_shifts_but_every_other_one_in_deep_nets() -> None:
    def shifted(net: TSM) -> list[str]:
        return [n for n, m in net.backbone.named_modules() if isinstance(m, ShiftConv2d)]

    assert len(shifted(tsm_r50())) == 3 + 4 + 6 + 3
    assert all(n.endswith(".conv1") for n in shifted(tsm_r50()))
    deep = TSM(ResNet(depth=101), TSMHead(5, in_channels=2048))  # mmaction2: n_round=2
    assert len(shifted(deep)) == 2 + 2 + 12 + 2


def test_mmaction2_keys_map_one_to_one_onto_ours() -> None:
    net = tsm_r50()
    converted = net.convert_mmaction_state_dict(seeded_state_dict(SHAPES))
    own = net.state_dict()
    assert len(converted) == len(SHAPES)
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert torch.equal(
        converted["backbone.layer1.0.conv1.weight"],
        seeded_state_dict(SHAPES)["backbone.layer1.0.conv1.conv.net.weight"],
    )


def test_load_from_an_mmaction2_checkpoint(tmp_path) -> None:
    path = write_checkpoint(tmp_path / "tsm.pth", SHAPES, seed=3)
    expected = to_network_keys(seeded_state_dict(SHAPES, seed=3), tsm_r50())
    net = tsm_r50()
    load_weights(net, path)
    for key, value in net.state_dict().items():
        assert torch.equal(value, expected[key]), key
    other = tsm_r50(num_classes=5)  # another class count: the backbone loads, the head stays
    load_weights(other, path)
    assert torch.equal(other.backbone.conv1.weight, expected["backbone.conv1.weight"])
    assert other.head.fc_cls.weight.shape == (5, 2048)


def test_imagenet_weights_by_name_and_from_a_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet50()
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / url.rsplit("/", 1)[1])
    for pretrained in ("torchvision://resnet50", str(cache / url.rsplit("/", 1)[1])):
        net = tsm_r50(5, pretrained=pretrained)
        shifted = net.backbone.layer3[2].conv1
        assert isinstance(shifted, ShiftConv2d)
        torch.testing.assert_close(shifted.weight, reference.layer3[2].conv1.weight)
        torch.testing.assert_close(net.backbone.bn1.running_var, reference.bn1.running_var)


def test_channels_last_gives_the_same_scores(seeded: TSM) -> None:
    imgs, expected = case("seg8")
    net = tsm_r50()
    net.load_state_dict(seeded.state_dict())
    net.eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = net(to_channels_last(imgs))
    scale = expected.abs().max()
    torch.testing.assert_close(out / scale, expected / scale, **TOL)


def test_features_then_head_equal_the_scores_in_eval(seeded: TSM) -> None:
    imgs, _ = case("seg8")
    with torch.no_grad():
        scores = seeded(imgs)
        feats = seeded.forward_features(imgs)
    assert feats.shape == (2, 2048)
    torch.testing.assert_close(seeded.forward_head(feats), scores, rtol=1e-5, atol=1e-2)


def test_param_groups_put_the_classifier_in_the_fc_groups() -> None:
    net = tsm_r50(5)
    groups = {g["name"]: g["params"] for g in tsm_param_groups(net)}
    assert groups["fc_weight"] == [net.head.fc_cls.weight]
    assert groups["fc_bias"] == [net.head.fc_cls.bias]
    assert any(p is net.backbone.layer1[0].conv1.weight for p in groups["weight"])
    assert sum(len(p) for p in groups.values()) == len(list(net.parameters()))


def test_a_training_step_through_the_recognizer(tmp_path) -> None:
    torch.manual_seed(0)
    net = TSM(ResNet(depth=50), TSMHead(3, in_channels=2048))
    sgd = functools.partial(torch.optim.SGD, lr=0.01)
    module = Recognizer(net, optimizer=sgd, param_groups=tsm_param_groups, frames_per_view=8)
    batch = {"imgs": torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8)}
    batch["label"] = torch.tensor([0, 2])
    before = net.head.fc_cls.weight.detach().clone()
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, default_root_dir=tmp_path
    )
    trainer.fit(module, DataLoader([batch], batch_size=None))
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss)
    assert not torch.equal(net.head.fc_cls.weight, before)


def test_the_model_option_builds_tsm_with_mmaction2s_protocol(compose_train) -> None:
    cfg = compose_train("model=tsm_r50", "data.num_classes=5", "model.net.backbone.pretrained=null")
    module = runs.build_module(cfg)
    assert isinstance(module.net, TSM) and module.net.num_classes == 5
    assert module.average_clips == "prob" and module.frames_per_view == 8
    assert cfg.data.num_clips == 8 and cfg.data.test_pipeline[-1]._target_.endswith("TenCrop")
    assert cfg.optim.param_groups.fc_lr5 is True
    assert module.param_groups is not None
    assert instantiate(cfg.data).num_classes == 5
