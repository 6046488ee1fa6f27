"""torchvision's video classifiers (``r3d_18`` ... ``swin3d_b``) as backbones, with their
Kinetics-400 weights by name, for fine-tuning on one's own classes.

Each network is built by torchvision (``get_model``) and runs torchvision's own ``forward``,
pooling included, with its classifier replaced by an identity: the backbone gives the pooled
clip features ``(B, D)`` that torchvision's classifier would have read, and our
:class:`LinearHead` (dropout, fc) classifies them. The weights also carry the input the network
expects: mean/std and crop size come from the weights' ``transforms()`` preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights

from actionrec.models.backbones import PretrainedWeightsError
from actionrec.models.heads import ClassifierHead
from actionrec.models.recognizer3d import Recognizer3D

# arch -> the attribute holding torchvision's classifier, which the backbone drops.
CLASSIFIERS = {
    "r3d_18": "fc",
    "mc3_18": "fc",
    "r2plus1d_18": "fc",
    "s3d": "classifier",
    "mvit_v1_b": "head",
    "mvit_v2_s": "head",
    "swin3d_t": "head",
    "swin3d_s": "head",
    "swin3d_b": "head",
}
# Convolutional networks, which gain from channels_last_3d; the transformers work on tokens.
CNNS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d")


def video_weights(arch: str, name: str) -> torchvision.models.WeightsEnum:
    """The weights ``name`` (``"KINETICS400_V1"``, ``"DEFAULT"`` ...) of torchvision's ``arch``."""
    enum = get_model_weights(arch)
    try:
        return enum[name]  # "DEFAULT" is an alias member of every enum
    except KeyError:
        allowed = [w.name for w in enum] + ["DEFAULT", "null"]
        raise ValueError(
            f"model.net.backbone.weights={name!r} is not a weights name of {enum.__name__}; "
            f"allowed: {allowed}"
        ) from None


def load_video_weights(weights: torchvision.models.WeightsEnum) -> dict[str, torch.Tensor]:
    """The state dict of ``weights`` through torchvision (``$TORCH_HOME/hub/checkpoints``)."""
    try:
        # No hash check: the file name's hash prefix is checked by torchvision only on download.
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as err:  # urllib, ssl, socket and hub errors all mean "not available"
        raise PretrainedWeightsError(
            f"cannot load the weights {type(weights).__name__}.{weights.name} ({weights.url}): "
            f"{err}\nEither train from scratch with model.net.backbone.weights=null, or put "
            f"{Path(weights.url).name} into {torch.hub.get_dir()}/checkpoints/."
        ) from err


class TorchvisionVideo(nn.Module):
    """A torchvision video classifier without its classifier: clips to pooled features.

    Args:
        arch: torchvision's model name, one of :data:`CLASSIFIERS`.
        weights: None (torchvision's random init), or a weights name of the arch's enum,
            e.g. ``"KINETICS400_V1"``, ``"KINETICS400_IMAGENET22K_V1"`` (``swin3d_b``),
            ``"DEFAULT"``; loaded through torchvision's API, classifier dropped. (Named as
            torchvision's own argument; the mmaction2-mirrored backbones keep mmaction2's
            ``pretrained``.)
        **kwargs: passed to torchvision's builder, e.g. ``stochastic_depth_prob`` for the
            transformers, or ``spatial_size``/``temporal_size`` for MViT (whose positional
            encoding fixes the input size; the weights need the defaults, 224 px, 16 frames).

    Attributes:
        num_features: D, the width of the pooled features.
        mean, std: the weights' normalization (the arch's preset without weights) in 0-255.
        crop_size: the weights' ``(H, W)`` crop.
        memory_format: ``channels_last_3d`` for the convolutional networks, else contiguous.
    """

    def __init__(self, arch: str, weights: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        if arch not in CLASSIFIERS:
            raise ValueError(f"arch={arch!r} is not one of {list(CLASSIFIERS)}")
        self.arch = arch
        chosen = video_weights(arch, weights) if weights is not None else None
        # The 400-way model, so that Kinetics weights load strictly before the fc goes.
        self.model = get_model(arch, weights=None, **kwargs)
        if chosen is not None:
            self.model.load_state_dict(load_video_weights(chosen))
        classifier = getattr(self.model, CLASSIFIERS[arch])
        linear = [m for m in classifier.modules() if isinstance(m, nn.Linear | nn.Conv3d)]
        self.num_features: int = getattr(linear[-1], "in_features", None) or linear[-1].in_channels
        setattr(self.model, CLASSIFIERS[arch], nn.Identity())
        preset = (chosen or get_model_weights(arch).DEFAULT).transforms()
        self.mean = tuple(255 * m for m in preset.mean)
        self.std = tuple(255 * s for s in preset.std)
        self.crop_size = tuple(preset.crop_size)
        self.memory_format = torch.channels_last_3d if arch in CNNS else torch.contiguous_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` normalized float clips to ``(B, D)`` features, pooled as
        torchvision pools them (average for the CNNs and Swin, the class token for MViT)."""
        return self.model(x)


class LinearHead(ClassifierHead):
    """Dropout and a linear classifier on features the backbone has pooled already.

    Args:
        num_classes: K, the number of classes.
        in_channels: D, the backbone's ``num_features``.
        dropout_ratio: dropout before the classifier (torchvision's MViT uses 0.5, S3D 0.2, its
            ResNet-3Ds and Swin3D none).
        init_std: std of the normal init of the classifier weight; its bias starts at 0.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        dropout_ratio: float = 0.5,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(num_classes, in_channels, dropout_ratio, init_std)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` pooled features, as they are."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features to ``(B, K)`` logits."""
        return self.classify(x)


class TorchvisionVideoRecognizer(Recognizer3D):
    """:class:`Recognizer3D` on a :class:`TorchvisionVideo`: one clip ``(B, C, T, H, W)`` to
    class scores, in the memory format and normalization of the backbone.

    Args:
        backbone: the torchvision network.
        head: a :class:`LinearHead` whose ``in_channels`` equals the backbone's D.
    """

    def __init__(self, backbone: TorchvisionVideo, head: LinearHead) -> None:
        super().__init__(backbone, head)
        self.memory_format = backbone.memory_format
        self.mean, self.std = backbone.mean, backbone.std

    def convert_mmaction_state_dict(self, state: Any) -> dict:
        raise ValueError(
            f"torchvision's {self.backbone.arch} has no mmaction2 checkpoint format; load its "
            "weights by name (model.net.backbone.weights=KINETICS400_V1) or an actionrec ckpt"
        )

    def example_input(
        self, batch: int = 1, size: int | None = None, frames: int = 16
    ) -> torch.Tensor:
        """Random normalized-scale float clips ``(batch, 3, frames, size, size)``; ``size``
        defaults to the weights' crop (MViT takes only the size it was built for)."""
        size = size or self.backbone.crop_size[0]
        return torch.randn(batch, 3, frames, size, size)
