"""Reading weights: our Lightning checkpoints, torchvision state dicts, mmaction2 checkpoints.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint never runs code.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

# How a file that torch.save wrote begins: a zip archive (the default since PyTorch 1.6).
ZIP_MAGIC = b"PK\x03\x04"
# Where torch's own error text turns from what it found into advice (re-running the load
# unrestricted, or allow-listing the global): a checkpoint is never loaded that way here.
_TORCH_ADVICE = ("Please use", "Re-running", "Check the documentation", "Please file")


class CheckpointError(ValueError):
    """A file that is missing, unreadable, or not a checkpoint we understand."""


def read_checkpoint(path: str | Path, key: str = "load_from") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only.

    ``key`` is the setting that named the file (``ckpt_path``, ``load_from`` ...; empty for
    a script's argument); every error names it and the file in one line.

    Raises:
        CheckpointError: when the file does not exist, is not a checkpoint, is damaged, or
            pickles Python objects (code to run): it is refused, never loaded another way.
    """
    path = Path(path)
    named = f"{key}={path}" if key else str(path)
    if not path.is_file():
        raise CheckpointError(f"{named} does not exist")
    try:
        # Memory-mapped where the format allows it: only the tensors that are used get read.
        mmap = zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise CheckpointError(f"{named} {_load_failure(path, err)}") from None


def check_checkpoint(path: str | Path, key: str) -> None:
    """Refuse ``path`` (CheckpointError, one line) unless it loads with weights_only=True.

    For files that a library then loads itself (Lightning's ``ckpt_path``): its own error
    would be a traceback ending in torch's advice to load the file unrestricted.
    """
    read_checkpoint(path, key)


def _load_failure(path: Path, err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, without torch's advice."""
    # torch wraps what its restricted unpickler found into a page of advice; the finding
    # itself is the error it raised from.
    found = err.__context__ if isinstance(err, pickle.UnpicklingError) else None
    text = " ".join(str(found or err).split())
    for advice in _TORCH_ADVICE:
        text = text.split(advice)[0].strip()
    if "GLOBAL" in text:
        return (
            f"is refused: it pickles Python objects besides tensors ({text}); checkpoints "
            "are read with torch.load(weights_only=True) only, so a file never runs code here"
        )
    with path.open("rb") as f:
        damaged = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    what = "is a damaged or truncated checkpoint" if damaged else "is not a PyTorch checkpoint"
    return f"{what} (torch.load: {type(found or err).__name__}: {text or 'no detail'})"


def load_state_dict_file(path: str | Path, key: str = "load_from") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from an outer ``state_dict`` if present."""
    obj = read_checkpoint(path, key)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not any(torch.is_tensor(v) for v in obj.values()):
        named = f"{key}={path}" if key else str(path)
        raise CheckpointError(f"{named} holds no state dict (found {type(obj).__name__})")
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


def convert_mmaction_resnet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 2-D ResNet recognizer keys (TSN's) to those of torchvision's ResNet under
    ``backbone.`` and ``head.fc_cls.``."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _MMACTION_RULES:
            if pattern.match(key):
                key = pattern.sub(repl, key)
                break
        out[key] = value
    return out


def to_network_keys(
    state: Mapping[str, torch.Tensor], net: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Recognise the checkpoint's flavour and rename its keys to the network's.

    An mmaction2 state dict is converted by the network's own ``convert_mmaction_state_dict``
    (each family knows its keys); a network without one gets TSN's ResNet rules.
    """
    state = strip_prefixes(state, ("module.",))
    if any(k.startswith("net.") for k in state):  # our LightningModule
        return {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    if is_mmaction_state_dict(state):
        convert = getattr(net, "convert_mmaction_state_dict", convert_mmaction_resnet)
        return convert(state)
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
    state = to_network_keys(load_state_dict_file(path, "load_from"), net)
    own = net.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    head_only = all(k.startswith("head.") for k in dropped)
    if dropped and not head_only:
        raise CheckpointError(
            f"load_from={path}: shapes differ for {dropped[:5]}; is it the same model?"
        )
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
            f"load_from={path} does not fit the network: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    log.info("load_from: initialised the network from %s (%d tensors)", path, len(state))


def load_every_weight(net: nn.Module, path: str | Path, key: str = "ckpt_path") -> None:
    """Overwrite every tensor of ``net`` from ``path`` (``ckpt_path`` of eval and predict).

    Takes what ``load_from`` takes (our checkpoints, torchvision and mmaction2 state dicts), but
    all of the network must be in the file with its shapes: a head for another class count is
    an error here, not a fresh head.
    """
    state = to_network_keys(load_state_dict_file(path, key), net)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or reshaped:
        raise CheckpointError(
            f"{key}={path} does not fit the network {type(net).__name__}: {len(missing)} "
            f"tensors missing {missing[:2]}, {len(unexpected)} unexpected {unexpected[:2]}, "
            f"other shapes for {reshaped[:2]}; leave model= and data.num_classes= to the checkpoint"
        )
    net.load_state_dict(state)
