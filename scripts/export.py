"""Export a checkpoint as one graph from uint8 frames to logits: TorchScript, ONNX and
torch.export's ExportedProgram.

Usage:
    python scripts/export.py ckpt_path=RUN/checkpoints/best.ckpt [num_segments=3]
        [input_size=224] [format=torchscript,onnx,pt2] [out_dir=DIR] [Hydra overrides]

The exported model takes uint8 ``(B, T, C, H, W)`` RGB frames with ``T = num_segments`` and
``H = W = input_size`` (any batch size B) and returns logits ``(B, K)``; the normalization
(mean, std, channel order) is inside. Defaults: ``num_segments`` = the run's
``data.num_clips x data.clip_len``, ``input_size`` = the crop size of the run's test pipeline
(else 224), every format, ``out_dir`` = ``export/`` beside the checkpoint. Writes
``<name>.torchscript.pt``, ``<name>.onnx``, ``<name>.pt2`` (``torch.export.load``) and
``<name>.export.json`` (input shape, classes).
ONNX needs ``pip install onnx onnxscript``; with ``onnxruntime`` it is also checked against
PyTorch.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from actionrec import export, predict, runs

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("num_segments", "input_size", "format", "out_dir")
ERRORS = (*runs.USER_ERRORS, HydraException, OmegaConfBaseException, ImportError)
log = logging.getLogger("actionrec.export")


def default_input_size(cfg: DictConfig) -> int:
    """The square crop of the run's test pipeline (the size the model was tested at), or 224."""
    for transform in reversed(OmegaConf.select(cfg, "data.test_pipeline") or []):
        size = transform.get("crop_size") if hasattr(transform, "get") else None
        if isinstance(size, int):
            return size
        if size is not None and len(size) == 2 and size[0] == size[1]:
            return int(size[0])
    return 224


def parse_formats(value: str) -> list[str]:
    formats = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in formats if f not in export.FORMATS]
    if not formats or unknown:
        raise ValueError(f"format={value} must be a comma list of {', '.join(export.FORMATS)}")
    return formats


def run(argv: list[str]) -> list[Path]:
    """Parse the command line, export, check against PyTorch; returns the written files."""
    positionals, options, overrides = predict.split_cli(argv, OPTIONS)
    if positionals:
        raise ValueError(f"unexpected argument {positionals[0]!r}; options are key=value")
    if "format" in options:
        formats = parse_formats(options["format"])
    else:
        formats = list(export.FORMATS)
        if export.missing_onnx_packages():
            formats.remove("onnx")
            print(f"ONNX: skipped, needs pip install {' '.join(export.ONNX_PACKAGES)}")
    cfg = predict.compose_eval_config(ROOT / "conf", overrides)
    module = predict.load_recognizer(cfg)
    clips = OmegaConf.select(cfg, "data.num_clips", default=3)
    clip_len = OmegaConf.select(cfg, "data.clip_len", default=1)
    segments = int(options.get("num_segments", clips * clip_len))
    size = int(options.get("input_size", default_input_size(cfg)))
    if segments < 1 or size < 1:
        raise ValueError(f"num_segments={segments} and input_size={size} must be >= 1")
    ckpt = Path(cfg.ckpt_path)
    out_dir = Path(options.get("out_dir") or ckpt.parent / "export")
    out_dir.mkdir(parents=True, exist_ok=True)

    model = export.ExportableRecognizer.from_recognizer(module).eval()
    example = export.example_input(segments, size, batch=2)
    with torch.no_grad():
        reference = model(example)
    written = []
    if "torchscript" in formats:
        path = export.export_torchscript(model, example, out_dir / f"{ckpt.stem}.torchscript.pt")
        diff = (export.load_torchscript(path)(example) - reference).abs().max().item()
        print(f"TorchScript: {path} (max |diff| vs PyTorch {diff:.2e})")
        written.append(path)
    if "onnx" in formats:
        path = export.export_onnx(model, example, out_dir / f"{ckpt.stem}.onnx")
        try:
            diff = (export.run_onnx(path, example) - reference).abs().max().item()
            check = f"max |diff| vs PyTorch {diff:.2e}"
        except ImportError:
            check = "not checked: pip install onnxruntime to compare it with PyTorch"
        print(f"ONNX: {path} ({check})")
        written.append(path)
    if "pt2" in formats:
        path = export.export_program(model, example, out_dir / f"{ckpt.stem}.pt2")
        diff = (export.load_program(path)(example) - reference).abs().max().item()
        print(f"ExportedProgram: {path} (max |diff| vs PyTorch {diff:.2e})")
        written.append(path)
    spec = {
        "input": {"name": "imgs", "dtype": "uint8", "shape": ["B", segments, 3, size, size]},
        "output": {"name": "logits", "shape": ["B", module.net.num_classes]},
        "checkpoint": str(ckpt.resolve()),
        "files": [p.name for p in written],
    }
    spec_path = out_dir / f"{ckpt.stem}.export.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    return [*written, spec_path]


def main() -> None:
    predict.run_cli(__doc__, run, ERRORS)


if __name__ == "__main__":
    main()
