"""The TSN network: shapes, consensus, the head's init, ResNet switches and weights."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from actionrec.models.backbones import PretrainedWeightsError, ResNet, SimpleCNN
from actionrec.models.consensus import SegmentConsensus
from actionrec.models.heads import TSNHead
from actionrec.models.recognizers import TSN


def small_tsn(num_classes: int = 5) -> TSN:
    return TSN(SimpleCNN(channels=(8, 16)), TSNHead(num_classes, in_channels=16))


@pytest.mark.parametrize("t", [1, 3, 8])
@pytest.mark.parametrize("backbone", ["simple", "resnet18"])
def test_tsn_maps_any_number_of_segments_to_one_score_per_video(t: int, backbone: str) -> None:
    if backbone == "simple":
        net = small_tsn(7)
    else:
        net = TSN(ResNet(depth=18), TSNHead(7, in_channels=512))
    out = net(torch.randn(2, t, 3, 64, 64))
    assert out.shape == (2, 7)
    assert out.dtype == torch.float32


def test_consensus_is_the_mean_of_per_segment_features() -> None:
    net = small_tsn().eval()
    imgs = torch.randn(2, 3, 3, 32, 32)
    per_frame = [net.head.pool(net.backbone(imgs[:, i])).flatten(1) for i in range(3)]
    expected = torch.stack(per_frame, dim=1).mean(dim=1)
    torch.testing.assert_close(net.forward_features(imgs), expected)
    # The classifier is linear, so averaging features equals averaging per-segment scores.
    scores = torch.stack([net.head.classify(f) for f in per_frame], dim=1).mean(dim=1)
    torch.testing.assert_close(net(imgs), scores)


def test_max_consensus_and_unknown_kind() -> None:
    x = torch.tensor([[[1.0, 5.0], [3.0, 2.0]]])
    assert SegmentConsensus("max")(x).tolist() == [[3.0, 5.0]]
    with pytest.raises(ValueError, match="kind='median'"):
        SegmentConsensus("median")


def test_head_starts_with_small_normal_weights_and_zero_bias() -> None:
    torch.manual_seed(0)
    head = TSNHead(400, in_channels=2048, init_std=0.01)
    assert head.fc_cls.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert head.fc_cls.bias.abs().sum().item() == 0


def test_dropout_is_active_only_in_training() -> None:
    head = TSNHead(3, in_channels=4, dropout_ratio=0.4)
    feats = torch.ones(1000, 4)
    head.eval()
    assert torch.equal(head.classify(feats), head.classify(feats))
    head.train()
    assert not torch.equal(head.classify(feats), head.classify(feats))


def test_head_width_must_match_backbone() -> None:
    with pytest.raises(ValueError, match=r"in_channels=512.*2048"):
        TSN(ResNet(depth=50), TSNHead(3, in_channels=512))


def test_unknown_depth_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"depth=42.*\(18, 34, 50, 101, 152\)"):
        ResNet(depth=42)


def test_frozen_stages_and_norm_eval_survive_train_mode() -> None:
    net = ResNet(depth=18, frozen_stages=1, norm_eval=True).train()
    assert not any(p.requires_grad for p in net.conv1.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert all(not m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_frozen_stem_keeps_its_statistics() -> None:
    net = ResNet(depth=18, frozen_stages=0).train()
    before = net.bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert torch.equal(net.bn1.running_mean, before)
    assert net.layer1[0].bn1.training


def test_pretrained_by_torchvision_name_reads_the_hub_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    reference = torchvision.models.resnet18()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / weights.url.rsplit("/", 1)[1])
    for name in ("IMAGENET1K_V1", "torchvision://resnet18"):
        net = ResNet(depth=18, pretrained=name)
        torch.testing.assert_close(net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_pretrained_local_file(tmp_path) -> None:
    reference = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    net = ResNet(depth=18, pretrained=str(path))
    torch.testing.assert_close(net.conv1.weight, reference.conv1.weight)


def test_unavailable_weights_name_both_ways_out(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        ResNet(depth=18, pretrained="IMAGENET1K_V1")
    message = str(info.value)
    assert "ResNet18_Weights.IMAGENET1K_V1" in message
    assert "model.net.backbone.pretrained=null" in message
    assert "resnet18-f37072fd.pth" in message


def test_unknown_weights_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        ResNet(depth=18, pretrained="IMAGENET22K")
