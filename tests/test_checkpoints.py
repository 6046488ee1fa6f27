"""load_from: our checkpoints, torchvision state dicts and mmaction2 checkpoints."""

from __future__ import annotations

import re

import pytest
import torch

from actionrec.checkpoints import CheckpointError, load_weights
from actionrec.models.backbones import ResNet
from actionrec.models.heads import TSNHead
from actionrec.models.recognizers import TSN


def tsn_r18(num_classes: int = 4) -> TSN:
    return TSN(ResNet(depth=18), TSNHead(num_classes, in_channels=512))


def to_mmaction_key(key: str) -> str:
    """Our key -> mmaction2's, written from mmaction2's ConvModule naming."""
    key = re.sub(r"^backbone\.conv1\.", "backbone.conv1.conv.", key)
    key = re.sub(r"^backbone\.bn1\.", "backbone.conv1.bn.", key)
    key = re.sub(r"^(backbone\.layer\d\.\d+)\.conv(\d)\.", r"\1.conv\2.conv.", key)
    key = re.sub(r"^(backbone\.layer\d\.\d+)\.bn(\d)\.", r"\1.conv\2.bn.", key)
    key = re.sub(r"\.downsample\.0\.", ".downsample.conv.", key)
    key = re.sub(r"\.downsample\.1\.", ".downsample.bn.", key)
    return key.replace("head.fc_cls.", "cls_head.fc_cls.")


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb, msg=ka)


@pytest.mark.parametrize("wrapped", [True, False])
def test_mmaction2_checkpoint_gives_the_same_network(tmp_path, wrapped: bool) -> None:
    source = tsn_r18()
    state = {to_mmaction_key(k): v for k, v in source.state_dict().items()}
    assert "backbone.layer1.0.conv1.bn.weight" in state
    assert "backbone.layer2.0.downsample.conv.weight" in state
    path = tmp_path / "tsn_mmaction.pth"
    torch.save({"meta": {"epoch": 100}, "state_dict": state} if wrapped else state, path)
    target = tsn_r18()
    load_weights(target, path)
    assert_same_weights(source, target)
    imgs = torch.randn(1, 3, 3, 64, 64)
    torch.testing.assert_close(source.eval()(imgs), target.eval()(imgs))


def test_our_lightning_checkpoint_and_a_head_of_another_size(tmp_path, caplog) -> None:
    source = tsn_r18(num_classes=4)
    path = tmp_path / "ours.ckpt"
    torch.save(
        {"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path
    )
    target = tsn_r18(num_classes=10)
    head_before = target.head.fc_cls.weight.clone()
    with caplog.at_level("INFO"):
        load_weights(target, path)
    torch.testing.assert_close(target.backbone.conv1.weight, source.backbone.conv1.weight)
    assert torch.equal(target.head.fc_cls.weight, head_before)
    assert "dropped head.fc_cls.weight (4, 512)" in caplog.text


def test_torchvision_state_dict_initialises_the_backbone(tmp_path) -> None:
    import torchvision

    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    target = tsn_r18()
    load_weights(target, path)
    torch.testing.assert_close(
        target.backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight
    )


def test_not_a_checkpoint(tmp_path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.pth"):
        load_weights(tsn_r18(), path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(tsn_r18(), tmp_path / "missing.pth")


def test_loading_never_runs_pickled_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": Evil()}}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_weights(tsn_r18(), path)


def test_another_architecture_is_refused(tmp_path) -> None:
    other = TSN(ResNet(depth=34), TSNHead(4, in_channels=512))
    path = tmp_path / "r34.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(tsn_r18(), path)
