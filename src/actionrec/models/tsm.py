"""Temporal Shift Module (TSM): a 2D ResNet whose residual branches exchange channels in time.

mmaction2's ``ResNetTSM`` with ``shift_place='blockres'`` and its ``TSMHead``, on torchvision's
ResNet: each residual block's ``conv1`` first shifts a fold of its input channels one segment
back in time and another fold one segment forward. Every key keeps torchvision's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from actionrec.checkpoints import convert_mmaction_resnet
from actionrec.models.backbones import ResNet
from actionrec.models.heads import TSNHead
from actionrec.models.recognizers import check_head_width

# mmaction2 wraps the shifted conv: `layerX.Y.conv1.conv.net.weight` (its ConvModule's conv
# inside a TemporalShift); ours is a Conv2d in torchvision's place, `layerX.Y.conv1.weight`.
_MMACTION_SHIFT = re.compile(r"^(backbone\.layer\d+\.\d+\.conv1\.conv)\.net\.")


def temporal_shift(x: torch.Tensor, num_segments: int, shift_div: int = 8) -> torch.Tensor:
    """mmaction2's ``TemporalShift.shift``: ``(B*T, C, H, W)`` in, the same shape out.

    Within each video of ``T = num_segments`` frames, with ``fold = C // shift_div``: channels
    ``[0, fold)`` of frame t take frame t+1's values (the last frame gets zeros), channels
    ``[fold, 2*fold)`` take frame t-1's (the first frame gets zeros), the rest stay.
    """
    n, c = x.shape[:2]
    if n % num_segments:
        raise ValueError(f"{n} frames are not whole videos of num_segments={num_segments}")
    fold = c // shift_div
    x = x.unflatten(0, (-1, num_segments))  # (B, T, C, H, W)
    back, forward, keep = x[:, :, :fold], x[:, :, fold : 2 * fold], x[:, :, 2 * fold :]
    back = torch.cat((back[:, 1:], torch.zeros_like(back[:, :1])), dim=1)  # frame t <- t+1
    forward = torch.cat((torch.zeros_like(forward[:, :1]), forward[:, :-1]), dim=1)  # t <- t-1
    return torch.cat((back, forward, keep), dim=2).flatten(0, 1)  # (B*T, C, H, W)


class ShiftConv2d(nn.Conv2d):
    """A Conv2d that applies :func:`temporal_shift` to its input first.

    It holds the conv's own ``weight`` (and ``bias``), so state dicts keep torchvision's keys.
    ``num_segments`` is set by :class:`TSM` from each input's T before the backbone runs.
    """

    def __init__(self, conv: nn.Conv2d, shift_div: int = 8) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
        )
        self.load_state_dict(conv.state_dict())
        self.shift_div = shift_div
        self.num_segments = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B*T, C, H, W)`` to the conv of the shifted frames."""
        return super().forward(temporal_shift(x, self.num_segments, self.shift_div))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shift_div={self.shift_div}"


class TSMHead(TSNHead):
    """mmaction2's ``TSMHead``: the classifier scores every segment, then scores are averaged.

    Pool, dropout and fc run per segment before the consensus (TSNHead drops out and classifies
    the averaged features): the same in eval, where fc is linear, but not in training.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        consensus: str = "avg",
        dropout_ratio: float = 0.5,
        init_std: float = 0.001,
    ) -> None:
        super().__init__(num_classes, in_channels, consensus, dropout_ratio, init_std)

    def forward(self, x: torch.Tensor, num_segs: int) -> torch.Tensor:
        """``(B*T, D, h, w)`` feature maps to ``(B, K)`` logits."""
        scores = self.classify(self.pool(x).flatten(1))  # (B*T, K)
        return self.consensus(scores.view(-1, num_segs, scores.shape[-1]))  # (B, K)


class TSM(nn.Module):
    """TSM: a ResNet with temporal shifts in its residual branches, and a :class:`TSMHead`.

    T, the number of segments the shift works within, is read from the input: each view of
    ``frames_per_view`` frames is one TSM clip (mmaction2's ``num_segments``).

    Args:
        backbone: a :class:`ResNet` (ImageNet weights are loaded before the shifts go in).
        head: a :class:`TSMHead` whose ``in_channels`` equals the backbone's D.
        shift_div: 1/``shift_div`` of the channels shift each way (mmaction2: 8).
    """

    input_layout = "NTCHW"
    memory_format = torch.channels_last

    def __init__(self, backbone: ResNet, head: TSMHead, shift_div: int = 8) -> None:
        super().__init__()
        check_head_width(backbone, head)
        if shift_div < 2:
            raise ValueError(f"shift_div={shift_div} must be >= 2 (two folds shift)")
        # mmaction2 shifts every block, or every other one in deep nets (23+ blocks in layer3).
        every = 2 if len(backbone.layer3) >= 23 else 1
        for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
            for block in list(layer)[::every]:
                block.conv1 = ShiftConv2d(block.conv1, shift_div)
        self.backbone = backbone
        self.head = head
        self.shift_div = shift_div
        self.num_features = head.in_channels
        self.num_classes = head.num_classes

    def _backbone(self, imgs: torch.Tensor) -> torch.Tensor:
        # torchvision's blocks call conv1(x) with x only: T reaches the shifts this way.
        for module in self.backbone.modules():
            if isinstance(module, ShiftConv2d):
                module.num_segments = imgs.shape[1]
        return self.backbone(imgs.flatten(0, 1))  # (B*T, D, h, w)

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` float frames to ``(B, D)`` pooled features averaged over T."""
        return self.head.pool_features(self._backbone(imgs), num_segs=imgs.shape[1])  # (B, D)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features to ``(B, K)`` logits (equal to :meth:`forward` in eval mode)."""
        return self.head.classify(feats)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` float frames to ``(B, K)`` logits, as mmaction2 computes them."""
        return self.head(self._backbone(imgs), num_segs=imgs.shape[1])

    def convert_mmaction_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict:
        """mmaction2 TSM keys (``...conv1.conv.net.weight``, ``cls_head.fc_cls.*``) to ours."""
        unwrapped = {_MMACTION_SHIFT.sub(r"\1.", k): v for k, v in state.items()}
        return convert_mmaction_resnet(unwrapped)

    def example_input(self, batch: int = 1, size: int = 224, frames: int = 8) -> torch.Tensor:
        """Random normalized-scale float frames ``(batch, frames, 3, size, size)``."""
        return torch.randn(batch, frames, 3, size, size)
