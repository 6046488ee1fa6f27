"""SlowFast R50 against mmaction2's own outputs, kept as fixtures by
``scripts/mmaction2_slowfast_reference.py``: converted weights, the two pathways' sampling."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tests.fixtures.mmaction2.weights import FIXTURES, read_shapes, seeded_state_dict

from actionrec.checkpoints import to_network_keys
from actionrec.models import slowfast
from actionrec.models.backbones import PretrainedWeightsError
from actionrec.models.slowfast import RecognizerSlowFast, ResNet3dSlowFast, SlowFastHead
from actionrec.module import Recognizer

NAME = "slowfast_r50"
NUM_CLASSES = 5  # the reference script's


def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{NAME}_outputs.npz") as data:
        return dict(data)


def seeded_input(ref: dict[str, np.ndarray]) -> torch.Tensor:
    """The script's input: ``randn`` of its shape, torch's CPU generator, seed 0."""
    shape = tuple(int(s) for s in ref["input_shape"])
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


@functools.cache
def mmaction2_weights() -> dict[str, torch.Tensor]:
    """mmaction2's keys with the seeded stand-in weights (made once: 34 M values; never changed
    in place, loading copies them)."""
    return seeded_state_dict(read_shapes(FIXTURES / f"{NAME}_keys.json"))


def assert_close_to(actual: torch.Tensor, expected: np.ndarray) -> None:
    """float32 agreement, relative to the outputs' scale (stand-in weights make them large)."""
    expected = torch.from_numpy(expected)
    atol = 1e-5 * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=atol)


@pytest.fixture(scope="module")
def net() -> RecognizerSlowFast:
    """The recipe's network with mmaction2's seeded weights, in eval mode (built once: ~1 s)."""
    net = RecognizerSlowFast(ResNet3dSlowFast(), SlowFastHead(NUM_CLASSES, in_channels=2304))
    net.load_state_dict(net.convert_mmaction_state_dict(mmaction2_weights()))
    return net.eval()


def test_the_model_config_reproduces_mmaction2(compose_train) -> None:
    cfg = compose_train(f"model={NAME}", f"data.num_classes={NUM_CLASSES}")
    net = instantiate(cfg.model.net, _convert_="all").eval()
    net.load_state_dict(to_network_keys(mmaction2_weights(), net))
    ref = reference()
    x = seeded_input(ref)
    with torch.no_grad():
        slow, fast = net.backbone(x)
        feats = net.forward_features(x)
        logits = net.forward_head(feats)
    assert tuple(slow.shape) == tuple(ref["slow_shape"])  # 4 frames of the 32
    assert tuple(fast.shape) == tuple(ref["fast_shape"])  # all 32
    assert_close_to(feats, ref["features"])  # fast, then slow
    assert_close_to(logits, ref["logits"])


def test_every_mmaction2_key_has_exactly_one_of_ours(net: RecognizerSlowFast) -> None:
    shapes = read_shapes(FIXTURES / f"{NAME}_keys.json")
    converted = net.convert_mmaction_state_dict(seeded_state_dict(shapes))
    own = net.state_dict()
    assert len(converted) == len(shapes)  # no two mmaction2 keys land on one of ours
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in own.items()
    }


def test_the_slow_pathway_reads_every_tau_th_frame(net: RecognizerSlowFast) -> None:
    x = torch.randn(1, 3, 16, 32, 32)
    backbone = net.backbone
    with torch.no_grad():
        slow, fast = backbone(x)
        assert slow.shape[2] == 2 and fast.shape[2] == 16
        frames = backbone.slow_path.stem(x[:, :, [0, 8]])
        torch.testing.assert_close(backbone.slow_path.stem(x[:, :, ::8]), frames)
        changed = x.clone()
        changed[:, :, 1:8] = 0  # frames only the fast pathway sees
        assert not torch.equal(backbone(changed)[1], fast)


def test_a_fast_pathway_at_half_the_rate_reads_every_other_frame() -> None:
    backbone = ResNet3dSlowFast(resample_rate=4, speed_ratio=2).eval()
    with torch.no_grad():
        slow, fast = backbone(torch.randn(1, 3, 16, 32, 32))
    assert slow.shape[2] == 4 and fast.shape[2] == 8


def test_pretrained_loads_mmaction2s_backbone_file(net, monkeypatch) -> None:
    # The file as mmaction2's ``load_checkpoint`` reads it into the backbone (no ``backbone.``);
    # read from memory: writing 140 MB takes seconds, and reading is checkpoints.py's.
    state = {k.removeprefix("backbone."): v for k, v in mmaction2_weights().items()}
    files = {"sf.pth": {k: v for k, v in state.items() if not k.startswith("cls_head.")}}
    files["conv1.pth"] = {"slow_path.conv1.conv.weight": state["slow_path.conv1.conv.weight"]}
    monkeypatch.setattr(slowfast, "load_state_dict_file", lambda path, key: files[path])
    backbone = ResNet3dSlowFast(pretrained="sf.pth")
    expected = net.backbone.state_dict()
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    with pytest.raises(PretrainedWeightsError, match="not a SlowFast-50 backbone"):
        backbone.load_pretrained("conv1.pth")


def test_channels_last_3d_and_bfloat16_give_the_same_output(net: RecognizerSlowFast) -> None:
    x = net.example_input(1, 32, 16) * 0.1
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x).float()
        net.to(memory_format=torch.channels_last_3d)
        actual = net(x.contiguous(memory_format=torch.channels_last_3d))
        net.to(memory_format=torch.contiguous_format)
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(bf16, expected, rtol=0.1, atol=0.05 * scale)


def test_a_training_step_through_the_lightning_module() -> None:
    net = RecognizerSlowFast(ResNet3dSlowFast(), SlowFastHead(3, in_channels=2304))
    module = Recognizer(
        net,
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
        frames_per_view=16,
        average_clips="prob",
    )
    module.log = lambda *args, **kwargs: None
    batch = {
        "imgs": torch.randint(0, 256, (2, 16, 3, 32, 32), dtype=torch.uint8),  # (B, T, C, H, W)
        "label": torch.tensor([0, 2]),
    }
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    for name in ("slow_path.conv1", "fast_path.conv1", "conv1_lateral", "layer3_lateral"):
        grad = net.backbone.get_submodule(name).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # mmaction2's from-scratch init: residual branches start at zero, laterals do not.
    assert net.backbone.slow_path.layer2[0].bn3.weight.abs().sum() == 0
    assert net.backbone.fast_path.layer2[0].bn3.weight.abs().sum() == 0
    assert net.backbone.layer1_lateral.weight.std() > 0


def test_bad_arguments_name_themselves(net: RecognizerSlowFast) -> None:
    with pytest.raises(ValueError, match=r"speed_ratio=3 must divide resample_rate=8"):
        ResNet3dSlowFast(speed_ratio=3)
    with pytest.raises(ValueError, match=r"fusion_kernel=4"):
        ResNet3dSlowFast(fusion_kernel=4)
    with pytest.raises(ValueError, match=r"in_channels=2048.*2304"):
        RecognizerSlowFast(net.backbone, SlowFastHead(3, in_channels=2048))
