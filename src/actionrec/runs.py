"""What src/train.py and src/eval.py share: building a run's parts from a composed config."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

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
    """The LightningModule of ``cfg.model`` with the optimizer and scheduler of ``cfg.optim``.

    ``optim.param_groups`` (a factory of parameter groups) and ``optim.auto_scale_lr``
    (mmaction2's ``{enable, base_batch_size}``, scaled by ``data.videos_per_gpu``) go to the
    module too.
    """
    optim = cfg.get("optim") or {}
    auto_scale = optim.get("auto_scale_lr") or {}
    return instantiate(
        cfg.model,
        _convert_="all",  # plain lists in the checkpoint's hyperparameters, loadable weights_only
        optimizer=instantiate(optim.get("optimizer")) if optim.get("optimizer") else None,
        scheduler=instantiate(optim.get("scheduler")) if optim.get("scheduler") else None,
        warmup_epochs=optim.get("warmup_epochs", 0.0),
        param_groups=instantiate(optim.get("param_groups")) if optim.get("param_groups") else None,
        lr_base_batch_size=auto_scale.get("base_batch_size") if auto_scale.get("enable") else None,
        videos_per_gpu=OmegaConf.select(cfg, "data.videos_per_gpu"),
    )


def attach_run_config(module: L.LightningModule, cfg: DictConfig) -> None:
    """Have ``module`` save the resolved config into every checkpoint (``run_config``)."""
    module.run_config = OmegaConf.to_container(cfg, resolve=True)


RESTORED_GROUPS = ("data", "model", "optim")


def restore_run_config(cfg: DictConfig, ckpt_path: str | Path, overrides: list[str]) -> DictConfig:
    """``cfg`` with the data, model and optim of the run that wrote ``ckpt_path``.

    A group the command line chose (``data=...``) is kept as composed; then every dotted
    override of the command line (``data.test_num_clips=25``) is applied again on top, so
    the user's words win over the checkpoint's.
    """
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist") from None
    except Exception as err:
        raise CheckpointError(f"ckpt_path={ckpt_path} cannot be read: {err}") from err
    saved = ckpt.get("run_config") if isinstance(ckpt, dict) else None
    if saved is None:
        log.warning("%s holds no run config; using the composed one", ckpt_path)
        return cfg
    chosen = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    cfg = cfg.copy()
    with open_dict(cfg):
        for group in RESTORED_GROUPS:
            if group in saved and group not in chosen:
                cfg[group] = saved[group]
        # The checkpoint holds every weight: building the backbone must not fetch ImageNet's.
        if OmegaConf.select(cfg, "model.net.backbone.pretrained") is not None:
            cfg.model.net.backbone.pretrained = None
        for override in overrides:
            key, _, value = override.lstrip("+").partition("=")
            if "." in key and key.split(".", 1)[0] in RESTORED_GROUPS:
                OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=True)
    return cfg


def check_schedule(cfg: DictConfig) -> None:
    """Stop on a training schedule that would train nothing, before anything is built."""
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if cfg.get("train") and max_epochs == 0:
        raise ValueError(
            "trainer.max_epochs=0 trains nothing: set trainer.max_epochs to 1 or more "
            "(or train=false test=true to only test a checkpoint, or use src/eval.py)"
        )


def check_trainer(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Stop, before any process starts, on trainer settings that cannot work on this machine."""
    # torch's SyncBatchNorm syncs only GPU tensors; on CPU processes DDP refuses to wrap the
    # model with a message that does not name the setting.
    on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
    if cfg.trainer.get("sync_batchnorm") and on_cpu and trainer.world_size > 1:
        raise ValueError(
            "trainer.sync_batchnorm=true needs GPUs: torch's SyncBatchNorm does not run on CPU "
            "processes; set trainer.sync_batchnorm=false (e.g. with trainer=ddp_cpu)"
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


def read_metrics(output_dir: str | Path) -> dict[str, float]:
    """A run's ``metrics.json``, or an empty dict when it has none."""
    path = Path(output_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def remove_if_untrained(output_dir: str | Path) -> bool:
    """Delete the directory of a run that failed before writing a checkpoint or its metrics.

    Such a run leaves nothing worth keeping (its error was printed), and an empty directory
    would count as the task's newest run for ``ckpt_path=last``. Returns whether it was removed.
    """
    run = Path(output_dir)
    ckpts = run / "checkpoints"
    if not run.is_dir() or (run / "metrics.json").exists():
        return False
    if ckpts.is_dir() and any(ckpts.iterdir()):
        return False
    shutil.rmtree(run, ignore_errors=True)
    return True


def write_metrics(metrics: dict[str, Any], output_dir: str | Path) -> Path:
    """Write ``metrics.json``: a flat JSON object of the run's final metrics."""
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    return path
