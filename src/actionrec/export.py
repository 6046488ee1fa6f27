"""Deployable graphs: normalization and network in one module on uint8 frames.

The exported model takes what the data pipeline produces, uint8 ``(B, T, C, H, W)`` for the T
and input size it was exported with, and returns logits ``(B, K)``; a deployment needs no
knowledge of mean, std or channel order.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

FORMATS = ("torchscript", "onnx")
ONNX_PACKAGES = ("onnx", "onnxscript")  # what torch.onnx.export(dynamo=True) imports


class ExportableRecognizer(nn.Module):
    """A recognizer's device-side normalization followed by its network.

    Args:
        net: maps normalized float input in its ``input_layout`` (``(B, T, C, H, W)``, or
            ``(B, C, T, H, W)`` for 3-D networks) to logits ``(B, K)``.
        mean: per-channel mean in 0-255 units, RGB order of the input.
        std: per-channel std in 0-255 units.
        to_bgr: swap RGB to BGR before normalizing.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        to_bgr: bool = False,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean={list(mean)} and std={list(std)} differ in length")
        self.net = net
        self.to_bgr = to_bgr
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float).view(-1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float).view(-1, 1, 1))

    @classmethod
    def from_recognizer(cls, module: nn.Module) -> ExportableRecognizer:
        """Wrap a :class:`~actionrec.module.Recognizer`'s network with its normalization."""
        return cls(
            module.net,
            module.mean.flatten().tolist(),
            module.std.flatten().tolist(),
            to_bgr=module.to_bgr,
        )

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, C, H, W)`` to logits ``(B, K)``."""
        x = imgs.float()
        if self.to_bgr:
            x = x.flip(-3)
        x = (x - self.mean) / self.std
        if getattr(self.net, "input_layout", "NTCHW") == "NCTHW":  # a 3-D network
            x = x.transpose(1, 2)
        return self.net(x)


def example_input(num_segments: int, input_size: int, batch: int = 1, seed: int = 0):
    """Random uint8 frames ``(batch, num_segments, 3, input_size, input_size)``."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, num_segments, 3, input_size, input_size)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Trace ``model`` (in eval mode) on ``example`` and save it; load with ``torch.jit.load``.

    The graph keeps T, H and W of ``example``; the batch size may differ.
    """
    path = Path(path)
    model.eval()
    with warnings.catch_warnings():
        # torch 2.9+ marks TorchScript deprecated; it still is the format C++/mobile runtimes load.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..*deprecated")
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path))
    return path


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Load an exported TorchScript file (on the CPU)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..*deprecated")
        return torch.jit.load(str(path), map_location="cpu")


def missing_onnx_packages() -> list[str]:
    """The packages ONNX export needs that are not installed (empty when it can run)."""
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Export ``model`` (eval mode) to ONNX with a dynamic batch axis; input ``imgs``, output
    ``logits``.

    Raises:
        ImportError: naming the packages to install when ``onnx`` / ``onnxscript`` are missing.
    """
    missing = missing_onnx_packages()
    if missing:
        raise ImportError(
            f"ONNX export needs {', '.join(missing)}: pip install {' '.join(ONNX_PACKAGES)} "
            "(and onnxruntime to check the result)"
        )
    path = Path(path)
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["imgs"],
            output_names=["logits"],
            dynamic_shapes={"imgs": {0: batch}},
            dynamo=True,
            external_data=False,  # one self-contained file
            verbose=False,
        )
    return path


def run_onnx(path: str | Path, imgs: torch.Tensor) -> torch.Tensor:
    """Run an exported ONNX file with onnxruntime on the CPU; logits ``(B, K)``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"imgs": imgs.numpy()})
    return torch.from_numpy(logits)
