"""I3D R50 and SlowOnly R50 against mmaction2's own outputs, kept as fixtures by
``scripts/mmaction2_3d_reference.py``: converted weights, inflated 2-D weights, ``load_from``."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hydra.utils import instantiate
from tests.fixtures.mmaction2.weights import (
    FIXTURES,
    read_shapes,
    seeded_state_dict,
    write_checkpoint,
)

from actionrec.checkpoints import load_weights, to_network_keys
from actionrec.models.backbones import PretrainedWeightsError, resnet2d_state_dict
from actionrec.models.recognizer3d import I3DHead, Recognizer3D
from actionrec.models.resnet3d import ResNet3d, ResNet3dSlowOnly
from actionrec.module import Recognizer

MODELS = ["i3d_r50", "slowonly_r50"]
BACKBONES = {"i3d_r50": ResNet3d, "slowonly_r50": ResNet3dSlowOnly}
NUM_CLASSES = 5  # the reference script's


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}_outputs.npz") as data:
        return dict(data)


def seeded_input(ref: dict[str, np.ndarray]) -> torch.Tensor:
    """The script's input: ``randn`` of its shape, torch's CPU generator, seed 0."""
    shape = tuple(int(s) for s in ref["input_shape"])
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def assert_close_to(actual: torch.Tensor, expected: np.ndarray) -> None:
    """float32 agreement, relative to the outputs' scale (stand-in weights make them large)."""
    expected = torch.from_numpy(expected)
    atol = 1e-5 * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=atol)


def small_net(name: str = "slowonly_r50", num_classes: int = NUM_CLASSES) -> Recognizer3D:
    return Recognizer3D(BACKBONES[name](), I3DHead(num_classes, in_channels=2048))


@pytest.fixture(scope="module")
def resnet50_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded 2-D torchvision ResNet-50 state dict, the one the script inflated (seed 1)."""
    shapes = {k: list(v.shape) for k, v in torchvision.models.resnet50().state_dict().items()}
    path = tmp_path_factory.mktemp("r2d") / "resnet50_2d.pth"
    torch.save(seeded_state_dict(shapes, seed=1), path)
    return path


@pytest.mark.parametrize("name", MODELS)
def test_the_model_config_reproduces_mmaction2(name: str, compose_train) -> None:
    cfg = compose_train(
        f"model={name}", "model.net.backbone.pretrained=null", f"data.num_classes={NUM_CLASSES}"
    )
    net = instantiate(cfg.model.net, _convert_="all").eval()
    shapes = read_shapes(FIXTURES / f"{name}_keys.json")
    net.load_state_dict(to_network_keys(seeded_state_dict(shapes), net))
    ref = reference(name)
    with torch.no_grad():
        maps = net.backbone(seeded_input(ref))
        logits = net.head(maps)
    assert tuple(maps.shape) == tuple(ref["feature_shape"])
    assert_close_to(maps.mean(dim=(2, 3, 4)), ref["features"])
    assert_close_to(logits, ref["logits"])
    torch.testing.assert_close(net(seeded_input(ref)), logits)


@pytest.mark.parametrize("name", MODELS)
def test_every_mmaction2_key_has_exactly_one_of_ours(name: str) -> None:
    net = small_net(name)
    shapes = read_shapes(FIXTURES / f"{name}_keys.json")
    converted = net.convert_mmaction_state_dict(seeded_state_dict(shapes))
    own = net.state_dict()
    assert len(converted) == len(shapes)  # no two mmaction2 keys land on one of ours
    assert set(converted) == set(own)  # and none of ours is left out
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in own.items()
    }


@pytest.mark.parametrize("name", MODELS)
def test_inflated_2d_weights_match_mmaction2s_inflation(name: str, resnet50_2d: Path) -> None:
    ref = reference(name)
    backbone = BACKBONES[name](pretrained=str(resnet50_2d)).eval()
    with torch.no_grad():
        assert_close_to(backbone(seeded_input(ref)).mean(dim=(2, 3, 4)), ref["inflated"])
    # A still clip sees the 2-D kernel: the taps over t sum to it.
    state_2d = torch.load(resnet50_2d, weights_only=True)
    torch.testing.assert_close(backbone.conv1.weight.sum(dim=2), state_2d["conv1.weight"])
    bn = "layer4.1.bn3.running_var"
    torch.testing.assert_close(backbone.state_dict()[bn], state_2d[bn])


def test_2d_weights_of_another_depth_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="does not inflate into ResNet3d-50"):
        ResNet3dSlowOnly(pretrained=str(path))


def test_pretrained_by_mmaction2s_url_is_torchvisions_v2(monkeypatch) -> None:
    def fake(self, **kwargs):  # which weights were asked for, without a download
        return {"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1), self.name: 1}

    monkeypatch.setattr(torchvision.models.ResNet50_Weights, "get_state_dict", fake)
    url = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"  # mmaction2's SlowOnly
    assert set(resnet2d_state_dict(50, url)) == {"conv1.weight", "IMAGENET1K_V2"}
    assert "IMAGENET1K_V1" in resnet2d_state_dict(50, "torchvision://resnet50")


@pytest.fixture(scope="module")
def i3d_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An I3D R50 checkpoint as mmaction2's model zoo ships it (``meta``, ``state_dict``)."""
    shapes = read_shapes(FIXTURES / "i3d_r50_keys.json")
    return write_checkpoint(tmp_path_factory.mktemp("zoo") / "i3d.pth", shapes, seed=2)


@pytest.mark.parametrize("num_classes", [NUM_CLASSES, 3])
def test_load_from_an_mmaction2_checkpoint(i3d_checkpoint: Path, num_classes: int) -> None:
    shapes = read_shapes(FIXTURES / "i3d_r50_keys.json")
    net = small_net("i3d_r50", num_classes)
    load_weights(net, i3d_checkpoint)
    expected = net.convert_mmaction_state_dict(seeded_state_dict(shapes, seed=2))
    own = net.state_dict()
    for key, value in expected.items():
        if num_classes == NUM_CLASSES or not key.startswith("head."):
            torch.testing.assert_close(own[key], value, msg=key)
    if num_classes != NUM_CLASSES:  # another class count: a fresh head
        assert own["head.fc_cls.weight"].shape == (num_classes, 2048)


@pytest.mark.parametrize(
    ("name", "frames", "t"), [("i3d_r50", 32, 4), ("slowonly_r50", 4, 4), ("slowonly_r50", 8, 8)]
)
def test_temporal_strides(name: str, frames: int, t: int) -> None:
    net = small_net(name).eval()
    with torch.no_grad():
        maps = net.backbone(net.example_input(1, 32, frames))
    assert maps.shape == (1, 2048, t, 1, 1)


def test_channels_last_3d_gives_the_same_output() -> None:
    net = small_net("i3d_r50").eval()
    x = net.example_input(1, 32, 8)
    with torch.no_grad():
        expected = net(x)
        net.to(memory_format=torch.channels_last_3d)
        actual = net(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_a_training_step_through_the_lightning_module(name: str) -> None:
    module = Recognizer(
        small_net(name, num_classes=3),
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
        frames_per_view=8,
        average_clips="prob",
    )
    module.log = lambda *args, **kwargs: None
    batch = {
        "imgs": torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8),  # (B, T, C, H, W)
        "label": torch.tensor([0, 2]),
    }
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(module.net.backbone.conv1.weight.grad).all()


def test_from_scratch_init_zeroes_residual_branches_as_mmaction2() -> None:
    assert small_net("slowonly_r50").backbone.layer2[0].bn3.weight.abs().sum() == 0
    assert small_net("i3d_r50").backbone.layer2[0].bn3.weight.min() == 1


def test_frozen_stages_and_norm_eval_survive_train_mode() -> None:
    net = ResNet3dSlowOnly(frozen_stages=1, norm_eval=True).train()
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match=r"depth=18"):
        ResNet3d(depth=18)
    with pytest.raises(ValueError, match=r"inflate=\[1, 0\] must have one flag per block \(3\)"):
        ResNet3d(inflate=((1, 0), 0, 0, 0))
    with pytest.raises(ValueError, match=r"in_channels=512.*2048"):
        Recognizer3D(ResNet3dSlowOnly(), I3DHead(3, in_channels=512))
