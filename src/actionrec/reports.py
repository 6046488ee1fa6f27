"""Evaluation reports: confusion matrices as CSV and PNG, pictures to loggers, per-video results."""

from __future__ import annotations

import csv
import json
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

log = logging.getLogger(__name__)

RESULT_FORMATS = (".json", ".npz", ".pkl")


def class_labels(num_classes: int, names: Sequence[str] | None) -> list[str]:
    return list(names) if names else [str(i) for i in range(num_classes)]


def write_confusion_csv(confmat: torch.Tensor, names: Sequence[str] | None, path: Path) -> Path:
    """Counts, rows are true classes and columns predicted ones, with a header of names."""
    labels = class_labels(confmat.shape[0], names)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\pred", *labels])
        for label, row in zip(labels, confmat.tolist(), strict=True):
            writer.writerow([label, *row])
    return path


def plot_confusion(confmat: torch.Tensor, names: Sequence[str] | None, title: str):
    """A matplotlib figure of the row-normalized matrix (recall per true class).

    Drawn on a bare ``Figure``, not through pyplot, so no global backend changes (a Jupyter
    kernel that validates a model keeps plotting inline).
    """
    from matplotlib.figure import Figure

    counts = confmat.double()
    recall = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    k = confmat.shape[0]
    labels = class_labels(k, names)
    # Room for names up to 60 classes; past that none are drawn, and a bigger canvas would
    # only make every validation of a 400-class run render and save a 16-megapixel PNG.
    size = 4 + 0.35 * k if k <= 60 else 12
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(recall.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= 60:  # past that, names and counts are unreadable anyway
        ax.set_xticks(range(k), labels, rotation=90)
        ax.set_yticks(range(k), labels)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if confmat[i, j]:
                    colour = "white" if recall[i, j] > 0.5 else "black"
                    ax.text(j, i, int(confmat[i, j]), ha="center", va="center", color=colour)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def save_confusion_matrix(
    confmat: torch.Tensor, names: Sequence[str] | None, out_dir: str | Path, stage: str
) -> tuple[Path, Path]:
    """Write ``confusion_matrix_{stage}.csv`` and ``.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    confmat = confmat.detach().cpu().long()
    csv_path = write_confusion_csv(confmat, names, out_dir / f"confusion_matrix_{stage}.csv")
    fig = plot_confusion(confmat, names, f"{stage} confusion matrix ({int(confmat.sum())} videos)")
    png_path = out_dir / f"confusion_matrix_{stage}.png"
    fig.savefig(png_path)
    return csv_path, png_path


def log_image(loggers: Sequence[Logger], key: str, png: Path, step: int) -> None:
    """Send a saved picture to the loggers that show pictures (W&B, TensorBoard)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(png)], step=step)
        elif isinstance(logger, TensorBoardLogger):
            from PIL import Image

            pixels = np.asarray(Image.open(png).convert("RGB"))
            logger.experiment.add_image(key, pixels, global_step=step, dataformats="HWC")


def results_path(path: str | Path) -> Path:
    """``path`` as a :class:`Path` if its suffix names a format :func:`save_results` writes."""
    path = Path(path)
    if path.suffix not in RESULT_FORMATS:
        raise ValueError(f"out={path}: the suffix must be one of {', '.join(RESULT_FORMATS)}")
    return path


def save_results(path: str | Path, results: dict[str, Any]) -> Path:
    """Write per-video results by the file's suffix: ``.json``, ``.npz`` or ``.pkl``.

    ``results`` maps names to arrays with one row per video (annotation order) plus plain
    values; JSON gets lists, NPZ arrays (strings as unicode arrays), PKL the dict of arrays.
    """
    path = results_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        k: v.numpy() if torch.is_tensor(v) else np.asarray(v) if isinstance(v, list) else v
        for k, v in results.items()
    }
    if path.suffix == ".npz":
        np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    elif path.suffix == ".pkl":
        with open(path, "wb") as f:
            pickle.dump(arrays, f)
    else:
        plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
        path.write_text(json.dumps(plain) + "\n")
    return path
