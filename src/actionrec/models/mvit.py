"""mmaction2's MViTv2 (``MViT`` backbone + ``MViTHead``) as torchvision's ``MViT``: clips
``(B, 3, T, H, W)`` to class scores ``(B, K)``.

torchvision's ``MViT`` (PySlowFast's MViTv2, as mmaction2's) computes what mmaction2's does, key
for key (``tests/models/test_mvit.py`` checks it against mmaction2 on the same weights): patch
conv, class token, pooled attention with decomposed relative positions and residual pooling,
the channel projection in attention, a final LayerNorm and the class token through dropout and
a linear layer. So the network here is torchvision's; only three things are mmaction2's:

- the block settings, derived from mmaction2's ``arch`` (``embed_dims``, ``num_layers``,
  ``num_heads``, ``downscale_indices``) as its ``MViT.__init__`` does (``'small'`` gives
  torchvision's ``mvit_v2_s`` settings);
- the from-scratch init (torchvision starts biases and LayerNorm biases at 0, convs
  Kaiming-uniform and the class token random; mmaction2: truncated normal(0.02) convs and linear
  weights, 0.02 for linear and LayerNorm biases, a zero class token, the head's bias 0.02);
- mmaction2's key names (:meth:`MViTv2.convert_mmaction_state_dict`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.models.video.mvit import MSBlockConfig, MViT

from actionrec.checkpoints import strip_prefixes

# mmaction2's MViT.arch_zoo.
ARCHS = {
    "tiny": {"embed_dims": 96, "num_layers": 10, "num_heads": 1, "downscale_indices": (1, 3, 8)},
    "small": {"embed_dims": 96, "num_layers": 16, "num_heads": 1, "downscale_indices": (1, 3, 14)},
    "base": {"embed_dims": 96, "num_layers": 24, "num_heads": 1, "downscale_indices": (2, 5, 21)},
    "large": {
        "embed_dims": 144,
        "num_layers": 48,
        "num_heads": 2,
        "downscale_indices": (2, 8, 44),
    },
}

# mmaction2 key (after "backbone."/"cls_head.") -> torchvision's, in order of application.
MMACTION_KEYS = (
    (r"^patch_embed\.projection\.", "conv_proj."),
    (r"^cls_token$", "pos_encoding.class_token"),
    (r"\.attn\.proj\.", ".attn.project.0."),
    (r"\.attn\.norm_([qkv])\.", r".attn.pool_\1.norm_act.0."),
    (r"\.attn\.pool_([qkv])\.weight$", r".attn.pool_\1.pool.weight"),
    (r"\.mlp\.fc1\.", ".mlp.0."),
    (r"\.mlp\.fc2\.", ".mlp.3."),
    (r"^(blocks\.\d+)\.proj\.", r"\1.project."),
    (r"^norm3\.", "norm."),
    (r"^fc_cls\.", "head.1."),
)


def block_settings(
    embed_dims: int,
    num_layers: int,
    num_heads: int,
    downscale_indices: Sequence[int],
    adaptive_kv_stride: Sequence[int] = (1, 8, 8),
    pool_kernel: Sequence[int] = (3, 3, 3),
) -> list[MSBlockConfig]:
    """One torchvision block config per layer, as mmaction2's ``MViT`` lays them out (with
    ``dim_mul_in_attention``): at each downscale index the width and the heads double, q is
    pooled (1, 2, 2) and the k/v stride halves spatially (at least 1)."""
    settings, dims, heads, stride_kv = [], embed_dims, num_heads, list(adaptive_kv_stride)
    for i in range(num_layers):
        stride_q = [1, 1, 1]
        out_dims = dims
        if i in downscale_indices:
            heads, out_dims, stride_q = heads * 2, dims * 2, [1, 2, 2]
            stride_kv = [max(s // 2, 1) for s in stride_kv]
        kernel = list(pool_kernel)
        settings.append(MSBlockConfig(heads, dims, out_dims, kernel, kernel, stride_q, stride_kv))
        dims = out_dims
    return settings


class MViTv2(MViT):
    """mmaction2's ``Recognizer3D`` with ``MViT`` (rel-pos, residual pooling) and ``MViTHead``.

    Args:
        num_classes: K.
        arch: one of mmaction2's ``'tiny'``, ``'small'``, ``'base'``, ``'large'``, or a dict of
            ``embed_dims``, ``num_layers``, ``num_heads``, ``downscale_indices``.
        spatial_size: H = W of the input; the relative-position tables are sized for it, and
            the network takes that size only (as torchvision's).
        temporal_size: T of the input.
        drop_path_rate: stochastic depth of the last block (0 for the first, linear between).
        dropout_ratio: the head's dropout before the classifier.
        init_std: std of the classifier weight's init (mmaction2 ``MViTHead``).
    """

    input_layout = "NCTHW"
    memory_format = torch.channels_last_3d  # the patch conv's input; the blocks see tokens

    def __init__(
        self,
        num_classes: int,
        arch: str | Mapping = "small",
        spatial_size: int = 224,
        temporal_size: int = 16,
        drop_path_rate: float = 0.2,
        dropout_ratio: float = 0.5,
        init_std: float = 0.02,
    ) -> None:
        if isinstance(arch, str):
            if arch not in ARCHS:
                raise ValueError(f"MViTv2 arch={arch!r} is not one of {tuple(ARCHS)} or a dict")
            arch = ARCHS[arch]
        keys = {"embed_dims", "num_layers", "num_heads", "downscale_indices"}
        if set(arch) != keys:
            raise ValueError(f"MViTv2 arch={dict(arch)} must have exactly the keys {keys}")
        if spatial_size % 32 or temporal_size % 2:
            raise ValueError(
                f"MViTv2 spatial_size={spatial_size} must be a multiple of 32 and "
                f"temporal_size={temporal_size} even (the patch conv's and poolings' strides)"
            )
        super().__init__(
            spatial_size=(spatial_size, spatial_size),
            temporal_size=temporal_size,
            block_setting=block_settings(**arch),
            residual_pool=True,
            residual_with_cls_embed=False,
            rel_pos_embed=True,
            proj_after_attn=True,
            dropout=dropout_ratio,
            stochastic_depth_prob=drop_path_rate,
            num_classes=num_classes,
        )
        self.num_features: int = self.norm.normalized_shape[0]
        self.num_classes = num_classes
        self.init_weights(init_std)

    @torch.no_grad()
    def init_weights(self, init_std: float) -> None:
        """mmaction2's from-scratch init (its ``MViT`` ``init_cfg`` and ``MViTHead``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.constant_(m.bias, 0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.constant_(m.bias, 0.02)
        nn.init.zeros_(self.pos_encoding.class_token)
        nn.init.trunc_normal_(self.head[1].weight, std=init_std)
        # torchvision has drawn the relative-position tables: truncated normal(0.02), as mmaction2.

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` float clips to ``(B, D)``: the class token after the last norm."""
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (B, t*h*w, C)
        x = self.pos_encoding(x)  # (B, 1 + t*h*w, C): the class token first
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        for block in self.blocks:
            x, thw = block(x, thw)
        return self.norm(x)[:, 0]  # (B, D)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features to ``(B, K)`` logits (dropout, linear)."""
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` float clips to ``(B, K)`` logits."""
        return self.forward_head(self.forward_features(x))

    def convert_mmaction_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict:
        """mmaction2 ``Recognizer3D`` (``MViT`` + ``MViTHead``) keys to torchvision's
        (``backbone.blocks.3.attn.norm_q`` -> ``blocks.3.attn.pool_q.norm_act.0``, ...)."""
        out = {}
        for key, value in strip_prefixes(state, ("backbone.", "cls_head.")).items():
            for pattern, repl in MMACTION_KEYS:
                key = re.sub(pattern, repl, key)
            if key == "pos_encoding.class_token":
                value = value.reshape(-1)  # (1, 1, C) -> (C,)
            out[key] = value
        return out

    def example_input(
        self, batch: int = 1, size: int | None = None, frames: int | None = None
    ) -> torch.Tensor:
        """Random normalized-scale float clips ``(batch, 3, T, H, W)``; ``size`` and ``frames``
        default to the network's own, the only ones it takes."""
        t, h = self.pos_encoding.temporal_size, self.pos_encoding.spatial_size[0]
        stride_t, stride_h, _ = self.conv_proj.stride
        return torch.randn(
            batch, 3, frames or t * stride_t, size or h * stride_h, size or h * stride_h
        )
