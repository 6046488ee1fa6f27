"""Reading weights: our Lightning checkpoints, torchvision state dicts, mmaction2 checkpoints.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint never runs code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A file that is missing, unreadable, or not a checkpoint we understand."""


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from an outer ``state_dict`` if present."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint that loads with weights_only=True: {err}"
        ) from err
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not any(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict (found {type(obj).__name__})")
    return {k: v for k, v in obj.items() if torch.is_tensor(v)}


def strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: Iterable[str]) -> dict:
    """Remove the first matching prefix from each key (``module.`` from DDP, ...)."""
    prefixes = tuple(prefixes)
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        out[key] = value
    return out


# mmaction2's ResNet wraps each conv and its BN in a ConvModule: `conv1.conv` / `conv1.bn`.
_MMACTION_RULES = [
    (re.compile(r"^backbone\.conv1\.conv\."), "backbone.conv1."),
    (re.compile(r"^backbone\.conv1\.bn\."), "backbone.bn1."),
    (re.compile(r"^(backbone\.layer\d+\.\d+)\.conv(\d)\.conv\."), r"\1.conv\2."),
    (re.compile(r"^(backbone\.layer\d+\.\d+)\.conv(\d)\.bn\."), r"\1.bn\2."),
    (re.compile(r"^(backbone\.layer\d+\.\d+)\.downsample\.conv\."), r"\1.downsample.0."),
    (re.compile(r"^(backbone\.layer\d+\.\d+)\.downsample\.bn\."), r"\1.downsample.1."),
    (re.compile(r"^cls_head\.fc_cls\."), "head.fc_cls."),
]


def is_mmaction_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("backbone.conv1.conv.", "cls_head.")) for k in state)


def convert_mmaction_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 TSN keys to :class:`~actionrec.models.recognizers.TSN` keys."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _MMACTION_RULES:
            if pattern.match(key):
                key = pattern.sub(repl, key)
                break
        out[key] = value
    return out


def to_network_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Recognise the checkpoint's flavour and rename its keys to the network's."""
    state = strip_prefixes(state, ("module.",))
    if any(k.startswith("net.") for k in state):  # our LightningModule
        return {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    if is_mmaction_state_dict(state):
        return convert_mmaction_state_dict(state)
    if "conv1.weight" in state or "features.0.weight" in state:  # a bare backbone
        return {
            ("head.fc_cls." + k[3:] if k.startswith("fc.") else "backbone." + k): v
            for k, v in state.items()
        }
    return dict(state)


def load_weights(net: nn.Module, path: str | Path) -> None:
    """Initialise ``net`` from ``path`` (``load_from``): weights only, no optimizer or epoch.

    A classifier whose shape differs (another class count) is left at its initialisation,
    with a logged line; any other mismatch is an error.
    """
    state = to_network_keys(load_state_dict_file(path))
    own = net.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    head_only = all(k.startswith("head.") for k in dropped)
    if dropped and not head_only:
        raise CheckpointError(f"{path}: shapes differ for {dropped[:5]}; is it the same model?")
    for key in dropped:
        log.info(
            "load_from: dropped %s %s (the model has %s)",
            key,
            tuple(state[key].shape),
            tuple(own[key].shape),
        )
        del state[key]
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in dropped]
    if unexpected or [k for k in missing if not k.startswith("head.")]:
        raise CheckpointError(
            f"{path} does not fit the network: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    log.info("load_from: initialised the network from %s (%d tensors)", path, len(state))
