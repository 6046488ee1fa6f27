"""Deployable graphs: normalization and network in one module on uint8 frames.

The exported model takes what the data pipeline produces, uint8 ``(B, T, C, H, W)`` for the T
and input size it was exported with, and returns logits ``(B, K)``; a deployment needs no
knowledge of mean, std or channel order.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from actionrec.normalization import Normalizer

if TYPE_CHECKING:
    from actionrec.module import Recognizer

# pt2: torch.export's ExportedProgram (``torch.export.save``), what AOTInductor and ExecuTorch take.
FORMATS = ("torchscript", "onnx", "pt2")
ONNX_PACKAGES = ("onnx", "onnxscript")  # what torch.onnx.export(dynamo=True) imports


class ExportableRecognizer(nn.Module):
    """A recognizer's device-side normalization followed by its network.

    Args:
        net: maps the normalized input of ``normalizer`` to logits ``(B, K)``.
        normalizer: uint8 ``(B, T, C, H, W)`` to ``net``'s input (the recognizer's own).
    """

    def __init__(self, net: nn.Module, normalizer: Normalizer) -> None:
        super().__init__()
        self.net = net
        self.normalizer = normalizer

    @classmethod
    def from_recognizer(cls, module: Recognizer) -> ExportableRecognizer:
        """Wrap a :class:`~actionrec.module.Recognizer`'s network with its normalization."""
        return cls(module.net, module.normalizer)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, C, H, W)`` to logits ``(B, K)``."""
        return self.net(self.normalizer(imgs))


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


def _dynamic_batch() -> dict:
    """The exported graphs' input spec: the batch axis is dynamic, T, H and W are fixed."""
    return {"imgs": {0: torch.export.Dim("batch", min=1, max=1024)}}


def _two_or_more(example: torch.Tensor) -> torch.Tensor:
    """``example`` with a batch of at least 2: torch.export specializes a size-1 axis to the
    constant 1, which would make the dynamic batch fail."""
    return example if len(example) > 1 else example.expand(2, *example.shape[1:])


def export_program(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """``torch.export`` ``model`` (eval mode) on ``example`` with a dynamic batch axis and save
    the ExportedProgram; load with :func:`load_program` (or ``torch.export.load``)."""
    path = Path(path)
    model.eval()
    with torch.no_grad():
        program = torch.export.export(
            model, (_two_or_more(example),), dynamic_shapes=_dynamic_batch()
        )
    torch.export.save(program, str(path))
    return path


def load_program(path: str | Path) -> nn.Module:
    """Load a saved ExportedProgram as a callable module (on the CPU)."""
    return torch.export.load(str(path)).module()


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
    with torch.no_grad():
        torch.onnx.export(
            model,
            (_two_or_more(example),),
            str(path),
            input_names=["imgs"],
            output_names=["logits"],
            dynamic_shapes=_dynamic_batch(),
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
