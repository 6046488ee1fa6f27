"""mmaction2's VideoMAE ViT (``VisionTransformer`` in ``vit_mae.py``) and ``TimeSformerHead``:
clips ``(B, 3, T, H, W)`` cut into tubelets, a plain pre-norm transformer, mean-pooled tokens.

Written here because torchvision's ``VisionTransformer`` is 2-D (image patches, a class token,
learned positions); this one embeds (2, 16, 16) tubelets with a Conv3d, adds a fixed sinusoidal
table, gives q and v a bias but not k (VideoMAE's), and pools the mean of all tokens.
Module names follow timm (``patch_embed``, ``blocks.i.attn.qkv``, ``mlp.fc1``); mmaction2's
checkpoints convert by :func:`convert_mmaction_vit`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from actionrec.checkpoints import read_checkpoint
from actionrec.models.backbones import PretrainedWeightsError
from actionrec.models.heads import ClassifierHead
from actionrec.models.recognizer3d import Recognizer3D


def sinusoid_table(num_positions: int, dims: int) -> torch.Tensor:
    """Transformer sine/cosine positions ``(1, num_positions, dims)``: even dims sin, odd cos,
    with frequency ``10000 ** (-2i / dims)`` for the pair i (computed in float64, as VideoMAE)."""
    pair = torch.arange(dims, dtype=torch.float64) // 2 * 2
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * 10000 ** (-pair / dims)
    table = torch.where(torch.arange(dims) % 2 == 0, angles.sin(), angles.cos())
    return table.float()[None]  # (1, N, D)


class Attention(nn.Module):
    """Multi-head self-attention with a bias on q and v only (``q_bias``, ``v_bias``)."""

    def __init__(self, dims: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dims % num_heads:
            raise ValueError(f"embed_dims={dims} must be a multiple of num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dims, 3 * dims, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dims)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dims)) if qkv_bias else None
        self.proj = nn.Linear(dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` tokens to ``(B, N, D)``."""
        b, n, d = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)  # (B, N, 3 * D)
        qkv = qkv.view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # (3, B, h, N, D/h)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, h, N, D/h)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))  # (B, N, D)


class Mlp(nn.Sequential):
    """Linear -> GELU -> Linear (mmcv's ``FFN`` without its identity)."""

    def __init__(self, dims: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dims)


class Block(nn.Module):
    """Pre-norm transformer block; each residual branch is dropped per sample (drop path)."""

    def __init__(
        self, dims: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        self.attn = Attention(dims, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = Mlp(dims, int(dims * mlp_ratio))
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` to ``(B, N, D)``."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """mmaction2's VideoMAE ``VisionTransformer`` (mean pooling, sinusoidal positions, no
    layer scale), ViT-B/16 by default.

    Args:
        img_size: the side the position table is laid out for; another input size gets the
            table resized bicubically per tubelet slice (as mmaction2 does).
        patch_size: the spatial side of a tubelet.
        tubelet_size: the frames in a tubelet.
        num_frames: T, the clip length the position table is laid out for (must be the input's).
        in_channels: the input's channels.
        embed_dims: D, the token width.
        depth: the number of blocks.
        num_heads: attention heads per block.
        mlp_ratio: the MLP's hidden width over D.
        qkv_bias: learn a bias for q and v (k has none).
        drop_path_rate: the drop-path rate of the last block; rates rise linearly from 0 at the
            first (the stochastic depth rule).
        pretrained: a VideoMAE pre-training checkpoint (MCG-NJU/VideoMAE's ``encoder.*`` keys,
            under ``model`` or at the top) to start fine-tuning from; its encoder's final norm
            and the decoder are left out, ``fc_norm`` starts fresh, as in VideoMAE.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        tubelet_size: int = 2,
        num_frames: int = 16,
        in_channels: int = 3,
        embed_dims: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if img_size % patch_size or num_frames % tubelet_size:
            raise ValueError(
                f"img_size={img_size} must be a multiple of patch_size={patch_size} and "
                f"num_frames={num_frames} of tubelet_size={tubelet_size}"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate={drop_path_rate} must be in [0, 1)")
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_features = embed_dims
        tubelet = (tubelet_size, patch_size, patch_size)
        self.patch_embed = nn.Conv3d(in_channels, embed_dims, tubelet, stride=tubelet)
        positions = self.grid[0] * self.grid[1] * self.grid[2]
        self.register_buffer("pos_embed", sinusoid_table(positions, embed_dims))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(embed_dims, num_heads, mlp_ratio, qkv_bias, rate) for rate in rates
        )
        self.fc_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.init_weights()
        if pretrained:
            self.load_videomae(pretrained)

    def init_weights(self) -> None:
        """mmaction2's from-scratch init: linear weights truncated normal (std 0.02), biases 0,
        LayerNorms 1 and 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def load_videomae(self, path: str) -> None:
        """Load the encoder of a VideoMAE pre-training checkpoint (see ``pretrained``)."""
        obj = read_checkpoint(path, "model.net.backbone.pretrained")
        for key in ("model", "module", "state_dict"):
            if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        state = {}
        for key, value in obj.items():
            key = key.removeprefix("encoder.").replace("patch_embed.proj.", "patch_embed.")
            if key.startswith(("patch_embed.", "blocks.")):
                state[key] = value
        missing, _ = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(("fc_norm.", "pos_embed"))]
        if missing:
            raise PretrainedWeightsError(
                f"model.net.backbone.pretrained={path} is not a VideoMAE encoder of this size: "
                f"{len(missing)} weights missing (e.g. {missing[0]})"
            )

    @property
    def num_layers(self) -> int:
        """The number of blocks (for layer-wise lr decay)."""
        return len(self.blocks)

    def layer_id(self, name: str) -> int:
        """The depth of parameter ``name`` for layer-wise lr decay: 0 for the tubelet embedding,
        i + 1 for ``blocks.i``, ``num_layers + 1`` for the final norm (mmaction2's rule)."""
        if name.startswith(("patch_embed.", "pos_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1

    def position_table(self, h: int, w: int) -> torch.Tensor:
        """The position table for an ``h x w`` token grid ``(1, t * h * w, D)``."""
        t, gh, gw = self.grid
        if (h, w) == (gh, gw):
            return self.pos_embed
        table = self.pos_embed.view(t, gh, gw, -1).permute(0, 3, 1, 2)  # (t, D, gh, gw)
        table = F.interpolate(table, size=(h, w), mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(1, t * h * w, -1)  # (1, t*h*w, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` float clips to ``(B, D)`` pooled, normalized features."""
        x = self.patch_embed(x)  # (B, D, t, h, w)
        t, h, w = x.shape[2:]
        if t != self.grid[0]:
            raise ValueError(
                f"the clip has {t * self.tubelet_size} frames but the position table is laid "
                f"out for num_frames={self.grid[0] * self.tubelet_size}; set "
                "model.net.backbone.num_frames to the clip length"
            )
        x = x.flatten(2).transpose(1, 2) + self.position_table(h, w)  # (B, t*h*w, D)
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x.mean(dim=1))  # (B, D)


class TimeSformerHead(ClassifierHead):
    """mmaction2's ``TimeSformerHead``: (dropout and) a linear classifier on pooled features,
    its weight initialised truncated normal.

    Args:
        num_classes: K, the number of classes.
        in_channels: D, the backbone's feature width.
        dropout_ratio: dropout before the classifier (0 in mmaction2's VideoMAE config).
        init_std: std of the truncated normal init of the classifier weight; its bias starts at 0.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        dropout_ratio: float = 0.0,
        init_std: float = 0.02,
    ) -> None:
        super().__init__(num_classes, in_channels, dropout_ratio, init_std)

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.fc_cls.weight, std=self.init_std)
        nn.init.zeros_(self.fc_cls.bias)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone already pools: ``(B, D)`` stays ``(B, D)``."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features to ``(B, K)`` logits."""
        return self.classify(x)


# mmaction2 wraps the tubelet conv in mmcv's PatchEmbed and the MLP in mmcv's FFN.
_MMACTION_VIT_RULES = [
    (re.compile(r"^backbone\.patch_embed\.projection\."), "backbone.patch_embed."),
    (re.compile(r"^(backbone\.blocks\.\d+\.mlp)\.layers\.0\.0\."), r"\1.fc1."),
    (re.compile(r"^(backbone\.blocks\.\d+\.mlp)\.layers\.1\."), r"\1.fc2."),
    (re.compile(r"^cls_head\.fc_cls\."), "head.fc_cls."),
]


def convert_mmaction_vit(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 VideoMAE ``Recognizer3D`` keys to :class:`RecognizerViT`'s."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _MMACTION_VIT_RULES:
            if pattern.match(key):
                key = pattern.sub(repl, key)
                break
        out[key] = value
    return out


class RecognizerViT(Recognizer3D):
    """A video ViT on a whole clip, then :class:`TimeSformerHead` (mmaction2's
    ``Recognizer3D`` for VideoMAE): ``(B, C, T, H, W)`` float clips to ``(B, K)`` logits.

    Args:
        backbone: a :class:`VisionTransformer` (maps clips to ``(B, D)``).
        head: a :class:`TimeSformerHead` whose ``in_channels`` is the backbone's D.
    """

    def __init__(self, backbone: VisionTransformer, head: TimeSformerHead) -> None:
        super().__init__(backbone, head)

    def convert_mmaction_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict:
        """mmaction2 keys to ours: ``patch_embed.projection`` -> ``patch_embed``,
        ``mlp.layers.0.0``/``mlp.layers.1`` -> ``mlp.fc1``/``mlp.fc2``, ``cls_head.`` ->
        ``head.``."""
        return convert_mmaction_vit(state)

    def example_input(self, batch: int = 1, size: int = 224, frames: int = 16) -> torch.Tensor:
        """Random normalized-scale float clips ``(batch, 3, frames, size, size)``; ``frames``
        must be the backbone's ``num_frames``."""
        return torch.randn(batch, 3, frames, size, size)
