"""X3D-S against mmaction2's own outputs, kept as fixtures by
``scripts/mmaction2_x3d_reference.py``: converted weights, the structure's widths and depths, the
switches, export and low precision."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tests.fixtures.mmaction2.weights import (
    FIXTURES,
    read_shapes,
    seeded_state_dict,
    write_checkpoint,
)

from actionrec import export
from actionrec.checkpoints import load_weights, to_network_keys
from actionrec.models.backbones import PretrainedWeightsError
from actionrec.models.x3d import X3D, BlockX3D, X3DHead, X3DRecognizer
from actionrec.module import Recognizer

NUM_CLASSES = 5  # the reference script's
KEYS = FIXTURES / "x3d_s_keys.json"


def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "x3d_s_outputs.npz") as data:
        return dict(data)


def seeded_input(ref: dict[str, np.ndarray]) -> torch.Tensor:
    """The script's input: ``randn`` of its shape, torch's CPU generator, seed 0."""
    shape = tuple(int(s) for s in ref["input_shape"])
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def assert_close_to(actual: torch.Tensor, expected: np.ndarray) -> None:
    """float32 agreement, relative to the outputs' scale (stand-in weights make them large).

    Swish is torch's fused SiLU here, ``x * sigmoid(x)`` in mmaction2: they round differently,
    and 26 blocks of stand-in weights amplify that to 6e-5 of the scale (0 with mmaction2's
    formula); a wrong key or layer moves the outputs by their own size."""
    expected = torch.from_numpy(expected)
    atol = 1e-4 * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=atol)


def x3d_s(num_classes: int = NUM_CLASSES, **backbone) -> X3DRecognizer:
    return X3DRecognizer(X3D(**backbone), X3DHead(num_classes, in_channels=432))


@pytest.fixture(scope="module")
def seeded_net() -> X3DRecognizer:
    """X3D-S with the script's stand-in weights, converted from mmaction2's keys."""
    net = x3d_s().eval()
    net.load_state_dict(to_network_keys(seeded_state_dict(read_shapes(KEYS)), net))
    return net


def test_the_model_config_reproduces_mmaction2(compose_train) -> None:
    cfg = compose_train("model=x3d_s", f"data.num_classes={NUM_CLASSES}")
    net = instantiate(cfg.model.net, _convert_="all").eval()
    net.load_state_dict(to_network_keys(seeded_state_dict(read_shapes(KEYS)), net))
    ref = reference()
    with torch.no_grad():
        maps = net.backbone(seeded_input(ref))
        logits = net.head(maps)
        assert tuple(maps.shape) == tuple(ref["feature_shape"])
        assert_close_to(maps.mean(dim=(2, 3, 4)), ref["features"])
        assert_close_to(logits, ref["logits"])
        torch.testing.assert_close(net(seeded_input(ref)), logits)
        torch.testing.assert_close(
            net.forward_head(net.forward_features(seeded_input(ref))), logits
        )


def test_every_mmaction2_key_has_exactly_one_of_ours() -> None:
    net = x3d_s()
    shapes = read_shapes(KEYS)
    converted = net.convert_mmaction_state_dict(seeded_state_dict(shapes))
    own = net.state_dict()
    assert len(converted) == len(shapes)  # no two mmaction2 keys land on one of ours
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in own.items()
    }


def test_x3d_s_has_the_published_size_and_shape() -> None:
    net = x3d_s(num_classes=400)
    assert sum(p.numel() for p in net.parameters()) == 3_794_322  # mmaction2 x3d/metafile.yml
    assert [len(getattr(net.backbone, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 5, 11, 7]
    # Squeeze-excitation in the first, third ... block of each stage ("half").
    assert [b.se is not None for b in net.backbone.layer2] == [True, False, True, False, True]
    with torch.no_grad():  # T is never strided, H and W by 32
        assert net.backbone(torch.randn(1, 3, 5, 64, 96)).shape == (1, 432, 5, 2, 3)


def test_load_from_an_mmaction2_checkpoint_and_pretrained(tmp_path: Path) -> None:
    shapes = read_shapes(KEYS)
    path = write_checkpoint(tmp_path / "x3d.pth", shapes, seed=2)
    expected = x3d_s().convert_mmaction_state_dict(seeded_state_dict(shapes, seed=2))
    net = x3d_s(num_classes=3)  # another class count: a fresh classifier
    load_weights(net, path)
    own = net.state_dict()
    for key in ("backbone.layer3.4.se.fc1.bias", "backbone.bn5.running_var", "head.fc1.weight"):
        torch.testing.assert_close(own[key], expected[key])
    assert own["head.fc_cls.weight"].shape == (3, 2048)
    # `pretrained` loads the backbone alone, from mmaction2's keys too.
    backbone = X3D(pretrained=str(path))
    torch.testing.assert_close(backbone.conv1_t.weight, expected["backbone.conv1_t.weight"])
    torch.save({"conv1_s.weight": torch.zeros(24, 3, 1, 3, 3)}, tmp_path / "part.pth")
    with pytest.raises(PretrainedWeightsError, match="does not fit X3D: missing"):
        X3D(pretrained=str(tmp_path / "part.pth"))


def test_channels_last_3d_and_bfloat16_give_the_same_output(seeded_net: X3DRecognizer) -> None:
    x = torch.randn(2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = seeded_net(x)
        scale = expected.abs().max().item()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = seeded_net(x)
        net = x3d_s().eval()
        net.load_state_dict(seeded_net.state_dict())
        net.to(memory_format=torch.channels_last_3d)
        actual = net(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)
    # bfloat16 keeps ~3 significant digits through 26 blocks: the scores' order, roughly.
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, rtol=0.1, atol=0.05 * scale)


@pytest.mark.slow  # 12 s here, most of it torch.export's tracing
def test_exports_through_torch_export(seeded_net: X3DRecognizer, tmp_path: Path) -> None:
    module = Recognizer(
        seeded_net, torch.optim.SGD, mean=[114.75] * 3, std=[57.38] * 3, frames_per_view=4
    ).eval()
    exportable = export.ExportableRecognizer.from_recognizer(module).eval()
    path = export.export_program(exportable, export.example_input(4, 32), tmp_path / "m.pt2")
    imgs = export.example_input(4, 32, batch=2, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(export.load_program(path)(imgs), exportable(imgs))


@pytest.mark.slow
def test_exports_to_onnx(seeded_net: X3DRecognizer, tmp_path: Path) -> None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name, reason=f"ONNX export test needs `pip install {name}`")
    module = Recognizer(seeded_net, torch.optim.SGD, frames_per_view=4).eval()
    exportable = export.ExportableRecognizer.from_recognizer(module).eval()
    path = export.export_onnx(exportable, export.example_input(4, 32), tmp_path / "m.onnx")
    imgs = export.example_input(4, 32, batch=2, seed=1)
    with torch.no_grad():
        expected = exportable(imgs)
    scale = expected.abs().max().item()
    torch.testing.assert_close(export.run_onnx(path, imgs), expected, rtol=1e-4, atol=1e-5 * scale)


def test_a_training_step_through_the_lightning_module() -> None:
    module = Recognizer(
        x3d_s(num_classes=3),
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
        frames_per_view=4,
        average_clips="prob",
    )
    module.log = lambda *args, **kwargs: None
    batch = {
        "imgs": torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8),  # (B, T, C, H, W)
        "label": torch.tensor([0, 2]),
    }
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(module.net.backbone.conv1_s.weight.grad).all()


def test_from_scratch_init_as_mmaction2() -> None:
    net = x3d_s()
    blocks = [m for m in net.backbone.modules() if isinstance(m, BlockX3D)]
    assert all(b.bn3.weight.abs().sum() == 0 for b in blocks)  # zero_init_residual
    assert net.backbone.layer1[0].bn2.weight.min() == 1
    assert x3d_s(zero_init_residual=False).backbone.layer1[0].bn3.weight.min() == 1
    assert net.head.fc1.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert net.head.fc1.bias is None and net.head.fc_cls.bias.abs().sum() == 0


def test_frozen_stages_and_norm_eval_survive_train_mode() -> None:
    net = X3D(frozen_stages=1, norm_eval=True).train()
    assert not any(p.requires_grad for p in net.conv1_t.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match=r"se_style='some'"):
        X3D(se_style="some")
    with pytest.raises(ValueError, match=r"gamma_d=0"):
        X3D(gamma_d=0)
    with pytest.raises(ValueError, match=r"in_channels=192.*432"):
        X3DRecognizer(X3D(), X3DHead(3, in_channels=192))
