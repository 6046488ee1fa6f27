"""What src/train.py and src/eval.py share: building a run's parts from a composed config."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from actionrec.checkpoints import CheckpointError
from actionrec.data.dataset import MediaError
from actionrec.models.backbones import PretrainedWeightsError

log = logging.getLogger(__name__)

# Mistakes in config or data whose message already says what to fix: shown without a traceback.
USER_ERRORS = (
    InstantiationException,
    ValueError,
    FileNotFoundError,
    PretrainedWeightsError,
    CheckpointError,
    MediaError,
)


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of ``cfg.model`` with the optimizer and scheduler of ``cfg.optim``."""
    optim = cfg.get("optim") or {}
    return instantiate(
        cfg.model,
        _convert_="all",  # plain lists in the checkpoint's hyperparameters, loadable weights_only
        optimizer=instantiate(optim.get("optimizer")) if optim.get("optimizer") else None,
        scheduler=instantiate(optim.get("scheduler")) if optim.get("scheduler") else None,
        warmup_epochs=optim.get("warmup_epochs", 0.0),
    )


def build_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]


def build_loggers(cfg: DictConfig | None) -> list[Logger]:
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]


def log_config(cfg: DictConfig, loggers: list[Logger]) -> None:
    """Send the whole composed config to every logger (W&B's config tab, TensorBoard hparams)."""
    params = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(params)


def collect_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The scalar metrics the trainer last saw, as plain floats."""
    out = {}
    for key, value in trainer.callback_metrics.items():
        if torch.is_tensor(value) and value.numel() == 1:
            value = float(value)
        if isinstance(value, float) and math.isfinite(value):
            out[key] = value
    return out


def write_metrics(metrics: dict[str, Any], output_dir: str | Path) -> Path:
    """Write ``metrics.json``: a flat JSON object of the run's final metrics."""
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    return path
