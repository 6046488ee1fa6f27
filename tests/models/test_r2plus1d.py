"""R(2+1)D R34 against mmaction2's own outputs, kept as fixtures by
``scripts/mmaction2_r2plus1d_reference.py``: key conversion, seeded-weight parity, strides, bf16,
channels_last_3d and export. ``load_from`` of an mmaction2 checkpoint is the end-to-end test's
(``tests/test_mmaction2_fixtures.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tests.fixtures.mmaction2.weights import FIXTURES, read_shapes, seeded_state_dict

from actionrec.checkpoints import to_network_keys
from actionrec.models.r2plus1d import Conv2plus1d, ResNet2Plus1d
from actionrec.models.recognizer3d import I3DHead, Recognizer3D

NAME = "r2plus1d_r34"
NUM_CLASSES = 5  # the reference script's
SHAPES = read_shapes(FIXTURES / f"{NAME}_keys.json")


def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{NAME}_outputs.npz") as data:
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


@pytest.fixture(scope="module")
def seeded_net() -> Recognizer3D:
    """The recognizer with mmaction2's seeded stand-in weights, in eval mode."""
    net = Recognizer3D(ResNet2Plus1d(), I3DHead(NUM_CLASSES, in_channels=512))
    net.load_state_dict(net.convert_mmaction_state_dict(seeded_state_dict(SHAPES)))
    return net.eval()


def test_the_model_config_reproduces_mmaction2(compose_train) -> None:
    cfg = compose_train(f"model={NAME}", f"data.num_classes={NUM_CLASSES}")
    net = instantiate(cfg.model.net, _convert_="all").eval()
    net.load_state_dict(to_network_keys(seeded_state_dict(SHAPES), net))
    ref = reference()
    with torch.no_grad():
        maps = net.backbone(seeded_input(ref))
        logits = net.head(maps)
    assert tuple(maps.shape) == tuple(ref["feature_shape"])
    assert_close_to(maps.mean(dim=(2, 3, 4)), ref["features"])
    assert_close_to(logits, ref["logits"])
    torch.testing.assert_close(net(seeded_input(ref)), logits)


def test_every_mmaction2_key_has_exactly_one_of_ours(seeded_net: Recognizer3D) -> None:
    converted = seeded_net.convert_mmaction_state_dict(seeded_state_dict(SHAPES))
    own = seeded_net.state_dict()
    assert len(converted) == len(SHAPES)  # no two mmaction2 keys land on one of ours
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in own.items()
    }


def test_middle_width_keeps_the_3d_kernels_parameters() -> None:
    # R(2+1)D paper, section 3.5: M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out)).
    conv = Conv2plus1d(64, 128, (3, 3, 3), (2, 2, 2), (1, 1, 1))
    assert conv.conv_s.out_channels == (3 * 9 * 64 * 128) // (9 * 64 + 3 * 128) == 230
    assert conv(torch.randn(1, 64, 4, 8, 8)).shape == (1, 128, 2, 4, 4)


@pytest.mark.parametrize(("frames", "t"), [(8, 1), (16, 2)])
def test_time_is_strided_by_8(seeded_net: Recognizer3D, frames: int, t: int) -> None:
    with torch.no_grad():
        maps = seeded_net.backbone(seeded_net.example_input(1, 32, frames))
    assert maps.shape == (1, 512, t, 1, 1)


def test_channels_last_3d_and_bf16_give_the_same_output(seeded_net: Recognizer3D) -> None:
    x = seeded_input(reference())
    with torch.no_grad():
        expected = seeded_net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = seeded_net(x)
        seeded_net.to(memory_format=torch.channels_last_3d)
        last = seeded_net(x.contiguous(memory_format=torch.channels_last_3d))
        seeded_net.to(memory_format=torch.contiguous_format)
    scale = expected.abs().max().item()
    torch.testing.assert_close(last, expected, rtol=1e-4, atol=1e-5 * scale)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected, rtol=0, atol=0.05 * scale)


def test_frozen_stages_and_norm_eval_survive_train_mode() -> None:
    net = ResNet2Plus1d(depth=18, frozen_stages=1, norm_eval=True).train()
    assert not any(p.requires_grad for p in net.conv1.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert ResNet2Plus1d(depth=18, zero_init_residual=True).layer2[0].bn2.weight.abs().sum() == 0


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match=r"depth=50.*\(18, 34\)"):
        ResNet2Plus1d(depth=50)
    with pytest.raises(ValueError, match=r"pretrained='x.pth'.*load_from"):
        ResNet2Plus1d(pretrained="x.pth")


@pytest.mark.slow  # torch.export 12 s, ONNX 90 s on a shared CPU
def test_exports_through_torch_export_and_onnx(seeded_net: Recognizer3D, tmp_path: Path) -> None:
    from actionrec import export
    from actionrec.module import Recognizer

    x = seeded_net.example_input(2, 32, 8)
    program = torch.export.export(seeded_net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), seeded_net(x))
    pytest.importorskip("onnxscript")
    module = Recognizer(seeded_net, optimizer=torch.optim.SGD, frames_per_view=8).eval()
    model = export.ExportableRecognizer.from_recognizer(module).eval()
    path = export.export_onnx(model, export.example_input(8, 32, batch=2), tmp_path / "m.onnx")
    imgs = export.example_input(8, 32, batch=3, seed=1)  # another batch: the dynamic axis
    with torch.no_grad():
        expected = model(imgs)
    scale = expected.abs().max().item()
    torch.testing.assert_close(export.run_onnx(path, imgs), expected, rtol=1e-4, atol=1e-5 * scale)
