"""Device-side normalization: uint8 frames to a network's float input, in its layout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

INPUT_LAYOUTS = ("NTCHW", "NCTHW")


class Normalizer(nn.Module):
    """uint8 views to a network's normalized float input: mmaction2's ``Normalize`` on the device.

    One module for training, testing and export, so that a deployed graph normalizes exactly as
    the recognizer did.

    Args:
        mean: per-channel mean in 0-255 units, RGB order of the input.
        std: per-channel std in 0-255 units.
        to_bgr: swap RGB to BGR before normalizing (for weights trained on BGR).
        input_layout: the network's input: ``"NTCHW"`` (2-D segment networks) or ``"NCTHW"``
            (3-D networks).
        channels_last: lay inputs out channels-last (``channels_last_3d`` for ``"NCTHW"``).
    """

    def __init__(
        self,
        mean: Sequence[float] = (123.675, 116.28, 103.53),
        std: Sequence[float] = (58.395, 57.12, 57.375),
        to_bgr: bool = False,
        input_layout: str = "NTCHW",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean={list(mean)} and std={list(std)} differ in length")
        if input_layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout={input_layout!r} is not one of {INPUT_LAYOUTS}")
        self.to_bgr = to_bgr
        self.input_layout = input_layout
        self.channels_last = channels_last
        # (C, 1, 1) so they broadcast over (..., C, H, W). Not saved: they come from the config,
        # and checkpoints hold the network's weights only.
        mean_t = torch.as_tensor(mean, dtype=torch.float).view(-1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float).view(-1, 1, 1)
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 views ``(N, T, C, H, W)`` to the network's normalized float input.

        ``(N, T, C, H, W)`` for ``"NTCHW"`` networks, ``(N, C, T, H, W)`` for ``"NCTHW"``; with
        ``channels_last`` laid out channels-last (for 2-D networks so that folding T into N
        gives a channels-last tensor without a copy).
        """
        if self.input_layout == "NCTHW":
            imgs = imgs.transpose(1, 2)  # (N, C, T, H, W), a view: the copy below lays it out
        # One layout whatever made the batch: frames decode channels-last, and a batch collated
        # in the training process keeps those strides while one from a loader worker is
        # contiguous; convolutions on the two layouts round differently, so the number of
        # workers would change the trained weights. The copy is on uint8: a quarter of the bytes.
        imgs = self.lay_out(imgs) if self.channels_last else imgs.contiguous()
        x = imgs.float()
        channels = 1 if self.input_layout == "NCTHW" else -3
        if self.to_bgr:
            x = x.flip(channels)
        shape = (-1, 1, 1, 1) if self.input_layout == "NCTHW" else (-1, 1, 1)
        x = (x - self.mean.view(shape)) / self.std.view(shape)
        return self.lay_out(x) if self.channels_last else x

    def lay_out(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (the network's input) channels-last for its layout (same shape)."""
        if self.input_layout == "NCTHW":
            return x.contiguous(memory_format=torch.channels_last_3d)
        return to_channels_last(x)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(..., C, H, W)`` with the same shape, laid out channels-last once the leading dims are
    folded into one; no copy when it already is."""
    flat = x.reshape(-1, *x.shape[-3:])  # (N, C, H, W)
    return flat.contiguous(memory_format=torch.channels_last).view(x.shape)
