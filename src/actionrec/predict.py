"""Inference on single videos with a trained checkpoint: what scripts/predict.py and export.py use.

A checkpoint of ours carries its run's config (``run_config``), so the model and the test
protocol (sampler, pipeline, view averaging) are rebuilt from the checkpoint alone; a video is
scored exactly as the test split scores its videos.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from actionrec import runs
from actionrec.checkpoints import load_every_weight
from actionrec.data.annotations import VideoRecord
from actionrec.data.dataset import MediaError, VideoDataset
from actionrec.data.formats import FrameFolders, Videos

LABEL_MAP_NAME = "classes.txt"  # what the toy dataset writes beside its lists


def split_cli(argv: Sequence[str], options: Sequence[str]) -> tuple[list[str], dict, list[str]]:
    """Split a command line into positionals, the script's own ``key=value`` options, and the
    remaining Hydra overrides (``data.test_num_clips=10``, ``ckpt_path=...``)."""
    positionals, own, overrides = [], {}, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            positionals.append(arg)
        elif key in options:
            own[key] = value
        else:
            overrides.append(arg)
    return positionals, own, overrides


def compose_eval_config(conf_dir: str | Path, overrides: Sequence[str]) -> DictConfig:
    """``conf/eval.yaml`` with ``overrides`` and, from ``ckpt_path``, the run's data/model/optim.

    Raises:
        ValueError: when ``ckpt_path`` is not given.
        CheckpointError: when the checkpoint is missing, unreadable, or names a ``_target_``
            that may not be built from a file (see :mod:`actionrec.trust`).
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        cfg = compose("eval", overrides=list(overrides))
    if not cfg.get("ckpt_path"):
        raise ValueError("no checkpoint given: add ckpt_path=RUN/checkpoints/best.ckpt")
    return runs.restore_run_config(cfg, cfg.ckpt_path, list(overrides))


def load_recognizer(cfg: DictConfig) -> L.LightningModule:
    """The module of ``cfg.model`` with the weights of ``cfg.ckpt_path``, in eval mode.

    Every network tensor must be in the file and fit (our checkpoints, or a state dict that
    ``load_from`` accepts); a class count that differs is an error here, not a fresh head.
    """
    module = runs.build_module(cfg)
    load_every_weight(module.net, cfg.ckpt_path, "ckpt_path")
    return module.eval()


def build_test_views(datamodule: L.LightningDataModule, path: str | Path) -> torch.Tensor:
    """One video (or frame folder) as the test split sees it: uint8 ``([crops,] T, C, H, W)``.

    Uses the datamodule's test sampler and pipeline, so ``data.test_num_clips`` and the test
    crops (``ThreeCrop``, ``TenCrop`` ...) apply as in ``src/eval.py``.
    """
    path = Path(path)
    dm = datamodule
    # The run's format when the path is of its kind; else that kind with its own start_index.
    if path.is_dir():  # a frame folder: count its frames as the list would
        media = dm.media if isinstance(dm.media, FrameFolders) else FrameFolders(dm.filename_tmpl)
        record = VideoRecord(str(path), None, total_frames=media.count_frames(path))
    elif path.is_file():
        media = dm.media if isinstance(dm.media, Videos) else Videos(dm.decoder)
        record = VideoRecord(str(path), None)
    else:
        raise FileNotFoundError(f"video not found: {path}")
    # Decode in a child process when the data config does (not every version has the switch).
    isolation = {k: getattr(dm, k) for k in ("isolate_decoder",) if hasattr(dm, k)}
    dataset = VideoDataset(
        [record],
        dm.samplers["test"],
        dm.pipelines["test"],
        media=media,
        on_error="raise",
        decode_timeout=dm.decode_timeout,
        **isolation,
    )
    try:
        return dataset[0]["imgs"]
    except MediaError as err:
        raise MediaError(str(err.__cause__ or err)) from err


def predict_video(
    module: L.LightningModule, datamodule: L.LightningDataModule, path: str | Path
) -> torch.Tensor:
    """Class probabilities ``(K,)`` of one video under the test protocol (see
    :func:`build_test_views` and :func:`score_views`)."""
    return score_views(module, build_test_views(datamodule, path))


@torch.inference_mode()
def score_views(module: L.LightningModule, views: torch.Tensor) -> torch.Tensor:
    """One video's uint8 frames ``([crops,] T, C, H, W)`` to class probabilities ``(K,)``.

    The module scores the views and averages them (``average_clips``); averaged logits
    (``score``) become probabilities by a softmax, or a sigmoid for multi-label models;
    ``prob`` averaging already gives probabilities.
    """
    module.eval()
    scores = module(views.unsqueeze(0).to(module.device))[0].float().cpu()  # (K,)
    if getattr(module, "average_clips", None) == "prob":
        return scores
    if getattr(module, "multi_label", False):
        return scores.sigmoid()
    return F.softmax(scores, dim=-1)


def default_label_map(data_cfg: DictConfig) -> Path | None:
    """The run's ``data.label_map``; for runs from before that key, a ``classes.txt`` in the
    toy dataset's root or beside the test list. None when there is none."""
    candidates = [Path(data_cfg.label_map)] if data_cfg.get("label_map") else []
    prepare = data_cfg.get("prepare")
    if prepare is not None and prepare.get("root"):
        candidates.append(Path(prepare.root) / LABEL_MAP_NAME)
    ann_file = data_cfg.get("ann_file_test") or data_cfg.get("ann_file_val")
    if ann_file:
        candidates.append(Path(ann_file).parent / LABEL_MAP_NAME)
    return next((p for p in candidates if p.is_file()), None)


def top_classes(
    probs: torch.Tensor, names: Sequence[str] | None, k: int
) -> list[tuple[str, float]]:
    """The ``k`` most probable classes as ``(name, probability)``, best first."""
    values, indices = probs.topk(min(k, probs.numel()))
    return [
        (names[i] if names else f"class {i}", float(v))
        for v, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def one_line(err: BaseException, limit: int = 500) -> str:
    """An error's message on one line for a script's ``error: ...`` (Hydra's run to several)."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())[:limit]


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The run's datamodule, for its test sampler and pipeline (no list is read)."""
    return instantiate(cfg.data)


def run_cli(
    doc: str, run: Callable[[list[str]], Any], errors: tuple[type[BaseException], ...]
) -> Any:
    """The shared front of the checkpoint scripts: ``--help``, then ``run(argv)``.

    A user mistake (one of ``errors``) ends the process with one ``error: ...`` line.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(doc)
        sys.exit(0 if argv else 2)
    try:
        return run(argv)
    except errors as err:
        sys.exit(f"error: {one_line(err)}")
